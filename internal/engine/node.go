package engine

import (
	"context"
	"sync/atomic"
)

var _ ObjectStore = (*DB)(nil)

// Store returns the store of an object whose state and key-value storage
// live in the node database.
func (db *DB) Store(class string, id [32]byte) *Store { return NewStore(db, class, id) }

// nodeStore is the backend of an object whose state and key-value storage
// live in an ObjectStore: the node database or a cluster's store.
type nodeStore struct {
	os    ObjectStore
	class string
	id    [32]byte
	seq   uint64        // batches submitted
	acked atomic.Uint64 // the last batch committed
	kv    *KV
	side  *sideWrite // for the next commit (Store.Catalog, Store.Forget)
}

func (n *nodeStore) loadState(ctx context.Context) ([]byte, bool, error) {
	return n.os.LoadState(ctx, n.class, n.id)
}

func (n *nodeStore) get(ctx context.Context, key string) ([]byte, bool, error) {
	return n.os.Get(ctx, n.class, n.id, key)
}

func (n *nodeStore) scan(ctx context.Context, kr keyRange, limit int, fn func(string, []byte) bool) error {
	return n.os.Scan(ctx, n.class, n.id, kr.export(), limit, fn)
}

func (n *nodeStore) alarm(ctx context.Context) (int64, bool, error) {
	return n.os.Alarm(ctx, n.class, n.id)
}

func (n *nodeStore) beginCall() error   { return nil }
func (n *nodeStore) endCall(bool) error { return nil }
func (n *nodeStore) needsCommit() bool  { return false }
func (n *nodeStore) initialized()       {}
func (n *nodeStore) reset()             { n.side = nil }
func (n *nodeStore) close() error       { return nil }

func (n *nodeStore) commit(state []byte, writeState bool, kv *layer, valid func() bool, done func(error)) {
	n.seq++
	seq := n.seq
	defer func() { n.side = nil }()
	if !kv.empty() {
		n.kv.flush(kv, seq)
	}
	n.os.Commit(&Batch{
		class:      n.class,
		id:         n.id,
		state:      state,
		writeState: writeState,
		kv:         kv,
		side:       n.side,
		valid:      valid,
		done:       done,
		acked:      &n.acked,
		seq:        seq,
	})
}

// LoadState returns an object's stored state, and whether there is one.
func (db *DB) LoadState(ctx context.Context, class string, id [32]byte) ([]byte, bool, error) {
	return withReader(ctx, db, func(r *reader) ([]byte, bool, error) { return r.loadState(class, id) })
}

// Get returns the value of one key of an object, and whether it exists.
func (db *DB) Get(ctx context.Context, class string, id [32]byte, key string) ([]byte, bool, error) {
	return withReader(ctx, db, func(r *reader) ([]byte, bool, error) { return r.get(class, id, key) })
}

// Scan calls fn for an object's entries in kr, in order, until fn returns
// false or limit entries were passed (limit < 0: no limit).
func (db *DB) Scan(ctx context.Context, class string, id [32]byte, kr KeyRange, limit int, fn func(string, []byte) bool) error {
	_, _, err := withReader(ctx, db, func(r *reader) ([]byte, bool, error) {
		return nil, false, r.scan(class, id, kr.internal(), limit, fn)
	})
	return err
}

// Alarm returns an object's committed alarm, in Unix milliseconds.
func (db *DB) Alarm(ctx context.Context, class string, id [32]byte) (int64, bool, error) {
	var at int64
	_, found, err := withReader(ctx, db, func(r *reader) ([]byte, bool, error) {
		var ok bool
		var err error
		at, ok, err = r.alarm(class, id)
		return nil, ok, err
	})
	return at, found, err
}

// Commit queues b for the next group commit of the writer goroutine, which
// commits many objects' batches in one SQLite transaction. It blocks while
// the queue is full; after Close, b is acknowledged with ErrClosed at once.
func (db *DB) Commit(b *Batch) { db.submit(b) }

// withReader runs fn on a pooled read-only connection. A panic of SQLite
// (out of memory, reading a huge value) is fn's error, and the connection
// is replaced by a fresh one, which gives back the memory it grew to.
func withReader(ctx context.Context, db *DB, fn func(*reader) ([]byte, bool, error)) (b []byte, found bool, err error) {
	var r *reader
	select {
	case r = <-db.readers:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	defer func() {
		if p := recover(); p != nil {
			b, found, err = nil, false, recovered(p)
			r = db.replaceReader(r)
		}
		db.readers <- r
	}()
	return fn(r)
}

// replaceReader closes r after a panic and returns a new connection in its
// place; if none can be opened, r itself, which SQLite left usable.
func (db *DB) replaceReader(r *reader) *reader {
	fresh, err := openReader(db.path)
	if err != nil {
		return r
	}
	quietly(r.close)
	return fresh
}
