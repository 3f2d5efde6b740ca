package sockets

// callState is what a call did to its object's sockets: the sends to
// release once it commits, and how to undo the rest if it fails.
type callState struct {
	effects []func()
	undo    []func()
}

// Effects is the outcome of one call on its object's sockets: the server
// runs Commit once the call's writes are durable, or Abort if they are
// not. Either runs once; the other is then a no-op.
type Effects struct {
	hub  *Hub
	key  Key
	cs   *callState
	done bool
}

// Commit releases the call's sends. They leave on another goroutine, after
// those of the object's earlier calls and before those of its later ones,
// so that Commit returns at once even for a broadcast to many sockets.
func (e *Effects) Commit() {
	if e == nil || e.done || e.cs == nil {
		return
	}
	e.done = true
	if len(e.cs.effects) > 0 {
		e.hub.outboxes.post(e.key, e.cs)
	}
}

// Abort drops the call's sends and undoes its accepts, attachments and
// auto-response.
func (e *Effects) Abort() {
	if e == nil || e.done || e.cs == nil {
		return
	}
	e.done = true
	for i := len(e.cs.undo) - 1; i >= 0; i-- {
		e.cs.undo[i]()
	}
}

// Begin starts a call of the object s belongs to, whose name is name
// ("" if unknown): from now until End, its sends are buffered. Begin and
// End are called on the object's goroutine, and cost nothing to a call
// that does not touch its sockets.
func (h *Hub) Begin(s *Sockets, name string) {
	s.inCall, s.name, s.cs = true, name, nil
}

// End ends the call Begin started. If ok, the returned Effects hold its
// sends for Commit; otherwise they were dropped and its other changes
// undone already, and the Effects do nothing.
func (h *Hub) End(s *Sockets, ok bool) *Effects {
	cs := s.cs
	s.inCall, s.cs = false, nil
	if cs == nil {
		return nil
	}
	e := &Effects{hub: h, key: s.key, cs: cs}
	if !ok {
		e.Abort()
		return nil
	}
	return e
}

// call returns the state of the call in progress on s, created on the
// call's first change, or nil outside a call. It is called on the
// object's goroutine during a call (the handle is only valid then).
func (s *Sockets) call() *callState {
	if !s.inCall {
		return nil
	}
	if s.cs == nil {
		s.cs = &callState{}
	}
	return s.cs
}

// journal records how to undo a change of the call in progress on s.
func (s *Sockets) journal(undo func()) {
	if cs := s.call(); cs != nil {
		cs.undo = append(cs.undo, undo)
	}
}

// current returns the call in progress of the object key, as its
// handle's call does: a Conn knows its object's key, not its handle.
func (h *Hub) current(key Key) *callState {
	h.mu.Lock()
	s := h.handles[key]
	h.mu.Unlock()
	if s == nil {
		return nil
	}
	return s.call()
}
