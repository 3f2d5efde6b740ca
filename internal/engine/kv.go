package engine

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"unicode/utf8"
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
type KV struct {
	src    source
	alarms bool // the object's class handles alarms
	// flushed holds writes handed to the node writer and perhaps not yet
	// committed; acked tells which of them are. nil for stores that commit
	// synchronously.
	flushed *layer
	acked   func() uint64
	stack   []*layer // [0] the batch, [1] the call, then transactions
	// base holds the writes of the Init hook of an object never written,
	// below the batch: they are committed with the first batch that writes
	// something else, and forgotten if none does.
	base    *layer
	txDepth int
	tx      txHooks
	spare   []*layer
	fence   *fence // the store's: once cut, every call fails
}

// txHooks let a store with SQL nest a savepoint in each Transaction, and
// its SQL follow Rollback and DeleteAll. Only stores with SQL have them.
type txHooks interface {
	beginTx() error
	endTx(commit bool) error
	// rolledBack: Rollback was called in the innermost Transaction.
	rolledBack()
	// deleteAll drops the object's SQL schema, in the call's savepoint.
	deleteAll() error
}

type version struct {
	data    []byte
	deleted bool
	seq     uint64 // in the flushed layer: the batch that wrote it
}

type layer struct {
	writes     map[string]version
	cleared    bool   // DeleteAll: what lies below is hidden
	clearedSeq uint64 // in the flushed layer: the batch that cleared
	alarm      alarmOp
	alarmSeq   uint64 // in the flushed layer: the batch that changed the alarm
	rollback   bool   // a transaction marked by Rollback
}

// alarmOp is a layer's change to the object's alarm.
type alarmOp struct {
	kind alarmKind
	at   int64 // Unix milliseconds, for alarmSet
}

type alarmKind uint8

const (
	alarmUnchanged alarmKind = iota
	alarmSet
	alarmDeleted
)

func (l *layer) empty() bool {
	return len(l.writes) == 0 && !l.cleared && l.alarm.kind == alarmUnchanged
}

// source reads what is committed.
type source interface {
	get(ctx context.Context, key string) ([]byte, bool, error)
	// scan calls fn for the entries in r, in order, until fn returns false
	// or limit entries were passed (limit < 0: no limit).
	scan(ctx context.Context, r keyRange, limit int, fn func(key string, value []byte) bool) error
	// alarm returns the committed alarm, in Unix milliseconds.
	alarm(ctx context.Context) (int64, bool, error)
}

func newKV(src source) *KV {
	kv := &KV{src: src}
	kv.stack = append(kv.stack, &layer{})
	return kv
}

func (kv *KV) inCall() error {
	if kv == nil || len(kv.stack) < 2 {
		return ErrNotInCall
	}
	if kv.fence != nil && kv.fence.cut.Load() {
		return ErrFenced
	}
	if kv.txDepth > 0 && kv.stack[len(kv.stack)-1].rollback {
		return ErrRolledBack
	}
	return nil
}

// sqlBacked reports whether the object's class has SQL, whose limits on
// keys and values are Cloudflare's SQLite-backed ones: only the stores of
// such classes have savepoints.
func (kv *KV) sqlBacked() bool { return kv.tx != nil }

func (kv *KV) push() {
	var l *layer
	if n := len(kv.spare); n > 0 {
		l, kv.spare = kv.spare[n-1], kv.spare[:n-1]
	} else {
		l = &layer{}
	}
	kv.stack = append(kv.stack, l)
}

// pop removes the top layer, merging its writes into the one below when
// keep is set.
func (kv *KV) pop(keep bool) {
	top := kv.stack[len(kv.stack)-1]
	kv.stack = kv.stack[:len(kv.stack)-1]
	if keep && !top.empty() {
		below := kv.stack[len(kv.stack)-1]
		if top.alarm.kind != alarmUnchanged {
			below.alarm = top.alarm
		}
		switch {
		case top.cleared:
			below.writes, below.cleared = top.writes, true
			top.writes = nil
		case below.writes == nil:
			below.writes, top.writes = top.writes, nil
		default:
			for k, v := range top.writes {
				below.writes[k] = v
			}
		}
	}
	clear(top.writes)
	top.cleared, top.rollback, top.alarm = false, false, alarmOp{}
	kv.spare = append(kv.spare, top)
}

func (kv *KV) top() *layer {
	l := kv.stack[len(kv.stack)-1]
	if l.writes == nil {
		l.writes = make(map[string]version)
	}
	return l
}

