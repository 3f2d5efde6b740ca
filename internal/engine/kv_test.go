package engine_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/storetest"
	"github.com/durablego/durable/storage"
)

// backends opens a store of each kind; reopen gives the same object's
// store after closing everything, to read what was committed.
var backends = []struct {
	name string
	open func(t testing.TB, dir string) *engine.Store
}{
	{"node", func(t testing.TB, dir string) *engine.Store {
		return openDB(t, filepath.Join(dir, "objects.db")).Store("Test", id(7))
	}},
	{"file", func(t testing.TB, dir string) *engine.Store {
		st, err := engine.OpenFile(filepath.Join(dir, "object.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}},
}

func forEachBackend(t *testing.T, test func(t *testing.T, open func() *engine.Store)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			dir := t.TempDir()
			test(t, func() *engine.Store { return b.open(t, dir) })
		})
	}
}

func TestKVOperations(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func() *engine.Store) {
		ctx := context.Background()
		st := open()
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		call(t, st, func(kv *engine.KV) error {
			must(kv.Put(ctx, "a", []byte("1")))
			must(kv.PutMany(ctx, map[string][]byte{"b": []byte("2"), "c": []byte("3"), "d": {}}))
			if v, ok, err := kv.Get(ctx, "a"); string(v) != "1" || !ok || err != nil {
				t.Fatalf("Get(a) in the same call = %q, %v, %v", v, ok, err)
			}
			return nil
		})
		must(commit(st, nil))
		call(t, st, func(kv *engine.KV) error {
			got, err := kv.GetMany(ctx, []string{"a", "c", "missing", "d"})
			must(err)
			if len(got) != 3 || string(got["a"]) != "1" || string(got["c"]) != "3" || got["d"] == nil || len(got["d"]) != 0 {
				t.Fatalf("GetMany = %q", got)
			}
			if existed, err := kv.Delete(ctx, "a"); !existed || err != nil {
				t.Fatalf("Delete(a) = %v, %v", existed, err)
			}
			if existed, err := kv.Delete(ctx, "a"); existed || err != nil {
				t.Fatalf("second Delete(a) = %v, %v", existed, err)
			}
			if n, err := kv.DeleteMany(ctx, []string{"b", "zz", "c"}); n != 2 || err != nil {
				t.Fatalf("DeleteMany = %d, %v", n, err)
			}
			return nil
		})
		must(commit(st, nil))
		call(t, st, func(kv *engine.KV) error {
			entries, err := kv.List(ctx, engine.ListOptions{})
			if err != nil || len(entries) != 1 || entries[0].Key != "d" {
				t.Fatalf("List after deletes = %v, %v", entries, err)
			}
			must(kv.Put(ctx, "e", []byte("5")))
			must(kv.DeleteAll(ctx))
			must(kv.Put(ctx, "f", []byte("6")))
			entries, _ = kv.List(ctx, engine.ListOptions{})
			if len(entries) != 1 || entries[0].Key != "f" {
				t.Fatalf("List after DeleteAll and a put, same call = %v", entries)
			}
			return nil
		})
		must(commit(st, nil))
		must(st.Close())

		reopened := open()
		call(t, reopened, func(kv *engine.KV) error {
			entries, err := kv.List(ctx, engine.ListOptions{})
			if err != nil || len(entries) != 1 || entries[0].Key != "f" || string(entries[0].Value) != "6" {
				t.Fatalf("List after reopening = %v, %v", entries, err)
			}
			return nil
		})
	})
}

func TestFailedCallLeavesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func() *engine.Store) {
		ctx := context.Background()
		st := open()
		call(t, st, func(kv *engine.KV) error { return kv.Put(ctx, "keep", []byte("1")) })
		boom := errors.New("boom")
		err := call(t, st, func(kv *engine.KV) error {
			kv.Put(ctx, "keep", []byte("changed"))
			kv.Put(ctx, "new", []byte("x"))
			kv.DeleteAll(ctx)
			return boom
		})
		if err != boom {
			t.Fatal(err)
		}
		if err := commit(st, nil); err != nil {
			t.Fatal(err)
		}
		call(t, st, func(kv *engine.KV) error {
			entries, _ := kv.List(ctx, engine.ListOptions{})
			if len(entries) != 1 || entries[0].Key != "keep" || string(entries[0].Value) != "1" {
				t.Fatalf("after a failed call: %v", entries)
			}
			return nil
		})
	})
}

