// @durablego/durable: Durable Objects from TypeScript, in the browser and in
// Node. protoc-gen-durable (with lang=ts) emits one small file per .proto
// file that declares object classes; its create<Class>Namespace(transport)
// returns a Namespace from this package:
//
//   const counters = createCounterNamespace(transport);
//   await counters.get(counters.idFromName("x")).increment({ amount: 5n }); // int64 is bigint
//
// get(id) returns the Connect-ES client of the class's service, whose every
// call carries the object's address in the Durable-Object-Name or
// Durable-Object-Id header. Any Connect-ES transport works: Connect or
// gRPC-Web from @connectrpc/connect-web, Connect or gRPC from
// @connectrpc/connect-node.
//
// The package carries the code protoc-gen-es generates for
// durable/v1/durable.proto (src/gen, exported as
// @durablego/durable/gen/durable/v1/durable_pb.js): the namespaces call the
// server's durable.v1.IDService with it, so a project's own generated code
// needs no durable_pb unless its _pb files import one (see map_imports in
// the README).

import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { CallOptions, Client, Transport } from "@connectrpc/connect";

import { IDService } from "./gen/durable/v1/durable_pb.js";

/** The request header that addresses an object by name; the server derives the ID. */
export const HeaderObjectName = "Durable-Object-Name";
/** The request header that addresses an object by its ID, 64 lowercase hex characters. */
export const HeaderObjectId = "Durable-Object-Id";
/**
 * The error metadata key with which the server tells its own failures apart;
 * its value is a DurableErrorKind. See durableErrorKind and isDurableError.
 */
export const HeaderError = "Durable-Error";
/**
 * The error metadata key naming the kind of Durable failure that a method's
 * error (kind "method") wraps, such as "reentrant" for a nested call that
 * would deadlock.
 */
export const HeaderErrorCause = "Durable-Error-Cause";

/**
 * The kinds of Durable's own failures, as in the Go package's durable.Kind
 * table (a Go test checks that the two agree): each with its Connect code
 * (for "method", the method's own; Unknown when it has none), the HTTP status
 * of the Fetch routes, whether it is the failure of a call that reached the
 * object, and the kinds an error of it matches in isDurableError, itself
 * first (Go's errors.Is with the kind's sentinels).
 */
export const durableErrorKinds = {
  "method": { code: Code.Unknown, status: 500, method: true, matches: [] },
  "internal": { code: Code.Internal, status: 500, method: true, matches: ["internal"] },
  "state-too-large": { code: Code.ResourceExhausted, status: 507, method: true, matches: ["state-too-large"] },
  "database-full": { code: Code.ResourceExhausted, status: 507, method: true, matches: ["database-full"] },
  "write-too-large": { code: Code.ResourceExhausted, status: 507, method: true, matches: ["write-too-large"] },
  "unavailable": { code: Code.Unavailable, status: 503, method: true, matches: ["unavailable"] },
  "out-of-memory": { code: Code.ResourceExhausted, status: 503, method: true, matches: ["out-of-memory"] },
  "id-length": { code: Code.InvalidArgument, status: 400, method: false, matches: ["id-length", "invalid-id"] },
  "id-not-hex": { code: Code.InvalidArgument, status: 400, method: false, matches: ["id-not-hex", "invalid-id"] },
  "id-namespace": { code: Code.InvalidArgument, status: 400, method: false, matches: ["id-namespace", "invalid-id"] },
  "invalid-id": { code: Code.InvalidArgument, status: 400, method: false, matches: ["invalid-id"] },
  "invalid-chain": { code: Code.InvalidArgument, status: 400, method: false, matches: ["invalid-chain"] },
  "class-not-found": { code: Code.Unimplemented, status: 404, method: false, matches: ["class-not-found"] },
  "method-not-found": { code: Code.Unimplemented, status: 404, method: false, matches: ["method-not-found"] },
  "no-fetch": { code: Code.Unimplemented, status: 404, method: false, matches: ["no-fetch"] },
  "too-large": { code: Code.ResourceExhausted, status: 413, method: false, matches: ["too-large"] },
  "overloaded": { code: Code.ResourceExhausted, status: 503, method: false, matches: ["overloaded"] },
  "reentrant": { code: Code.FailedPrecondition, status: 508, method: false, matches: ["reentrant"] },
  "shutdown": { code: Code.Unavailable, status: 503, method: false, matches: ["shutdown"] },
  "not-owner": { code: Code.Unavailable, status: 503, method: false, matches: ["not-owner"] },
  "moved": { code: Code.Unavailable, status: 503, method: false, matches: ["moved"] },
  "denied": { code: Code.PermissionDenied, status: 403, method: false, matches: ["denied"] },
  "cross-origin": { code: Code.PermissionDenied, status: 403, method: false, matches: ["cross-origin"] },
} as const satisfies Record<string, { code: Code; status: number; method: boolean; matches: readonly string[] }>;

