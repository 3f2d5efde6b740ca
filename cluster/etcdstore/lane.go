package etcdstore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/durablego/durable/internal/engine"
)

// lane commits the batches of the partitions p with p % lanes equal to
// its index, one etcd transaction at a time, each carrying as many of the
// waiting batches as fit.
type lane struct {
	s       *Store
	in      chan *engine.Batch
	pending []*engine.Batch // taken from in, not yet acknowledged, in order
}

func (l *lane) run() {
	defer l.s.laneWG.Done()
	open := true
	for open || len(l.pending) > 0 {
		if len(l.pending) == 0 {
			b, ok := <-l.in
			if !ok {
				return
			}
			l.pending = append(l.pending, b)
		}
	fill:
		for open && len(l.pending) < cap(l.in) {
			select {
			case b, ok := <-l.in:
				if !ok {
					open = false
					break fill
				}
				l.pending = append(l.pending, b)
			default:
				break fill
			}
		}
		l.pending = l.commit(l.pending)
	}
}

// commit packs the first batches of pending into one transaction, commits
// it and acknowledges them; it returns the batches still to commit, in
// order.
func (l *lane) commit(pending []*engine.Batch) []*engine.Batch {
	s := l.s
	pk := newPack(s)
	i := 0
	for ; i < len(pending); i++ {
		b := pending[i]
		if !b.Valid() {
			b.Done(engine.ErrStale)
			continue
		}
		p := Partition(b.ID())
		tok, err := s.owns(p)
		if err != nil {
			b.Done(err)
			continue
		}
		if !pk.add(b, p, tok) {
			if len(pk.batches) > 0 {
				break // the next transaction takes it, and what follows
			}
			b.Done(pk.tooLarge(b))
		}
	}
	rest := pending[i:]
	if len(pk.batches) == 0 {
		return shift(pending, rest)
	}
	retry, err := l.send(pk)
	switch {
	case err != nil:
		for _, b := range pk.batches {
			b.Done(err)
		}
	case retry == nil:
		s.commits.Add(1)
		s.batches.Add(uint64(len(pk.batches)))
		s.written.Add(uint64(pk.written))
		for _, b := range pk.batches {
			b.Done(nil)
		}
	default:
		// Some partitions were lost: their batches failed; the others go
		// first in the next transaction.
		return append(retry, rest...)
	}
	return shift(pending, rest)
}

// shift moves rest, the tail of pending, to its front, and clears what
// is left behind so that acknowledged batches are not kept reachable.
func shift(pending, rest []*engine.Batch) []*engine.Batch {
	n := copy(pending, rest)
	clear(pending[n:])
	return pending[:n]
}

// send commits pk in one fenced transaction, sending it again while etcd
// does not answer. When the fence of some partitions failed, it fails
// their batches and returns the others (nil when all committed).
func (l *lane) send(pk *pack) (retry []*engine.Batch, err error) {
	s := l.s
	old, err := l.oldAlarms(pk)
	if err != nil {
		return nil, err
	}
	cmps := make([]clientv3.Cmp, 0, len(pk.parts))
	for _, p := range slices.Sorted(maps.Keys(pk.parts)) {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.keys.part(p)), "=", pk.parts[p]))
	}
	var ops []clientv3.Op
	for _, v := range pk.order {
		ops = v.ops(s.keys, ops, old[v])
	}
	var resp *clientv3.TxnResponse
	err = l.retry(func(ctx context.Context) (err error) {
		resp, err = s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		return err
	})
	if err != nil {
		return nil, err
	}
	if resp.Succeeded {
		// Before the batches are acknowledged: a read that begins after
		// an acknowledgement must not be served below this revision.
		for p := range pk.parts {
			raise(&s.committed[p], resp.Header.Revision)
		}
		return nil, nil
	}
	// A fence failed; etcd does not say which: read the owner keys.
	var gets []clientv3.Op
	parts := slices.Sorted(maps.Keys(pk.parts))
	for _, p := range parts {
		gets = append(gets, clientv3.OpGet(s.keys.part(p)))
	}
	var owners *clientv3.TxnResponse
	if err := l.retry(func(ctx context.Context) (err error) {
		owners, err = s.cli.Txn(ctx).Then(gets...).Commit()
		return err
	}); err != nil {
		return nil, err
	}
	for i, p := range parts {
		kvs := owners.Responses[i].GetResponseRange().Kvs
		if len(kvs) == 0 || kvs[0].CreateRevision != pk.parts[p] {
			s.lose(p, pk.parts[p])
		}
	}
	for _, b := range pk.batches {
		p := Partition(b.ID())
		if s.tokens[p].Load() != pk.parts[p] {
			b.Done(fmt.Errorf("%w: partition %d was taken by another store; nothing was written", ErrNotOwner, p))
			continue
		}
		retry = append(retry, b)
	}
	if retry == nil {
		retry = []*engine.Batch{} // all failed: nothing left of the pack
	}
	return retry, nil
}