func TestTransactions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func() *engine.Store) {
		ctx := context.Background()
		st := open()
		get := func(kv *engine.KV, key string) string {
			v, ok, err := kv.Get(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				return "<none>"
			}
			return string(v)
		}
		call(t, st, func(kv *engine.KV) error {
			kv.Put(ctx, "from", []byte("10"))
			// Reads inside see the transaction's own writes; an error undoes them.
			err := kv.Transaction(ctx, func(tx *engine.KV) error {
				tx.Put(ctx, "from", []byte("0"))
				if got := get(tx, "from"); got != "0" {
					t.Fatalf("read inside the transaction = %s", got)
				}
				return errors.New("insufficient funds")
			})
			if err == nil || get(kv, "from") != "10" {
				t.Fatalf("after a failing transaction: err %v, from %s", err, get(kv, "from"))
			}
			// Rollback undoes even when fn returns nil.
			kv.Transaction(ctx, func(tx *engine.KV) error {
				tx.Put(ctx, "from", []byte("1"))
				tx.Rollback()
				return nil
			})
			if get(kv, "from") != "10" {
				t.Fatal("Rollback did not undo")
			}
			// Nested: the inner rollback keeps the outer's writes.
			err = kv.Transaction(ctx, func(tx *engine.KV) error {
				tx.Put(ctx, "outer", []byte("kept"))
				tx.Transaction(ctx, func(inner *engine.KV) error {
					inner.Put(ctx, "inner", []byte("undone"))
					return errors.New("inner fails")
				})
				return nil
			})
			if err != nil || get(kv, "outer") != "kept" || get(kv, "inner") != "<none>" {
				t.Fatalf("nested: err %v, outer %s, inner %s", err, get(kv, "outer"), get(kv, "inner"))
			}
			// A committed transaction's writes belong to the call.
			kv.Transaction(ctx, func(tx *engine.KV) error { return tx.Put(ctx, "to", []byte("5")) })
			return nil
		})
		if err := commit(st, nil); err != nil {
			t.Fatal(err)
		}
		call(t, st, func(kv *engine.KV) error {
			if get(kv, "to") != "5" || get(kv, "outer") != "kept" || get(kv, "from") != "10" {
				t.Fatalf("committed: to %s, outer %s, from %s", get(kv, "to"), get(kv, "outer"), get(kv, "from"))
			}
			return nil
		})
	})
}

