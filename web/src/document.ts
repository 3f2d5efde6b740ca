// The Document tab: a shared text edited over the document's WebSocket,
// its version, and its history read with the GetHistory RPC.
//
// The document's JSON, from examples/document/document.go: a new socket
// receives {"type":"state","content","version"}, and so does every socket
// after each edit; an editor sends {"type":"edit","content","author"} with
// the whole new content. The last edit to arrive wins.

import { byId, clock, describe, el, ObjectSocket, randomSuffix, Serial } from "./dom";
import { ns } from "./rpc";

type Incoming = { type: "state"; content: string; version: number } | { type: "error"; message: string };

/** How long typing may pause before the content is sent as an edit. */
const editDelayMs = 200;

export function setupDocument(): void {
  const form = byId<HTMLFormElement>("document-open");
  const docName = byId<HTMLInputElement>("document-name");
  const author = byId<HTMLInputElement>("document-author");
  const status = byId<HTMLParagraphElement>("document-status");
  const version = byId<HTMLOutputElement>("document-version");
  const content = byId<HTMLTextAreaElement>("document-content");
  const history = byId<HTMLOListElement>("document-history");

  author.value = localStorage.getItem("durable.document.author") ?? `editor-${randomSuffix()}`;

  const socket = new ObjectSocket<Incoming>();
  let open = "";
  // Edits sent whose state has not come back yet, oldest first: while
  // there are any, or typing that is not sent yet, the editor keeps what
  // the user typed rather than showing an older state.
  let unacknowledged: string[] = [];
  let timer: number | undefined;
  const lookups = new Serial();

  function setStatus(state: "disconnected" | "connecting" | "connected", text: string, error = false): void {
    status.dataset.state = state;
    status.textContent = text;
    status.classList.toggle("error", error);
    content.disabled = state !== "connected";
  }

  /** Shows content, keeping the caret where it was as far as possible. */
  function show(text: string): void {
    if (content.value === text) return;
    const { selectionStart, selectionEnd } = content;
    content.value = text;
    if (document.activeElement === content) {
      content.setSelectionRange(Math.min(selectionStart, text.length), Math.min(selectionEnd, text.length));
    }
  }

  /** Reads the latest versions with the GetHistory RPC. */
  function refreshHistory(name: string): void {
    lookups
      .run(() => {
        const { documents } = ns();
        return documents.get(documents.idFromName(name)).getHistory({ limit: 10 });
      })
      .then(
        (res) => {
          if (open !== name) return;
          history.replaceChildren(
            ...res.revisions.map((r) => {
              const li = el(
                "li",
                { testid: "document-revision", title: r.content },
                el("b", { text: `v${r.version}` }),
                el("span", { className: "who", text: r.author }),
                el("time", { text: clock(r.timestampMs) }),
                el("q", { text: r.content.length > 60 ? `${r.content.slice(0, 60)}…` : r.content }),
              );
              li.dataset.version = r.version.toString();
              return li;
            }),
          );
          if (res.revisions.length === 0) {
            history.replaceChildren(el("li", { className: "empty", text: "No edits yet." }));
          }
        },
        (err: unknown) => {
          if (open !== name) return;
          history.replaceChildren(el("li", { className: "error", text: describe(err) }));
        },
      );
  }

  function sendEdit(): void {
    timer = undefined;
    const text = content.value;
    if (socket.send({ type: "edit", content: text, author: author.value.trim() })) {
      unacknowledged.push(text);
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const name = docName.value.trim();
    if (name === "") return;
    localStorage.setItem("durable.document.author", author.value.trim());
    socket.close(1000, "switching documents");
    clearTimeout(timer);
    timer = undefined;
    unacknowledged = [];
    open = name;
    version.textContent = "–";
    history.replaceChildren();
    setStatus("connecting", `Opening “${name}”…`);
    const { documents } = ns();
    socket.open(documents.objectPath(documents.idFromName(name)), { author: author.value.trim() }, {
      message(m) {
        if (m.type === "error") {
          setStatus("connected", m.message, true);
          return;
        }
        if (m.type !== "state") return;
        if (status.dataset.state !== "connected") {
          setStatus("connected", `Editing “${name}” as ${author.value.trim() || "Anonymous"}.`);
        }
        version.textContent = String(m.version);
        if (unacknowledged.length > 0 && unacknowledged[0] === m.content) {
          unacknowledged.shift(); // our own edit, back
        }
        if (unacknowledged.length === 0 && timer === undefined) {
          show(m.content);
        }
        refreshHistory(name);
      },
      close(ev) {
        setStatus("disconnected", `Connection closed (${ev.code}). Open the document again.`, ev.code !== 1000);
      },
    });
  });

  content.addEventListener("input", () => {
    clearTimeout(timer);
    timer = window.setTimeout(sendEdit, editDelayMs);
  });

  setStatus("disconnected", "Pick a document and open it; open the same one in another tab to see edits live.");
}
