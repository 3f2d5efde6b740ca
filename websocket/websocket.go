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
package websocket

import "github.com/durablego/durable/internal/sockets"

// Close codes a server sends.
const (
	// CloseServiceRestart (1012) tells a client to reconnect: the object
	// it talks to moved to another node (cluster mode), which any node
	// routes it to.
	CloseServiceRestart = sockets.CloseServiceRestart
)

// Limits, as Cloudflare's.
const (
	MaxTags           = sockets.MaxTags           // distinct tags per socket
	MaxTagLength      = sockets.MaxTagLength      // bytes per tag (UTF-8), as Cloudflare counts them
	MaxAttachment     = sockets.MaxAttachment     // bytes of a socket's attachment
	MaxAutoResponse   = sockets.MaxAutoResponse   // bytes of an auto-response request or response
	DefaultMaxSockets = sockets.DefaultMaxSockets // sockets per object
	DefaultMaxMessage = sockets.DefaultMaxMessage // bytes of a message
	// DefaultMaxBuffer is the default of server.WithMaxSocketBuffer: the bytes
	// that may wait to be written to one socket, 4 MiB. That holds 40,000
	// chat messages of 100 bytes, or a history of 1 MiB four times over,
	// so a burst to a client that reads does not reach it; and about as
	// much as the kernel itself buffers for a TCP connection (Linux's
	// tcp_wmem maximum is 4 MiB), so a client that far behind is seconds
	// behind on any link. 32,768 sockets at the bound hold 128 GiB at
	// worst: lower it for many sockets that each get messages of their
	// own (a broadcast's payload is shared by its recipients).
	DefaultMaxBuffer = sockets.DefaultMaxBuffer
)

// MessageOverhead is the bytes a queued message counts for besides its
// payload, in BufferedAmount and against the server's bound (server.WithMaxSocketBuffer): what queuing
// it costs in memory (its envelopes). Without it, empty messages would
// queue without bound.
const MessageOverhead = sockets.MessageOverhead

// Errors.
var (
	// ErrNotUpgrade is Accept's error for a request that is not a
	// WebSocket upgrade, or that did not come over the server's HTTP
	// route (an in-process stub's Fetch cannot upgrade).
	ErrNotUpgrade = sockets.ErrNotUpgrade
	// ErrTooManyTags is Accept's error for more than MaxTags distinct
	// tags.
	ErrTooManyTags = sockets.ErrTooManyTags
	// ErrTagTooLong is Accept's error for a tag over MaxTagLength bytes
	// (or an empty one).
	ErrTagTooLong = sockets.ErrTagTooLong
	// ErrTooManySockets is Accept's error when the object already has the
	// server's maximum of sockets (server.WithMaxSocketsPerObject).
	ErrTooManySockets = sockets.ErrTooManySockets
	// ErrAttachmentTooLarge is SetAttachment's error over MaxAttachment.
	ErrAttachmentTooLarge = sockets.ErrAttachmentTooLarge
	// ErrAutoResponseTooLarge is SetAutoResponse's error over
	// MaxAutoResponse.
	ErrAutoResponseTooLarge = sockets.ErrAutoResponseTooLarge
	// ErrClosed is the error of sending to a socket that is closed or
	// closing: once Close was called on it (in this call or a committed
	// one), its client closed it, or the server did.
	ErrClosed = sockets.ErrClosed
	// ErrInvalidCloseCode is Close's error for a code a close frame may
	// not carry (see Close).
	ErrInvalidCloseCode = sockets.ErrInvalidCloseCode
	// ErrSlowClient is reported to WebSocketError when a message sent to
	// a socket would take what waits to be written to it past the
	// server's bound (server.WithMaxSocketBuffer):
	// the client does not read fast enough. The socket is then closed
	// with 1013 (try again later) and reason "slow client": that message,
	// and those queued behind melody's buffer of 256, are dropped, the
	// close frame follows what melody's buffer holds, and nothing more is
	// sent. WebSocketClose follows, with code 1013 and that reason, and
	// clean false unless the client's own close frame came back first.
	ErrSlowClient = sockets.ErrSlowClient
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