func TestLimitsAndErrors(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func() *engine.Store) {
		ctx := context.Background()
		st := open()
		// The limits of a class without SQL (the node database's); see
		// TestKeyValueLimitsOfSQLClasses for the others.
		maxKey, maxValue := engine.MaxKeySize, engine.MaxValueSize
		if strings.HasSuffix(t.Name(), "/file") { // key and value together
			maxKey, maxValue = engine.MaxSQLEntrySize, engine.MaxSQLEntrySize-engine.MaxKeySize
		}
		big := strings.Repeat("k", maxKey)
		key := big[:engine.MaxKeySize] // with the largest value
		many := make([]string, engine.MaxKeysPerCall+1)
		manyEntries := map[string][]byte{}
		for i := range many {
			many[i] = fmt.Sprint("key", i)
			manyEntries[many[i]] = nil
		}
		cases := []struct {
			name string
			op   func(kv *engine.KV) error
			want error
		}{
			{"empty key", func(kv *engine.KV) error { return kv.Put(ctx, "", nil) }, engine.ErrKeyEmpty},
			{"key over the limit", func(kv *engine.KV) error { return kv.Put(ctx, big+"k", nil) }, engine.ErrKeyTooLarge},
			{"key not UTF-8", func(kv *engine.KV) error { return kv.Put(ctx, "a\xffb", nil) }, engine.ErrKeyNotUTF8},
			{"value over the limit", func(kv *engine.KV) error {
				return kv.Put(ctx, key, make([]byte, maxValue+1))
			}, engine.ErrValueTooLarge},
			{"129 keys to GetMany", func(kv *engine.KV) error { _, err := kv.GetMany(ctx, many); return err }, engine.ErrTooManyKeys},
			{"129 keys to PutMany", func(kv *engine.KV) error { return kv.PutMany(ctx, manyEntries) }, engine.ErrTooManyKeys},
			{"129 keys to DeleteMany", func(kv *engine.KV) error { _, err := kv.DeleteMany(ctx, many); return err }, engine.ErrTooManyKeys},
			{"one bad key in PutMany", func(kv *engine.KV) error {
				return kv.PutMany(ctx, map[string][]byte{"fine": []byte("x"), "": nil})
			}, engine.ErrKeyEmpty},
			{"Start and StartAfter", func(kv *engine.KV) error {
				_, err := kv.List(ctx, engine.ListOptions{Start: "a", StartAfter: "b"})
				return err
			}, engine.ErrListOptions},
			{"negative limit", func(kv *engine.KV) error {
				_, err := kv.List(ctx, engine.ListOptions{Limit: -1})
				return err
			}, engine.ErrListOptions},
		}
		for _, c := range cases {
			err := call(t, st, c.op)
			if !errors.Is(err, c.want) || !errors.Is(err, engine.ErrInvalid) {
				t.Errorf("%s: error %v, want %v", c.name, err, c.want)
			}
		}
		// The largest legal key and value are accepted.
		if err := call(t, st, func(kv *engine.KV) error {
			return kv.Put(ctx, key, make([]byte, maxValue))
		}); err != nil {
			t.Fatalf("largest key and value: %v", err)
		}
		if err := commit(st, nil); err != nil {
			t.Fatal(err)
		}
		call(t, st, func(kv *engine.KV) error {
			entries, _ := kv.List(ctx, engine.ListOptions{})
			if len(entries) != 1 || entries[0].Key != key || len(entries[0].Value) != maxValue {
				t.Fatalf("after the failed calls only the legal write is there; got %d entries", len(entries))
			}
			return nil
		})
		// Outside a call the handle refuses to work.
		if _, _, err := st.KV.Get(ctx, "x"); !errors.Is(err, engine.ErrNotInCall) {
			t.Fatalf("Get outside a call: %v", err)
		}
	})
}

func TestTypedHelpers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func() *engine.Store) {
		ctx := context.Background()
		st := open()
		call(t, st, func(kv *engine.KV) error {
			v, _ := structpb.NewValue(map[string]any{"theme": "dark", "size": 3.0})
			if err := storage.PutProto(ctx, (*storage.KV)(kv), "p", v); err != nil {
				t.Fatal(err)
			}
			var got structpb.Value
			if ok, err := storage.GetProto(ctx, (*storage.KV)(kv), "p", &got); !ok || err != nil || got.GetStructValue().GetFields()["theme"].GetStringValue() != "dark" {
				t.Fatalf("GetProto = %v, %v, %v", &got, ok, err)
			}
			type pref struct{ Theme string }
			if err := storage.PutJSON(ctx, (*storage.KV)(kv), "j", pref{"light"}); err != nil {
				t.Fatal(err)
			}
			if p, ok, err := storage.GetJSON[pref](ctx, (*storage.KV)(kv), "j"); !ok || err != nil || p.Theme != "light" {
				t.Fatalf("GetJSON = %v, %v, %v", p, ok, err)
			}
			if _, ok, err := storage.GetJSON[pref](ctx, (*storage.KV)(kv), "missing"); ok || err != nil {
				t.Fatalf("GetJSON of a missing key = %v, %v", ok, err)
			}
			if _, _, err := storage.GetJSON[int](ctx, (*storage.KV)(kv), "j"); err == nil {
				t.Fatal("GetJSON into the wrong type succeeded")
			}
			return nil
		})
	})
}

