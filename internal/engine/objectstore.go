package engine

import (
	"context"
	"errors"
	"sync/atomic"
)

// ObjectStore is where the state, key-value storage and alarm of objects of
// classes without SQL live: the seam between the runtime, which buffers an
// object's writes in memory and holds its callers' answers until they are
// durable (the output gate), and the bytes. The node database ([DB]) is one
// implementation; the cluster module's etcd store is another. Open the
// store of one object on it with [NewStore].
//
// Reads see what is committed: the runtime looks through the writes it
// still buffers first, so an implementation never sees a read of a write
// it has not acknowledged. Commit is asynchronous: it queues a [Batch] and
// returns; the batch is acknowledged, once, by [Batch.Done], with nil only
// once all of it is durable. Batches of one object are committed in the
// order they are given to Commit. Before applying a batch an implementation
// asks [Batch.Valid]: a batch no longer valid (its object was reset after
// an earlier batch of it failed) is acknowledged with [ErrStale] and not
// written. A batch is all or nothing: if Done reports an error, nothing of
// it is written, except where an implementation documents an ambiguous
// failure (a timeout after which it cannot tell).
//
// Implementations are safe for concurrent use.
type ObjectStore interface {
	// LoadState returns the object's state, and whether it has one.
	LoadState(ctx context.Context, class string, id [32]byte) (state []byte, found bool, err error)
	// Get returns the value of one key of the object, and whether it exists.
	Get(ctx context.Context, class string, id [32]byte, key string) (value []byte, found bool, err error)
	// Scan calls fn for the object's entries in r, in the byte order of
	// keys (descending when r.Reverse), until fn returns false or limit
	// entries were passed (limit < 0: no limit). fn may keep value.
	Scan(ctx context.Context, class string, id [32]byte, r KeyRange, limit int, fn func(key string, value []byte) bool) error
	// Alarm returns the object's committed alarm, in Unix milliseconds,
	// and whether it has one.
	Alarm(ctx context.Context, class string, id [32]byte) (at int64, found bool, err error)
	// Commit queues b to be committed; see the type's documentation. It
	// may block while the store is saturated, which slows the objects that
	// write faster than it commits; it never blocks on b's own commit.
	Commit(b *Batch)
	// DueAlarms returns up to limit alarms of the store's index that come
	// after the entry after and are due no later than until (Unix
	// milliseconds), in the order of DueAlarm.Less. The alarm scheduler
	// pages through the index with it.
	DueAlarms(ctx context.Context, after DueAlarm, until int64, limit int) ([]DueAlarm, error)
	// Objects returns the IDs of the objects of class that hold
	// something (state, a key or an alarm), in byte order, starting after
	// after (nil: from the first), at most limit of them. Test kits and
	// tools list objects with it; no call path does.
	Objects(ctx context.Context, class string, after []byte, limit int) ([][32]byte, error)
	// Meta returns the value recorded under key by SetMeta, and whether
	// there is one.
	Meta(ctx context.Context, key string) (value string, found bool, err error)
	// SetMeta records value under key, replacing any other, and returns
	// once it is durable. Servers record facts about their data, such as
	// the fingerprint of the ID secret, with it; it is not for objects.
	SetMeta(ctx context.Context, key, value string) error
	// Empty reports whether the store holds no object's state, key or
	// alarm.
	Empty(ctx context.Context) (bool, error)
	// Stats returns what the store has committed so far; cheap enough for
	// every metrics scrape.
	Stats() Stats
}

// ErrTooLarge fails a batch whose writes exceed what the store commits in
// one atomic write (the etcd store's request size and operation count):
// nothing of it is written. On one node the SQLite database has no such
// limit. Servers report it as ResourceExhausted.
var ErrTooLarge = errors.New("storage: the call's writes exceed what the store commits at once")

// ErrUnavailable fails a read or a commit that the store cannot serve now:
// it lost the object (another node owns it), or cannot reach the cluster
// holding it in time. Servers report it as Unavailable: a retry, later or
// through another node, may succeed. After a commit timed out the writes
// may nonetheless be durable (the store says so in the error).
var ErrUnavailable = errors.New("storage: the object's store is unavailable")

