package sockets

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"

	gorilla "github.com/gorilla/websocket"
	"github.com/olahol/melody"

	"github.com/durablego/durable/internal/objectkey"
)

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

// Leave takes c out of its object's sockets, as a closed socket leaves
// All and WithTag. The server calls it as the object's WebSocketClose call
// ends, inside the call, so that every later call of the object, and
// anything a client does after hearing of the close from the hook's
// messages, finds c gone; during the hook c is still listed, with Send
// refused. Serve takes c out after the close was delivered in any case
// (no hook, a hook reset as stuck): leaving twice does nothing.
func (c *Conn) Leave() { c.hub.remove(c) }

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
	code, reason, clean := closeAbnormal, droppedReason, false
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
		if code == closeAbnormal {
			// gorilla's code for a connection that ended without a close
			// frame, its reason the read's error: Cloudflare's words
			// instead, as for any other dropped connection.
			reason, clean = droppedReason, false
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

// CloseObjects closes, with code and reason, the sockets of every object
// match selects (those of a partition that moves to another node, in
// cluster mode, with CloseServiceRestart), after what committed calls sent
// them has gone out. It does not wait for the close events.
func (h *Hub) CloseObjects(match func(Key) bool, code int, reason string) {
	h.outboxes.wait()
	h.mu.Lock()
	var conns []*Conn
	for key, o := range h.objects {
		if match(key) {
			conns = append(conns, o.list("")...)
		}
	}
	h.mu.Unlock()
	e := envelope{close: true, code: code, data: []byte(closeReason(reason))}
	for _, c := range conns {
		c.write(e)
	}
}