// oldAlarms reads the committed alarm of every object of pk whose alarm
// changes, so that its index entry can be deleted. Under the fence no one
// else writes them, and the lane's previous transaction is done.
func (l *lane) oldAlarms(pk *pack) (map[*view]alarmAt, error) {
	var vs []*view
	for _, v := range pk.order {
		if v.alarmChanged {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return nil, nil
	}
	out := make(map[*view]alarmAt, len(vs))
	for chunk := range slices.Chunk(vs, l.s.cfg.maxOps) {
		gets := make([]clientv3.Op, len(chunk))
		for i, v := range chunk {
			gets[i] = clientv3.OpGet(l.s.keys.alarm(v.class, v.id))
		}
		var resp *clientv3.TxnResponse
		if err := l.retry(func(ctx context.Context) (err error) {
			resp, err = l.s.cli.Txn(ctx).Then(gets...).Commit()
			return err
		}); err != nil {
			return nil, err
		}
		for i, v := range chunk {
			if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) > 0 {
				at, err := strconv.ParseInt(string(kvs[0].Value), 10, 64)
				if err != nil {
					return nil, fmt.Errorf("etcdstore: malformed alarm of %s object: %w", v.class, err)
				}
				out[v] = alarmAt{at: at, found: true}
			}
		}
	}
	return out, nil
}