/** A kind of Durable's own failures: see durableErrorKinds. */
export type DurableErrorKind = keyof typeof durableErrorKinds;

/** Why an ID was refused on the client's side. */
export type InvalidIdReason = "length" | "not-hex" | "empty-name" | "namespace";

/**
 * InvalidIdError is thrown by idFromString for a string that is not an ID
 * (not 64 characters, or not lowercase hexadecimal), by idFromName and
 * resolveName for an empty name, and by get for an ID of another class. IDs
 * that are well formed but forged, or minted for another class, are refused
 * by the server: the call fails with a ConnectError of code InvalidArgument
 * whose durableErrorKind is "id-namespace". isDurableError(err, "invalid-id")
 * holds for both.
 */
export class InvalidIdError extends Error {
  override name = "InvalidIdError";
  /** Why the ID was refused. */
  readonly reason: InvalidIdReason;

  constructor(reason: InvalidIdReason, message: string) {
    super(message);
    this.reason = reason;
  }
}

const idPattern = /^[0-9a-f]{64}$/;

/**
 * DurableId addresses one object of one class: a name-only ID from
 * idFromName (the server derives the ID from the name; the client holds no
 * secret), or a resolved ID from idFromString, newUniqueId or resolveName.
 */
export class DurableId {
  /** The object class, as in the .proto service ("Counter"). */
  readonly className: string;
  /** The ID in canonical form, 64 lowercase hex characters; undefined for a name-only ID. */
  readonly id: string | undefined;
  /** The name the ID was derived from, when known. */
  readonly name: string | undefined;

  /** @internal Use a Namespace's idFromName, idFromString, newUniqueId or resolveName. */
  constructor(className: string, id: string | undefined, name: string | undefined) {
    this.className = className;
    this.id = id;
    this.name = name;
  }

  /** The hex ID, or "name:<name>" for a name-only ID. */
  toString(): string {
    return this.id ?? `name:${this.name}`;
  }

  /**
   * Reports whether other addresses the same object: same class, and the
   * same hex ID, or, when either is name-only, the same name.
   */
  equals(other: DurableId): boolean {
    if (this.className !== other.className) {
      return false;
    }
    if (this.id !== undefined && other.id !== undefined) {
      return this.id === other.id;
    }
    return this.name !== undefined && this.name === other.name;
  }
}

/** A Namespace is the TypeScript counterpart of a Durable Objects namespace binding. */
export interface Namespace<S extends DescService> {
  /** The object class, as in the .proto service ("Counter"). */
  readonly className: string;
  /** The constant-case binding name ("COUNTER", "CHAT_ROOM"). */
  readonly binding: string;
  /** The kebab-case segment of the class in HTTP routes ("counter", "chat-room"). */
  readonly urlSegment: string;
  /** The class's service descriptor, as protoc-gen-es generates it. */
  readonly service: S;

