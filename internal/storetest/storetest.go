// Package storetest checks that an engine.ObjectStore keeps the contract
// the runtime relies on: what a batch commits is read back, List's bounds
// and order match a Model, DeleteAll, alarms and their index, stale
// batches, many objects at once. The node database runs it in the storage
// package's tests and the etcd store in the cluster module's, so that both
// implementations are held to the same tests.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durablego/durable/internal/engine"
)

// Open returns a fresh, empty store for one test; the test's cleanup
// closes it.
type Open func(t *testing.T) engine.ObjectStore

// Run runs every test of the package as a subtest of t.
func Run(t *testing.T, open Open) {
	t.Run("StateRoundTrip", func(t *testing.T) { testState(t, open) })
	t.Run("KVOperations", func(t *testing.T) { testKV(t, open) })
	t.Run("ListMatchesModel", func(t *testing.T) { testListModel(t, open) })
	t.Run("ListPages", func(t *testing.T) { testListPages(t, open) })
	t.Run("DeleteAllThenPut", func(t *testing.T) { testDeleteAll(t, open) })
	t.Run("Alarms", func(t *testing.T) { testAlarms(t, open) })
	t.Run("StaleBatch", func(t *testing.T) { testStale(t, open) })
	t.Run("ManyObjects", func(t *testing.T) { testManyObjects(t, open) })
	t.Run("Meta", func(t *testing.T) { testMeta(t, open) })
	t.Run("Objects", func(t *testing.T) { testObjects(t, open) })
}

// ID returns a test object ID; n spreads over partitions.
func ID(n int) [32]byte {
	var id [32]byte
	id[0], id[1] = byte(n>>8), byte(n)
	copy(id[2:], fmt.Sprint(n))
	return id
}

// Call runs fn as one call on st, keeping its writes if it returns nil.
func Call(t testing.TB, st *engine.Store, fn func(kv *engine.KV) error) error {
	t.Helper()
	if err := st.BeginCall(); err != nil {
		t.Fatal(err)
	}
	err := fn(st.KV)
	if endErr := st.EndCall(err == nil); endErr != nil {
		t.Fatal(endErr)
	}
	return err
}

