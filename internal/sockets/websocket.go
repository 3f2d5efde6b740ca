// Package websocket gives Durable objects WebSockets, Cloudflare's
// WebSocket Hibernation API, on top of github.com/olahol/melody.
//
// An object accepts an upgrade inside its Fetch hook with
// o.Sockets.Accept, and receives the sockets' messages, closes and errors
// through its mailbox, as calls of the durable.WebSocketMessager,
// durable.WebSocketCloser and durable.WebSocketErrorer hooks. The sockets,
// their tags and attachments, and the object's auto-response live in the
// server's Hub, keyed by object, not in the object: an idle object leaves
// memory while its sockets stay open, and the next message reactivates it.
//
// What a call sends (Send, Broadcast, Close) is buffered and goes out only
// once the call's writes are durable, and is dropped if the call fails: the
// output gate.
//
// The package's files: websocket.go holds the limits, errors and Message;
// sockets.go (Sockets) and conn.go (Conn) are what an object uses; the
// rest is the engine the server drives: hub.go (the Hub, its sockets by
// object, and melody's callbacks), queue.go (each socket's bounded send
// queue), call.go (what a call did, released or undone by its outcome)
// and outbox.go (committed sends on their way out).
package sockets

import "errors"

// Limits, as Cloudflare's.
const (
	MaxTags           = 10       // distinct tags per socket
	MaxTagLength      = 256      // bytes per tag (UTF-8), as Cloudflare counts them
	MaxAttachment     = 16 << 10 // bytes of a socket's attachment
	MaxAutoResponse   = 2048     // bytes of an auto-response request or response
	DefaultMaxSockets = 32768    // sockets per object
	DefaultMaxMessage = 32 << 20 // bytes of a message
	// DefaultMaxBuffer is the default of HubConfig.MaxBuffer: the bytes
	// that may wait to be written to one socket, 4 MiB. That holds 40,000
	// chat messages of 100 bytes, or a history of 1 MiB four times over,
	// so a burst to a client that reads does not reach it; and about as
	// much as the kernel itself buffers for a TCP connection (Linux's
	// tcp_wmem maximum is 4 MiB), so a client that far behind is seconds
	// behind on any link. 32,768 sockets at the bound hold 128 GiB at
	// worst: lower it for many sockets that each get messages of their
	// own (a broadcast's payload is shared by its recipients).
	DefaultMaxBuffer = 4 << 20
)

// MessageOverhead is the bytes a queued message counts for besides its
// payload, in BufferedAmount and against HubConfig.MaxBuffer: what queuing
// it costs in memory (its envelopes). Without it, empty messages would
// queue without bound.
const MessageOverhead = 64

// Errors.
var (
	// ErrNotUpgrade is Accept's error for a request that is not a
	// WebSocket upgrade, or that did not come over the server's HTTP
	// route (an in-process stub's Fetch cannot upgrade).
	ErrNotUpgrade = errors.New("websocket: not a WebSocket upgrade request over HTTP")
	// ErrTooManyTags is Accept's error for more than MaxTags distinct
	// tags.
	ErrTooManyTags = errors.New("websocket: more than 10 distinct tags")
	// ErrTagTooLong is Accept's error for a tag over MaxTagLength bytes
	// (or an empty one).
	ErrTagTooLong = errors.New("websocket: a tag is empty or over 256 bytes")
	// ErrTooManySockets is Accept's error when the object already has the
	// server's maximum of sockets (server.WithMaxSocketsPerObject).
	ErrTooManySockets = errors.New("websocket: the object has the maximum number of sockets")
	// ErrAttachmentTooLarge is SetAttachment's error over MaxAttachment.
	ErrAttachmentTooLarge = errors.New("websocket: attachment over 16 KiB")
	// ErrAutoResponseTooLarge is SetAutoResponse's error over
	// MaxAutoResponse.
	ErrAutoResponseTooLarge = errors.New("websocket: auto-response request or response over 2,048 bytes")
	// ErrClosed is the error of sending to a socket that is closed or
	// closing: once Close was called on it (in this call or a committed
	// one), its client closed it, or the server did.
	ErrClosed = errors.New("websocket: the socket is closed")
	// ErrInvalidCloseCode is Close's error for a code a close frame may
	// not carry (see Close).
	ErrInvalidCloseCode = errors.New("websocket: invalid close code")
	// ErrSlowClient is reported to WebSocketError when a message sent to
	// a socket would take what waits to be written to it past the
	// server's bound (HubConfig.MaxBuffer, server.WithMaxSocketBuffer):
	// the client does not read fast enough. The socket is then closed
	// with 1013 (try again later) and reason "slow client": that message,
	// and those queued behind melody's buffer of 256, are dropped, the
	// close frame follows what melody's buffer holds, and nothing more is
	// sent. WebSocketClose follows, with code 1013 and that reason, and
	// clean false unless the client's own close frame came back first.
	ErrSlowClient = errors.New("websocket: the client does not read fast enough; the socket is closed")
)

// Message is a message received on a socket.
type Message struct {
	// Data is the payload.
	Data []byte
	// Binary reports a binary message; otherwise it is text (UTF-8).
	Binary bool
}

// Text returns the payload as a string.
func (m Message) Text() string { return string(m.Data) }