// prune drops from the flushed layer what the database now holds.
func (kv *KV) prune() {
	if kv.flushed == nil || kv.flushed.empty() {
		return
	}
	acked := kv.acked()
	for k, v := range kv.flushed.writes {
		if v.seq <= acked {
			delete(kv.flushed.writes, k)
		}
	}
	if kv.flushed.cleared && kv.flushed.clearedSeq <= acked {
		kv.flushed.cleared = false
	}
	if kv.flushed.alarm.kind != alarmUnchanged && kv.flushed.alarmSeq <= acked {
		kv.flushed.alarm = alarmOp{}
	}
}

// layers returns the layers to read through, topmost first.
func (kv *KV) layers() []*layer {
	ls := make([]*layer, 0, len(kv.stack)+1)
	for i := len(kv.stack) - 1; i >= 0; i-- {
		ls = append(ls, kv.stack[i])
	}
	if kv.base != nil {
		ls = append(ls, kv.base)
	}
	if kv.flushed != nil {
		kv.prune()
		ls = append(ls, kv.flushed)
	}
	return ls
}

// lookup finds key in the layers; decided is false when only the database
// can tell.
func (kv *KV) lookup(key string) (v version, decided bool) {
	for _, l := range kv.layers() {
		if v, ok := l.writes[key]; ok {
			return v, true
		}
		if l.cleared {
			return version{deleted: true}, true
		}
	}
	return version{}, false
}

func (kv *KV) get(ctx context.Context, key string) ([]byte, bool, error) {
	if v, decided := kv.lookup(key); decided {
		if v.deleted {
			return nil, false, nil
		}
		return v.data, true, nil
	}
	return kv.src.get(ctx, key)
}

func (kv *KV) checkKey(key string) error {
	limit := MaxKeySize
	if kv.sqlBacked() {
		limit = MaxSQLEntrySize
	}
	switch {
	case key == "":
		return ErrKeyEmpty
	case len(key) > limit:
		return fmt.Errorf("%w: %d bytes, over %d", ErrKeyTooLarge, len(key), limit)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: %q", ErrKeyNotUTF8, key)
	}
	return nil
}

func checkKeys(n int) error {
	if n > MaxKeysPerCall {
		return fmt.Errorf("%w: %d keys", ErrTooManyKeys, n)
	}
	return nil
}

func (kv *KV) checkValue(key string, value []byte) error {
	if kv.sqlBacked() {
		if n := len(key) + len(value); n > MaxSQLEntrySize {
			return fmt.Errorf("%w: key %.64q and its value take %d bytes, over %d", ErrValueTooLarge, key, n, MaxSQLEntrySize)
		}
		return nil
	}
	if len(value) > MaxValueSize {
		return fmt.Errorf("%w: %d bytes for key %.64q, over %d", ErrValueTooLarge, len(value), key, MaxValueSize)
	}
	return nil
}

// Get returns the value of key, and whether it exists.
func (kv *KV) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := kv.inCall(); err != nil {
		return nil, false, err
	}
	if err := kv.checkKey(key); err != nil {
		return nil, false, err
	}
	v, ok, err := kv.get(ctx, key)
	return bytes.Clone(v), ok, err
}

// GetMany returns the values of the keys that exist; missing keys are left
// out of the map.
func (kv *KV) GetMany(ctx context.Context, keys []string) (map[string][]byte, error) {
	if err := kv.inCall(); err != nil {
		return nil, err
	}
	if err := checkKeys(len(keys)); err != nil {
		return nil, err
	}
	for _, k := range keys {
		if err := kv.checkKey(k); err != nil {
			return nil, err
		}
	}
	out := make(map[string][]byte, len(keys))
	for _, k := range keys {
		v, ok, err := kv.get(ctx, k)
		if err != nil {
			return nil, err
		}
		if ok {
			out[k] = bytes.Clone(v)
		}
	}
	return out, nil
}

// Put sets the value of key.
func (kv *KV) Put(ctx context.Context, key string, value []byte) error {
	if err := kv.inCall(); err != nil {
		return err
	}
	if err := kv.checkKey(key); err != nil {
		return err
	}
	if err := kv.checkValue(key, value); err != nil {
		return err
	}
	kv.top().writes[key] = version{data: bytes.Clone(value)}
	return nil
}

