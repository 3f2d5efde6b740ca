// The Inspector tab: the admin service (durable.v1.AdminService) seen by an
// operator. Classes → objects (paged, by name prefix) → one object's state
// (JSON, editable), KV entries, SQL tables (read-only queries) and alarm,
// polled while the tab is shown so that calls changing the object show up.
//
// The operator's token is kept in session storage (this tab only, gone
// when it closes), never in the URL, and sent as "Authorization: Bearer".

import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { toJsonString, type MessageInitShape } from "@bufbuild/protobuf";
import { ValueSchema, type Value } from "@bufbuild/protobuf/wkt";
import { AdminService, type ClassInfo, type ObjectInfo, type ObjectRefSchema } from "./gen/durable/v1/admin_pb";
import { byId, clock, describe, el, Serial } from "./dom";
import { ns } from "./rpc";

const tokenKey = "durable.admin.token";
/** How often the shown data is read again while the tab is visible. */
const pollMs = 1500;
/** Objects per page, KV entries and SQL rows shown. */
const pageSize = 20;
const kvLimit = 100;
const rowLimit = 100;

type Selected = { className: string; id: string; name: string };

/** Why an admin call failed, for the status line: its state and a sentence. */
function explain(err: unknown): { state: string; text: string } {
  const ce = ConnectError.from(err);
  switch (ce.code) {
    case Code.Unimplemented:
      return { state: "disabled", text: "The admin service is not enabled on this server: start it with -admin and DURABLE_ADMIN_TOKEN." };
    case Code.Unauthenticated:
    case Code.PermissionDenied:
      return { state: "refused", text: `The server refused the token: ${ce.rawMessage}` };
    default:
      return { state: "error", text: `The admin service failed: ${describe(err)}` };
  }
}

/** Bytes as "812 B", "4.0 KiB", "1.2 MiB". */
function size(n: bigint): string {
  const b = Number(n);
  if (b < 1024) return `${b} B`;
  if (b < 1024 * 1024) return `${(b / 1024).toFixed(1)} KiB`;
  return `${(b / 1024 / 1024).toFixed(1)} MiB`;
}

/** A KV value as text when it is UTF-8, else as hex. */
function bytesText(v: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(v);
  } catch {
    return Array.from(v, (b) => b.toString(16).padStart(2, "0")).join(" ");
  }
}

/** An SQL value as a cell's text. */
function cell(v: Value): string {
  switch (v.kind.case) {
    case "nullValue":
      return "NULL";
    case "stringValue":
      return v.kind.value;
    case "numberValue":
      return String(v.kind.value);
    case "boolValue":
      return String(v.kind.value);
    default:
      return toJsonString(ValueSchema, v);
  }
}

/** JSON indented for reading; text that is not JSON is shown as it came. */
function pretty(json: string): string {
  try {
    return JSON.stringify(JSON.parse(json), null, 2);
  } catch {
    return json;
  }
}

