package sockets

import (
	"net/http"
	"slices"

	gorilla "github.com/gorilla/websocket"
)

// Upgrader is implemented by the http.ResponseWriter the server passes to
// Fetch on its HTTP route: Accept records the upgrade in it, and the
// server upgrades the connection once the call's writes are durable.
type Upgrader interface {
	UpgradeWebSocket(c *Conn) bool
}

// Sockets is an object's WebSockets, o.Sockets: valid during a call, like
// the rest of the handle. The sockets themselves live in the server's hub
// and outlast the object's stay in memory.
type Sockets struct {
	hub *Hub
	key Key

	// Owned by the object's goroutine: the call in progress.
	inCall bool
	name   string     // the object's name, if known
	cs     *callState // created on the call's first change
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
	up, ok := w.(Upgrader)
	if !ok || !gorilla.IsWebSocketUpgrade(r) {
		return nil, ErrNotUpgrade
	}
	tags, err := distinctTags(tags)
	if err != nil {
		return nil, err
	}
	h := s.hub
	c := &Conn{hub: h, key: s.key, id: newID(), tags: tags, name: s.name}
	h.mu.Lock()
	o := h.object(s.key)
	if o.open >= h.cfg.MaxSockets {
		h.mu.Unlock()
		return nil, ErrTooManySockets
	}
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	h.add(o, c)
	h.mu.Unlock()
	if !up.UpgradeWebSocket(c) {
		h.remove(c)
		return nil, ErrNotUpgrade
	}
	s.journal(func() { h.remove(c) })
	return c, nil
}

// distinctTags returns a copy of tags without repeats, each where it
// first appears, as Cloudflare's acceptWebSocket keeps them; an empty tag
// or one over MaxTagLength bytes is ErrTagTooLong, and more than MaxTags
// distinct ones ErrTooManyTags.
func distinctTags(tags []string) ([]string, error) {
	var out []string
	for _, t := range tags {
		if t == "" || len(t) > MaxTagLength {
			return nil, ErrTagTooLong
		}
		if slices.Contains(out, t) {
			continue
		}
		if len(out) == MaxTags {
			return nil, ErrTooManyTags
		}
		out = append(out, t)
	}
	return out, nil
}

// All returns the object's open sockets, in the order they were accepted:
// Cloudflare's getWebSockets().
func (s *Sockets) All() []*Conn { return s.list("") }

// WithTag returns the object's open sockets that carry tag, in the order
// they were accepted: Cloudflare's getWebSockets(tag).
func (s *Sockets) WithTag(tag string) []*Conn { return s.list(tag) }

func (s *Sockets) list(tag string) []*Conn {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if o := h.objects[s.key]; o != nil {
		return o.list(tag)
	}
	return nil
}

// BroadcastOption chooses the recipients or the type of a Broadcast.
type BroadcastOption func(*broadcast)

type broadcast struct {
	tag    string
	except *Conn
	binary bool
}

// Tag limits a Broadcast to the sockets that carry tag.
func Tag(tag string) BroadcastOption { return func(b *broadcast) { b.tag = tag } }

// Except leaves c out of a Broadcast (typically the sender).
func Except(c *Conn) BroadcastOption { return func(b *broadcast) { b.except = c } }

// Binary makes a Broadcast send a binary message instead of text.
func Binary() BroadcastOption { return func(b *broadcast) { b.binary = true } }

// Broadcast sends data, as text unless Binary is given, to every open
// socket of the object, or those with a Tag, except one given to Except.
// The recipients are those open now; like Send, the message goes out once
// the call's writes are durable.
func (s *Sockets) Broadcast(data []byte, opts ...BroadcastOption) {
	var b broadcast
	for _, o := range opts {
		o(&b)
	}
	e := envelope{data: clone(data), binary: b.binary}
	to := s.list(b.tag)
	send := func() {
		for _, c := range to {
			if c != b.except {
				c.write(e)
			}
		}
	}
	if cs := s.call(); cs != nil {
		cs.effects = append(cs.effects, send)
	} else {
		send()
	}
}

// SetAutoResponse sets the object's auto-response: a text message equal to
// request is answered with response by the server, without activating
// the object or queuing a call (Cloudflare's setWebSocketAutoResponse).
// Each is at most 2,048 bytes; an empty request removes it. It lasts as
// long as the server runs, across hibernation; inside a call it is undone
// if the call fails.
func (s *Sockets) SetAutoResponse(request, response string) error {
	if len(request) > MaxAutoResponse || len(response) > MaxAutoResponse {
		return ErrAutoResponseTooLarge
	}
	h := s.hub
	h.mu.Lock()
	o := h.object(s.key)
	oldReq, oldRes := o.autoReq, o.autoRes
	o.autoReq, o.autoRes = request, response
	if request == "" {
		o.autoRes = ""
		h.prune(s.key, o)
	}
	h.mu.Unlock()
	s.journal(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		o := h.object(s.key)
		o.autoReq, o.autoRes = oldReq, oldRes
	})
	return nil
}
