package websocket

import (
	"net/http"
	"time"

	"github.com/durablego/durable/internal/sockets"
)

// Sockets is an object's WebSockets, o.Sockets: valid during a call, like
// the rest of the handle. The sockets themselves live in the server's hub
// and outlast the object's stay in memory.
type Sockets sockets.Sockets

// Conn is one accepted WebSocket. It stays valid while the socket is
// open, across the object's hibernation; compare Conns by ID.
type Conn sockets.Conn

// BroadcastOption chooses the recipients or the type of a Broadcast.
type BroadcastOption sockets.BroadcastOption

// Tag limits a Broadcast to the sockets that carry tag.
func Tag(tag string) BroadcastOption {
	return BroadcastOption(sockets.Tag(tag))
}

// Except leaves c out of a Broadcast (typically the sender).
func Except(c *Conn) BroadcastOption {
	return BroadcastOption(sockets.Except((*sockets.Conn)(c)))
}

// Binary makes a Broadcast send a binary message instead of text.
func Binary() BroadcastOption {
	return BroadcastOption(sockets.Binary())
}

// Accept accepts the WebSocket upgrade of r inside Fetch, with up to 10
// distinct tags of up to 256 bytes each: Cloudflare's acceptWebSocket. A
// tag given twice counts once; Tags returns each in the order it first
// appears. The
// connection is upgraded once the Fetch call's writes are durable (and
// not at all if the call fails); what the call sends to the new Conn is
// delivered first, right after the upgrade. From now on the socket is in
// All and WithTag, and its messages reach the WebSocketMessage hook. Once
// Accept succeeded, the response is the upgrade (101): what else Fetch
// writes to w is not sent, unless it answers with a status of 500 or more,
// which fails the call and undoes the Accept.
//
// It fails with ErrNotUpgrade when r is not an upgrade request or did not
// come over the server's HTTP route (an in-process stub's Fetch), and with
// ErrTooManySockets when the object has the server's maximum; the Fetch
// should then answer 426 Upgrade Required or 503 itself.
func (s *Sockets) Accept(w http.ResponseWriter, r *http.Request, tags ...string) (*Conn, error) {
	c, err := (*sockets.Sockets)(s).Accept(w, r, tags...)
	return (*Conn)(c), err
}

// All returns the object's open sockets, in the order they were accepted:
// Cloudflare's getWebSockets().
func (s *Sockets) All() []*Conn {
	return conns((*sockets.Sockets)(s).All())
}

// WithTag returns the object's open sockets that carry tag, in the order
// they were accepted: Cloudflare's getWebSockets(tag).
func (s *Sockets) WithTag(tag string) []*Conn {
	return conns((*sockets.Sockets)(s).WithTag(tag))
}

// Broadcast sends data, as text unless Binary is given, to every open
// socket of the object, or those with a Tag, except one given to Except.
// The recipients are those open now; like Send, the message goes out once
// the call's writes are durable.
func (s *Sockets) Broadcast(data []byte, opts ...BroadcastOption) {
	engineOpts := make([]sockets.BroadcastOption, len(opts))
	for i, o := range opts {
		engineOpts[i] = sockets.BroadcastOption(o)
	}
	(*sockets.Sockets)(s).Broadcast(data, engineOpts...)
}

// SetAutoResponse sets the object's auto-response: a text message equal to
// request is answered with response by the server, without activating
// the object or queuing a call (Cloudflare's setWebSocketAutoResponse).
// Each is at most 2,048 bytes; an empty request removes it. It lasts as
// long as the server runs, across hibernation; inside a call it is undone
// if the call fails.
func (s *Sockets) SetAutoResponse(request, response string) error {
	return (*sockets.Sockets)(s).SetAutoResponse(request, response)
}

// ID returns the socket's ID, unique in the server.
func (c *Conn) ID() string {
	return (*sockets.Conn)(c).ID()
}

// Tags returns the tags the socket was accepted with: Cloudflare's getTags.
func (c *Conn) Tags() []string {
	return (*sockets.Conn)(c).Tags()
}

// Send sends a text message. Inside a call it goes out once the call's
// writes are durable, and not at all if the call fails. It fails with
// ErrClosed on a socket that is closed or closing: after Close, in the
// same call too, as Cloudflare's send throws after close.
func (c *Conn) Send(data []byte) error {
	return (*sockets.Conn)(c).Send(data)
}

// SendBinary sends a binary message, as Send.
func (c *Conn) SendBinary(data []byte) error {
	return (*sockets.Conn)(c).SendBinary(data)
}

// Close closes the socket with a close frame of code and reason. Inside a
// call it happens once the call's writes are durable, and not at all if
// the call fails; from Close on, Send fails with ErrClosed. The object's
// WebSocketClose hook then runs with the code and reason of the client's
// reply.
//
// The code must be one a close frame may carry: 1000-1003, 1007-1014 or
// 3000-4999; any other is refused with ErrInvalidCloseCode, and nothing
// is sent. The reason is cut to the 123 bytes a frame holds, at a
// character boundary (Cloudflare throws instead), invalid UTF-8 replaced.
//
// Closing a socket that is closed or closing already does nothing and
// returns nil, as Cloudflare ignores a second close: this includes Close
// inside WebSocketClose, where the server has completed the close
// handshake already (it answers a client's close frame at once).
func (c *Conn) Close(code int, reason string) error {
	return (*sockets.Conn)(c).Close(code, reason)
}

// Attachment returns the socket's attachment (nil if none): Cloudflare's
// deserializeAttachment. It survives hibernation.
func (c *Conn) Attachment() []byte {
	return (*sockets.Conn)(c).Attachment()
}

// SetAttachment sets the socket's attachment, at most 16 KiB:
// Cloudflare's serializeAttachment. It is kept in the server's memory, not
// in storage, for as long as the socket is open; inside a call it is
// undone if the call fails.
func (c *Conn) SetAttachment(b []byte) error {
	return (*sockets.Conn)(c).SetAttachment(b)
}

// LastAutoResponse returns when the socket was last answered by the
// object's auto-response, and the zero time if never.
func (c *Conn) LastAutoResponse() time.Time {
	return (*sockets.Conn)(c).LastAutoResponse()
}

// BufferedAmount returns the bytes sent to the socket and not yet written
// to its connection, counting MessageOverhead per message besides its
// payload: the browser WebSocket's bufferedAmount. A client that does not
// read makes it grow until the server's bound (server.WithMaxSocketBuffer,
// default 4 MiB), where the socket is closed as a slow client
// (ErrSlowClient). An object may check it to skip what a socket that is
// behind can do without.
func (c *Conn) BufferedAmount() int64 {
	return (*sockets.Conn)(c).BufferedAmount()
}

// conns converts the engine's sockets to the ones an object holds.
func conns(cs []*sockets.Conn) []*Conn {
	out := make([]*Conn, len(cs))
	for i, c := range cs {
		out[i] = (*Conn)(c)
	}
	return out
}
