// End-to-end tests of the example server's page in headless Chromium
// (Debian's chromium, driven by playwright-core). Run by
// scripts/browser-test.sh, which builds the server and sets the
// environment that serverFromEnv reads; the tests start the server
// themselves, since the counter test restarts it.
//
// Nothing sleeps: every step waits for the page to reach a state, with a
// timeout.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { serverFromEnv } from "./example-server";

const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const results = new URL("../test-results/", import.meta.url).pathname;
/** How long a step may wait for the page. */
const stepTimeoutMs = 10_000;

const server = serverFromEnv();
// A unique suffix: names of counters, rooms and documents never collide
// with those of an earlier run on the same data directory.
const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

let browser: Browser;

describe("the example server's page", { skip: server ? false : "set DURABLE_SERVER_BIN, DURABLE_DATA_DIR and DURABLE_ADDR (scripts/browser-test.sh does)" }, () => {
  before(async () => {
    mkdirSync(results, { recursive: true });
    process.once("exit", () => server!.killNow());
    await server!.start();
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
  });

  after(async () => {
    await browser?.close();
    await server!.stop();
  });

  /** A new browser context (its own storage: another user) with the page's defaults. */
  async function newContext(): Promise<BrowserContext> {
    const ctx = await browser.newContext({ baseURL: server!.url, viewport: { width: 1100, height: 820 } });
    ctx.setDefaultTimeout(stepTimeoutMs);
    return ctx;
  }

  /** Opens the page at path and waits until its script has run. */
  async function open(ctx: BrowserContext, path: string): Promise<Page> {
    const page = await ctx.newPage();
    page.on("pageerror", (err) => console.error(`page error: ${err.message}`));
    await page.goto(path);
    await page.locator("body[data-ready=true]").waitFor();
    return page;
  }

  /** Waits until the counter shows value for the counter named name. */
  async function counterShows(page: Page, name: string, value: string): Promise<void> {
    try {
      await page.waitForFunction(
        ([n, v]) => {
          const out = document.querySelector<HTMLElement>('[data-testid="counter-value"]');
          return out?.dataset.name === n && out.textContent === v;
        },
        [name, value] as const,
        { timeout: stepTimeoutMs },
      );
    } catch (err) {
      const shown = await page.getByTestId("counter-value").textContent();
      const status = await page.getByTestId("counter-status").textContent();
      assert.fail(`counter "${name}": want ${value}, the page shows ${shown} (${status}): ${err}`);
    }
  }

  /** Waits until the textarea of the document holds content. */
  async function documentShows(page: Page, content: string, version: string): Promise<void> {
    try {
      await page.waitForFunction(
        ([c, v]) =>
          document.querySelector<HTMLTextAreaElement>('[data-testid="document-content"]')?.value === c &&
          document.querySelector('[data-testid="document-version"]')?.textContent === v,
        [content, version] as const,
        { timeout: stepTimeoutMs },
      );
    } catch (err) {
      const shown = await page.getByTestId("document-content").inputValue();
      const v = await page.getByTestId("document-version").textContent();
      assert.fail(`document: want ${JSON.stringify(content)} at version ${version}, the page shows ${JSON.stringify(shown)} at ${v}: ${err}`);
    }
  }

  test("counter: +1 three times and −1 once show 2, over Connect and gRPC-Web, and survive a restart", { timeout: 90_000 }, async () => {
    const ctx = await newContext();
    const page = await open(ctx, "/#counter");
    // The content type of every counter RPC the page sends.
    const contentTypes: string[] = [];
    page.on("request", (req) => {
      if (req.url().includes("/examples.counter.v1.Counter/")) contentTypes.push(req.headers()["content-type"] ?? "");
    });

    const byProtocol = { connect: `connect-${run}`, "grpc-web": `grpc-web-${run}` } as const;
    for (const [protocol, name] of Object.entries(byProtocol)) {
      contentTypes.length = 0;
      await page.getByTestId("protocol").selectOption(protocol);
      await page.getByTestId("counter-name").fill(name);
      await counterShows(page, name, "0");
      for (let i = 0; i < 3; i++) await page.getByTestId("counter-increment").click();
      await page.getByTestId("counter-decrement").click();
      await counterShows(page, name, "2");
      const want = protocol === "connect" ? "application/json" : "application/grpc-web+proto";
      assert.ok(contentTypes.length >= 5, `${protocol}: want 5 counter RPCs, saw ${contentTypes.length}`);
      for (const ct of contentTypes) assert.equal(ct, want, `${protocol}: an RPC went as ${ct}`);
    }
    await page.screenshot({ path: `${results}counter.png`, fullPage: true });

    await server!.restart();
    await page.reload();
    await page.locator("body[data-ready=true]").waitFor();
    // The page remembers the last counter name and the protocol.
    assert.equal(await page.getByTestId("counter-name").inputValue(), byProtocol["grpc-web"]);
    assert.equal(await page.getByTestId("protocol").inputValue(), "grpc-web");
    await counterShows(page, byProtocol["grpc-web"], "2");
    await page.getByTestId("protocol").selectOption("connect");
    await page.getByTestId("counter-name").fill(byProtocol.connect);
    await counterShows(page, byProtocol.connect, "2");
    await page.screenshot({ path: `${results}counter-after-restart.png`, fullPage: true });
    await ctx.close();
  });

  test("chat: two users see each other, their messages and leaves; a third sees the history", { timeout: 60_000 }, async () => {
    const room = `room-${run}`;
    const contexts: BrowserContext[] = [];
    async function join(user: string): Promise<Page> {
      const ctx = await newContext();
      contexts.push(ctx);
      const page = await open(ctx, "/#chat");
      await page.getByTestId("chat-username").fill(user);
      await page.getByTestId("chat-room").fill(room);
      await page.getByTestId("chat-connect").click();
      await page.locator('[data-testid="chat-status"][data-state="connected"]').waitFor();
      return page;
    }
    const log = (page: Page, kind: string, user: string, text?: string) => {
      const line = page.getByTestId("chat-log").locator(`li[data-kind="${kind}"][data-user="${user}"]`);
      return text === undefined ? line : line.filter({ hasText: text });
    };
    const online = (page: Page, user: string) => page.getByTestId("chat-online").locator("li", { hasText: user });

    const alice = await join("alice");
    await online(alice, "alice").waitFor();
    const bob = await join("bob");
    // Each sees the other: alice hears bob join, bob finds alice online.
    await log(alice, "join", "bob").waitFor();
    await online(alice, "bob").waitFor();
    await online(bob, "alice").waitFor();

    await alice.getByTestId("chat-message").fill("hello from alice");
    await alice.getByTestId("chat-message").press("Enter");
    await log(bob, "message", "alice", "hello from alice").waitFor();
    await log(alice, "message", "alice", "hello from alice").waitFor();
    await bob.getByTestId("chat-message").fill("hi alice, bob here");
    await bob.getByTestId("chat-send-button").click();
    await log(alice, "message", "bob", "hi alice, bob here").waitFor();
    await alice.screenshot({ path: `${results}chat.png`, fullPage: true });

    await bob.getByTestId("chat-leave").click();
    await bob.locator('[data-testid="chat-status"][data-state="disconnected"]').waitFor();
    await log(alice, "leave", "bob").waitFor();

    const carol = await join("carol");
    await log(carol, "history", "alice", "hello from alice").waitFor();
    await log(carol, "history", "bob", "hi alice, bob here").waitFor();
    await log(alice, "join", "carol").waitFor();
    await carol.screenshot({ path: `${results}chat-history.png`, fullPage: true });
    for (const ctx of contexts) await ctx.close();
  });

  test("document: two tabs see each other's edits, the version and the history", { timeout: 60_000 }, async () => {
    const name = `doc-${run}`;
    const ctx = await newContext();
    async function openDocument(author: string): Promise<Page> {
      const page = await open(ctx, "/#document");
      await page.getByTestId("document-name").fill(name);
      await page.getByTestId("document-author").fill(author);
      await page.getByTestId("document-connect").click();
      await page.locator('[data-testid="document-status"][data-state="connected"]').waitFor();
      await documentShows(page, "", "0");
      return page;
    }
    const ann = await openDocument("ann");
    const ben = await openDocument("ben");

    await ann.getByTestId("document-content").fill("Hello from the first tab.");
    await documentShows(ben, "Hello from the first tab.", "1");
    await documentShows(ann, "Hello from the first tab.", "1");

    await ben.getByTestId("document-content").fill("Hello from the first tab.\nAnd from the second.");
    await documentShows(ann, "Hello from the first tab.\nAnd from the second.", "2");
    await documentShows(ben, "Hello from the first tab.\nAnd from the second.", "2");

    for (const page of [ann, ben]) {
      const revisions = page.getByTestId("document-history").getByTestId("document-revision");
      await page.locator('[data-testid="document-revision"][data-version="2"]').waitFor();
      assert.deepEqual(
        await revisions.evaluateAll((lis) => lis.map((li) => `${(li as HTMLElement).dataset.version} ${li.querySelector(".who")?.textContent}`)),
        ["2 ben", "1 ann"],
      );
    }
    await ann.screenshot({ path: `${results}document.png`, fullPage: true });
    await ctx.close();
  });

  test("another origin: a page there can call no RPC, post to no Fetch route and open no WebSocket, until the server lists it with -allow-origin", { timeout: 90_000 }, async () => {
    // The other origin: a blank page on another loopback port.
    const other: Server = createServer((_, res) => {
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" }).end("<!doctype html><title>another origin</title>");
    });
    await new Promise<void>((resolve) => other.listen(0, "127.0.0.1", resolve));
    const otherOrigin = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
    const ctx = await browser.newContext();
    ctx.setDefaultTimeout(stepTimeoutMs);
    try {
      const page = await ctx.newPage();
      await page.goto(`${otherOrigin}/`);

      /** What the page on the other origin gets when it tries the three doors on the counter and chat room named name. */
      const attempt = (name: string) =>
        page.evaluate(
          async ({ base, name }) => {
            const out = { rpc: "", post: "", socket: "" };
            try {
              const res = await fetch(`${base}/examples.counter.v1.Counter/Increment`, {
                method: "POST",
                headers: { "Content-Type": "application/json", "Durable-Object-Name": name },
                body: JSON.stringify({ amount: 1 }),
              });
              out.rpc = `${res.status} ${(await res.text()).trim()}`;
            } catch (err) {
              out.rpc = `blocked: ${err}`;
            }
            try {
              // A simple request: no preflight, the browser sends it as is.
              const res = await fetch(`${base}/objects/counter/${name}/increment`, { method: "POST", headers: { "Content-Type": "text/plain" }, body: '{"amount": 10}' });
              out.post = `${res.status} ${(await res.text()).trim()}`;
            } catch (err) {
              out.post = `blocked: ${err}`;
            }
            out.socket = await new Promise<string>((resolve) => {
              const ws = new WebSocket(`${base.replace(/^http/, "ws")}/objects/chat-room/${name}/?username=other`);
              ws.onopen = () => {
                ws.close();
                resolve("open");
              };
              ws.onerror = () => resolve("refused");
            });
            return out;
          },
          { base: server!.url, name },
        );
      /** The counter named name, read from Node (not a browser: no origin). */
      const counter = async (name: string) => ((await (await fetch(`${server!.url}/objects/counter/${name}/`)).json()) as { value: number }).value;

      const refused = `other-${run}-refused`;
      const before = await attempt(refused);
      assert.match(before.rpc, /^blocked/, "the RPC's preflight must fail");
      assert.match(before.post, /^blocked/, "the page must not read the Fetch route's answer");
      assert.equal(before.socket, "refused");
      assert.equal(await counter(refused), 0, "neither the RPC nor the cross-origin POST may have run");

      await server!.restart(["-allow-origin", otherOrigin]);
      const allowed = `other-${run}-allowed`;
      const after = await attempt(allowed);
      assert.equal(after.rpc, '200 {"value":"1"}');
      assert.equal(after.post, '200 {"value":11}');
      assert.equal(after.socket, "open");
      assert.equal(await counter(allowed), 11);
    } finally {
      await ctx.close();
      await new Promise((resolve) => other.close(resolve));
      // As the other tests found it.
      await server!.restart();
    }
  });

  test("inspector: finds the Counter, shows and edits its state, KV entries and SQL rows; refuses a wrong token; says when admin is off", { timeout: 120_000 }, async () => {
    const token = `operator-${run}`;
    /** A Connect (JSON) call from Node to the object of service named name. */
    const call = async (service: string, method: string, name: string, body: unknown) => {
      const res = await fetch(`${server!.url}/${service}/${method}`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Durable-Object-Name": name },
        body: JSON.stringify(body),
      });
      const text = await res.text();
      assert.equal(res.status, 200, `${service}/${method}: ${text}`);
      return JSON.parse(text) as Record<string, unknown>;
    };
    const status = (page: Page, state: string) => page.locator(`[data-testid="inspector-status"][data-state="${state}"]`);
    async function login(page: Page, t: string): Promise<void> {
      await page.getByTestId("inspector-token").fill(t);
      await page.getByTestId("inspector-connect").click();
    }
    /** Waits until the state's textarea holds JSON whose field is value. */
    async function stateShows(page: Page, field: string, value: string): Promise<void> {
      try {
        await page.waitForFunction(
          ([f, v]) => {
            const text = document.querySelector<HTMLTextAreaElement>('[data-testid="inspector-state"]')?.value ?? "";
            try {
              return (JSON.parse(text) as Record<string, unknown>)[f] === v;
            } catch {
              return false;
            }
          },
          [field, value] as const,
          { timeout: stepTimeoutMs },
        );
      } catch (err) {
        const shown = await page.getByTestId("inspector-state").inputValue();
        assert.fail(`inspector: want ${field} = ${value} in the state, the page shows ${shown}: ${err}`);
      }
    }
    /** Opens the object named name of class in the inspector. */
    async function openObject(page: Page, cls: string, name: string): Promise<void> {
      try {
        await page.locator(`[data-testid="inspector-class"][data-class="${cls}"]`).click();
        await page.getByTestId("inspector-prefix").fill(name);
        await page.locator(`[data-testid="inspector-object-row"][data-name="${name}"]`).click();
        await page.locator(`[data-testid="inspector-object"][data-name="${name}"]`).waitFor();
      } catch (err) {
        await page.screenshot({ path: `${results}inspector-failed.png`, fullPage: true });
        const shown = await page.getByTestId("inspector-objects").textContent();
        const st = await page.getByTestId("inspector-status").textContent();
        assert.fail(`inspector: no ${cls} "${name}" to open; the objects shown: ${shown} (${st}): ${err}`);
      }
    }

    // Without -admin, the page says the admin service is not enabled.
    const ctx = await newContext();
    try {
      const off = await open(ctx, "/#inspector");
      await login(off, token);
      await status(off, "disabled").waitFor();
      assert.match((await off.getByTestId("inspector-status").textContent()) ?? "", /not enabled/);
      await off.screenshot({ path: `${results}inspector-disabled.png`, fullPage: true });
      await off.close();

      await server!.restart(["-admin"], { DURABLE_ADMIN_TOKEN: token });
      const counter = `inspect-${run}`;
      const page = await open(ctx, "/#counter");
      await page.getByTestId("counter-name").fill(counter);
      await counterShows(page, counter, "0");
      for (let i = 0; i < 3; i++) await page.getByTestId("counter-increment").click();
      await counterShows(page, counter, "3");

      // A wrong token is refused, and nothing is shown.
      await page.getByTestId("tab-inspector").click();
      await login(page, `${token}-wrong`);
      await status(page, "refused").waitFor();
      assert.match((await page.getByTestId("inspector-status").textContent()) ?? "", /refused the token/);
      assert.equal(await page.getByTestId("inspector-body").isHidden(), true);
      await page.screenshot({ path: `${results}inspector-refused.png`, fullPage: true });

      // The right token: the token stays out of the URL, in session storage.
      await login(page, token);
      await status(page, "connected").waitFor();
      assert.ok(!page.url().includes(token), `the token is in the URL ${page.url()}`);
      assert.equal(await page.evaluate(() => sessionStorage.getItem("durable.admin.token")), token);
      await openObject(page, "Counter", counter);
      await stateShows(page, "value", "3");

      // A call changes the object: the poll shows it.
      await call("examples.counter.v1.Counter", "Increment", counter, { amount: 1 });
      await stateShows(page, "value", "4");
      await page.screenshot({ path: `${results}inspector-counter.png`, fullPage: true });

      // Bad edits are refused with the reason, and change nothing.
      const saveStatus = (state: string) => page.locator(`[data-testid="inspector-state-status"][data-state="${state}"]`);
      for (const bad of ['{"value": ', '{"value": "many"}', '{"nosuchfield": 1}']) {
        await page.getByTestId("inspector-state").fill(bad);
        await page.getByTestId("inspector-save").click();
        await saveStatus("error").waitFor();
        assert.match((await page.getByTestId("inspector-state-status").textContent()) ?? "", /^Not saved: ./);
      }
      await page.screenshot({ path: `${results}inspector-bad-state.png`, fullPage: true });
      assert.deepEqual(await call("examples.counter.v1.Counter", "GetValue", counter, {}), { value: "4" });

      // An edit is saved, and a later call returns it.
      await page.getByTestId("inspector-state").fill('{"value": "42"}');
      await page.getByTestId("inspector-save").click();
      await saveStatus("saved").waitFor();
      assert.deepEqual(await call("examples.counter.v1.Counter", "GetValue", counter, {}), { value: "42" });
      await page.getByTestId("tab-counter").click();
      await page.getByTestId("counter-increment").click();
      await counterShows(page, counter, "43");

      // Polling stops while the tab is hidden, and starts again when it is shown.
      assert.equal(await page.getByTestId("inspector-panel").getAttribute("data-polling"), "false");
      await page.getByTestId("tab-inspector").click();
      await page.locator('[data-testid="inspector-panel"][data-polling="true"]').waitFor();
      await stateShows(page, "value", "43");

      // KV entries: a Wallet keeps its balances there; over gRPC-Web this time.
      const adminContentTypes: string[] = [];
      page.on("request", (req) => {
        if (req.url().includes("/durable.v1.AdminService/")) adminContentTypes.push(req.headers()["content-type"] ?? "");
      });
      await page.getByTestId("protocol").selectOption("grpc-web");
      const wallet = `wallet-${run}`;
      await call("examples.wallet.v1.Wallet", "Deposit", wallet, { account: "alice", amount: 5 });
      await openObject(page, "Wallet", wallet);
      const kv = page.getByTestId("inspector-kv-row");
      await kv.filter({ hasText: "alice" }).waitFor();
      assert.match((await kv.filter({ hasText: "alice" }).textContent()) ?? "", /5$/);
      await call("examples.wallet.v1.Wallet", "Deposit", wallet, { account: "alice", amount: 2 });
      await kv.filter({ hasText: /alice.*7$/ }).waitFor();
      assert.ok(adminContentTypes.length >= 3, `want admin RPCs over gRPC-Web, saw ${adminContentTypes.length}`);
      for (const ct of adminContentTypes) assert.equal(ct, "application/grpc-web+proto", `an admin RPC went as ${ct}`);
      await page.getByTestId("protocol").selectOption("connect");

      // The alarm: a Session sets one for its idle timeout. (SetData, since a
      // session only touched in the millisecond Init ran is never stored.)
      const session = `session-${run}`;
      await call("examples.session.v1.Session", "SetData", session, { key: "k", value: "v" });
      await openObject(page, "Session", session);
      await page.locator('[data-testid="inspector-alarm"][data-at]:not([data-at=""])').waitFor();
      const at = Number(await page.getByTestId("inspector-alarm").getAttribute("data-at"));
      assert.ok(at > Date.now(), `the alarm is at ${at}, not after now`);

      // SQL rows: a Document keeps its history in its SQL database.
      const doc = `inspect-doc-${run}`;
      const editor = await open(ctx, "/#document");
      await editor.getByTestId("document-name").fill(doc);
      await editor.getByTestId("document-author").fill("ann");
      await editor.getByTestId("document-connect").click();
      await editor.locator('[data-testid="document-status"][data-state="connected"]').waitFor();
      await editor.getByTestId("document-content").fill("Written to be inspected.");
      await documentShows(editor, "Written to be inspected.", "1");
      await openObject(page, "Document", doc);
      const cells = () => page.getByTestId("inspector-row").evaluateAll((trs) => trs.map((tr) => Array.from(tr.children, (td) => td.textContent)));
      // Its tables are listed; one click shows a table's rows.
      const sqlStatus = (state: string, query: string) =>
        page.locator(`[data-testid="inspector-sql-status"][data-state="${state}"][data-query="${query.replaceAll('"', '\\"')}"]`).waitFor();
      await page.locator('[data-testid="inspector-table"][data-table="history"]').click();
      await sqlStatus("ok", 'SELECT * FROM "history"');
      assert.deepEqual(await page.locator("#inspector-rows-head th").allTextContents(), ["version", "content", "author", "timestamp"]);
      assert.deepEqual((await cells()).map((r) => r.slice(0, 3)), [["1", "Written to be inspected.", "ann"]]);
      await page.getByTestId("inspector-query").fill("SELECT version, author, content FROM history ORDER BY version");
      await page.getByTestId("inspector-run").click();
      await sqlStatus("ok", "SELECT version, author, content FROM history ORDER BY version");
      assert.deepEqual(await cells(), [["1", "ann", "Written to be inspected."]]);
      await page.screenshot({ path: `${results}inspector-sql.png`, fullPage: true });
      // The query box is read-only.
      await page.getByTestId("inspector-query").fill("DELETE FROM history");
      await page.getByTestId("inspector-run").click();
      await sqlStatus("error", "DELETE FROM history");
      await page.getByTestId("inspector-query").fill("SELECT count(*) FROM history");
      await page.getByTestId("inspector-run").click();
      await sqlStatus("ok", "SELECT count(*) FROM history");
      assert.deepEqual(await cells(), [["1"]]);
      // Another edit: the poll runs the query again.
      await editor.getByTestId("document-content").fill("Written to be inspected, twice.");
      await documentShows(editor, "Written to be inspected, twice.", "2");
      await page.getByTestId("inspector-row").filter({ hasText: /^2$/ }).waitFor();
      await editor.close();
    } finally {
      await ctx.close();
      // As the other tests found it.
      await server!.restart();
    }
  });
});