// Commit commits st's batch, with state if given, and waits until it is
// acknowledged.
func Commit(st *engine.Store, state []byte) error {
	done := make(chan error, 1)
	st.Commit(state, state != nil, nil, func(err error) { done <- err })
	return <-done
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testState(t *testing.T, open Open) {
	ctx := context.Background()
	store := open(t)
	st := engine.NewStore(store, "Test", ID(1))
	if _, ok, err := st.LoadState(ctx); ok || err != nil {
		t.Fatalf("LoadState of a new object = %v, %v", ok, err)
	}
	if e, err := store.Empty(ctx); !e || err != nil {
		t.Fatalf("Empty of a new store = %v, %v", e, err)
	}
	must(t, Commit(st, []byte("one")))
	must(t, Commit(st, []byte{}))
	// A fresh store of the object reads what was committed: the store
	// holds it, not the object's buffers.
	again := engine.NewStore(store, "Test", ID(1))
	if s, ok, err := again.LoadState(ctx); !ok || err != nil || len(s) != 0 {
		t.Fatalf("LoadState = %q, %v, %v; want the empty state", s, ok, err)
	}
	if _, ok, _ := engine.NewStore(store, "Other", ID(1)).LoadState(ctx); ok {
		t.Fatal("another class's object with the same ID has the state")
	}
	if e, err := store.Empty(ctx); e || err != nil {
		t.Fatalf("Empty after a commit = %v, %v", e, err)
	}
}

func testKV(t *testing.T, open Open) {
	ctx := context.Background()
	store := open(t)
	st := engine.NewStore(store, "Test", ID(2))
	Call(t, st, func(kv *engine.KV) error {
		must(t, kv.Put(ctx, "a", []byte("1")))
		must(t, kv.PutMany(ctx, map[string][]byte{"b": []byte("2"), "c": []byte("3"), "d": {}, "a/b": []byte("x")}))
		return nil
	})
	must(t, Commit(st, nil))
	Call(t, st, func(kv *engine.KV) error {
		_, err := kv.Delete(ctx, "c")
		return err
	})
	must(t, Commit(st, nil))
	re := engine.NewStore(store, "Test", ID(2))
	Call(t, re, func(kv *engine.KV) error {
		got, err := kv.GetMany(ctx, []string{"a", "b", "c", "d", "a/b", "zz"})
		must(t, err)
		want := map[string]string{"a": "1", "b": "2", "d": "", "a/b": "x"}
		if len(got) != len(want) {
			t.Fatalf("GetMany = %q, want %q", got, want)
		}
		for k, v := range want {
			if string(got[k]) != v {
				t.Fatalf("GetMany[%q] = %q, want %q", k, got[k], v)
			}
		}
		entries, err := kv.List(ctx, engine.ListOptions{Prefix: "a"})
		must(t, err)
		if len(entries) != 2 || entries[0].Key != "a" || entries[1].Key != "a/b" {
			t.Fatalf("List(prefix a) = %v", entries)
		}
		return nil
	})
}

// Model is the reference List is compared against: a map of the keys
// and values an object holds, listed as the KV API says.
type Model map[string]string

// List returns the keys of m that o selects, in List's order.
func (m Model) List(o engine.ListOptions) []string {
	var keys []string
	for k := range m {
		switch {
		case !strings.HasPrefix(k, o.Prefix),
			o.Start != "" && k < o.Start,
			o.StartAfter != "" && k <= o.StartAfter,
			o.End != "" && k >= o.End:
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if o.Reverse {
		slices.Reverse(keys)
	}
	if o.Limit > 0 && len(keys) > o.Limit {
		keys = keys[:o.Limit]
	}
	return keys
}

// alphabet mixes ASCII, multi-byte and astral characters, the separator
// of the etcd store's keys, NUL and the bytes where UTF-8 and UTF-16
// orders disagree.
var alphabet = []string{"a", "b", "ab", "z", "é", "ø", "中", "\uffff", "😀", "𝄞", ":", "/", "\x00", "~", "k/"}

// RandomKey returns a key of one to four characters of the alphabet.
func RandomKey(r *rand.Rand) string {
	var b strings.Builder
	for range 1 + r.IntN(4) {
		b.WriteString(alphabet[r.IntN(len(alphabet))])
	}
	return b.String()
}

// RandomListOptions returns options with a random prefix, start, end,
// limit and direction, drawn from the alphabet.
func RandomListOptions(r *rand.Rand) engine.ListOptions {
	var o engine.ListOptions
	if r.IntN(3) == 0 {
		o.Prefix = alphabet[r.IntN(len(alphabet))]
	}
	switch r.IntN(3) {
	case 0:
		o.Start = RandomKey(r)
	case 1:
		o.StartAfter = RandomKey(r)
	}
	if r.IntN(2) == 0 {
		o.End = RandomKey(r)
	}
	if r.IntN(2) == 0 {
		o.Limit = 1 + r.IntN(8)
	}
	o.Reverse = r.IntN(2) == 0
	return o
}

// testListModel runs random writes, failed calls, DeleteAll and commits,
// and compares every List with a map, read both in the call and from a
// fresh store of the object (what the store alone holds).
func testListModel(t *testing.T, open Open) {
	ctx := context.Background()
	store := open(t)
	st := engine.NewStore(store, "Test", ID(3))
	r := rand.New(rand.NewPCG(1, 2))
	committed := Model{}
	check := func(round int, kv *engine.KV, m Model) {
		o := RandomListOptions(r)
		entries, err := kv.List(ctx, o)
		must(t, err)
		var got []string
		for _, e := range entries {
			got = append(got, e.Key)
			if string(e.Value) != m[e.Key] {
				t.Fatalf("round %d: value of %q = %q, want %q", round, e.Key, e.Value, m[e.Key])
			}
		}
		if want := m.List(o); !slices.Equal(got, want) {
			t.Fatalf("round %d: List(%+v) = %q, want %q", round, o, got, want)
		}
	}
	for round := range 150 {
		fail := r.IntN(5) == 0
		pending := clone(committed)
		err := Call(t, st, func(kv *engine.KV) error {
			for range 1 + r.IntN(6) {
				k := RandomKey(r)
				switch op := r.IntN(10); {
				case op < 6:
					v := fmt.Sprint(round, op)
					must(t, kv.Put(ctx, k, []byte(v)))
					pending[k] = v
				case op < 9:
					kv.Delete(ctx, k)
					delete(pending, k)
				case r.IntN(4) == 0:
					kv.DeleteAll(ctx)
					clear(pending)
				}
			}
			check(round, kv, pending)
			if fail {
				return errors.New("fail")
			}
			return nil
		})
		if err == nil {
			committed = pending
		}
		if r.IntN(3) == 0 {
			must(t, Commit(st, nil))
			fresh := engine.NewStore(store, "Test", ID(3))
			Call(t, fresh, func(kv *engine.KV) error {
				check(round, kv, committed)
				return nil
			})
		}
	}
}

func clone(m Model) Model {
	c := make(Model, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// testListPages lists more entries than a store reads at once, forward
// and back, bounded and limited.
func testListPages(t *testing.T, open Open) {
	ctx := context.Background()
	store := open(t)
	st := engine.NewStore(store, "Test", ID(4))
	m := Model{}
	for c := range 3 {
		Call(t, st, func(kv *engine.KV) error {
			batch := map[string][]byte{}
			for i := range 100 {
				k := fmt.Sprintf("k%03d", c*100+i)
				batch[k] = []byte(k)
				m[k] = k
			}
			return kv.PutMany(ctx, batch)
		})
		must(t, Commit(st, nil))
	}
	fresh := engine.NewStore(store, "Test", ID(4))
	Call(t, fresh, func(kv *engine.KV) error {
		for _, o := range []engine.ListOptions{
			{}, {Reverse: true}, {Limit: 150}, {Limit: 150, Reverse: true},
			{Start: "k050", End: "k250"}, {StartAfter: "k050", End: "k250", Reverse: true}, {Prefix: "k1"},
		} {
			entries, err := kv.List(ctx, o)
			must(t, err)
			var got []string
			for _, e := range entries {
				got = append(got, e.Key)
			}
			if want := m.List(o); !slices.Equal(got, want) {
				t.Fatalf("List(%+v) = %d keys %q…, want %d", o, len(got), got[:min(3, len(got))], len(want))
			}
		}
		return nil
	})
}

// testDeleteAll commits a DeleteAll and puts after it in one batch, and in
// batches queued back to back (which a store may pack into one write).
func testDeleteAll(t *testing.T, open Open) {
	ctx := context.Background()
	store := open(t)
	st := engine.NewStore(store, "Test", ID(5))
	Call(t, st, func(kv *engine.KV) error {
		return kv.PutMany(ctx, map[string][]byte{"a": {1}, "b": {2}, "c": {3}, "b\x00": {4}})
	})
	must(t, Commit(st, nil))
	Call(t, st, func(kv *engine.KV) error {
		must(t, kv.DeleteAll(ctx))
		return kv.PutMany(ctx, map[string][]byte{"b": {5}, "b\x00": {6}, "d": {7}})
	})
	must(t, Commit(st, nil))
	expect(t, store, ID(5), Model{"b": "\x05", "b\x00": "\x06", "d": "\x07"})

	// Three batches without waiting: put, DeleteAll and put, delete.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	steps := []func(kv *engine.KV) error{
		func(kv *engine.KV) error { return kv.Put(ctx, "e", []byte("e")) },
		func(kv *engine.KV) error { must(t, kv.DeleteAll(ctx)); return kv.Put(ctx, "f", []byte("f")) },
		func(kv *engine.KV) error {
			_, err := kv.Delete(ctx, "f")
			must(t, err)
			return kv.Put(ctx, "g", []byte("g"))
		},
	}
	for i, step := range steps {
		Call(t, st, step)
		wg.Add(1)
		st.Commit(nil, false, nil, func(err error) { errs[i] = err; wg.Done() })
	}
	wg.Wait()
	must(t, errors.Join(errs...))
	expect(t, store, ID(5), Model{"g": "g"})
}

// expect checks that the store holds exactly m for object id.
func expect(t *testing.T, store engine.ObjectStore, id [32]byte, m Model) {
	t.Helper()
	fresh := engine.NewStore(store, "Test", id)
	Call(t, fresh, func(kv *engine.KV) error {
		entries, err := kv.List(context.Background(), engine.ListOptions{})
		must(t, err)
		got := Model{}
		for _, e := range entries {
			got[e.Key] = string(e.Value)
		}
		if len(got) != len(m) {
			t.Fatalf("the object holds %q, want %q", got, m)
		}
		for k, v := range m {
			if got[k] != v {
				t.Fatalf("the object holds %q, want %q", got, m)
			}
		}
		return nil
	})
}

func testAlarms(t *testing.T, open Open) {
	ctx := context.Background()
	store := open(t)
	// In the future: SetAlarm stores a past time as now.
	base := time.UnixMilli(time.Now().Add(24 * time.Hour).UnixMilli())
	// Objects of two classes, one a prefix of the other, in several
	// partitions, due at the same and at different times.
	type obj struct {
		class string
		id    [32]byte
		at    time.Time
	}
	objs := []obj{
		{"A", ID(10), base}, {"A.b", ID(10), base}, {"A", ID(700), base},
		{"B", ID(11), base.Add(time.Second)}, {"A", ID(12), base.Add(-time.Second)},
	}
	for _, o := range objs {
		st := engine.NewStore(store, o.class, o.id)
		st.HandleAlarms(func(engine.AlarmChange) {})
		Call(t, st, func(kv *engine.KV) error { return kv.SetAlarm(ctx, o.at) })
		must(t, Commit(st, nil))
	}
	due, err := store.DueAlarms(ctx, engine.DueAlarm{}, base.UnixMilli(), 100)
	must(t, err)
	if len(due) != 4 || !slices.IsSortedFunc(due, func(a, b engine.DueAlarm) int {
		if a.Less(b) {
			return -1
		}
		return 1
	}) {
		t.Fatalf("DueAlarms = %v, want the 4 due by base, ordered", due)
	}
	// Paging: after the second entry, at most 1.
	page, err := store.DueAlarms(ctx, due[1], base.UnixMilli(), 1)
	must(t, err)
	if len(page) != 1 || page[0] != due[2] {
		t.Fatalf("DueAlarms after %v = %v, want [%v]", due[1], page, due[2])
	}
	// Moving an alarm moves its index entry; deleting it removes it.
	st := engine.NewStore(store, "A", ID(10))
	st.HandleAlarms(func(engine.AlarmChange) {})
	Call(t, st, func(kv *engine.KV) error { return kv.SetAlarm(ctx, base.Add(time.Hour)) })
	must(t, Commit(st, nil))
	st2 := engine.NewStore(store, "A", ID(700))
	st2.HandleAlarms(func(engine.AlarmChange) {})
	Call(t, st2, func(kv *engine.KV) error { return kv.DeleteAlarm(ctx) })
	must(t, Commit(st2, nil))
	due, err = store.DueAlarms(ctx, engine.DueAlarm{}, base.Add(2*time.Hour).UnixMilli(), 100)
	must(t, err)
	var got []string
	for _, a := range due {
		got = append(got, fmt.Sprintf("%s/%d@%d", a.Class, int(a.ID[0])<<8|int(a.ID[1]), a.At-base.UnixMilli()))
	}
	want := []string{"A/12@-1000", "A.b/10@0", "B/11@1000", "A/10@3600000"}
	if !slices.Equal(got, want) {
		t.Fatalf("DueAlarms after the moves = %q, want %q", got, want)
	}
	if at, ok, err := store.Alarm(ctx, "A", ID(10)); !ok || err != nil || at != base.Add(time.Hour).UnixMilli() {
		t.Fatalf("Alarm = %d, %v, %v", at, ok, err)
	}
	if _, ok, err := store.Alarm(ctx, "A", ID(700)); ok || err != nil {
		t.Fatalf("Alarm after DeleteAlarm = %v, %v", ok, err)
	}
}

func testStale(t *testing.T, open Open) {
	ctx := context.Background()
	store := open(t)
	st := engine.NewStore(store, "Test", ID(6))
	Call(t, st, func(kv *engine.KV) error { return kv.Put(ctx, "k", []byte("v")) })
	done := make(chan error, 1)
	st.Commit([]byte("s"), true, func() bool { return false }, func(err error) { done <- err })
	if err := <-done; !errors.Is(err, engine.ErrStale) {
		t.Fatalf("invalid batch acknowledged with %v, want ErrStale", err)
	}
	if _, ok, err := store.LoadState(ctx, "Test", ID(6)); ok || err != nil {
		t.Fatalf("the stale batch's state was written: %v, %v", ok, err)
	}
	if _, ok, err := store.Get(ctx, "Test", ID(6), "k"); ok || err != nil {
		t.Fatalf("the stale batch's key was written: %v, %v", ok, err)
	}
}

// testManyObjects commits batches of 200 objects at once, three each.
func testManyObjects(t *testing.T, open Open) {
	ctx := context.Background()
	store := open(t)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, 3*n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := engine.NewStore(store, "Many", ID(i*37))
			for j := range 3 {
				Call(t, st, func(kv *engine.KV) error { return kv.Put(ctx, fmt.Sprint("k", j), []byte(fmt.Sprint(i))) })
				errs <- Commit(st, fmt.Appendf(nil, "%d-%d", i, j))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	for i := range n {
		s, ok, err := store.LoadState(ctx, "Many", ID(i*37))
		if !ok || err != nil || string(s) != fmt.Sprintf("%d-2", i) {
			t.Fatalf("object %d: state %q, %v, %v", i, s, ok, err)
		}
		v, ok, err := store.Get(ctx, "Many", ID(i*37), "k2")
		if !ok || err != nil || string(v) != fmt.Sprint(i) {
			t.Fatalf("object %d: k2 = %q, %v, %v", i, v, ok, err)
		}
	}
	if st := store.Stats(); st.Batches < 3*n || st.Commits == 0 || st.Commits > st.Batches {
		t.Fatalf("Stats = %+v after %d batches", st, 3*n)
	}
}

func testMeta(t *testing.T, open Open) {
	ctx := context.Background()
	store := open(t)
	if _, ok, err := store.Meta(ctx, "k"); ok || err != nil {
		t.Fatalf("Meta of a new store = %v, %v", ok, err)
	}
	must(t, store.SetMeta(ctx, "k", "v1"))
	must(t, store.SetMeta(ctx, "k", "v2"))
	if v, ok, err := store.Meta(ctx, "k"); v != "v2" || !ok || err != nil {
		t.Fatalf("Meta = %q, %v, %v", v, ok, err)
	}
	if e, err := store.Empty(ctx); !e || err != nil {
		t.Fatalf("Empty with only meta = %v, %v", e, err)
	}
}

// testObjects lists the objects of a class that hold state, a key or an
// alarm, in ID order, paging; another class's and an object only read are
// left out.
func testObjects(t *testing.T, open Open) {
	ctx := context.Background()
	store := open(t)
	ids := [][32]byte{ID(5000), ID(1), ID(300)}
	writes := []func(kv *engine.KV) error{
		func(kv *engine.KV) error { return nil }, // state only
		func(kv *engine.KV) error { return kv.Put(ctx, "k", []byte("v")) },
		func(kv *engine.KV) error { return kv.SetAlarm(ctx, time.UnixMilli(1_700_000_000_000)) },
	}
	for i, id := range ids {
		st := engine.NewStore(store, "L", id)
		st.HandleAlarms(func(engine.AlarmChange) {})
		Call(t, st, writes[i])
		var state []byte
		if i == 0 {
			state = []byte("s")
		}
		must(t, Commit(st, state))
	}
	other := engine.NewStore(store, "Other", ID(2))
	must(t, Commit(other, []byte("s")))
	if _, _, err := engine.NewStore(store, "L", ID(3)).LoadState(ctx); err != nil { // read only
		t.Fatal(err)
	}
	got, err := store.Objects(ctx, "L", nil, 10)
	must(t, err)
	want := [][32]byte{ID(1), ID(300), ID(5000)}
	if !slices.Equal(got, want) {
		t.Fatalf("Objects = %x, want %x", got, want)
	}
	page, err := store.Objects(ctx, "L", want[0][:], 1)
	must(t, err)
	if len(page) != 1 || page[0] != want[1] {
		t.Fatalf("Objects after the first, limit 1 = %x, want [%x]", page, want[1])
	}
	if rest, err := store.Objects(ctx, "L", want[2][:], 10); err != nil || len(rest) != 0 {
		t.Fatalf("Objects after the last = %x, %v", rest, err)
	}
}
