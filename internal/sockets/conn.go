package sockets

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/olahol/melody"
)

// Conn is one accepted WebSocket. It stays valid while the socket is
// open, across the object's hibernation; compare Conns by ID.
type Conn struct {
	hub  *Hub
	key  Key
	id   string
	tags []string
	name string // the object's name, when Fetch addressed it by name

	mu         sync.Mutex
	sess       *melody.Session // nil until upgraded, and once closed
	pre        []envelope      // sent before the upgrade
	upgraded   bool
	closed     bool // the connection ended: nothing more is sent
	closing    bool // Close was called, by a committed call or the one in progress
	inHub      bool // accepted and not removed: guarded by the hub's mu, not c.mu
	readErr    error
	sentCode   int
	sentReason string
	attachment []byte
	lastAuto   time.Time

	// The send queue. melody buffers 256 messages per socket and drops
	// those past them; a message it refuses waits in backlog instead, and
	// moves to melody's buffer as melody writes (onSent). The queue is
	// bounded in bytes, not messages: past the hub's MaxBuffer the socket
	// is a slow client (slowLocked). What waits (BufferedAmount) is queued
	// less written: the writer, which holds mu, adds to queued, melody's
	// write goroutine to written; one atomic add per message, on the way
	// out, keeps a broadcast to many sockets cheap.
	queued     int64         // guarded by mu: cost of every message queued, dropped ones taken off
	written    atomic.Int64  // cost of every message melody wrote
	backlogged atomic.Bool   // backlog is not empty: onSent refills melody's buffer
	full       atomic.Bool   // melody refused the message push handed it
	backlog    []envelope    // guarded by mu
	slow       chan struct{} // guarded by mu; once slow, closed when WebSocketError heard of it
}

// ID returns the socket's ID, unique in the server.
func (c *Conn) ID() string { return c.id }

// Tags returns the tags the socket was accepted with: Cloudflare's getTags.
func (c *Conn) Tags() []string { return slices.Clone(c.tags) }

// Send sends a text message. Inside a call it goes out once the call's
// writes are durable, and not at all if the call fails. It fails with
// ErrClosed on a socket that is closed or closing: after Close, in the
// same call too, as Cloudflare's send throws after close.
func (c *Conn) Send(data []byte) error { return c.enqueue(envelope{data: clone(data)}) }

// SendBinary sends a binary message, as Send.
func (c *Conn) SendBinary(data []byte) error {
	return c.enqueue(envelope{data: clone(data), binary: true})
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
	if !validCloseCode(code) {
		return fmt.Errorf("%w: %d", ErrInvalidCloseCode, code)
	}
	e := envelope{close: true, code: code, data: []byte(closeReason(reason))}
	c.mu.Lock()
	done := c.closingLocked()
	c.closing = true
	c.mu.Unlock()
	if done {
		return nil
	}
	cs := c.hub.current(c.key)
	if cs == nil {
		c.write(e)
		return nil
	}
	cs.effects = append(cs.effects, func() { c.write(e) })
	cs.undo = append(cs.undo, func() {
		c.mu.Lock()
		c.closing = false
		c.mu.Unlock()
	})
	return nil
}

// closingLocked reports whether the socket is closed or closing: nothing
// more may be sent to it. The caller holds c.mu.
func (c *Conn) closingLocked() bool {
	return c.closed || c.closing || c.sentCode != 0
}

// Attachment returns the socket's attachment (nil if none): Cloudflare's
// deserializeAttachment. It survives hibernation.
func (c *Conn) Attachment() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return clone(c.attachment)
}

// SetAttachment sets the socket's attachment, at most 16 KiB:
// Cloudflare's serializeAttachment. It is kept in the server's memory, not
// in storage, for as long as the socket is open; inside a call it is
// undone if the call fails.
func (c *Conn) SetAttachment(b []byte) error {
	if len(b) > MaxAttachment {
		return ErrAttachmentTooLarge
	}
	b = clone(b)
	c.mu.Lock()
	old := c.attachment
	c.attachment = b
	c.mu.Unlock()
	if cs := c.hub.current(c.key); cs != nil {
		cs.undo = append(cs.undo, func() {
			c.mu.Lock()
			c.attachment = old
			c.mu.Unlock()
		})
	}
	return nil
}

// LastAutoResponse returns when the socket was last answered by the
// object's auto-response, and the zero time if never.
func (c *Conn) LastAutoResponse() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastAuto
}

// enqueue sends e, after the current call commits if there is one.
func (c *Conn) enqueue(e envelope) error {
	c.mu.Lock()
	closing := c.closingLocked()
	c.mu.Unlock()
	if closing {
		return ErrClosed
	}
	if cs := c.hub.current(c.key); cs != nil {
		cs.effects = append(cs.effects, func() { c.write(e) })
		return nil
	}
	c.write(e)
	return nil
}

// BufferedAmount returns the bytes sent to the socket and not yet written
// to its connection, counting MessageOverhead per message besides its
// payload: the browser WebSocket's bufferedAmount. A client that does not
// read makes it grow until the server's bound (server.WithMaxSocketBuffer,
// default 4 MiB), where the socket is closed as a slow client
// (ErrSlowClient). An object may check it to skip what a socket that is
// behind can do without.
func (c *Conn) BufferedAmount() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queued - c.written.Load()
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
