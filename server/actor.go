package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/durablego/durable"
	"github.com/durablego/durable/internal/callchain"
	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/objectkey"
	"github.com/durablego/durable/internal/sockets"
	"github.com/durablego/durable/storage"
	"github.com/durablego/durable/websocket"
)

// actor is one active object: its mailbox and the goroutine that runs its
// calls one at a time.
type actor[S proto.Message] struct {
	ns      *Namespace[S]
	key     objectkey.Key
	mailbox *mailbox[*call[S]]
	evict   chan struct{} // a request to leave memory when idle
	slot    int           // index in ns.resident, under the namespace lock

	// Owned by the actor's goroutine.
	store *engine.Store // nil until the first load
	obj   durable.Object[S]
	last  []byte // the state's encoding after the last successful call
	dirty bool   // no stored state: the first batch that writes stores it too
	epoch int64  // incremented each time state is reloaded from storage
	batch []*call[S]
	cat   catalogState // the object's catalog entry, as far as known
	// reload: the next batch reloads the object from storage, as after a
	// failed commit (an operator deleted it: see Namespace.forget).
	reload bool

	// poisoned is the latest epoch whose writes failed to commit: batches
	// of that epoch still queued in storage are discarded, and the actor
	// reloads its state before running more calls.
	poisoned atomic.Int64
	pending  atomic.Int64   // batches submitted and not yet acknowledged
	inflight sync.WaitGroup // the same, to wait on
	lastUsed atomic.Int64   // UnixNano of the last delivery, for eviction
	evicting atomic.Bool    // asked to leave; not a candidate again
	// dropped is set, with the error of its calls, once the actor's
	// partition was lost (Server.Drop): it is out of the namespace already,
	// and fails what it pops instead of running it.
	dropped atomic.Pointer[connect.Error]

	// The time limit of calls (timeout.go). running is the call whose
	// code runs, which the object's goroutine and the watchdog (or
	// Shutdown) race to take back: whoever swaps it out owns the actor.
	running  atomic.Pointer[call[S]]
	armed    atomic.Bool // the watchdog timer is set
	watchdog *time.Timer // nil without a limit
	cut      bool        // the goroutine lost the race: it owns nothing
	inBatch  []*call[S]  // the batch in progress, for the watchdog
	// batchStart is when the batch's first call started running its code,
	// zero until then: the base of the time limit of the batch's later
	// calls (see callCtx.exact).
	batchStart time.Time
}

func newActor[S proto.Message](n *Namespace[S], key objectkey.Key) *actor[S] {
	a := &actor[S]{
		ns:      n,
		key:     key,
		mailbox: newMailbox[*call[S]](n.srv.opts.mailboxSize),
		evict:   make(chan struct{}, 1),
		epoch:   1,
	}
	a.obj.ID = durable.IDFromBytes(key.Class, key.ID, "")
	a.obj.Sockets = (*websocket.Sockets)(n.srv.sockets.Sockets(key))
	a.lastUsed.Store(time.Now().UnixNano())
	if n.srv.opts.callTimeout > 0 {
		a.watchdog = time.AfterFunc(time.Duration(1<<63-1), a.watch)
	}
	return a
}

// deliver queues c, or fails at once when the mailbox is full. The caller
// holds the namespace lock.
func (a *actor[S]) deliver(c *call[S]) error {
	if !a.mailbox.push(c) {
		return overloadedError(a.key, a.mailbox.limit)
	}
	a.lastUsed.Store(time.Now().UnixNano())
	return nil
}

func (a *actor[S]) requestEviction() {
	a.evicting.Store(true)
	select {
	case a.evict <- struct{}{}:
	default:
	}
}

func (a *actor[S]) loop() {
	defer func() {
		if !a.cut { // else reset answered for the goroutine
			a.ns.srv.actors.Done()
		}
	}()
	if err := a.load(); err != nil {
		if !a.cut {
			a.abandon(err)
		}
		return
	}
	timeout := a.ns.srv.opts.idleTimeout
	idle := time.NewTimer(timeout)
	defer idle.Stop()
	shutdown := a.ns.srv.shutdown
	leaving := false
	why := evictIdle // the first reason to leave, for the metrics
	for {
		if err := a.dropped.Load(); err != nil {
			a.failQueued(err)
			a.inflight.Wait()
			a.release(evictFailed)
			return
		}
		if c, ok := a.mailbox.pop(); ok {
			if a.runBatch(c); a.cut {
				return
			}
			idle.Reset(timeout)
			continue
		}
		if leaving && a.leave(why) {
			return
		}
		select {
		case <-a.mailbox.ready:
		case <-idle.C:
			leaving = true
		case <-a.evict:
			if !leaving {
				why = evictCapacity
			}
			leaving = true
		case <-shutdown:
			shutdown = nil
			if !leaving {
				why = evictShutdown
			}
			leaving = true
		}
	}
}

