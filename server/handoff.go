package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	"github.com/durablego/durable"
	"github.com/durablego/durable/gen/durable/v1/durablev1connect"
	"github.com/durablego/durable/internal/alarms"
	"github.com/durablego/durable/internal/objectkey"
	"github.com/durablego/durable/internal/sockets"
)

// The hooks a cluster node calls when the partitions it serves change
// (cluster mode: the cluster module's node). A partition is a set of
// objects, which the node names with a match function of their IDs.

// Release hands the objects match selects off gracefully, before the node
// gives their partition up. From the call on, calls for them are not
// admitted here: they wait at this node (bounded by their context and by
// DefaultRouteWait) and then ask the placement again, so that once it
// names the new owner they go there. Every such object in memory runs
// what its mailbox holds, commits, and leaves memory; then their
// WebSockets are closed with 1012 (service restart), for their clients to
// reconnect through any node, and their pending alarms are dropped from
// this node's scheduler (they stay in the store's index, for the new
// owner's RescanAlarms). Calls see latency, not errors.
//
// Release returns once all of it is done, or ctx's error if ctx ends
// first: the hand-off is abandoned then, and calls are admitted again.
// The hold on calls lasts past a successful return until the placement
// stops naming this node for them, since the node releases the partition
// only after Release returns.
func (s *Server) Release(ctx context.Context, match func(id [32]byte) bool) error {
	rt := s.router
	var h *hold
	if rt != nil {
		h = rt.holds.add(match)
	}
	key := func(k objectkey.Key) bool { return match(k.ID) }
	for wait := time.Millisecond; ; wait = min(2*wait, 20*time.Millisecond) {
		left := 0
		for _, ns := range s.registered() {
			left += ns.evictMatching(key)
		}
		if left == 0 {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			if h != nil {
				rt.holds.lift(h)
			}
			return fmt.Errorf("server: Release: %w", ctx.Err())
		}
	}
	s.sockets.CloseObjects(key, sockets.CloseServiceRestart, "the object moved to another node: reconnect")
	s.forgetAlarms(key)
	if h != nil {
		rt.holds.finish(h)
	}
	return nil
}

// Drop gives up the objects match selects at once, when their partition
// was lost (its fence failed, the node's lease is gone): they leave memory
// without committing (what they had not committed is discarded), the
// calls queued for them fail with Unavailable and Durable-Error "moved"
// (durable.KindMoved: safe to retry, nothing was written) wrapping reason, their
// WebSockets are closed with 1012 and their alarms dropped from this
// node's scheduler. New calls for them wait, as after Release, until the
// placement names another node.
func (s *Server) Drop(match func(id [32]byte) bool, reason error) {
	if s.router != nil {
		s.router.holds.finish(s.router.holds.add(match))
	}
	key := func(k objectkey.Key) bool { return match(k.ID) }
	for _, ns := range s.registered() {
		ns.dropMatching(key, reason)
	}
	s.sockets.CloseObjects(key, sockets.CloseServiceRestart, "the object moved to another node: reconnect")
	s.forgetAlarms(key)
}

// RescanAlarms has the alarm scheduler read the store's alarm index again
// from its start, so that the alarms of objects this node just began to
// serve (a partition it acquired) fire here, the overdue ones at once. It
// does nothing before the scheduler starts (Start), which reads the whole
// index anyway.
func (s *Server) RescanAlarms() {
	s.mu.RLock()
	scheduler := s.alarms
	s.mu.RUnlock()
	if scheduler != nil {
		scheduler.Rescan()
	}
}

// SetServing sets what health checking answers while the server is not
// shutting down: SERVING (true, the default) or NOT_SERVING (false), for
// a node that fences itself (its lease may have expired) to stop load
// balancers from sending to it. Once Shutdown starts, health answers
// NOT_SERVING whatever SetServing says.
func (s *Server) SetServing(serving bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fenced = !serving
	if s.health == nil || s.closing.Load() {
		return
	}
	services := append([]string{durablev1connect.IDServiceName}, s.services...)
	if !serving {
		s.notServing(services)
		return
	}
	s.health.SetStatus("", grpchealth.StatusServing)
	for _, name := range services {
		s.health.SetStatus(name, grpchealth.StatusServing)
	}
}

// registered returns the registered classes.
func (s *Server) registered() []registeredClass {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]registeredClass, 0, len(s.classes))
	for _, ns := range s.classes {
		out = append(out, ns)
	}
	return out
}

func (s *Server) forgetAlarms(match func(objectkey.Key) bool) {
	s.mu.RLock()
	scheduler := s.alarms
	s.mu.RUnlock()
	if scheduler != nil {
		scheduler.Forget(func(k alarms.Key) bool { return match(k) })
	}
}