  /**
   * Returns the name-only ID of the object called name. Calls carry the name
   * in the Durable-Object-Name header and the server derives the ID, so
   * nothing is asked of the server here. A name that an HTTP header cannot
   * carry as is (characters outside printable ASCII, spaces at either end)
   * is resolved through the server's ID service on the first call instead.
   * Throws InvalidIdError for an empty name.
   */
  idFromName(name: string): DurableId;
  /**
   * Parses the canonical form of an ID: 64 lowercase hex characters. Throws
   * InvalidIdError otherwise. The server checks that the ID belongs to this
   * class on the first call.
   */
  idFromString(id: string): DurableId;
  /** Asks the server's durable.v1.IDService to mint a fresh random ID of the class. */
  newUniqueId(options?: CallOptions): Promise<DurableId>;
  /**
   * Asks the server's durable.v1.IDService for the ID a name maps to, and
   * returns it with its name. It addresses the same object as idFromName(name).
   */
  resolveName(name: string, options?: CallOptions): Promise<DurableId>;
  /**
   * Returns the Connect-ES client of the object id: one method per RPC, each
   * call addressed to the object. Throws InvalidIdError for an ID of another
   * class.
   */
  get(id: DurableId): Client<S>;
  /**
   * Returns the path of the object's HTTP Fetch route, to append to the
   * server's base URL: /objects/{segment}/{name}{path} for a name-only ID,
   * /objects-by-id/{segment}/{id}{path} for a resolved one. path defaults
   * to "/" and may carry a query string.
   */
  objectPath(id: DurableId, path?: string): string;
}

/** What protoc-gen-durable's generated code passes to createNamespace. */
export interface NamespaceOptions {
  /** The class name ("Counter"). */
  className: string;
  /** The constant-case binding name; defaults to none (""). */
  binding?: string;
  /** The kebab-case URL segment. */
  urlSegment: string;
}

/**
 * Returns the namespace of the class whose service is service, calling the
 * server through transport. Generated create<Class>Namespace functions call
 * it; call it yourself only for a class without generated code.
 */
export function createNamespace<S extends DescService>(
  service: S,
  transport: Transport,
  options: NamespaceOptions,
): Namespace<S> {
  const { className, urlSegment } = options;
  const binding = options.binding ?? "";
  // The server's ID service, built into every Durable server.
  const ids = createClient(IDService, transport);

  // checked returns id, a minted or resolved ID, when it is well formed.
  const checked = (id: string): string => {
    if (!idPattern.test(id)) {
      throw new ConnectError(`durable: the server returned a malformed ${className} ID: ${JSON.stringify(id)}`, Code.Internal);
    }
    return id;
  };

  const checkName = (name: string) => {
    if (typeof name !== "string" || name === "") {
      throw new InvalidIdError("empty-name", `durable: a ${className} object name must not be empty`);
    }
  };

  const resolveName = async (name: string, options?: CallOptions) => {
    checkName(name);
    const { id } = await ids.iDFromName({ class: className, name }, options);
    return new DurableId(className, checked(id), name);
  };

  return {
    className,
    binding,
    urlSegment,
    service,
    idFromName(name) {
      checkName(name);
      return new DurableId(className, undefined, name);
    },
    idFromString(s) {
      if (typeof s !== "string" || s.length !== 64) {
        const len = typeof s === "string" ? s.length : `a ${typeof s}, not`;
        throw new InvalidIdError(
          "length",
          `durable: a ${className} ID must be 64 lowercase hex characters, got ${len} characters`,
        );
      }
      if (!idPattern.test(s)) {
        throw new InvalidIdError(
          "not-hex",
          `durable: a ${className} ID must be 64 lowercase hex characters (0-9, a-f), got ${JSON.stringify(s)}`,
        );
      }
      return new DurableId(className, s, undefined);
    },
    async newUniqueId(options) {
      const { id } = await ids.newUniqueID({ class: className }, options);
      return new DurableId(className, checked(id), undefined);
    },
    resolveName,
    get(id) {
      checkClass(className, id);
      let address: Promise<[string, string]>;
      if (id.id !== undefined) {
        address = Promise.resolve([HeaderObjectId, id.id]);
      } else if (headerSafe(id.name!)) {
        address = Promise.resolve([HeaderObjectName, id.name!]);
      } else {
        // Resolved once, on the first call, and kept by this client.
        let resolving: Promise<[string, string]> | undefined;
        const resolve = () => {
          resolving ??= resolveName(id.name!).then(
            (r): [string, string] => [HeaderObjectId, r.id!],
            (err: unknown) => {
              resolving = undefined; // try again on the next call
              throw err;
            },
          );
          return resolving;
        };
        return createClient(service, addressed(transport, resolve));
      }
      return createClient(service, addressed(transport, () => address));
    },
    objectPath(id, path = "/") {
      checkClass(className, id);
      if (!path.startsWith("/")) {
        path = "/" + path;
      }
      if (id.id !== undefined) {
        return `/objects-by-id/${urlSegment}/${id.id}${path}`;
      }
      const name = id.name!;
      // "." and ".." escaped, or URL resolution would treat them as a path.
      const segment = name === "." || name === ".." ? name.replaceAll(".", "%2E") : encodeURIComponent(name);
      return `/objects/${urlSegment}/${segment}${path}`;
    },
  };
}