export function setupInspector(): { shown: () => void } {
  const panel = byId<HTMLElement>("panel-inspector");
  const login = byId<HTMLFormElement>("inspector-login");
  const tokenInput = byId<HTMLInputElement>("inspector-token");
  const status = byId<HTMLParagraphElement>("inspector-status");
  const body = byId<HTMLDivElement>("inspector-body");
  const classList = byId<HTMLUListElement>("inspector-classes");
  const className = byId<HTMLSpanElement>("inspector-class-name");
  const prefixInput = byId<HTMLInputElement>("inspector-prefix");
  const firstButton = byId<HTMLButtonElement>("inspector-first");
  const nextButton = byId<HTMLButtonElement>("inspector-next");
  const objectRows = byId<HTMLTableSectionElement>("inspector-objects");
  const objectPane = byId<HTMLDivElement>("inspector-object");
  const objectName = byId<HTMLSpanElement>("inspector-object-name");
  const stateType = byId<HTMLOutputElement>("inspector-state-type");
  const stateText = byId<HTMLTextAreaElement>("inspector-state");
  const saveButton = byId<HTMLButtonElement>("inspector-save");
  const revertButton = byId<HTMLButtonElement>("inspector-revert");
  const stateStatus = byId<HTMLParagraphElement>("inspector-state-status");
  const alarm = byId<HTMLOutputElement>("inspector-alarm");
  const kvRows = byId<HTMLTableSectionElement>("inspector-kv");
  const sqlPane = byId<HTMLDivElement>("inspector-sql");
  const queryInput = byId<HTMLInputElement>("inspector-query");
  const runButton = byId<HTMLButtonElement>("inspector-run");
  const sqlStatus = byId<HTMLParagraphElement>("inspector-sql-status");
  const rowsHead = byId<HTMLTableSectionElement>("inspector-rows-head");
  const rows = byId<HTMLTableSectionElement>("inspector-rows");
  const tables = byId<HTMLSpanElement>("inspector-tables");

  tokenInput.value = sessionStorage.getItem(tokenKey) ?? "";
  // Admin calls run one at a time: a poll never overtakes a save.
  const calls = new Serial((busy) => panel.classList.toggle("busy", busy));

  let token = "";
  let connected = false;
  let classes: ClassInfo[] = [];
  let selectedClass = "";
  /** The cursor of the page shown ("" for the first) and of the next one ("" for none). */
  let cursor = "";
  let nextCursor = "";
  let selected: Selected | undefined;
  /** Whether the state was edited since it was last read: polls then leave it alone. */
  let dirty = false;
  let timer: number | undefined;
  /** The query last run, run again by the polls; "" for none. */
  let lastQuery = "";

  let client: Client<typeof AdminService> | undefined;
  let clientTransport: unknown;
  /** The admin client over the page's protocol, made again when the protocol changes. */
  function admin(): Client<typeof AdminService> {
    const { transport } = ns();
    if (!client || clientTransport !== transport) {
      client = createClient(AdminService, transport);
      clientTransport = transport;
    }
    return client;
  }
  const opts = () => ({ headers: { Authorization: `Bearer ${token}` } });
  const ref = (s: Selected): MessageInitShape<typeof ObjectRefSchema> => ({ class: s.className, ref: { case: "id", value: s.id } });

  function setStatus(state: string, text: string): void {
    status.dataset.state = state;
    status.textContent = text;
    status.classList.toggle("error", state !== "connected" && state !== "idle");
  }

  function fail(err: unknown): void {
    const { state, text } = explain(err);
    setStatus(state, text);
    if (state === "disabled" || state === "refused") {
      connected = false;
      body.hidden = true;
      objectPane.hidden = true;
    }
  }

  // Polls update the lists in place, element by element: replacing them
  // every poll would lose a click that lands as the row is replaced.
  let classItems = new Map<string, { li: HTMLLIElement; button: HTMLButtonElement; count: HTMLSpanElement }>();
  let objectItems = new Map<string, HTMLTableRowElement>();

  /** Makes parent's children nodes, moving nothing that is already in place. */
  function setChildren(parent: HTMLElement, nodes: Node[]): void {
    const same = parent.childNodes.length === nodes.length && nodes.every((n, i) => parent.childNodes[i] === n);
    if (!same) parent.replaceChildren(...nodes);
  }
  /** What each table body shows, so that a poll bringing the same leaves it alone (and a selection in it). */
  const shownData = new WeakMap<HTMLElement, string>();
  function rebuild(parent: HTMLElement, data: unknown, build: () => Node[]): void {
    const key = JSON.stringify(data);
    if (shownData.get(parent) === key) return;
    shownData.set(parent, key);
    parent.replaceChildren(...build());
  }
  function setText(e: HTMLElement, text: string): void {
    if (e.textContent !== text) e.textContent = text;
  }

  function selectClass(name: string): void {
    selectedClass = name;
    cursor = "";
    selected = undefined;
    objectPane.hidden = true;
    renderClasses();
    void calls.run(loadObjects).catch(fail);
  }

  function renderClasses(): void {
    const next = new Map<string, { li: HTMLLIElement; button: HTMLButtonElement; count: HTMLSpanElement }>();
    const lis = classes.map((c) => {
      let item = classItems.get(c.name);
      if (!item) {
        const button = el("button", { testid: "inspector-class", text: c.name, title: c.service });
        button.type = "button";
        button.dataset.class = c.name;
        button.addEventListener("click", () => selectClass(c.name));
        const count = el("span", { className: "count" });
        item = { li: el("li", {}, button, count), button, count };
      }
      item.button.setAttribute("aria-pressed", String(c.name === selectedClass));
      setText(item.count, `${c.storedObjects} stored${c.sql ? " · SQL" : ""}`);
      next.set(c.name, item);
      return item.li;
    });
    classItems = next;
    setChildren(classList, lis);
    setText(className, selectedClass === "" ? "" : `of ${selectedClass}`);
  }

  function selectObject(id: string, name: string): void {
    selected = { className: selectedClass, id, name };
    dirty = false;
    stateStatus.textContent = "";
    delete stateStatus.dataset.state;
    stateText.value = "";
    for (const t of [rows, rowsHead, kvRows, tables]) {
      t.replaceChildren();
      shownData.delete(t);
    }
    sqlStatus.textContent = "";
    delete sqlStatus.dataset.state;
    delete sqlStatus.dataset.query;
    lastQuery = "";
    for (const [rowId, tr] of objectItems) tr.classList.toggle("selected", rowId === id);
    void calls.run(loadObject).then(loadTables).catch(fail);
  }

  function renderObjects(objects: ObjectInfo[]): void {
    const next = new Map<string, HTMLTableRowElement>();
    const trs = objects.map((o) => {
      let tr = objectItems.get(o.id);
      if (!tr) {
        tr = el("tr", { testid: "inspector-object-row" }, el("td"), el("td", { className: "mono", title: o.id }), el("td"), el("td"), el("td"), el("td"));
        tr.dataset.id = o.id;
        const row = tr;
        tr.addEventListener("click", () => selectObject(o.id, row.dataset.name ?? ""));
      }
      tr.dataset.name = o.name;
      const texts = [
        o.name === "" ? "–" : o.name,
        o.id.slice(0, 12),
        o.lastWriteMs === 0n ? "–" : clock(o.lastWriteMs),
        size(o.storageBytes),
        o.alarmMs === undefined ? "–" : clock(o.alarmMs),
        o.active ? "yes" : "no",
      ];
      texts.forEach((t, i) => setText(tr.children[i] as HTMLElement, t));
      tr.classList.toggle("selected", selected?.id === o.id);
      next.set(o.id, tr);
      return tr;
    });
    objectItems = next;
    if (trs.length === 0) {
      const td = el("td", { className: "empty", text: "No stored objects." });
      td.colSpan = 6;
      trs.push(el("tr", {}, td));
    }
    setChildren(objectRows, trs);
    firstButton.disabled = cursor === "";
    nextButton.disabled = nextCursor === "";
  }

  async function loadClasses(): Promise<void> {
    const res = await admin().listClasses({}, opts());
    classes = res.classes;
    if (!classes.some((c) => c.name === selectedClass)) selectedClass = classes[0]?.name ?? "";
    renderClasses();
  }

  async function loadObjects(): Promise<void> {
    if (selectedClass === "") {
      renderObjects([]);
      return;
    }
    const res = await admin().listObjects({ class: selectedClass, namePrefix: prefixInput.value.trim(), limit: pageSize, cursor }, opts());
    nextCursor = res.nextCursor;
    renderObjects(res.objects);
  }

  async function loadObject(): Promise<void> {
    const s = selected;
    if (!s) return;
    const info = classes.find((c) => c.name === s.className);
    objectPane.hidden = false;
    objectName.textContent = `${s.className} ${s.name === "" ? s.id : `“${s.name}”`}`;
    objectPane.dataset.id = s.id;
    objectPane.dataset.name = s.name;
    sqlPane.hidden = !info?.sql;

    const state = await admin().getState({ object: ref(s) }, opts());
    if (selected !== s) return;
    stateType.textContent = state.type;
    if (!dirty) {
      const shown = pretty(state.json);
      if (stateText.value !== shown) stateText.value = shown;
      stateText.dataset.json = state.json;
    }
    const [kv, at] = await Promise.all([
      admin().listKV({ object: ref(s), limit: kvLimit }, opts()),
      admin().getAlarm({ object: ref(s) }, opts()),
    ]);
    if (selected !== s) return;
    alarm.textContent = at.atMs === undefined ? "none" : new Date(Number(at.atMs)).toLocaleString();
    alarm.dataset.at = at.atMs === undefined ? "" : at.atMs.toString();
    const entries = kv.entries.map((e) => [e.key, bytesText(e.value)]);
    rebuild(kvRows, entries, () => {
      if (entries.length === 0) {
        const td = el("td", { className: "empty", text: "No KV entries." });
        td.colSpan = 2;
        return [el("tr", {}, td)];
      }
      return entries.map(([k, v]) => el("tr", { testid: "inspector-kv-row" }, el("td", { className: "mono", text: k }), el("td", { className: "mono", text: v })));
    });
  }

  /** Reads everything shown again; the polls' job. */
  async function refreshAll(): Promise<void> {
    await loadClasses();
    await loadObjects();
    await loadObject();
    if (lastQuery !== "" && selected) await query(selected, lastQuery);
  }

  const visible = () => !panel.hidden && document.visibilityState === "visible";

  /** Polls while the tab is shown and the server accepts the token; stops otherwise. */
  function schedule(): void {
    window.clearTimeout(timer);
    timer = undefined;
    // data-polling says whether polls go on, for the tests.
    panel.dataset.polling = "false";
    if (!connected || !visible()) return;
    panel.dataset.polling = "true";
    timer = window.setTimeout(() => {
      timer = undefined;
      if (!connected || !visible()) {
        panel.dataset.polling = "false";
        return;
      }
      calls
        .run(refreshAll)
        .then(() => setStatus("connected", `Inspecting over the admin service; read at ${clock(Date.now())}.`), fail)
        .finally(schedule);
    }, pollMs);
  }

  function connect(): void {
    token = tokenInput.value.trim();
    if (token === "") {
      setStatus("idle", "Enter the token to inspect.");
      return;
    }
    sessionStorage.setItem(tokenKey, token);
    setStatus("connecting", "Asking the admin service…");
    calls.run(refreshAll).then(
      () => {
        connected = true;
        body.hidden = false;
        setStatus("connected", `Inspecting over the admin service; read at ${clock(Date.now())}.`);
        schedule();
      },
      fail,
    );
  }

  login.addEventListener("submit", (ev) => {
    ev.preventDefault();
    connect();
  });

  let prefixTimer: number | undefined;
  prefixInput.addEventListener("input", () => {
    window.clearTimeout(prefixTimer);
    prefixTimer = window.setTimeout(() => {
      cursor = "";
      void calls.run(loadObjects).catch(fail);
    }, 250);
  });
  firstButton.addEventListener("click", () => {
    cursor = "";
    void calls.run(loadObjects).catch(fail);
  });
  nextButton.addEventListener("click", () => {
    if (nextCursor === "") return;
    cursor = nextCursor;
    void calls.run(loadObjects).catch(fail);
  });

  stateText.addEventListener("input", () => {
    dirty = true;
    stateStatus.dataset.state = "edited";
    stateStatus.classList.remove("error");
    stateStatus.textContent = "Edited: not refreshed until you save or reload.";
  });
  revertButton.addEventListener("click", () => {
    dirty = false;
    stateStatus.dataset.state = "";
    stateStatus.textContent = "";
    void calls.run(loadObject).catch(fail);
  });
  saveButton.addEventListener("click", () => {
    const s = selected;
    if (!s) return;
    const json = stateText.value;
    calls
      .run(() => admin().replaceState({ object: ref(s), json }, opts()))
      .then(
        (res) => {
          if (selected !== s) return;
          dirty = false;
          stateText.value = pretty(res.json);
          stateText.dataset.json = res.json;
          stateStatus.dataset.state = "saved";
          stateStatus.classList.remove("error");
          stateStatus.textContent = `Saved at ${clock(Date.now())}.`;
        },
        (err: unknown) => {
          if (selected !== s) return;
          stateStatus.dataset.state = "error";
          stateStatus.classList.add("error");
          stateStatus.textContent = `Not saved: ${ConnectError.from(err).rawMessage}`;
        },
      );
  });

  /** Runs q on the SQL object s and shows its rows, or why it failed. */
  async function query(s: Selected, q: string): Promise<void> {
    try {
      const res = await admin().querySQL({ object: ref(s), query: q, limit: rowLimit }, opts());
      if (selected !== s) return;
      sqlStatus.dataset.query = q;
      rebuild(rowsHead, res.columns, () => [el("tr", {}, ...res.columns.map((c) => el("th", { text: c })))]);
      const cells = res.rows.map((r) => r.values.map(cell));
      rebuild(rows, cells, () => cells.map((r) => el("tr", { testid: "inspector-row" }, ...r.map((v) => el("td", { text: v })))));
      sqlStatus.dataset.state = "ok";
      sqlStatus.classList.remove("error");
      sqlStatus.textContent = `${res.rows.length} row${res.rows.length === 1 ? "" : "s"}${res.truncated ? ` (only the first ${rowLimit})` : ""}, read at ${clock(Date.now())}.`;
    } catch (err) {
      const { state } = explain(err);
      if (state === "disabled" || state === "refused") throw err;
      if (selected !== s) return;
      if (lastQuery === q) lastQuery = ""; // polls do not repeat a failing query
      sqlStatus.dataset.query = q;
      sqlStatus.dataset.state = "error";
      sqlStatus.classList.add("error");
      sqlStatus.textContent = `Query failed: ${ConnectError.from(err).rawMessage}`;
    }
  }

  function runQuery(): void {
    const s = selected;
    const q = queryInput.value.trim();
    if (!s || q === "") return;
    lastQuery = q; // polls run it from now on
    void calls.run(() => query(s, q)).catch(fail);
  }

  /** Lists the SQL object's tables, each a button that queries it. */
  async function loadTables(): Promise<void> {
    const s = selected;
    if (!s || sqlPane.hidden) return;
    const res = await calls.run(() =>
      admin().querySQL({ object: ref(s), query: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name", limit: rowLimit }, opts()),
    );
    if (selected !== s) return;
    tables.replaceChildren(
      ...res.rows.map((r) => {
        const name = r.values[0] ? cell(r.values[0]) : "";
        const button = el("button", { testid: "inspector-table", text: name });
        button.type = "button";
        button.dataset.table = name;
        button.addEventListener("click", () => {
          queryInput.value = `SELECT * FROM "${name.replaceAll('"', '""')}"`;
          runQuery();
        });
        return button;
      }),
    );
  }
  runButton.addEventListener("click", runQuery);
  queryInput.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") runQuery();
  });

  /** Called when the tab or the page's visibility changes: connects with a remembered token, and starts or stops polling. */
  function shown(): void {
    if (!panel.hidden && !connected && tokenInput.value.trim() !== "" && status.dataset.state === "idle") {
      connect();
      return;
    }
    schedule();
  }
  document.addEventListener("visibilitychange", shown);
  return { shown };
}
