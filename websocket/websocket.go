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

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	gorilla "github.com/gorilla/websocket"
	"github.com/olahol/melody"

	"github.com/durablego/durable/internal/objectkey"
)

// Limits, as Cloudflare's.
const (
	MaxTags           = 10       // tags per socket
	MaxTagLength      = 256      // characters per tag
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

// Close codes, and what fits of a reason in a close frame.
const (
	closeGoingAway      = 1001
	closeNoStatus       = 1005
	closeAbnormal       = 1006
	closeMessageTooBig  = 1009
	closeTryAgainLater  = 1013
	maxCloseReasonBytes = 123
	slowReason          = "slow client"
)

// Errors.
var (
	// ErrNotUpgrade is Accept's error for a request that is not a
	// WebSocket upgrade, or that did not come over the server's HTTP
	// route (an in-process stub's Fetch cannot upgrade).
	ErrNotUpgrade = errors.New("websocket: not a WebSocket upgrade request over HTTP")
	// ErrTooManyTags is Accept's error for more than MaxTags tags.
	ErrTooManyTags = errors.New("websocket: more than 10 tags")
	// ErrTagTooLong is Accept's error for a tag over MaxTagLength
	// characters (or an empty one).
	ErrTagTooLong = errors.New("websocket: a tag is empty or over 256 characters")
	// ErrTooManySockets is Accept's error when the object already has the
	// server's maximum of sockets (server.WithMaxSocketsPerObject).
	ErrTooManySockets = errors.New("websocket: the object has the maximum number of sockets")
	// ErrAttachmentTooLarge is SetAttachment's error over MaxAttachment.
	ErrAttachmentTooLarge = errors.New("websocket: attachment over 16 KiB")
	// ErrAutoResponseTooLarge is SetAutoResponse's error over
	// MaxAutoResponse.
	ErrAutoResponseTooLarge = errors.New("websocket: auto-response request or response over 2,048 bytes")
	// ErrClosed is the error of sending to, or closing, a closed socket.
	ErrClosed = errors.New("websocket: the socket is closed")
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

// Key identifies an object in the Hub: Durable's one key type, its class
// name and raw ID.
type Key = objectkey.Key

// EventKind tells what an Event is.
type EventKind int

// Event kinds.
const (
	EventMessage EventKind = iota
	EventClose
	EventError
)

// Event is a socket event the Hub hands to the server, which delivers it
// to the object as a call.
type Event struct {
	Kind    EventKind
	Name    string // the object's name, if known
	Conn    *Conn
	Message Message // EventMessage
	Code    int     // EventClose
	Reason  string  // EventClose
	Clean   bool    // EventClose
	Err     error   // EventError
}

// HubConfig configures a Hub.
type HubConfig struct {
	// MaxSockets caps the sockets of one object; 0 is DefaultMaxSockets.
	MaxSockets int
	// MaxMessageSize caps a received message; 0 is DefaultMaxMessage.
	MaxMessageSize int64
	// MaxBuffer caps, in bytes, what may wait to be written to one
	// socket (BufferedAmount); past it the socket is a slow client (see
	// ErrSlowClient). A message longer than it is still sent when
	// nothing else waits. 0 is DefaultMaxBuffer.
	MaxBuffer int64
	// Dispatch delivers an event to its object as a call and returns when
	// the call is done (its outcome). It is called from the socket's read
	// goroutine, which gives per-socket ordering and backpressure.
	Dispatch func(Key, Event) error
	// CheckOrigin decides whether to upgrade a request by its Origin
	// header (gorilla's Upgrader.CheckOrigin); a refused upgrade gets 403.
	// Nil accepts every origin, melody's default.
	CheckOrigin func(r *http.Request) bool
}

// Hub holds the open sockets of every object of a server. The server
// creates one; applications use the Sockets of their object handle.
type Hub struct {
	m        *melody.Melody
	cfg      HubConfig
	mu       sync.Mutex
	objects  map[Key]*object
	handles  map[Key]*Sockets // the handle of each object in memory
	open     int              // sockets in the hub, across objects: Open
	closed   bool
	serving  sync.WaitGroup
	initOnce sync.Once
	outboxes outboxes // sends of committed calls on their way out
}

// object is the sockets of one object, and its auto-response. It is
// guarded by the hub's mu.
type object struct {
	// conns holds the sockets in the order they were accepted, and the
	// removed ones (c.inHub false) until they are half of it: a removal
	// needs no search, and a listing no sort.
	conns   []*Conn
	open    int // the sockets of conns still in the hub
	autoReq string
	autoRes string
}

// object returns the object of key, creating it if it has none. The
// caller holds h.mu.
func (h *Hub) object(key Key) *object {
	o := h.objects[key]
	if o == nil {
		o = &object{}
		h.objects[key] = o
	}
	return o
}

// prune forgets o, the object of key, once it has neither sockets nor an
// auto-response. The caller holds h.mu.
func (h *Hub) prune(key Key, o *object) {
	if o.open == 0 && o.autoReq == "" {
		delete(h.objects, key)
	}
}

// add adds c to o, accepted last. The caller holds h.mu.
func (h *Hub) add(o *object, c *Conn) {
	o.conns = append(o.conns, c)
	c.inHub = true
	o.open++
	h.open++
}

// list returns o's sockets that carry tag (all of them for ""), in the
// order they were accepted. The caller holds h.mu.
func (o *object) list(tag string) []*Conn {
	out := make([]*Conn, 0, o.open)
	for _, c := range o.conns {
		if c.inHub && (tag == "" || slices.Contains(c.tags, tag)) {
			out = append(out, c)
		}
	}
	return out
}

// NewHub returns an empty hub.
func NewHub(cfg HubConfig) *Hub {
	if cfg.MaxSockets <= 0 {
		cfg.MaxSockets = DefaultMaxSockets
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultMaxMessage
	}
	if cfg.MaxBuffer <= 0 {
		cfg.MaxBuffer = DefaultMaxBuffer
	}
	h := &Hub{cfg: cfg, objects: make(map[Key]*object), handles: make(map[Key]*Sockets)}
	return h
}

// melody returns the hub's melody instance, started on first use (it
// runs a goroutine).
func (h *Hub) melody() *melody.Melody {
	h.initOnce.Do(func() {
		m := melody.New()
		m.Config.MaxMessageSize = h.cfg.MaxMessageSize
		m.Upgrader.WriteBufferPool = &sync.Pool{}
		if h.cfg.CheckOrigin != nil {
			m.Upgrader.CheckOrigin = h.cfg.CheckOrigin
		}
		m.HandleConnect(h.onConnect)
		m.HandleMessage(func(s *melody.Session, b []byte) { h.onMessage(s, Message{Data: b}) })
		m.HandleMessageBinary(func(s *melody.Session, b []byte) { h.onMessage(s, Message{Data: b, Binary: true}) })
		m.HandleError(h.onError)
		m.HandleSentMessage(h.onSent)
		m.HandleSentMessageBinary(h.onSent)
		h.m = m
	})
	return h.m
}

// Sockets returns the handle of the object key's sockets, for its object
// handle; the server calls it when the object activates, and Release
// when it leaves memory.
func (h *Hub) Sockets(key Key) *Sockets {
	s := &Sockets{hub: h, key: key}
	h.mu.Lock()
	h.handles[key] = s
	h.mu.Unlock()
	return s
}

// Release forgets s, the handle of an object that left memory.
func (h *Hub) Release(s *Sockets) {
	h.mu.Lock()
	if h.handles[s.key] == s {
		delete(h.handles, s.key)
	}
	h.mu.Unlock()
}

// Open returns the number of sockets the hub holds across every object:
// those accepted and not yet closed (the server's open-sockets metric).
func (h *Hub) Open() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.open
}

func (h *Hub) dispatch(key Key, ev Event) error {
	if h.cfg.Dispatch == nil {
		return nil
	}
	ev.Name = ev.Conn.name
	return h.cfg.Dispatch(key, ev)
}

// Close closes every socket with 1001 (going away) and refuses upgrades
// from then on. It returns when every socket is closed and its close
// event delivered (or refused by a namespace that is shutting down), or
// with ctx's error when ctx ends first: a close hook that does not return
// cannot hold a shutdown past its deadline.
func (h *Hub) Close(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()
	defer func() {
		if h.m != nil {
			h.m.Close()
		}
	}()
	// What committed calls sent goes out before the close frames.
	if err := waitCtx(ctx, h.outboxes.wait); err != nil {
		return err
	}
	h.mu.Lock()
	var all []*Conn
	for _, o := range h.objects {
		all = append(all, o.list("")...)
	}
	h.mu.Unlock()
	// Outside any call: at once, or right after the upgrade of a socket
	// not upgraded yet.
	goingAway := envelope{close: true, code: closeGoingAway, data: []byte("going away")}
	for _, c := range all {
		c.write(goingAway)
	}
	return waitCtx(ctx, h.serving.Wait)
}

// waitCtx runs wait and returns nil when it returns, or ctx's error if ctx
// ends first (wait then finishes on its own).
func waitCtx(ctx context.Context, wait func()) error {
	done := make(chan struct{})
	go func() {
		wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// remove takes c out of its object, compacting the object's conns once
// half of them are removed ones. Removing c again does nothing.
func (h *Hub) remove(c *Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	o := h.objects[c.key]
	if o == nil {
		return
	}
	if c.inHub {
		c.inHub = false
		o.open--
		h.open--
		if removed := len(o.conns) - o.open; removed > len(o.conns)/2 {
			o.conns = slices.DeleteFunc(o.conns, func(c *Conn) bool { return !c.inHub })
		}
	}
	h.prune(c.key, o)
}

// Serve upgrades the connection of r, whose Fetch accepted c, and serves
// the socket until it closes: it returns after the close was delivered to
// the object and the socket left the hub. The server calls it once the
// Fetch call committed.
//
// With a nil w, the upgrade is abandoned (the client is gone): c leaves
// the hub.
func (h *Hub) Serve(w http.ResponseWriter, r *http.Request, c *Conn) {
	if w == nil {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		h.remove(c)
		return
	}
	h.mu.Lock()
	closed := h.closed
	if !closed {
		h.serving.Add(1)
	}
	h.mu.Unlock()
	if closed {
		h.remove(c)
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	defer h.serving.Done()
	err := h.melody().HandleRequestWithKeys(w, r, map[string]any{"conn": c})
	c.mu.Lock()
	c.closed = true
	c.sess = nil
	c.backlog = nil
	c.backlogged.Store(false)
	upgraded := c.upgraded
	readErr, sentCode, sentReason := c.readErr, c.sentCode, c.sentReason
	slow := c.slow
	c.mu.Unlock()
	if err != nil || !upgraded {
		h.remove(c)
		return
	}
	if slow != nil {
		<-slow // WebSocketError heard of it first
	}
	code, reason, clean := closeAbnormal, "", false
	var ce *gorilla.CloseError
	isCloseErr := errors.As(readErr, &ce)
	switch {
	case slow != nil && (!isCloseErr || ce.Code == closeAbnormal):
		// Closed as a slow client, and no close frame came back (1006 is
		// gorilla's for a connection that ended without one): the
		// client may never have read the server's.
		code, reason = closeTryAgainLater, slowReason
	case isCloseErr:
		code, reason, clean = ce.Code, ce.Text, true
		if code == closeNoStatus || code == closeAbnormal {
			clean = code == closeNoStatus
		}
	case sentCode != 0:
		code, reason, clean = sentCode, sentReason, true
	case errors.Is(readErr, gorilla.ErrReadLimit):
		code, reason = closeMessageTooBig, "message too big"
		h.dispatch(c.key, Event{Kind: EventError, Conn: c, Err: readErr})
	}
	h.dispatch(c.key, Event{Kind: EventClose, Conn: c, Code: code, Reason: reason, Clean: clean})
	h.remove(c)
}

// connOf returns the Conn of s. It reads s.Keys without the session's lock
// (s.Get takes it, on every message written): Serve sets the keys before
// the session's goroutines start, and nothing changes them after.
func connOf(s *melody.Session) *Conn {
	c, _ := s.Keys["conn"].(*Conn)
	return c
}

// onConnect binds the session to its Conn and sends what was sent to the
// socket before the upgrade, first.
func (h *Hub) onConnect(s *melody.Session) {
	c := connOf(s)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.upgraded = true
	if c.closed {
		return
	}
	c.sess = s
	for _, e := range c.pre {
		c.writeLocked(e)
	}
	c.pre = nil
}

func (h *Hub) onMessage(s *melody.Session, msg Message) {
	c := connOf(s)
	if !msg.Binary {
		h.mu.Lock()
		o := h.objects[c.key]
		auto := o != nil && o.autoReq != "" && o.autoReq == string(msg.Data)
		var res string
		if auto {
			res = o.autoRes
		}
		h.mu.Unlock()
		if auto {
			c.mu.Lock()
			c.lastAuto = time.Now()
			c.mu.Unlock()
			c.write(envelope{data: []byte(res)})
			return
		}
	}
	h.dispatch(c.key, Event{Kind: EventMessage, Conn: c, Message: msg})
}

// onError records the read error that ends a socket, and a full melody
// buffer for the write that found it.
func (h *Hub) onError(s *melody.Session, err error) {
	c := connOf(s)
	if c == nil {
		return
	}
	switch {
	case errors.Is(err, melody.ErrMessageBufferFull):
		// Reported synchronously from inside push, under c.mu: the
		// message waits in c.backlog instead.
		c.full.Store(true)
		return
	case errors.Is(err, melody.ErrWriteClosed):
		// A write to a session that is closing: nothing is lost that the
		// close does not explain. melody reports it synchronously, from
		// inside a write made under c.mu, so c.mu must not be taken here.
		return
	}
	c.mu.Lock()
	if c.readErr == nil {
		c.readErr = err
	}
	c.mu.Unlock()
}

// onSent runs on the socket's write goroutine once melody wrote a message:
// the message no longer counts in BufferedAmount, and melody's buffer has
// room for the next one of the backlog, if any.
func (h *Hub) onSent(s *melody.Session, b []byte) {
	c := connOf(s)
	if c == nil {
		return
	}
	c.written.Add(cost(b))
	if c.backlogged.Load() {
		c.mu.Lock()
		c.refillLocked()
		c.mu.Unlock()
	}
}

// cost is what a message of payload b counts for in BufferedAmount.
func cost(b []byte) int64 { return int64(len(b)) + MessageOverhead }

// envelope is a message to write.
type envelope struct {
	data   []byte
	binary bool
	close  bool
	code   int
}

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
	closed     bool // closing or closed: nothing more is sent
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
// ErrClosed on a closed socket.
func (c *Conn) Send(data []byte) error { return c.enqueue(envelope{data: clone(data)}) }

// SendBinary sends a binary message, as Send.
func (c *Conn) SendBinary(data []byte) error {
	return c.enqueue(envelope{data: clone(data), binary: true})
}

// Close closes the socket with a close frame of code and reason (cut to
// the 123 bytes a frame holds). Inside a call it happens once the call's
// writes are durable. The object's WebSocketClose hook then runs with
// that code and reason.
func (c *Conn) Close(code int, reason string) error {
	if len(reason) > maxCloseReasonBytes {
		reason = reason[:maxCloseReasonBytes]
	}
	return c.enqueue(envelope{close: true, code: code, data: []byte(reason)})
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
	closed := c.closed
	c.mu.Unlock()
	if closed {
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

// write writes e now: to the session, or to the buffer that is flushed
// on the upgrade. Nothing is written after a close frame, nor once the
// session is gone. Hub.Close uses it too, for its close frames.
func (c *Conn) write(e envelope) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sentCode != 0 || c.upgraded && c.sess == nil {
		return
	}
	if !e.close {
		// Past the bound, unless nothing waits (a message longer than
		// the bound is sent alone).
		k := cost(e.data)
		if n := c.queued - c.written.Load() + k; n > c.hub.cfg.MaxBuffer && n != k {
			c.slowLocked()
			return
		}
		c.queued += k
	}
	if !c.upgraded {
		c.pre = append(c.pre, e)
		if e.close {
			c.sentCode, c.sentReason = e.code, string(e.data)
		}
		return
	}
	c.writeLocked(e)
}

// writeLocked hands e to melody, after the backlog, or queues it in the
// backlog when melody's buffer is full. The caller holds c.mu, and
// c.sess is set.
func (c *Conn) writeLocked(e envelope) {
	if e.close {
		c.sentCode, c.sentReason = e.code, string(e.data)
	}
	if len(c.backlog) == 0 && c.push(e) {
		return
	}
	c.backlog = append(c.backlog, e)
	if !c.backlogged.Load() {
		c.backlogged.Store(true)
		// melody may have written all it held since push found its
		// buffer full, and then seen no backlog: refill now. If its
		// buffer is still full, onSent sees the backlog after the next
		// write.
		c.refillLocked()
	}
}

// push hands e to melody, and reports whether melody took it (its buffer
// was not full). The caller holds c.mu, and c.sess is set.
func (c *Conn) push(e envelope) bool {
	switch {
	case e.close:
		c.sess.CloseWithMsg(melody.FormatCloseMessage(e.code, string(e.data)))
	case e.binary:
		c.sess.WriteBinary(e.data)
	default:
		c.sess.Write(e.data)
	}
	if c.full.Load() {
		c.full.Store(false)
		return false
	}
	return true
}

// refillLocked moves what it can of the backlog to melody's buffer, in
// order. The caller holds c.mu.
func (c *Conn) refillLocked() {
	for len(c.backlog) > 0 && c.sess != nil {
		if !c.push(c.backlog[0]) {
			return
		}
		c.backlog[0] = envelope{}
		c.backlog = c.backlog[1:]
	}
	c.backlog = nil
	c.backlogged.Store(false)
}

// slowLocked closes the socket of a client too slow to read what is sent
// to it: what waits behind melody's buffer (or, before the upgrade, all
// that waits) is dropped, a close frame 1013 follows what melody holds,
// and WebSocketError hears of ErrSlowClient, before WebSocketClose. The
// caller holds c.mu.
func (c *Conn) slowLocked() {
	var dropped int64
	for _, e := range c.backlog {
		dropped += cost(e.data)
	}
	for _, e := range c.pre {
		dropped += cost(e.data)
	}
	c.queued -= dropped
	c.backlog, c.pre = nil, nil
	c.backlogged.Store(false)
	bye := envelope{close: true, code: closeTryAgainLater, data: []byte(slowReason)}
	if c.upgraded {
		c.writeLocked(bye)
	} else {
		c.pre = append(c.pre, bye)
		c.sentCode, c.sentReason = bye.code, slowReason
	}
	done := make(chan struct{})
	c.slow = done
	go func() {
		defer close(done)
		c.hub.dispatch(c.key, Event{Kind: EventError, Conn: c, Err: ErrSlowClient})
	}()
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
