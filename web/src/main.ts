// The example server's page: tabs for the Counter, the ChatRoom and the
// Document, and the protocol every RPC goes over.

import "./style.css";
import { setupChat } from "./chat";
import { setupCounter } from "./counter";
import { byId } from "./dom";
import { setupDocument } from "./document";
import { useProtocol } from "./rpc";
import { initialProtocol, isProtocol, protocolNames, rememberProtocol } from "./transport";

const tabs = ["counter", "chat", "document"] as const;

function showTab(): void {
  const hash = window.location.hash.slice(1);
  const tab = (tabs as readonly string[]).includes(hash) ? hash : "counter";
  for (const panel of document.querySelectorAll<HTMLElement>("[data-panel]")) {
    panel.hidden = panel.dataset.panel !== tab;
  }
  for (const link of document.querySelectorAll<HTMLElement>("[data-tab]")) {
    link.setAttribute("aria-selected", String(link.dataset.tab === tab));
  }
}

const select = byId<HTMLSelectElement>("protocol");
const protocolName = byId<HTMLSpanElement>("protocol-name");
select.value = initialProtocol();
useProtocol(initialProtocol());
protocolName.textContent = protocolNames[initialProtocol()];

const counter = setupCounter();
setupChat();
setupDocument();

select.addEventListener("change", () => {
  if (!isProtocol(select.value)) return;
  useProtocol(select.value);
  rememberProtocol(select.value);
  protocolName.textContent = protocolNames[select.value];
  counter.refresh();
});

window.addEventListener("hashchange", showTab);
showTab();
document.body.dataset.ready = "true";
