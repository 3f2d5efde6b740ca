// Node interoperability tests: the generated TypeScript namespaces and
// @connectrpc/connect-node against a real example server, over Connect
// (HTTP/1.1 and HTTP/2), gRPC (HTTP/2, h2c) and gRPC-Web. The test starts
// nothing: scripts/interop.sh starts the server on 127.0.0.1 with a fresh
// data directory and sets DURABLE_URL.
//
//   DURABLE_URL=http://127.0.0.1:8080 node --import tsx --test test/node-interop.test.ts

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, describe, it } from "node:test";

import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  Http2SessionManager,
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { DurableId, InvalidIdError, createNamespace, durableErrorKind, isDurableError } from "@durablego/durable";

import { Probe } from "../src/gen/durabletest/v1/probe_pb";
import { createChatRoomNamespace } from "../src/gen/examples/chat/v1/chat_durable";
import { createCounterNamespace } from "../src/gen/examples/counter/v1/counter_durable";
import { Counter } from "../src/gen/examples/counter/v1/counter_pb";
import { createDocumentNamespace } from "../src/gen/examples/document/v1/document_durable";
import { createWalletNamespace } from "../src/gen/examples/wallet/v1/wallet_durable";

const baseUrl = process.env.DURABLE_URL;
if (!baseUrl) {
  throw new Error("set DURABLE_URL to the base URL of a running example server (scripts/interop.sh does)");
}

// One HTTP/2 connection per HTTP/2 transport, closed at the end so that the
// process can exit.
const sessions: Http2SessionManager[] = [];
const h2 = () => {
  const m = new Http2SessionManager(baseUrl);
  sessions.push(m);
  return m;
};
after(() => sessions.forEach((m) => m.abort()));

const transports: [string, () => Transport][] = [
  ["connect-http1.1", () => createConnectTransport({ baseUrl, httpVersion: "1.1" })],
  ["connect-http2", () => createConnectTransport({ baseUrl, httpVersion: "2", sessionManager: h2() })],
  ["grpc-h2c", () => createGrpcTransport({ baseUrl, sessionManager: h2() })],
  ["grpcweb-http1.1", () => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" })],
];

// A name no other run or transport uses, though each run has a fresh server.
const unique = (label: string) => `${label}-${randomBytes(4).toString("hex")}`;

// rejects asserts that promise fails with a ConnectError of code, and
// returns it.
async function rejects(promise: Promise<unknown>, code: Code): Promise<ConnectError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ConnectError, `want a ConnectError, got ${String(err)}`);
    assert.equal(err.code, code, `want code ${Code[code]}, got ${Code[err.code]}: ${err.message}`);
    return err;
  }
  assert.fail(`want a ConnectError of code ${Code[code]}, got success`);
}

