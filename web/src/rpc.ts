// The page's namespaces, rebuilt when the protocol changes.

import type { Transport } from "@connectrpc/connect";
import { createCounterNamespace } from "./gen/examples/counter/v1/counter_durable";
import { createChatRoomNamespace } from "./gen/examples/chat/v1/chat_durable";
import { createDocumentNamespace } from "./gen/examples/document/v1/document_durable";
import { createTransport, protocolNames, type Protocol } from "./transport";

export type Namespaces = {
  protocol: Protocol;
  protocolName: string;
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
  const transport: Transport = createTransport(protocol);
  current = {
    protocol,
    protocolName: protocolNames[protocol],
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