// TestListMatchesModel runs random writes, failed calls, transactions and
// commits against both backends and a map, and compares every List.
func TestListMatchesModel(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func() *engine.Store) {
		ctx := context.Background()
		st := open()
		r := rand.New(rand.NewPCG(1, 2))
		committed := storetest.Model{}
		for round := range 300 {
			fail := r.IntN(5) == 0
			pending := maps(committed)
			err := call(t, st, func(kv *engine.KV) error {
				for range 1 + r.IntN(6) {
					k := storetest.RandomKey(r)
					switch op := r.IntN(10); {
					case op < 6:
						v := fmt.Sprint(round, op)
						if err := kv.Put(ctx, k, []byte(v)); err != nil {
							t.Fatal(err)
						}
						pending[k] = v
					case op < 9:
						kv.Delete(ctx, k)
						delete(pending, k)
					case r.IntN(10) == 0:
						kv.DeleteAll(ctx)
						clear(pending)
					}
				}
				o := storetest.RandomListOptions(r)
				entries, err := kv.List(ctx, o)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, e := range entries {
					got = append(got, e.Key)
					if string(e.Value) != pending[e.Key] {
						t.Fatalf("round %d: value of %q = %q, want %q", round, e.Key, e.Value, pending[e.Key])
					}
				}
				if want := pending.List(o); !slices.Equal(got, want) {
					t.Fatalf("round %d: List(%+v) = %q, want %q", round, o, got, want)
				}
				if fail {
					return errors.New("fail")
				}
				return nil
			})
			if err == nil {
				committed = pending
			}
			if r.IntN(3) == 0 {
				if err := commit(st, nil); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}

func maps(m storetest.Model) storetest.Model {
	c := make(storetest.Model, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// FuzzKey checks that any key is either stored and read back exactly or
// refused with ErrInvalid, never a crash.
func FuzzKey(f *testing.F) {
	st, err := engine.OpenFile(filepath.Join(f.TempDir(), "object.db"))
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	for _, k := range []string{"a", "", "é", "😀", "a\xffb", "\x00", strings.Repeat("x", 2049)} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		ctx := context.Background()
		call(t, st, func(kv *engine.KV) error {
			err := kv.Put(ctx, key, []byte(key))
			if err != nil {
				if !errors.Is(err, engine.ErrInvalid) {
					t.Fatalf("Put(%q) = %v, not an ErrInvalid", key, err)
				}
				return nil
			}
			v, ok, err := kv.Get(ctx, key)
			if !ok || err != nil || string(v) != key {
				t.Fatalf("Get(%q) = %q, %v, %v", key, v, ok, err)
			}
			return nil
		})
	})
}

// FuzzListOptions compares List with arbitrary options against the storetest.Model
// over a fixed committed set.
func FuzzListOptions(f *testing.F) {
	st, err := engine.OpenFile(filepath.Join(f.TempDir(), "object.db"))
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	m := storetest.Model{}
	r := rand.New(rand.NewPCG(3, 4))
	if err := call(f, st, func(kv *engine.KV) error {
		for range 100 {
			k := storetest.RandomKey(r)
			m[k] = k
			kv.Put(ctx, k, []byte(k))
		}
		return nil
	}); err != nil {
		f.Fatal(err)
	}
	if err := commit(st, nil); err != nil {
		f.Fatal(err)
	}
	f.Add("a", "", "", "", 0, false)
	f.Add("", "é", "", "😀", 3, true)
	f.Add("", "", "a", "", 1, false)
	f.Fuzz(func(t *testing.T, prefix, start, startAfter, end string, limit int, reverse bool) {
		o := engine.ListOptions{Prefix: prefix, Start: start, StartAfter: startAfter, End: end, Limit: limit, Reverse: reverse}
		call(t, st, func(kv *engine.KV) error {
			entries, err := kv.List(ctx, o)
			if start != "" && startAfter != "" || limit < 0 {
				if !errors.Is(err, engine.ErrListOptions) {
					t.Fatalf("List(%+v) = %v, want ErrListOptions", o, err)
				}
				return nil
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range entries {
				got = append(got, e.Key)
			}
			if want := m.List(o); !slices.Equal(got, want) {
				t.Fatalf("List(%+v) = %q, want %q", o, got, want)
			}
			return nil
		})
	})
}