// retry runs op, each attempt bounded by the request timeout, until it
// succeeds, fails for good, or the commit timeout passes. Re-sending the
// same transaction is harmless: its puts are identical and its fence
// unchanged, or it fails the fence.
func (l *lane) retry(op func(ctx context.Context) error) error {
	s := l.s
	deadline := time.Now().Add(s.cfg.commitTimeout)
	backoff := 10 * time.Millisecond
	for {
		ctx, cancel := s.call(context.Background())
		err := op(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if permanent(err) || time.Now().Add(backoff).After(deadline) {
			return storeError(err)
		}
		s.cfg.logger.Warn("etcdstore: commit failed, retrying", "err", err, "backoff", backoff)
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
}

// raise sets v to rev if rev is higher.
func raise(v *atomic.Int64, rev int64) {
	for {
		old := v.Load()
		if old >= rev || v.CompareAndSwap(old, rev) {
			return
		}
	}
}

// alarmAt is an object's committed alarm.
type alarmAt struct {
	at    int64
	found bool
}

// objKey names an object in a pack.
type objKey struct {
	class string
	id    [32]byte
}

// write is one key's write in a view: a put, or a delete.
type write struct {
	value   []byte
	deleted bool
}

// view is the merged writes of one object's batches in a pack: the last
// state wins, key writes apply in order, a DeleteAll drops what came
// before it.
type view struct {
	class        string
	id           [32]byte
	state        []byte
	writeState   bool
	cleared      bool
	writes       map[string]write
	alarm        engine.AlarmChange
	alarmChanged bool
	cost         cost
}

// cost is what a view adds to a transaction.
type cost struct{ ops, bytes, written int }

func (v *view) clone() *view {
	c := *v
	c.writes = maps.Clone(v.writes)
	return &c
}

func (v *view) merge(b *engine.Batch) {
	if st, ok := b.State(); ok {
		v.state, v.writeState = st, true
	}
	if b.Cleared() {
		v.cleared = true
		clear(v.writes)
	}
	if v.writes == nil {
		v.writes = make(map[string]write, b.NumWrites())
	}
	b.Writes(func(key string, value []byte, deleted bool) {
		if deleted && v.cleared {
			delete(v.writes, key) // the range delete covers it
			return
		}
		v.writes[key] = write{value: value, deleted: deleted}
	})
	if a, ok := b.Alarm(); ok {
		v.alarm, v.alarmChanged = a, true
	}
}

// opOverhead is a generous bound on the bytes of one operation's framing
// in the transaction request.
const opOverhead = 24

// measure returns the view's cost, counted as ops writes it.
func (v *view) measure(k keys) cost {
	var c cost
	base := len(k.object(v.class, v.id))
	if v.writeState {
		c.ops++
		c.bytes += base + 1 + len(v.state) + opOverhead
		c.written += len(v.state)
	}
	kv := base + 2
	for key, w := range v.writes {
		c.ops++
		c.bytes += kv + len(key) + len(w.value) + opOverhead
		c.written += len(key) + len(w.value)
		if v.cleared { // the range delete ending at it
			c.ops++
			c.bytes += 2*(kv+len(key)+1) + opOverhead
		}
	}
	if v.cleared {
		c.ops++
		c.bytes += 2*kv + opOverhead
	}
	if v.alarmChanged {
		c.ops += 3 // the alarm key, the new index entry, the old one
		c.bytes += base + 1 + 20 + 2*len(k.index(v.class, v.id, 0)) + 3*opOverhead
	}
	return c
}

// ops appends the view's operations, old being its committed alarm.
func (v *view) ops(k keys, ops []clientv3.Op, old alarmAt) []clientv3.Op {
	if v.writeState {
		ops = append(ops, clientv3.OpPut(k.state(v.class, v.id), string(v.state)))
	}
	pre := k.kvPrefix(v.class, v.id)
	if v.cleared {
		// A put may not fall in a range deleted by the same transaction:
		// delete the ranges between the keys put.
		lo := pre
		for _, key := range slices.Sorted(maps.Keys(v.writes)) {
			if lo < pre+key {
				ops = append(ops, clientv3.OpDelete(lo, clientv3.WithRange(pre+key)))
			}
			ops = append(ops, clientv3.OpPut(pre+key, string(v.writes[key].value)))
			lo = pre + key + "\x00"
		}
		ops = append(ops, clientv3.OpDelete(lo, clientv3.WithRange(successor(pre))))
	} else {
		for key, w := range v.writes {
			if w.deleted {
				ops = append(ops, clientv3.OpDelete(pre+key))
			} else {
				ops = append(ops, clientv3.OpPut(pre+key, string(w.value)))
			}
		}
	}
	if v.alarmChanged {
		a := v.alarm
		if a.Set {
			ops = append(ops, clientv3.OpPut(k.alarm(v.class, v.id), strconv.FormatInt(a.At, 10)),
				clientv3.OpPut(k.index(v.class, v.id, a.At), ""))
		} else {
			ops = append(ops, clientv3.OpDelete(k.alarm(v.class, v.id)))
		}
		if old.found && (!a.Set || old.at != a.At) {
			ops = append(ops, clientv3.OpDelete(k.index(v.class, v.id, old.at)))
		}
	}
	return ops
}

// pack is the batches of one transaction, merged per object.
type pack struct {
	s       *Store
	views   map[objKey]*view
	order   []*view
	batches []*engine.Batch
	parts   map[int]int64 // partition → token: one compare each
	ops     int
	bytes   int
	written int
}

func newPack(s *Store) *pack {
	return &pack{s: s, views: map[objKey]*view{}, parts: map[int]int64{}}
}

// reserve is what the request holds besides the operations counted: its
// own framing, and the raft entry etcd wraps it in.
const reserve = 16 << 10

// add merges b into the pack if the transaction stays within etcd's
// limits, and reports whether it did.
func (pk *pack) add(b *engine.Batch, p int, tok int64) bool {
	key := objKey{b.Class(), b.ID()}
	old := pk.views[key]
	var nv *view
	var before cost
	if old == nil {
		nv = &view{class: key.class, id: key.id}
	} else {
		nv, before = old.clone(), old.cost
	}
	nv.merge(b)
	nv.cost = nv.measure(pk.s.keys)
	ops := pk.ops - before.ops + nv.cost.ops
	bytes := pk.bytes - before.bytes + nv.cost.bytes
	cmps := len(pk.parts)
	if _, ok := pk.parts[p]; !ok {
		cmps++
		bytes += len(pk.s.keys.part(p)) + opOverhead
	}
	if ops > pk.s.cfg.maxOps || cmps > pk.s.cfg.maxOps || bytes > pk.s.cfg.maxBytes-reserve {
		return false
	}
	if old == nil {
		pk.order = append(pk.order, nv)
	} else {
		pk.order[slices.Index(pk.order, old)] = nv
	}
	pk.views[key] = nv
	pk.parts[p] = tok
	pk.batches = append(pk.batches, b)
	pk.ops, pk.bytes = ops, bytes
	pk.written += nv.cost.written - before.written
	return true
}

// tooLarge is the error of a batch that does not fit a transaction alone.
func (pk *pack) tooLarge(b *engine.Batch) error {
	v := &view{class: b.Class(), id: b.ID()}
	v.merge(b)
	c := v.measure(pk.s.keys)
	return fmt.Errorf("%w: the %s object's writes need %d operations and about %d bytes in one etcd transaction; the limits are %d operations and %d bytes (etcd's --max-txn-ops and --max-request-bytes); nothing was written",
		engine.ErrTooLarge, b.Class(), c.ops, c.bytes, pk.s.cfg.maxOps, pk.s.cfg.maxBytes-reserve)
}
