package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/durablego/durable"
)

// The time limit of a call (WithCallTimeout).
//
// Every call that runs an object's code (a method, Fetch, Alarm, a
// WebSocket hook, Init) runs with a context whose deadline is the earlier
// of its caller's and its start plus the limit. The context is the call's
// own (callCtx, inside the call, so that the hot path allocates nothing
// for it), and one timer per object, the watchdog, ends it: at the limit
// the context's Err becomes DeadlineExceeded, which stops the object's SQL
// (SQLite polls it) and any code that watches ctx. A method that returns
// then fails like any other, with its writes undone.
//
// A method that ignores its context cannot be stopped: Go cannot kill a
// goroutine. At the limit plus a grace (limitGrace) the watchdog resets
// the object instead (reset): the call fails with DeadlineExceeded, the
// instance's storage is fenced (storage.Store.Fence: its open transaction
// is rolled back, and every later storage call of that instance fails), it
// leaves the namespace, and the calls queued behind it go to a fresh
// instance that reloads the object from storage. The stuck goroutine keeps
// running until the call returns, and then exits without touching
// anything: nothing it wrote is committed, nothing it sent on a WebSocket
// inside the call goes out, and Shutdown does not wait for it.

// limitGrace is how long past its limit a call may take to return before
// its object is reset: the time for a method that watches its context to
// unwind. A quarter of the limit, within [100ms, 2s].
func limitGrace(limit time.Duration) time.Duration {
	return min(max(limit/4, 100*time.Millisecond), 2*time.Second)
}

// callCtx is the context of a running call: its caller's (with the call
// chain), ended at the call's time limit, and when the call returns.
type callCtx struct {
	context.Context
	limit atomic.Int64 // UnixNano when the limit ends it
	// exact: limit counts from the call's own start. Calls after the first
	// of a batch count from the batch's start instead, which saves a clock
	// read per call on the hottest path; the watchdog gives such a call,
	// when it finds it past that limit, a full limit from then on (see
	// watch), so a call is never cut before its limit, and one that
	// ignores its context is reset within twice the limit and the grace.
	exact atomic.Bool
	state atomic.Int32
	// sig is the Done channel and what closes it, made by the first Done:
	// most calls never ask for it, and keeping it out of line keeps the
	// call, which holds this context, in a smaller size class.
	sig atomic.Pointer[ctxSignal]
}

// ctxSignal is the Done channel of a callCtx.
type ctxSignal struct {
	mu      sync.Mutex
	done    chan struct{}
	closed  bool
	stopped func() bool // stops the AfterFunc on the caller's context
}

// close closes the channel once; the caller holds mu.
func (d *ctxSignal) close() {
	if !d.closed {
		d.closed = true
		close(d.done)
	}
}

const (
	ctxLive    int32 = iota
	ctxExpired       // the limit passed: DeadlineExceeded
	ctxEnded         // the call returned: Canceled, as after a cancel func
)

func (c *callCtx) init(parent context.Context, limit time.Time, exact bool) {
	c.Context = parent
	c.limit.Store(limit.UnixNano())
	c.exact.Store(exact)
}

// Deadline is the earlier of the caller's and the limit's.
func (c *callCtx) Deadline() (time.Time, bool) {
	limit := time.Unix(0, c.limit.Load())
	if d, ok := c.Context.Deadline(); ok && d.Before(limit) {
		return d, true
	}
	return limit, true
}

func (c *callCtx) Err() error {
	switch c.state.Load() {
	case ctxExpired:
		return context.DeadlineExceeded
	case ctxEnded:
		if err := c.Context.Err(); err != nil {
			return err
		}
		return context.Canceled
	}
	return c.Context.Err()
}

func (c *callCtx) Done() <-chan struct{} {
	if d := c.sig.Load(); d != nil {
		return d.done
	}
	d := &ctxSignal{done: make(chan struct{})}
	if !c.sig.CompareAndSwap(nil, d) {
		return c.sig.Load().done
	}
	// Published before reading the state: an end that moved the state
	// first is seen here, and one that moves it later sees d (see end).
	d.mu.Lock()
	if c.state.Load() != ctxLive {
		d.close()
	} else if !d.closed && c.Context.Done() != nil {
		d.stopped = context.AfterFunc(c.Context, c.closeDone)
	}
	d.mu.Unlock()
	return d.done
}