// leave waits until the actor's writes are durable, so that a reactivation
// reads them, and then takes it out of memory unless a call arrived.
func (a *actor[S]) leave(why evictReason) bool {
	a.inflight.Wait()
	if !a.ns.remove(a) {
		return false
	}
	a.release(why)
	return true
}

// release lets go of what the actor holds once it is out of the namespace,
// its socket handle and its storage, and counts why it left.
func (a *actor[S]) release(why evictReason) {
	a.ns.m.evicted(why)
	a.ns.srv.sockets.Release((*sockets.Sockets)(a.obj.Sockets))
	if a.watchdog != nil {
		a.watchdog.Stop()
	}
	if a.store == nil {
		return
	}
	if err := a.store.Close(); err != nil {
		a.ns.srv.log.Warn("durable: closing an object's storage", "class", a.key.Class, "id", a.obj.ID.String(), "err", err)
	}
}

// abandon takes an actor that could not activate out of memory and fails
// the calls that were waiting for it.
func (a *actor[S]) abandon(err error) {
	a.ns.mu.Lock()
	if a.ns.actors[a.key.ID] == a { // else Drop took it out already
		a.ns.drop(a)
		a.ns.srv.active.Add(-1)
	}
	a.ns.mu.Unlock()
	a.release(evictFailed)
	code := failureCode(err) // ResourceExhausted when no SQL file could be had
	for c, ok := a.mailbox.pop(); ok; c, ok = a.mailbox.pop() {
		c.err = a.failure(c.method, code, err)
		c.answer()
	}
}

// load reads the object's state from storage, or builds it with the Init
// hook for a new object.
func (a *actor[S]) load() error {
	if a.store == nil {
		store, err := a.ns.openStore(a)
		if err != nil {
			return err
		}
		a.store = store
		a.obj.Storage, a.obj.SQL = (*storage.KV)(store.KV), (*storage.SQL)(store.SQL)
	}
	if err := a.loadCatalog(); err != nil {
		return err
	}
	enc, found, err := a.store.LoadState(context.Background())
	if err != nil {
		return err
	}
	state := a.ns.newState()
	if found {
		if err := proto.Unmarshal(enc, state); err != nil {
			return fmt.Errorf("stored state of %s does not decode as %s: %w", a.key, state.ProtoReflect().Descriptor().FullName(), err)
		}
		a.obj.State, a.last, a.dirty = state, enc, false
		return nil
	}
	a.obj.State, a.last, a.dirty = state, nil, false
	if a.ns.init == nil {
		return nil
	}
	if err := a.runInit(); err != nil {
		return err
	}
	if a.last, err = a.marshalState(); err != nil {
		return fmt.Errorf("Init: %w", err)
	}
	// Init's writes wait in memory for a call that writes something: an
	// object only read is never stored.
	a.store.Initialized()
	a.dirty = true
	return nil
}

// runInit runs the Init hook as a call of its own: its writes join the
// first batch that writes, or vanish if it fails.
func (a *actor[S]) runInit() (err error) {
	if err := a.store.BeginCall(); err != nil {
		return err
	}
	ic := newCall[S](context.Background(), "Init", nil) // answered by a reset only
	defer func() {
		if r := recover(); r != nil {
			a.logPanic("Init", r)
			err = fmt.Errorf("Init panicked: %v", r)
		}
		if !a.exitCode(ic) {
			err = errCut
			return
		}
		if endErr := a.store.EndCall(err == nil); endErr != nil && err == nil {
			err = endErr
		}
	}()
	if err := a.ns.init.Init(a.enterCode(ic, callchain.With(context.Background(), a.key)), &a.obj); err != nil {
		err, _ = a.overran(ic, err)
		return fmt.Errorf("Init: %w", err)
	}
	if err := a.ns.srv.validate(a.obj.State); err != nil {
		return fmt.Errorf("Init left an invalid state: %w", err)
	}
	return nil
}