/**
 * Returns the kind of Durable failure an error from a call is: the value of
 * its Durable-Error metadata (see durableErrorKinds; "method" for a failed
 * method of the object), or undefined for any other error.
 */
export function durableErrorKind(err: unknown): string | undefined {
  if (!(err instanceof ConnectError)) {
    return undefined;
  }
  return err.metadata.get(HeaderError) ?? undefined;
}

const idReasonKinds: Record<InvalidIdReason, DurableErrorKind> = {
  "length": "id-length",
  "not-hex": "id-not-hex",
  "namespace": "id-namespace",
  "empty-name": "invalid-id",
};

/**
 * Reports whether err is a Durable failure of kind, as Go's errors.Is with
 * the kind's sentinel: the server's Durable-Error kind or, for a method's
 * failure, its Durable-Error-Cause matches kind (so "invalid-id" holds for
 * "id-namespace" too; see durableErrorKinds), or err is the InvalidIdError
 * this client throws for the same reason before sending anything.
 */
export function isDurableError(err: unknown, kind: DurableErrorKind): boolean {
  const matches = (k: string | undefined | null) =>
    k != null && Object.hasOwn(durableErrorKinds, k) &&
    (durableErrorKinds[k as DurableErrorKind].matches as readonly string[]).includes(kind);
  if (err instanceof InvalidIdError) {
    return matches(idReasonKinds[err.reason]);
  }
  if (!(err instanceof ConnectError)) {
    return false;
  }
  const own = err.metadata.get(HeaderError);
  return own === kind || matches(own) || (own === "method" && matches(err.metadata.get(HeaderErrorCause)));
}

function checkClass(className: string, id: DurableId) {
  if (!(id instanceof DurableId)) {
    throw new InvalidIdError("namespace", `durable: ${String(id)} is not a DurableId`);
  }
  if (id.className !== className) {
    throw new InvalidIdError(
      "namespace",
      `durable: an ID of class ${id.className} cannot address a ${className} object`,
    );
  }
}

// headerSafe reports whether an HTTP header carries name unchanged: printable
// ASCII, without spaces at either end (which HTTP strips).
function headerSafe(name: string): boolean {
  return /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/.test(name);
}

// addressed wraps transport so that every call carries the header that
// address returns.
function addressed(transport: Transport, address: () => Promise<[string, string]>): Transport {
  const withAddress = async (header: HeadersInit | undefined): Promise<Headers> => {
    const [key, value] = await address();
    const h = new Headers(header);
    h.delete(HeaderObjectName);
    h.delete(HeaderObjectId);
    h.set(key, value);
    return h;
  };
  return {
    async unary(method, signal, timeoutMs, header, input, contextValues) {
      return transport.unary(method, signal, timeoutMs, await withAddress(header), input, contextValues);
    },
    async stream(method, signal, timeoutMs, header, input, contextValues) {
      return transport.stream(method, signal, timeoutMs, await withAddress(header), input, contextValues);
    },
  };
}