// movedError is the error of a call queued for an object whose partition
// this node lost.
func movedError(reason error) *connect.Error {
	if reason == nil {
		reason = errors.New("partition lost")
	}
	err := connect.NewError(connect.CodeUnavailable, fmt.Errorf("%w before the call ran, nothing was written: retry: %w", durable.ErrMoved, reason))
	return withKind(err, durable.KindMoved)
}

// evictMatching asks the objects match selects to leave memory once their
// mailboxes are empty, and returns how many are still in memory.
func (n *Namespace[S]) evictMatching(match func(objectkey.Key) bool) int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	left := 0
	for _, a := range n.resident {
		if match(a.key) {
			left++
			a.requestEviction()
		}
	}
	return left
}

// dropMatching takes the objects match selects out of memory at once:
// their uncommitted writes are discarded and their queued calls fail with
// movedError(reason).
func (n *Namespace[S]) dropMatching(match func(objectkey.Key) bool, reason error) {
	n.mu.Lock()
	var dropped []*actor[S]
	for _, a := range n.resident {
		if match(a.key) {
			dropped = append(dropped, a)
		}
	}
	err := movedError(reason)
	for _, a := range dropped {
		n.drop(a)
		n.srv.active.Add(-1)
		a.dropped.Store(err)
		a.poison(math.MaxInt64) // no batch of it commits from now on
	}
	n.mu.Unlock()
	for _, a := range dropped {
		a.failQueued(err)
		a.requestEviction() // wakes its loop, which sees dropped
	}
}

// failQueued fails the calls in a's mailbox with err.
func (a *actor[S]) failQueued(err error) {
	for _, c := range a.mailbox.drain() {
		c.err = err
		c.answer()
	}
}

// holds are the objects whose calls this node does not admit while it
// hands them off (Release) or after it lost them (Drop).
type holds struct {
	n       atomic.Int32 // len(list), read without the lock on every call
	mu      sync.Mutex
	list    []*hold
	changed chan struct{} // closed and replaced when list changes
}

type hold struct {
	match func([32]byte) bool
	// done is when Release returned: the hold ends when the placement
	// moves the objects, or holdGrace after done, whichever is first.
	done time.Time
}

// holdGrace bounds how long a finished hold lasts: long enough for the
// placement to stop naming this node once Release returned (the cluster
// node deletes its owner key at once), short enough that a partition
// that comes back to this node later is not held, which no call might
// otherwise notice (a hold ends on a call's remote answer).
const holdGrace = 2 * time.Second

// live reports whether x still holds calls at now.
func (x *hold) live(now time.Time) bool { return x.done.IsZero() || now.Sub(x.done) < holdGrace }

func (h *holds) add(match func([32]byte) bool) *hold {
	x := &hold{match: match}
	h.mu.Lock()
	h.list = append(h.list, x)
	h.n.Store(int32(len(h.list)))
	h.mu.Unlock()
	return x
}

func (h *holds) finish(x *hold) {
	h.mu.Lock()
	x.done = time.Now()
	h.mu.Unlock()
}

// lift ends the hold x.
func (h *holds) lift(x *hold) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, y := range h.list {
		if y == x {
			h.list = append(h.list[:i], h.list[i+1:]...)
			break
		}
	}
	h.n.Store(int32(len(h.list)))
	h.signal()
}

// signal wakes the calls waiting on a change. The caller holds h.mu.
func (h *holds) signal() {
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
	}
}

// held returns, when the object id is held, a channel closed on the next
// change of the holds; nil when it is not held.
func (h *holds) held(id [32]byte) <-chan struct{} {
	if h.n.Load() == 0 {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	var held bool
	kept := h.list[:0]
	for _, x := range h.list {
		if !x.live(now) { // past its grace: gone
			continue
		}
		kept = append(kept, x)
		held = held || x.match(id)
	}
	clear(h.list[len(kept):])
	h.list = kept
	h.n.Store(int32(len(h.list)))
	if !held {
		return nil
	}
	if h.changed == nil {
		h.changed = make(chan struct{})
	}
	return h.changed
}

// retire ends the finished holds of id, which the placement no longer
// places here: the hand-off is complete, and if the objects come back,
// their calls are admitted.
func (h *holds) retire(id [32]byte) {
	if h.n.Load() == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	kept := h.list[:0]
	for _, x := range h.list {
		if x.live(now) && !(!x.done.IsZero() && x.match(id)) {
			kept = append(kept, x)
		}
	}
	clear(h.list[len(kept):])
	h.list = kept
	h.n.Store(int32(len(h.list)))
	h.signal()
}
