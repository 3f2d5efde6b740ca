// The Chat tab: a room's WebSocket (history, joins, leaves, messages) and
// its online users, read with the GetOnlineUsers RPC.
//
// The room's JSON, from examples/chat/chat.go: the socket first receives
// {"type":"history","messages":[{user,text,timestamp}]}, then
// {"type":"join"|"leave","user","timestamp"} and
// {"type":"message","user","text","timestamp"}; it sends
// {"type":"message","text"}.

import { byId, clock, describe, el, ObjectSocket, randomSuffix, Serial } from "./dom";
import { ns } from "./rpc";

type Posted = { user: string; text: string; timestamp: number };
type Incoming =
  | { type: "history"; messages: Posted[] }
  | ({ type: "message" } & Posted)
  | { type: "join" | "leave"; user: string; timestamp: number }
  | { type: "error"; message: string };

export function setupChat(): void {
  const form = byId<HTMLFormElement>("chat-join");
  const username = byId<HTMLInputElement>("chat-username");
  const room = byId<HTMLInputElement>("chat-room");
  const connect = byId<HTMLButtonElement>("chat-connect");
  const leave = byId<HTMLButtonElement>("chat-leave");
  const status = byId<HTMLParagraphElement>("chat-status");
  const log = byId<HTMLOListElement>("chat-log");
  const online = byId<HTMLUListElement>("chat-online");
  const sendForm = byId<HTMLFormElement>("chat-send");
  const message = byId<HTMLInputElement>("chat-message");
  const send = byId<HTMLButtonElement>("chat-send-button");

  username.value = localStorage.getItem("durable.chat.username") ?? `guest-${randomSuffix()}`;

  const socket = new ObjectSocket<Incoming>();
  let joined = { user: "", room: "" };
  const lookups = new Serial();

  function setState(state: "disconnected" | "connecting" | "connected", text: string): void {
    status.dataset.state = state;
    status.textContent = text;
    const connected = state === "connected";
    connect.disabled = state !== "disconnected";
    username.disabled = room.disabled = state !== "disconnected";
    leave.disabled = state === "disconnected";
    message.disabled = send.disabled = !connected;
  }

  /** Appends a line of a kind (message, history, join, leave, info, error) to the log. */
  function line(kind: string, user: string, ...children: (Node | string)[]): void {
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 8;
    const li = el("li", { className: kind }, ...children);
    li.dataset.kind = kind;
    if (user !== "") li.dataset.user = user;
    log.append(li);
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function posted(m: Posted, history: boolean): void {
    line(
      history ? "history" : "message",
      m.user,
      el("time", { text: clock(m.timestamp) }),
      el("b", { text: m.user }),
      el("span", { text: m.text }),
    );
  }

  function presence(kind: "join" | "leave", user: string, timestamp: number): void {
    line(kind, user, el("time", { text: clock(timestamp) }), el("span", { text: `${user} ${kind === "join" ? "joined" : "left"}` }));
  }

  /** Reads the room's online users with the GetOnlineUsers RPC. */
  function refreshOnline(name: string): void {
    lookups
      .run(() => {
        const { rooms } = ns();
        return rooms.get(rooms.idFromName(name)).getOnlineUsers({});
      })
      .then(
        (res) => {
          if (joined.room !== name) return;
          online.replaceChildren(...res.users.map((u) => el("li", { text: u })));
        },
        (err: unknown) => {
          if (joined.room !== name) return;
          online.replaceChildren(el("li", { className: "error", text: describe(err) }));
        },
      );
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const user = username.value.trim();
    const name = room.value.trim();
    if (user === "" || name === "") return;
    localStorage.setItem("durable.chat.username", user);
    log.replaceChildren();
    online.replaceChildren();
    joined = { user, room: name };
    setState("connecting", `Joining “${name}”…`);
    const { rooms } = ns();
    socket.open(rooms.objectPath(rooms.idFromName(name)), { username: user }, {
      message(m) {
        switch (m.type) {
          case "history":
            for (const h of m.messages) posted(h, true);
            line(
              "info",
              "",
              m.messages.length === 0
                ? `You joined “${name}”: no messages yet.`
                : `You joined “${name}”; above, its last ${m.messages.length === 1 ? "message" : `${m.messages.length} messages`}.`,
            );
            setState("connected", `In “${name}” as ${user}.`);
            refreshOnline(name);
            break;
          case "message":
            posted(m, false);
            break;
          case "join":
          case "leave":
            presence(m.type, m.user, m.timestamp);
            refreshOnline(name);
            break;
          case "error":
            line("error", "", m.message);
            break;
        }
      },
      unreadable(data) {
        line("error", "", `unreadable message: ${data}`);
      },
      close(ev) {
        joined = { user: "", room: "" };
        online.replaceChildren();
        setState("disconnected", ev.code === 1000 ? "You left the room." : `Disconnected (${ev.code}${ev.reason ? `: ${ev.reason}` : ""}).`);
      },
    });
  });

  leave.addEventListener("click", () => {
    if (!socket.close(1000, "left")) return;
    joined = { user: "", room: "" };
    line("info", "", "You left the room.");
    online.replaceChildren();
    setState("disconnected", "You left the room.");
  });

  sendForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = message.value;
    if (text.trim() === "" || !socket.send({ type: "message", text })) return;
    message.value = "";
  });

  setState("disconnected", "Not connected: pick a name and a room.");
}
