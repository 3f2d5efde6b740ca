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
	"time"

	gorilla "github.com/gorilla/websocket"
	"github.com/olahol/melody"
)

// Limits, as Cloudflare's.
const (
	MaxTags           = 10       // tags per socket
	MaxTagLength      = 256      // characters per tag
	MaxAttachment     = 16 << 10 // bytes of a socket's attachment
	MaxAutoResponse   = 2048     // bytes of an auto-response request or response
	DefaultMaxSockets = 32768    // sockets per object
	DefaultMaxMessage = 32 << 20 // bytes of a message
)

// Close codes, and what fits of a reason in a close frame.
const (
	closeGoingAway      = 1001
	closeNoStatus       = 1005
	closeAbnormal       = 1006
	closeMessageTooBig  = 1009
	maxCloseReasonBytes = 123
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
	// ErrSlowClient is reported to WebSocketError when a socket's send
	// buffer is full: the message was dropped.
	ErrSlowClient = errors.New("websocket: the client does not read fast enough; a message was dropped")
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

// Key identifies an object in the Hub: its class name and raw ID.
type Key struct {
	Class string
	ID    [32]byte
}

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
	upgraded := c.upgraded
	readErr, sentCode, sentReason := c.readErr, c.sentCode, c.sentReason
	c.mu.Unlock()
	if err != nil || !upgraded {
		h.remove(c)
		return
	}
	code, reason, clean := closeAbnormal, "", false
	var ce *gorilla.CloseError
	switch {
	case errors.As(readErr, &ce):
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

func connOf(s *melody.Session) *Conn {
	v, _ := s.Get("conn")
	c, _ := v.(*Conn)
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
			s.Write([]byte(res))
			return
		}
	}
	h.dispatch(c.key, Event{Kind: EventMessage, Conn: c, Message: msg})
}

// onError records the read error that ends a socket, and reports a full
// send buffer to the object.
func (h *Hub) onError(s *melody.Session, err error) {
	c := connOf(s)
	if c == nil {
		return
	}
	switch {
	case errors.Is(err, melody.ErrMessageBufferFull):
		go h.dispatch(c.key, Event{Kind: EventError, Conn: c, Err: ErrSlowClient})
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

// write writes e now: to the session, or to the buffer that is flushed
// on the upgrade. Nothing is written after a close frame, nor once the
// session is gone. Hub.Close uses it too, for its close frames.
func (c *Conn) write(e envelope) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sentCode != 0 {
		return
	}
	if !c.upgraded {
		c.pre = append(c.pre, e)
		if e.close {
			c.sentCode, c.sentReason = e.code, string(e.data)
		}
		return
	}
	if c.sess != nil {
		c.writeLocked(e)
	}
}

func (c *Conn) writeLocked(e envelope) {
	switch {
	case e.close:
		c.sentCode, c.sentReason = e.code, string(e.data)
		c.sess.CloseWithMsg(melody.FormatCloseMessage(e.code, string(e.data)))
	case e.binary:
		c.sess.WriteBinary(e.data)
	default:
		c.sess.Write(e.data)
	}
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