// PutMany sets several keys at once: all of them, or none if one is invalid.
func (kv *KV) PutMany(ctx context.Context, entries map[string][]byte) error {
	if err := kv.inCall(); err != nil {
		return err
	}
	if err := checkKeys(len(entries)); err != nil {
		return err
	}
	for k, v := range entries {
		if err := kv.checkKey(k); err != nil {
			return err
		}
		if err := kv.checkValue(k, v); err != nil {
			return err
		}
	}
	l := kv.top()
	for k, v := range entries {
		l.writes[k] = version{data: bytes.Clone(v)}
	}
	return nil
}

// Delete removes key and reports whether it existed.
func (kv *KV) Delete(ctx context.Context, key string) (bool, error) {
	n, err := kv.DeleteMany(ctx, []string{key})
	return n == 1, err
}

// DeleteMany removes the keys and reports how many existed, each key
// counted once however often it is listed.
func (kv *KV) DeleteMany(ctx context.Context, keys []string) (int, error) {
	if err := kv.inCall(); err != nil {
		return 0, err
	}
	if err := checkKeys(len(keys)); err != nil {
		return 0, err
	}
	for _, k := range keys {
		if err := kv.checkKey(k); err != nil {
			return 0, err
		}
	}
	existed := 0
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		_, ok, err := kv.get(ctx, k)
		if err != nil {
			return 0, err
		}
		if ok {
			existed++
		}
	}
	l := kv.top()
	for _, k := range keys {
		l.writes[k] = version{deleted: true}
	}
	return existed, nil
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
	if err := kv.inCall(); err != nil {
		return err
	}
	if kv.txDepth > 0 {
		return ErrDeleteAllInTransaction
	}
	if kv.tx != nil {
		if err := kv.tx.deleteAll(); err != nil {
			return err
		}
	}
	l := kv.top()
	clear(l.writes)
	l.cleared = true
	l.alarm = alarmOp{kind: alarmDeleted}
	return nil
}

// ListOptions selects the entries List returns. Bounds combine: an entry
// is listed when it has the prefix, is at or after Start (or after
// StartAfter), and before End. storage.ListOptions, what objects use, has
// the same fields, so that it converts to this type; the conversion in
// storage's List stops compiling if the two part.
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

// keyRange is [lo, hi) in the byte order of keys.
type keyRange struct {
	lo      string
	hi      string
	hasHi   bool
	reverse bool
}

func (r keyRange) contains(k string) bool {
	return k >= r.lo && (!r.hasHi || k < r.hi)
}

func (r keyRange) empty() bool { return r.hasHi && r.lo >= r.hi }

func (o ListOptions) keyRange() (keyRange, error) {
	if o.Start != "" && o.StartAfter != "" {
		return keyRange{}, fmt.Errorf("%w: Start and StartAfter are exclusive", ErrListOptions)
	}
	if o.Limit < 0 {
		return keyRange{}, fmt.Errorf("%w: negative Limit %d", ErrListOptions, o.Limit)
	}
	r := keyRange{lo: o.Start, reverse: o.Reverse}
	if o.StartAfter != "" {
		r.lo = o.StartAfter + "\x00"
	}
	if o.Prefix > r.lo {
		r.lo = o.Prefix
	}
	if o.End != "" {
		r.hi, r.hasHi = o.End, true
	}
	if hi, ok := successor(o.Prefix); ok && (!r.hasHi || hi < r.hi) {
		r.hi, r.hasHi = hi, true
	}
	return r, nil
}

// successor returns the smallest string greater than every string with
// prefix p, if there is one.
func successor(p string) (string, bool) {
	// Byte by byte: strings.TrimRight would read "\xff" as a rune.
	for len(p) > 0 && p[len(p)-1] == 0xff {
		p = p[:len(p)-1]
	}
	if p == "" {
		return "", false
	}
	return p[:len(p)-1] + string([]byte{p[len(p)-1] + 1}), true
}