// Value hides the standard library's cancelCtx of the caller, so that
// context.Cause reports this context's own error rather than the caller's
// (nil while the caller waits).
func (c *callCtx) Value(key any) any {
	if key == cancelCtxKey {
		return nil
	}
	return c.Context.Value(key)
}

func (c *callCtx) String() string { return "durable.callContext" }

func (c *callCtx) closeDone() {
	d := c.sig.Load()
	d.mu.Lock()
	d.close()
	d.mu.Unlock()
}

// end moves the context to state (expired or ended), once: from live, or
// from expired to ended, releasing what Done set up.
func (c *callCtx) end(state int32) {
	if !c.state.CompareAndSwap(ctxLive, state) && !(state == ctxEnded && c.state.CompareAndSwap(ctxExpired, state)) {
		return
	}
	d := c.sig.Load()
	if d == nil {
		return // Done, if called from now on, sees the state and closes at once
	}
	d.mu.Lock()
	d.close()
	stop := d.stopped
	d.stopped = nil
	d.mu.Unlock()
	if stop != nil && state == ctxEnded {
		stop()
	}
}

// cancelCtxKey is the key under which context.Cause looks for the nearest
// cancelCtx, found once by asking Cause itself.
var cancelCtxKey = func() any {
	var k keySpy
	_ = context.Cause(&k)
	return k.key
}()

type keySpy struct {
	context.Context
	key any
}

func (k *keySpy) Value(key any) any {
	if k.key == nil {
		k.key = key
	}
	return nil
}
func (k *keySpy) Err() error { return nil }

// enterCode marks c as running the object's code, under the time limit,
// and returns the context the code runs with.
func (a *actor[S]) enterCode(c *call[S], parent context.Context) context.Context {
	limit := a.ns.srv.opts.callTimeout
	if limit <= 0 {
		return parent
	}
	exact := a.batchStart.IsZero() // the first call of the batch
	if exact {
		a.batchStart = time.Now()
	}
	c.lim.init(parent, a.batchStart.Add(limit), exact)
	a.running.Store(c)
	a.arm(limit)
	return &c.lim
}

// exitCode marks c as returned, and reports false if the watchdog reset
// the object in the meantime: the calling goroutine then owns nothing any
// more and must return at once.
func (a *actor[S]) exitCode(c *call[S]) bool {
	if a.ns.srv.opts.callTimeout <= 0 {
		return true
	}
	if !a.running.CompareAndSwap(c, nil) {
		a.cut = true
		return false
	}
	c.lim.end(ctxEnded)
	return true
}

// arm starts the watchdog unless it is already running: it then fires at
// the limit of an earlier call, which ends no later than this one's.
func (a *actor[S]) arm(d time.Duration) {
	if !a.armed.Load() && a.armed.CompareAndSwap(false, true) {
		a.watchdog.Reset(d)
	}
}

// watch is the watchdog: it ends the running call's context at its
// limit, and resets the object if the call has not returned a grace later.
func (a *actor[S]) watch() {
	a.armed.Store(false)
	c := a.running.Load()
	if c == nil {
		return // idle: the next call arms it again
	}
	now := time.Now()
	limit := time.Unix(0, c.lim.limit.Load())
	overdue := limit.Add(limitGrace(a.ns.srv.opts.callTimeout))
	switch {
	case now.Before(limit):
		a.arm(limit.Sub(now))
	case !c.lim.exact.Load():
		// c counted from its batch's start, and may have started since:
		// it gets a full limit from now.
		full := a.ns.srv.opts.callTimeout
		c.lim.limit.Store(now.Add(full).UnixNano())
		c.lim.exact.Store(true)
		a.arm(full)
	case now.Before(overdue):
		c.lim.end(ctxExpired)
		a.arm(overdue.Sub(now))
	default:
		c.lim.end(ctxExpired)
		if a.running.CompareAndSwap(c, nil) { // else c returned just now
			a.reset(c, c.method != "Init", a.failure(c.method, connect.CodeDeadlineExceeded,
				fmt.Errorf("%w: the call ran past its time limit of %v and ignored its context: the object was reset and nothing of the call was kept", context.DeadlineExceeded, a.ns.srv.opts.callTimeout)))
		}
	}
}

