package durable

import (
	"context"

	"google.golang.org/protobuf/proto"

	"github.com/durablego/durable/websocket"
)

// WebSocketMessager is the optional hook an implementation satisfies to
// receive the messages of the WebSockets its objects accepted (with
// o.Sockets.Accept inside Fetch), Cloudflare's webSocketMessage. Each
// message is a call through the object's mailbox, activating the object if
// it was evicted (hibernation), in arrival order per socket; its writes
// commit atomically, and what it sends goes out once they are durable.
//
// An error or a panic is logged and rolls the call back, sends included;
// the socket stays open and the next message is delivered as usual.
type WebSocketMessager[S proto.Message] interface {
	WebSocketMessage(ctx context.Context, o *Object[S], ws *websocket.Conn, msg websocket.Message) error
}

// WebSocketCloser is the optional hook an implementation satisfies to learn
// that one of its sockets closed, Cloudflare's webSocketClose: code and
// reason are the close frame's (1005 and "" for a frame without a code),
// and clean is true; when the connection dropped without one, they are
// 1006 and Cloudflare's "WebSocket disconnected without sending Close
// frame.", and clean is false. It runs as a call after the socket's last
// message; the socket leaves o.Sockets once it returns. The server has
// answered the client's close frame already, completing the handshake:
// ws.Close inside it does nothing and returns nil (a port whose
// webSocketClose calls ws.close works unchanged), and ws.Send fails with
// websocket.ErrClosed.
type WebSocketCloser[S proto.Message] interface {
	WebSocketClose(ctx context.Context, o *Object[S], ws *websocket.Conn, code int, reason string, clean bool) error
}

// WebSocketErrorer is the optional hook an implementation satisfies to
// learn about a socket's errors other than its closing, Cloudflare's
// webSocketError: a message over the size limit (the socket is then closed
// with 1009), a read that failed, or a client too slow to keep up with
// what is sent to it.
type WebSocketErrorer[S proto.Message] interface {
	WebSocketError(ctx context.Context, o *Object[S], ws *websocket.Conn, err error) error
}
