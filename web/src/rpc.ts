// The protocol every RPC of the page goes over, Connect or gRPC-Web (both
// from @connectrpc/connect-web, to the server that served the page), and the
// page's namespaces over it, rebuilt when the protocol changes.

import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { createCounterNamespace } from "./gen/examples/counter/v1/counter_durable";
import { createChatRoomNamespace } from "./gen/examples/chat/v1/chat_durable";
import { createDocumentNamespace } from "./gen/examples/document/v1/document_durable";

export type Protocol = "connect" | "grpc-web";

export const protocolNames: Record<Protocol, string> = {
  connect: "Connect",
  "grpc-web": "gRPC-Web",
};

export function isProtocol(s: string | null): s is Protocol {
  return s === "connect" || s === "grpc-web";
}

/**
 * The protocol from the page's URL (?protocol=grpc-web), else the one last
 * chosen in this browser, else Connect.
 */
export function initialProtocol(): Protocol {
  const fromUrl = new URLSearchParams(window.location.search).get("protocol");
  if (isProtocol(fromUrl)) {
    return fromUrl;
  }
  const stored = localStorage.getItem("durable.protocol");
  return isProtocol(stored) ? stored : "connect";
}

/** Remembers the choice in the URL and in this browser. */
export function rememberProtocol(protocol: Protocol): void {
  localStorage.setItem("durable.protocol", protocol);
  const url = new URL(window.location.href);
  url.searchParams.set("protocol", protocol);
  history.replaceState(null, "", url);
}

export type Namespaces = {
  protocol: Protocol;
  /** The transport itself, for clients of services that are not objects (the admin service). */
  transport: Transport;
  counters: ReturnType<typeof createCounterNamespace>;
  rooms: ReturnType<typeof createChatRoomNamespace>;
  documents: ReturnType<typeof createDocumentNamespace>;
};

let current: Namespaces | undefined;

/** Switches every later call to protocol. */
export function useProtocol(protocol: Protocol): void {
  if (current?.protocol === protocol) {
    return;
  }
  const baseUrl = window.location.origin;
  const transport =
    protocol === "grpc-web" ? createGrpcWebTransport({ baseUrl }) : createConnectTransport({ baseUrl });
  current = {
    protocol,
    transport,
    counters: createCounterNamespace(transport),
    rooms: createChatRoomNamespace(transport),
    documents: createDocumentNamespace(transport),
  };
}

/** The namespaces over the protocol in use. */
export function ns(): Namespaces {
  if (!current) {
    throw new Error("useProtocol was not called");
  }
  return current;
}
