// The transport every RPC of the page goes over: Connect or gRPC-Web, both
// from @connectrpc/connect-web, to the server that served the page.

import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";

export type Protocol = "connect" | "grpc-web";

export const protocolNames: Record<Protocol, string> = {
  connect: "Connect",
  "grpc-web": "gRPC-Web",
};

export function isProtocol(s: string | null): s is Protocol {
  return s === "connect" || s === "grpc-web";
}

/** Returns a transport speaking protocol to the page's origin. */
export function createTransport(protocol: Protocol): Transport {
  const baseUrl = window.location.origin;
  return protocol === "grpc-web"
    ? createGrpcWebTransport({ baseUrl })
    : createConnectTransport({ baseUrl });
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

/** The WebSocket URL of an object's Fetch route: /objects/{segment}/{name}/. */
export function objectSocketUrl(segment: string, name: string, query: Record<string, string>): string {
  const url = new URL(`/objects/${segment}/${encodeURIComponent(name)}/`, window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  for (const [k, v] of Object.entries(query)) {
    if (v !== "") {
      url.searchParams.set(k, v);
    }
  }
  return url.toString();
}
