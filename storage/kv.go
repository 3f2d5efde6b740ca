package storage

import (
	"context"
	"time"

	"github.com/durablego/durable/internal/engine"
)

// KV is the key-value storage of one object, Cloudflare's ctx.storage. It is
// reachable from a method as Object.Storage and valid only during the call
// it was passed to, on the object's goroutine.
//
// Writes are buffered in memory, in layers (the current batch of calls, the
// current call, each open Transaction), and reads look through the layers
// before the database, so a call always reads its own writes. A call's
// writes join the batch when it succeeds and vanish when it fails; the
// batch is committed with the state, in one transaction.
//
// Keys are non-empty UTF-8 strings, ordered by their bytes. As on
// Cloudflare, the limits depend on the class: keys are at most MaxKeySize
// bytes and values MaxValueSize bytes for a class without SQL, and a key and
// its value together at most MaxSQLEntrySize bytes for a class with SQL
// (Cloudflare's SQLite-backed storage). The typed helpers
// GetProto, PutProto, GetJSON and PutJSON encode values.
type KV engine.KV

// ListOptions selects the entries List returns. Bounds combine: an entry
// is listed when it has the prefix, is at or after Start (or after
// StartAfter), and before End.
type ListOptions struct {
	// Prefix keeps the keys that start with it.
	Prefix string
	// Start is the first key to list, inclusive.
	Start string
	// StartAfter lists the keys after it; it excludes Start.
	StartAfter string
	// End is the key to stop before, exclusive; "" means no end.
	End string
	// Limit caps the number of entries; 0 means no limit.
	Limit int
	// Reverse lists in descending key order, with the same bounds.
	Reverse bool
}

// Entry is one key and its value.
type Entry struct {
	Key   string
	Value []byte
}

// Get returns the value of key, and whether it exists.
func (kv *KV) Get(ctx context.Context, key string) ([]byte, bool, error) {
	return (*engine.KV)(kv).Get(ctx, key)
}

// GetMany returns the values of the keys that exist; missing keys are left
// out of the map.
func (kv *KV) GetMany(ctx context.Context, keys []string) (map[string][]byte, error) {
	return (*engine.KV)(kv).GetMany(ctx, keys)
}

// Put sets the value of key.
func (kv *KV) Put(ctx context.Context, key string, value []byte) error {
	return (*engine.KV)(kv).Put(ctx, key, value)
}

// PutMany sets several keys at once: all of them, or none if one is invalid.
func (kv *KV) PutMany(ctx context.Context, entries map[string][]byte) error {
	return (*engine.KV)(kv).PutMany(ctx, entries)
}

// Delete removes key and reports whether it existed.
func (kv *KV) Delete(ctx context.Context, key string) (bool, error) {
	return (*engine.KV)(kv).Delete(ctx, key)
}

// DeleteMany removes the keys and reports how many existed, each key
// counted once however often it is listed.
func (kv *KV) DeleteMany(ctx context.Context, keys []string) (int, error) {
	return (*engine.KV)(kv).DeleteMany(ctx, keys)
}

// DeleteAll removes every key of the object and its alarm and, for a class
// with SQL, its whole SQL database, as Cloudflare's deleteAll does: every
// table, index, view and trigger is dropped at once, so the rest of the
// call, and every later one, sees an empty database, and once the batch
// commits the file is compacted. Like every write, it is undone if the
// call fails. The object's state is not storage in this sense: a method
// that wants it reset sets it. It fails with ErrDeleteAllInTransaction
// inside a Transaction, as on Cloudflare.
func (kv *KV) DeleteAll(ctx context.Context) error {
	return (*engine.KV)(kv).DeleteAll(ctx)
}

// List returns the entries opts selects, in ascending key order (descending
// with Reverse).
func (kv *KV) List(ctx context.Context, opts ListOptions) ([]Entry, error) {
	entries, err := (*engine.KV)(kv).List(ctx, engine.ListOptions(opts))
	out := make([]Entry, len(entries))
	for i, e := range entries {
		out[i] = Entry(e)
	}
	return out, err
}

// Transaction runs fn with all its writes applied atomically: they are
// undone if fn returns an error, panics, or calls Rollback. Reads inside fn
// see fn's own writes. Transactions nest: an inner one that rolls back
// undoes only its own writes. For objects with SQL, fn's SQL writes are in
// the same transaction (a savepoint).
//
// Every call is a transaction already; Transaction is for undoing part of a
// call while keeping the rest, as Cloudflare's storage.transaction is.
func (kv *KV) Transaction(ctx context.Context, fn func(tx *KV) error) (err error) {
	return (*engine.KV)(kv).Transaction(ctx, func(tx *engine.KV) error { return fn((*KV)(tx)) })
}

// Rollback marks the innermost open Transaction to be undone when its
// function returns, whatever it returns. From then until it returns, every
// operation of the storage, key-value and SQL, fails with ErrRolledBack, as
// on Cloudflare, where a rolled back transaction cannot be used again.
// Outside a transaction it does nothing: to undo a whole call, return an
// error from the method.
func (kv *KV) Rollback() {
	(*engine.KV)(kv).Rollback()
}

// SetAlarm schedules the object's alarm at t, replacing any other: an
// object has at most one. It is one of the call's writes: committed with
// them, undone with them. Alarms have millisecond precision; a time in the
// past is stored as now, as Cloudflare does (GetAlarm then returns now),
// and fires at once: an alarm is never due before it was set, so a
// constant past time cannot sort ahead of every other object's alarms.
func (kv *KV) SetAlarm(ctx context.Context, t time.Time) error {
	return (*engine.KV)(kv).SetAlarm(ctx, t)
}

// GetAlarm returns the time of the object's alarm, and false when it has
// none.
func (kv *KV) GetAlarm(ctx context.Context) (time.Time, bool, error) {
	return (*engine.KV)(kv).GetAlarm(ctx)
}

// DeleteAlarm cancels the object's alarm, if it has one.
func (kv *KV) DeleteAlarm(ctx context.Context) error {
	return (*engine.KV)(kv).DeleteAlarm(ctx)
}