// runBatch runs first and the calls queued behind it, up to the batch
// limit, and hands their writes to storage as one batch. The callers are
// answered when storage acknowledges it: the output gate.
//
// If the watchdog resets the object while a call runs, runBatch returns
// with a.cut set once the call returns, touching nothing more.
func (a *actor[S]) runBatch(first *call[S]) {
	calls := append(a.batch[:0], first)
	for len(calls) < a.ns.srv.opts.maxBatch {
		c, ok := a.mailbox.pop()
		if !ok {
			break
		}
		calls = append(calls, c)
	}
	a.batch = calls[:0]
	a.inBatch = calls
	a.batchStart = time.Time{}
	defer func() {
		if !a.cut { // else the watchdog owns it
			a.inBatch = nil
		}
	}()

	if a.poisoned.Load() >= a.epoch || a.reload {
		a.reload = false
		a.inflight.Wait()
		a.store.Reset()
		if err := a.load(); a.cut {
			return
		} else if err != nil {
			for _, c := range calls {
				c.err = a.failure(c.method, connect.CodeInternal, fmt.Errorf("reloading state after a failed commit: %w", err))
				c.answer()
			}
			return
		}
		a.epoch++
	}

	write := false // the state changed
	hub := a.ns.srv.sockets
	for _, c := range calls {
		c.queued()
		if err := c.ctx.Err(); err != nil {
			c.err = connect.NewError(codeOf(err), err)
			continue
		}
		if c.name != "" && a.obj.ID.Name() == "" {
			a.obj.ID = durable.IDFromBytes(a.key.Class, a.key.ID, c.name)
		}
		if err := a.store.BeginCall(); err != nil {
			c.err = a.failure(c.method, connect.CodeInternal, err)
			continue
		}
		hub.Begin((*sockets.Sockets)(a.obj.Sockets), a.obj.ID.Name())
		res, err := a.exec(c)
		if !a.exitCode(c) {
			return // reset: the watchdog answered the batch
		}
		var enc []byte
		if err == nil {
			if err = a.ns.srv.validate(a.obj.State); err != nil {
				err = a.failure(c.method, connect.CodeInvalidArgument, fmt.Errorf("the call would leave an invalid state: %w", err))
			} else if enc, err = a.marshalState(); err != nil {
				err = a.failure(c.method, codeOf(err), err)
			}
		}
		c.fx = hub.End((*sockets.Sockets)(a.obj.Sockets), err == nil)
		if endErr := a.store.EndCall(err == nil); endErr != nil {
			// The batch's transaction is gone (SQLite aborts it on a full
			// database): fail the whole batch, with this call's error as
			// the cause, and start again from what storage holds.
			cause := endErr
			var rpc *durable.RPCError
			if errors.As(err, &rpc) {
				cause = rpc.Err
			}
			a.failBatch(calls, cause)
			return
		}
		if err != nil {
			c.err = err
			a.restore()
			continue
		}
		if !bytes.Equal(enc, a.last) {
			a.last, write = enc, true
		}
		c.res = res
	}

	if !write && !a.store.Dirty() && a.pending.Load() == 0 {
		// Nothing to write and nothing earlier still in flight: what the
		// callers saw is already durable, or, for an object never written,
		// Init's alone and kept for later.
		for _, c := range calls {
			c.finish()
		}
		return
	}
	write = write || a.dirty
	a.dirty = false
	if err := a.recordCatalog(); err != nil {
		a.failBatch(calls, err)
		return
	}
	a.submit(append([]*call[S](nil), calls...), write)
}

// failBatch fails every call of a batch that can no longer commit, and has
// the next batch reload the object from storage.
func (a *actor[S]) failBatch(calls []*call[S], cause error) {
	a.poison(a.epoch)
	code := failureCode(cause)
	for _, c := range calls {
		c.res, c.err = nil, a.failure(c.method, code, fmt.Errorf("nothing of the call, or of the calls committed with it, was kept: %w", cause))
		c.finish()
	}
	a.restore()
}

func (a *actor[S]) submit(calls []*call[S], write bool) {
	epoch := a.epoch
	a.pending.Add(1)
	a.inflight.Add(1)
	a.store.Commit(a.last, write, func() bool { return a.poisoned.Load() < epoch },
		func(err error) {
			if err != nil {
				a.poison(epoch)
				code := failureCode(err)
				for _, c := range calls {
					if c.err == nil {
						c.res, c.err = nil, a.failure(c.method, code, fmt.Errorf("its writes were not committed, and nothing of it was kept: %w", err))
					}
				}
			}
			for _, c := range calls {
				c.finish()
			}
			a.pending.Add(-1)
			a.inflight.Done()
		})
}

func (a *actor[S]) poison(epoch int64) {
	for {
		old := a.poisoned.Load()
		if old >= epoch || a.poisoned.CompareAndSwap(old, epoch) {
			return
		}
	}
}