// overran returns the error of call c, whose code returned err, if the
// time limit ended its context before it returned: DeadlineExceeded, which
// names the limit, whatever the error the code made of it (SQL that the
// limit interrupted fails with SQLite's own error, say).
func (a *actor[S]) overran(c *call[S], err error) (error, bool) {
	if a.ns.srv.opts.callTimeout <= 0 || c.lim.state.Load() != ctxExpired {
		return err, false
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return fmt.Errorf("%w (the call's time limit is %v)", err, a.ns.srv.opts.callTimeout), true
}

// reset takes the object out of service after stuck, a call whose code
// ignores its expired context, has overrun its limit; the watchdog (or
// Shutdown) won the running call from the object's goroutine, which owns
// nothing from then on. It fences the instance's storage, answers the
// calls of the batch in progress, and hands the calls still waiting to a
// fresh instance (when restart is set) or fails them.
func (a *actor[S]) reset(stuck *call[S], restart bool, stuckErr error) {
	n := a.ns
	limit := n.srv.opts.callTimeout
	n.srv.log.Error("durable: a call ignores its context and did not return in time: its object was reset, and the goroutine running the call is leaked until the call returns",
		"class", a.key.Class, "method", stuck.method, "id", a.obj.ID.String(), "limit", limit, "err", stuckErr)
	if a.store != nil {
		a.store.Fence()
	}

	// The batch in progress: the calls before stuck ran, but their writes
	// were to commit with its; those after it never ran.
	var rest []*call[S]
	found := false
	for i, c := range a.inBatch {
		if c == stuck {
			rest, found = a.inBatch[i+1:], true
			break
		}
		if c.err == nil {
			c.res, c.err = nil, a.failure(c.method, connect.CodeUnavailable,
				fmt.Errorf("nothing of the call was kept: it was to commit with a call to %s that overran its time limit, and the object was reset", stuck.method))
		}
		c.finish()
	}
	if !found {
		rest = a.inBatch // Init, before the batch ran
	}
	if restart {
		// The fresh instance reads what is committed: what the batches
		// before this one still write first.
		a.inflight.Wait()
	}

	n.mu.Lock()
	queued := append(append([]*call[S](nil), rest...), a.mailbox.drain()...)
	var fresh *actor[S]
	if n.actors[a.key.ID] == a {
		// Through drop and add, which keep resident (what eviction,
		// Release and Drop go through) the same set as actors.
		n.drop(a)
		if restart && len(queued) > 0 && !n.srv.closing.Load() {
			fresh = newActor(n, a.key)
			for len(queued) > 0 && fresh.mailbox.push(queued[0]) {
				queued = queued[1:]
			}
			n.add(fresh)
			n.m.activated()
			n.srv.actors.Add(1)
			go fresh.loop()
		} else {
			n.srv.active.Add(-1)
		}
	}
	n.mu.Unlock()

	why := fmt.Errorf("a call to %s overran its time limit of %v and the object was reset", stuck.method, limit)
	for _, c := range queued {
		switch {
		case n.srv.closing.Load():
			c.err = shutdownError()
		case restart:
			c.err = overloadedError(a.key, n.srv.opts.mailboxSize)
		default:
			c.err = a.failure(c.method, connect.CodeUnavailable, fmt.Errorf("activating the object: %w", why))
		}
		c.answer()
	}
	a.watchdog.Stop()
	a.release(evictReset)
	// Answered last, once the reset is complete and counted.
	stuck.err = stuckErr
	stuck.answer()
	n.srv.actors.Done() // for the stuck goroutine, which Shutdown need not wait for
}

// cutStuck resets, without a fresh instance, every object of n whose
// goroutine is still in its code: Shutdown calls it when its deadline
// passed, before it closes storage, so that no stuck call commits later.
func (n *Namespace[S]) cutStuck() {
	type victim struct {
		a *actor[S]
		c *call[S]
	}
	var victims []victim
	n.mu.RLock()
	for _, a := range n.actors {
		if c := a.running.Load(); c != nil && a.running.CompareAndSwap(c, nil) {
			victims = append(victims, victim{a, c})
		}
	}
	n.mu.RUnlock()
	for _, v := range victims {
		v.c.lim.end(ctxExpired)
		v.a.reset(v.c, false, withKind(connect.NewError(connect.CodeUnavailable,
			fmt.Errorf("%w: the call still ran when Shutdown's deadline passed, and nothing of it was kept", durable.ErrShutdown)), "shutdown"))
	}
}

// errCut is what load returns to a goroutine that lost its object to a
// reset while Init ran; nobody sees it.
var errCut = errors.New("server: the object was reset")
