package engine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// ErrFenced is what every operation of a fenced store returns: the server
// fenced it because a call of its object overran its time limit, and the
// object was reset. Nothing the fenced instance wrote is committed.
var ErrFenced = errors.New("storage: the object was reset after a call overran its time limit; this instance's storage is cut off")

// fence lets one goroutine cut a store off from the goroutine that drives
// it, which may be stuck in an object's code. Every operation of the
// backend runs holding mu, so that Fence waits for the one in progress and
// none starts after it: uncontended, a lock and an unlock per operation.
type fence struct {
	// atomicOnly: the backend has nothing a stuck goroutine could hold
	// (the node database, whose batches only the object's goroutine
	// submits, after its call returned), so operations only check cut,
	// without the lock: it is on every call of the hottest path.
	atomicOnly bool

	mu     sync.Mutex
	cut    atomic.Bool // set first, to interrupt the operation in progress
	closed bool        // under mu: the backend was closed by Fence
	// ictx is the interrupt context of SQL statements (see interruptible).
	ictx interruptCtx
}

func (f *fence) enter() error {
	if f.atomicOnly {
		if f.cut.Load() {
			return ErrFenced
		}
		return nil
	}
	f.mu.Lock()
	if f.cut.Load() {
		f.mu.Unlock()
		return ErrFenced
	}
	return nil
}

func (f *fence) exit() {
	if !f.atomicOnly {
		f.mu.Unlock()
	}
}

// interruptible returns the context for SQLite's interrupt while a
// statement of the object's code runs: ctx, that also ends when the store
// is fenced. SQLite polls its Err while the statement runs, so a runaway
// query stops at the fence even if the object passed a context that never
// ends. It must be reset with done.
func (f *fence) interruptible(ctx context.Context) context.Context {
	f.ictx.Context, f.ictx.f = ctx, f
	return &f.ictx
}

func (f *fence) done() { f.ictx.Context = nil }

type interruptCtx struct {
	context.Context
	f *fence
}

func (c *interruptCtx) Err() error {
	if c.f.cut.Load() {
		return context.Canceled
	}
	return c.Context.Err()
}

// Fence cuts the store off for good, from any goroutine: the operation in
// progress, if any, is interrupted (SQL statements) and waited for, the
// batch's open transaction is rolled back and the store closed, and every
// later operation, of the store, its KV and its SQL, fails with ErrFenced.
// Writes not yet handed to the database are never committed. The server
// fences the store of an object whose call overran its time limit, so that
// the goroutine still running that call can neither read nor commit while
// a fresh instance of the object takes over its file. It is the one method
// of a Store that is safe to call concurrently with the others.
func (s *Store) Fence() {
	f := s.b.fence
	f.cut.Store(true)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.closed = true
	s.b.b.close()
}

// guarded runs every operation of a backend under its store's fence.
type guarded struct {
	*fence
	b   backend
	src source
	tx  txHooks // nil for a backend without SQL savepoints
}

func newGuarded(b backend, src source, tx txHooks) *guarded {
	return &guarded{fence: &fence{}, b: b, src: src, tx: tx}
}

func (g *guarded) loadState(ctx context.Context) ([]byte, bool, error) {
	if err := g.enter(); err != nil {
		return nil, false, err
	}
	defer g.exit()
	return g.b.loadState(ctx)
}

func (g *guarded) beginCall() error {
	if err := g.enter(); err != nil {
		return err
	}
	defer g.exit()
	return g.b.beginCall()
}

func (g *guarded) endCall(ok bool) error {
	if err := g.enter(); err != nil {
		return err
	}
	defer g.exit()
	return g.b.endCall(ok)
}

func (g *guarded) needsCommit() bool {
	if g.enter() != nil {
		return false
	}
	defer g.exit()
	return g.b.needsCommit()
}

func (g *guarded) commit(state []byte, writeState bool, kv *layer, valid func() bool, done func(error)) {
	if err := g.enter(); err != nil {
		done(err)
		return
	}
	defer g.exit()
	g.b.commit(state, writeState, kv, valid, done)
}

func (g *guarded) initialized() {
	if g.enter() != nil {
		return
	}
	defer g.exit()
	g.b.initialized()
}

func (g *guarded) reset() {
	if g.enter() != nil {
		return
	}
	defer g.exit()
	g.b.reset()
}

func (g *guarded) close() error {
	if g.enter() != nil {
		return nil // Fence closed it
	}
	defer g.exit()
	return g.b.close()
}

func (g *guarded) get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := g.enter(); err != nil {
		return nil, false, err
	}
	defer g.exit()
	return g.src.get(ctx, key)
}

func (g *guarded) scan(ctx context.Context, r keyRange, limit int, fn func(key string, value []byte) bool) error {
	if err := g.enter(); err != nil {
		return err
	}
	defer g.exit()
	return g.src.scan(ctx, r, limit, fn)
}

func (g *guarded) alarm(ctx context.Context) (int64, bool, error) {
	if err := g.enter(); err != nil {
		return 0, false, err
	}
	defer g.exit()
	return g.src.alarm(ctx)
}

func (g *guarded) beginTx() error {
	if err := g.enter(); err != nil {
		return err
	}
	defer g.exit()
	return g.tx.beginTx()
}

func (g *guarded) endTx(commit bool) error {
	if err := g.enter(); err != nil {
		return err
	}
	defer g.exit()
	return g.tx.endTx(commit)
}

func (g *guarded) rolledBack() {
	if g.enter() != nil {
		return
	}
	defer g.exit()
	g.tx.rolledBack()
}

func (g *guarded) deleteAll() error {
	if err := g.enter(); err != nil {
		return err
	}
	defer g.exit()
	return g.tx.deleteAll()
}