// exec runs one call, turning its error or panic into an *RPCError.
func (a *actor[S]) exec(c *call[S]) (res any, err error) {
	defer func() {
		if r := recover(); r != nil {
			a.logPanic(c.method, r)
			res, err = nil, a.failure(c.method, connect.CodeInternal, fmt.Errorf("panic: %v", r))
		}
	}()
	res, err = c.run(a.enterCode(c, callchain.With(c.ctx, a.key)), &a.obj)
	if err != nil {
		code := codeOf(err)
		if limited, ok := a.overran(c, err); ok {
			err, code = limited, connect.CodeDeadlineExceeded
		}
		return nil, a.failure(c.method, code, err)
	}
	return res, nil
}

// restore puts the state back as it was after the last successful call.
func (a *actor[S]) restore() {
	state := a.ns.newState()
	if err := proto.Unmarshal(a.last, state); err != nil {
		// a.last was produced by marshal; this cannot fail short of memory
		// corruption.
		panic(fmt.Sprintf("durable: state of %s no longer decodes: %v", a.key, err))
	}
	a.obj.State = state
}

func (a *actor[S]) logPanic(method string, r any) {
	a.ns.srv.log.Error("durable: object panicked", "class", a.key.Class, "method", method,
		"id", a.obj.ID.String(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
}

func (a *actor[S]) failure(method string, code connect.Code, err error) *durable.RPCError {
	return rpcError(a.key.Class, method, code, err)
}

// rpcError reports a failed call. Its Err carries code as a *connect.Error
// too, so that connect.CodeOf agrees with RPCError.Code. An error Durable
// makes Internal (the method's error did not carry that code) is a failure
// of Durable's own: it matches durable.ErrInternal.
func rpcError(class, method string, code connect.Code, err error) *durable.RPCError {
	msg := err.Error()
	var ce *connect.Error
	if errors.As(err, &ce) {
		msg = ce.Message()
	}
	if connect.CodeOf(err) != code {
		err = connect.NewError(code, internal(code, err))
	}
	return &durable.RPCError{Class: class, Method: method, Code: code, Message: msg, Err: err}
}

// codeOf returns the Connect code a method's error carries: that of a
// nested object call, of a *connect.Error, or of a context error.
func codeOf(err error) connect.Code {
	var rpc *durable.RPCError
	if errors.As(err, &rpc) {
		return rpc.Code
	}
	if code := connect.CodeOf(err); code != connect.CodeUnknown {
		return code
	}
	var invalid *protovalidate.ValidationError
	switch {
	case errors.Is(err, context.Canceled):
		return connect.CodeCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return connect.CodeDeadlineExceeded
	case errors.Is(err, engine.ErrInvalid), errors.As(err, &invalid):
		return connect.CodeInvalidArgument
	case errors.Is(err, engine.ErrUnavailable):
		return connect.CodeUnavailable
	case errors.Is(err, engine.ErrNoSQL), errors.Is(err, engine.ErrNotInCall), errors.Is(err, engine.ErrNoAlarmHandler):
		return connect.CodeFailedPrecondition
	case errors.Is(err, engine.ErrDatabaseFull), errors.Is(err, engine.ErrOutOfMemory), errors.Is(err, engine.ErrTooManyOpenFiles), errors.Is(err, engine.ErrTooLarge):
		return connect.CodeResourceExhausted
	}
	return connect.CodeUnknown
}

// failureCode is the code of a failure of Durable's own (storage, a
// reload): codeOf's, Internal when err carries none.
func failureCode(err error) connect.Code {
	if code := codeOf(err); code != connect.CodeUnknown {
		return code
	}
	return connect.CodeInternal
}

// marshalState encodes the object's state for storage, refusing a state
// over the server's cap: past a few MiB a state costs its size in memory
// and in writes on every call, and SQLite's memory per connection (256 MiB)
// bounds what one write can hold at all.
func (a *actor[S]) marshalState() ([]byte, error) {
	enc, err := marshal(a.obj.State)
	if err != nil {
		return nil, err
	}
	if limit := a.ns.srv.opts.maxStateSize; int64(len(enc)) > limit {
		return nil, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
			"%w: the state would take %d bytes, over the limit of %d (server.WithMaxStateSize); nothing was written",
			durable.ErrStateTooLarge, len(enc), limit))
	}
	return enc, nil
}

func marshal(m proto.Message) ([]byte, error) {
	enc, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("state does not encode: %w", err)
	}
	return enc, nil
}