for (const [label, makeTransport] of transports) {
  describe(label, () => {
    const transport = makeTransport();
    const counters = createCounterNamespace(transport);

    it("calls a counter by name", async () => {
      const name = unique("by-name");
      const stub = counters.get(counters.idFromName(name));
      assert.equal((await stub.increment({ amount: 5n })).value, 5n);
      assert.equal((await stub.increment({ amount: 2n })).value, 7n);
      assert.equal((await stub.getValue({})).value, 7n);
      // Another stub of the same name reaches the same object.
      assert.equal((await counters.get(counters.idFromName(name)).getValue({})).value, 7n);
    });

    it("resolves a name to the ID of the same object", async () => {
      const name = unique("resolved");
      await counters.get(counters.idFromName(name)).increment({ amount: 3n });
      const resolved = await counters.resolveName(name);
      assert.match(resolved.toString(), /^[0-9a-f]{64}$/);
      assert.equal(resolved.id, resolved.toString());
      assert.equal(resolved.name, name);
      assert.equal(resolved.className, "Counter");
      assert.ok(resolved.equals(counters.idFromName(name)));
      assert.ok((await counters.resolveName(name)).equals(resolved), "resolveName is deterministic");

      const parsed = counters.idFromString(resolved.toString());
      assert.equal(parsed.id, resolved.id);
      assert.equal(parsed.name, undefined);
      assert.ok(parsed.equals(resolved));
      assert.equal((await counters.get(parsed).increment({ amount: 1n })).value, 4n);
      assert.equal((await counters.get(counters.idFromName(name)).getValue({})).value, 4n);
    });

    it("reaches names that a header cannot carry", async () => {
      const name = ` café ☕ ${unique("utf8")} `;
      const id = counters.idFromName(name);
      assert.equal(id.toString(), `name:${name}`);
      assert.equal((await counters.get(id).increment({ amount: 6n })).value, 6n);
      const resolved = await counters.resolveName(name);
      assert.equal((await counters.get(resolved).getValue({})).value, 6n);
    });

    it("mints distinct unique IDs of distinct objects", async () => {
      const a = await counters.newUniqueId();
      const b = await counters.newUniqueId();
      assert.match(a.toString(), /^[0-9a-f]{64}$/);
      assert.notEqual(a.id, b.id);
      assert.ok(!a.equals(b));
      assert.equal(a.name, undefined);
      assert.equal((await counters.get(a).increment({ amount: 9n })).value, 9n);
      assert.equal((await counters.get(b).getValue({})).value, 0n);
      assert.equal((await counters.get(counters.idFromString(a.toString())).getValue({})).value, 9n);
    });

    it("refuses malformed IDs on the client", () => {
      assert.throws(() => counters.idFromString("abc"), (err: unknown) => {
        assert.ok(err instanceof InvalidIdError);
        assert.equal(err.reason, "length");
        assert.match(err.message, /64 lowercase hex/);
        return true;
      });
      assert.throws(() => counters.idFromString("g".repeat(64)), { name: "InvalidIdError", reason: "not-hex" });
      assert.throws(() => counters.idFromString("A".repeat(64)), { name: "InvalidIdError", reason: "not-hex" });
      assert.throws(() => counters.idFromName(""), { name: "InvalidIdError", reason: "empty-name" });
      const rooms = createChatRoomNamespace(transport);
      assert.throws(() => counters.get(rooms.idFromName("lobby")), {
        name: "InvalidIdError",
        reason: "namespace",
        message: /ChatRoom cannot address a Counter/,
      });
    });

    it("gets InvalidArgument for a forged ID or one of another class", async () => {
      const forged = counters.idFromString(randomBytes(32).toString("hex"));
      const err = await rejects(counters.get(forged).getValue({}), Code.InvalidArgument);
      assert.equal(durableErrorKind(err), "id-namespace");
      assert.ok(isDurableError(err, "invalid-id") && isDurableError(err, "id-namespace"), "both kinds match");
      assert.ok(!isDurableError(err, "id-length"));
      assert.match(err.message, /Durable-Object-Id/);

      const rooms = createChatRoomNamespace(transport);
      const roomId = await rooms.newUniqueId();
      const foreign = await rejects(
        counters.get(counters.idFromString(roomId.toString())).getValue({}),
        Code.InvalidArgument,
      );
      assert.equal(durableErrorKind(foreign), "id-namespace");
      assert.ok(isDurableError(foreign, "invalid-id"));

      // Refused by this client before sending: the same kinds match.
      try {
        counters.get(rooms.idFromName("lobby"));
        assert.fail("get accepted an ID of another class");
      } catch (local) {
        assert.ok(isDurableError(local, "id-namespace") && isDurableError(local, "invalid-id"));
      }
      assert.match(foreign.message, /ChatRoom/, "the error names the class the ID belongs to");
    });

    it("gets proper codes for unknown methods, classes and bad requests", async () => {
      // A service the example server does not serve.
      const probe = createClient(Probe, transport);
      await rejects(probe.get({}, { headers: { "Durable-Object-Name": "x" } }), Code.Unimplemented);

      // A class the server does not know, through the ID service.
      const probes = createNamespace(Probe, transport, {
        className: "Probe",
        urlSegment: "probe",
      });
      // Unimplemented, as for a call to the class's service: one code per kind.
      const notFound = await rejects(probes.newUniqueId(), Code.Unimplemented);
      assert.equal(durableErrorKind(notFound), "class-not-found");
      assert.ok(isDurableError(notFound, "class-not-found"));

      // A method the class does not have: Unimplemented, naming its methods.
      const nope = { ...Counter.method.getValue, name: "Nope" } as typeof Counter.method.getValue;
      const unknownMethod = await rejects(
        transport.unary(nope, undefined, undefined, { "Durable-Object-Name": "x" }, {}),
        Code.Unimplemented,
      );
      assert.equal(durableErrorKind(unknownMethod), "method-not-found");
      assert.match(unknownMethod.message, /GetValue/, "the error names the class's methods");
      assert.match(notFound.message, /Counter/, "the error lists the registered classes");

      // A request that breaks the method's protovalidate rules.
      const wallets = createWalletNamespace(transport);
      const invalid = await rejects(
        wallets.get(wallets.idFromName(unique("family"))).deposit({ account: "alice", amount: 0n }),
        Code.InvalidArgument,
      );
      assert.match(invalid.message, /amount/);

      // A call without the ID header, from a plain Connect-ES client.
      const missing = await rejects(createClient(Counter, transport).getValue({}), Code.InvalidArgument);
      assert.match(missing.message, /Durable-Object-Name/);
      assert.equal(durableErrorKind(missing), "invalid-id");
    });

    it("calls the chat room and the document", async () => {
      const rooms = createChatRoomNamespace(transport);
      const online = await rooms.get(rooms.idFromName(unique("lobby"))).getOnlineUsers({});
      assert.deepEqual(online.users, []);

      const documents = createDocumentNamespace(transport);
      const doc = await documents.get(documents.idFromName(unique("readme"))).getContent({});
      assert.equal(doc.content, "");
      assert.equal(typeof doc.version, "bigint");
    });
  });
}

describe("fetch routes", () => {
  const counters = createCounterNamespace(createConnectTransport({ baseUrl, httpVersion: "1.1" }));

  it("objectPath reaches the object's Fetch by name and by ID", async () => {
    const name = unique("fetch/route");
    await counters.get(counters.idFromName(name)).increment({ amount: 4n });
    const byName = await fetch(new URL(counters.objectPath(counters.idFromName(name)), baseUrl));
    assert.equal(byName.status, 200);
    assert.equal((await byName.json()).value, 4);

    const id = await counters.resolveName(name);
    assert.equal(counters.objectPath(id, "increment"), `/objects-by-id/counter/${id.id}/increment`);
    const byId = await fetch(new URL(counters.objectPath(id, "/increment"), baseUrl), {
      method: "POST",
      body: JSON.stringify({ amount: 1 }),
    });
    assert.deepEqual(await byId.json(), { value: 5 });
  });

  it("DurableId prints and compares", () => {
    const id = counters.idFromName("x");
    assert.ok(id instanceof DurableId);
    assert.equal(String(id), "name:x");
    assert.equal(id.id, undefined);
    assert.equal(id.name, "x");
    assert.equal(counters.className, "Counter");
    assert.equal(counters.binding, "COUNTER");
    assert.equal(counters.urlSegment, "counter");
    assert.equal(counters.objectPath(counters.idFromName("..")), "/objects/counter/%2E%2E/");
    assert.equal(counters.objectPath(counters.idFromName("a b/c")), "/objects/counter/a%20b%2Fc/");
  });
});