// List returns the entries opts selects, in ascending key order (descending
// with Reverse).
func (kv *KV) List(ctx context.Context, opts ListOptions) ([]Entry, error) {
	if err := kv.inCall(); err != nil {
		return nil, err
	}
	r, err := opts.keyRange()
	if err != nil || r.empty() {
		return nil, err
	}
	// What the layers say about the range, topmost layer winning.
	overlay := make(map[string]version)
	hidden := false
	for _, l := range kv.layers() {
		for k, v := range l.writes {
			if _, seen := overlay[k]; !seen && r.contains(k) {
				overlay[k] = v
			}
		}
		if l.cleared {
			hidden = true
			break
		}
	}
	keys := make([]string, 0, len(overlay))
	for k := range overlay {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if r.reverse {
		slices.Reverse(keys)
	}
	before := func(a, b string) bool { return a < b != r.reverse }

	var out []Entry
	full := func() bool { return opts.Limit > 0 && len(out) >= opts.Limit }
	next := 0
	emitOverlay := func(upTo string, all bool) {
		for next < len(keys) && !full() && (all || before(keys[next], upTo)) {
			if v := overlay[keys[next]]; !v.deleted {
				out = append(out, Entry{Key: keys[next], Value: bytes.Clone(v.data)})
			}
			next++
		}
	}
	if !hidden {
		limit := -1
		if opts.Limit > 0 {
			limit = opts.Limit + len(overlay) // rows the overlay shadows are skipped
		}
		err := kv.src.scan(ctx, r, limit, func(key string, value []byte) bool {
			emitOverlay(key, false)
			if full() {
				return false
			}
			if _, shadowed := overlay[key]; !shadowed {
				out = append(out, Entry{Key: key, Value: value})
			}
			return !full()
		})
		if err != nil {
			return nil, err
		}
	}
	emitOverlay("", true)
	return out, nil
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
	if err := kv.inCall(); err != nil {
		return err
	}
	if kv.tx != nil {
		if err := kv.tx.beginTx(); err != nil {
			return err
		}
	}
	kv.push()
	kv.txDepth++
	committed := false
	defer func() {
		kv.txDepth--
		kv.pop(committed)
		if kv.tx != nil {
			if txErr := kv.tx.endTx(committed); txErr != nil && err == nil {
				err = txErr
			}
		}
	}()
	err = fn(kv)
	committed = err == nil && !kv.stack[len(kv.stack)-1].rollback
	return err
}

// Rollback marks the innermost open Transaction to be undone when its
// function returns, whatever it returns. From then until it returns, every
// operation of the storage, key-value and SQL, fails with ErrRolledBack, as
// on Cloudflare, where a rolled back transaction cannot be used again.
// Outside a transaction it does nothing: to undo a whole call, return an
// error from the method.
func (kv *KV) Rollback() {
	if kv.txDepth > 0 {
		kv.stack[len(kv.stack)-1].rollback = true
		if kv.tx != nil {
			kv.tx.rolledBack()
		}
	}
}

// batch returns the writes of the batch's successful calls and empties it;
// with merge, the writes of Init still held go under them.
//
// A batch that writes no key and leaves the alarm alone (a state change
// only, the hot path) gets noWrites, and the layer it leaves stays in
// place: no new layer per batch.
func (kv *KV) takeBatch(merge bool) *layer {
	b := kv.stack[0]
	if base := kv.base; base != nil && merge {
		kv.stack[0] = &layer{}
		kv.base = nil
		return over(base, b)
	}
	if b.empty() && !b.rollback {
		return noWrites
	}
	kv.stack[0] = &layer{}
	return b
}

// noWrites is the batch layer of a batch without key or alarm writes.
// Batch layers are only read once taken (flushed, applied, encoded): it is
// never written.
var noWrites = &layer{}

// over applies the writes of top on below, as a later layer hides an
// earlier one, and returns below.
func over(below, top *layer) *layer {
	if top.alarm.kind != alarmUnchanged {
		below.alarm = top.alarm
	}
	switch {
	case top.cleared:
		below.writes, below.cleared = top.writes, true
	case below.writes == nil:
		below.writes = top.writes
	default:
		for k, v := range top.writes {
			below.writes[k] = v
		}
	}
	return below
}

// holdBase sets the batch's writes so far apart as Init's.
func (kv *KV) holdBase() {
	kv.base = kv.stack[0]
	kv.stack[0] = &layer{}
}

// flush moves the batch's writes into the flushed layer, tagged with seq.
func (kv *KV) flush(b *layer, seq uint64) {
	f := kv.flushed
	if b.cleared {
		clear(f.writes)
		f.cleared, f.clearedSeq = true, seq
	}
	if b.alarm.kind != alarmUnchanged {
		f.alarm, f.alarmSeq = b.alarm, seq
	}
	if f.writes == nil {
		f.writes = make(map[string]version, len(b.writes))
	}
	for k, v := range b.writes {
		v.seq = seq
		f.writes[k] = v
	}
}

// reset drops every buffered write: after a failed commit, what the
// database holds is the truth.
func (kv *KV) reset() {
	kv.stack = kv.stack[:1]
	kv.stack[0] = &layer{}
	kv.base = nil
	kv.txDepth = 0
	if kv.flushed != nil {
		kv.flushed = &layer{}
	}
}