// ErrStale acknowledges a batch that was skipped because its object was
// reset after an earlier batch of it failed to commit.
var ErrStale = errors.New("storage: batch discarded after an earlier commit of the object failed")

// KeyRange is a range of an object's keys, [Lo, Hi) in their byte order;
// without HasHi it has no upper bound.
type KeyRange struct {
	Lo      string
	Hi      string
	HasHi   bool
	Reverse bool // scan from the top down
}

func (r keyRange) export() KeyRange {
	return KeyRange{Lo: r.lo, Hi: r.hi, HasHi: r.hasHi, Reverse: r.reverse}
}

func (r KeyRange) internal() keyRange {
	return keyRange{lo: r.Lo, hi: r.Hi, hasHi: r.HasHi, reverse: r.Reverse}
}

// Batch is the writes of one or more calls to one object, committed
// atomically, and the callback that acknowledges them. The runtime builds
// batches; an [ObjectStore] reads them with the methods below and must not
// keep them after Done.
type Batch struct {
	class      string
	id         [32]byte
	state      []byte // replaces the stored state when writeState is set
	writeState bool
	kv         *layer      // key-value writes; cleared deletes every key first
	valid      func() bool // asked just before applying; false: skip, ErrStale
	done       func(error) // called once, from the writer goroutine
	side       *sideWrite  // a rare write beside the object's data; nil on the hot path
	// acked, when set, is the object's last committed batch: Done stores
	// seq in it on success before calling done (no closure per batch).
	acked *atomic.Uint64
	seq   uint64
}

func (b *Batch) empty() bool { return !b.writeState && b.kv.empty() && b.side == nil }

// Class returns the class of the batch's object.
func (b *Batch) Class() string { return b.class }

// ID returns the ID of the batch's object.
func (b *Batch) ID() [32]byte { return b.id }

// State returns the object's new state, and whether the batch replaces
// the stored one (an empty state is a state).
func (b *Batch) State() (state []byte, write bool) { return b.state, b.writeState }

// Cleared reports whether the batch deletes every key of the object
// (DeleteAll) before its writes.
func (b *Batch) Cleared() bool { return b.kv.cleared }

// Writes calls fn for each key the batch puts or deletes, in no order:
// a batch writes each key at most once. value is nil for a delete.
func (b *Batch) Writes(fn func(key string, value []byte, deleted bool)) {
	for k, v := range b.kv.writes {
		fn(k, v.data, v.deleted)
	}
}

// NumWrites returns how many keys the batch puts or deletes.
func (b *Batch) NumWrites() int { return len(b.kv.writes) }

// Alarm returns the batch's change to the object's alarm, and false when
// it leaves the alarm as it is. DeleteAll deletes the alarm too.
func (b *Batch) Alarm() (change AlarmChange, changed bool) {
	switch b.kv.alarm.kind {
	case alarmSet:
		return AlarmChange{Set: true, At: b.kv.alarm.at}, true
	case alarmDeleted:
		return AlarmChange{}, true
	}
	return AlarmChange{}, false
}

// Valid reports whether the batch is still to be written; a store asks
// just before applying it and acknowledges an invalid one with ErrStale.
func (b *Batch) Valid() bool { return b.valid == nil || b.valid() }

// Done acknowledges the batch: nil once all of it is durable, else why
// nothing of it was written. A store calls it exactly once.
func (b *Batch) Done(err error) {
	if err == nil && b.acked != nil {
		b.acked.Store(b.seq)
	}
	b.done(err)
}

// NewStore returns the store of one object, of a class without SQL, whose
// state and key-value storage live in os.
func NewStore(os ObjectStore, class string, id [32]byte) *Store {
	n := &nodeStore{os: os, class: class, id: id}
	g := newGuarded(n, n, nil)
	g.atomicOnly = true
	kv := newKV(g)
	kv.flushed = &layer{}
	kv.acked = n.acked.Load
	kv.fence = g.fence
	n.kv = kv
	return &Store{KV: kv, SQL: &SQL{}, b: g}
}
