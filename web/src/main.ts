// The example server's page: tabs for the Counter, the ChatRoom, the
// Document and the Inspector (the admin service), and the protocol every RPC
// goes over.

import "./style.css";
import { setupChat } from "./chat";
import { setupCounter } from "./counter";
import { byId } from "./dom";
import { setupDocument } from "./document";
import { setupInspector } from "./inspector";
import { initialProtocol, isProtocol, protocolNames, rememberProtocol, useProtocol, type Protocol } from "./rpc";

const tabs = ["counter", "chat", "document", "inspector"] as const;

function showTab(): void {
  const hash = window.location.hash.slice(1);
  const tab = (tabs as readonly string[]).includes(hash) ? hash : "counter";
  for (const panel of document.querySelectorAll<HTMLElement>("[data-panel]")) {
    panel.hidden = panel.dataset.panel !== tab;
  }
  for (const link of document.querySelectorAll<HTMLElement>("[data-tab]")) {
    link.setAttribute("aria-selected", String(link.dataset.tab === tab));
  }
  inspector.shown();
}

const select = byId<HTMLSelectElement>("protocol");
const protocolName = byId<HTMLSpanElement>("protocol-name");

function switchProtocol(protocol: Protocol): void {
  useProtocol(protocol);
  protocolName.textContent = protocolNames[protocol];
}

const protocol = initialProtocol();
select.value = protocol;
switchProtocol(protocol);

const counter = setupCounter();
setupChat();
setupDocument();
const inspector = setupInspector();

select.addEventListener("change", () => {
  if (!isProtocol(select.value)) return;
  switchProtocol(select.value);
  rememberProtocol(select.value);
  counter.refresh();
});

window.addEventListener("hashchange", showTab);
showTab();
document.body.dataset.ready = "true";
