package engine_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/storetest"
)

func openDB(t testing.TB, path string, opts ...engine.Option) *engine.DB {
	t.Helper()
	db, err := engine.Open(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func id(n int) [32]byte {
	var id [32]byte
	copy(id[:], fmt.Sprint(n))
	return id
}

// call and commit run a call on a store and commit its batch; see
// storetest.
var (
	call   = storetest.Call
	commit = storetest.Commit
)

func TestStateRoundTripAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "objects.db")
	db := openDB(t, path)
	ctx := context.Background()
	st := db.Store("Counter", id(1))

	if _, found, err := st.LoadState(ctx); found || err != nil {
		t.Fatalf("state of a new object: found %v, err %v", found, err)
	}
	for _, state := range [][]byte{[]byte("one"), []byte("two"), {}} {
		if err := commit(st, state); err != nil {
			t.Fatal(err)
		}
		got, found, err := st.LoadState(ctx)
		if err != nil || !found || string(got) != string(state) {
			t.Fatalf("LoadState = %q, %v, %v; want %q", got, found, err, state)
		}
	}
	// Class and ID together name an object.
	if _, found, _ := db.Store("Other", id(1)).LoadState(ctx); found {
		t.Fatal("state of another class with the same ID bytes")
	}
	if err := commit(db.Store("Counter", id(2)), []byte("kept")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db2 := openDB(t, path, engine.WithDurability(engine.PowerSafe))
	got, found, err := db2.Store("Counter", id(2)).LoadState(ctx)
	if err != nil || !found || string(got) != "kept" {
		t.Fatalf("after reopen: %q, %v, %v", got, found, err)
	}
}

func TestBatchWithoutWritesCreatesNothing(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "objects.db"))
	st := db.Store("Counter", id(1))
	if err := commit(st, nil); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := st.LoadState(context.Background()); found {
		t.Fatal("a batch without writes created a state row")
	}
}

func TestInvalidBatchIsSkipped(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "objects.db"))
	st := db.Store("Counter", id(1))
	done := make(chan error, 1)
	st.Commit([]byte("x"), true, func() bool { return false }, func(err error) { done <- err })
	if err := <-done; !errors.Is(err, engine.ErrStale) {
		t.Fatalf("error %v, want ErrStale", err)
	}
	if _, found, _ := st.LoadState(context.Background()); found {
		t.Fatal("an invalid batch was written")
	}
}

func TestConcurrentObjectsAllCommit(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "objects.db"))
	const writers, each = 16, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			st := db.Store("C", id(w))
			for i := range each {
				if err := call(t, st, func(kv *engine.KV) error {
					return kv.Put(context.Background(), fmt.Sprint("k", i%7), []byte(fmt.Sprint(i)))
				}); err != nil {
					t.Error(err)
				}
				if err := commit(st, []byte(fmt.Sprint(i))); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for w := range writers {
		st := db.Store("C", id(w))
		got, _, err := st.LoadState(context.Background())
		if err != nil || string(got) != fmt.Sprint(each-1) {
			t.Fatalf("writer %d: state %q, %v", w, got, err)
		}
		call(t, st, func(kv *engine.KV) error {
			entries, err := kv.List(context.Background(), engine.ListOptions{})
			if err != nil || len(entries) != 7 {
				t.Fatalf("writer %d: %d keys, %v", w, len(entries), err)
			}
			return nil
		})
	}
}

func TestSubmitAfterClose(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "objects.db"))
	st := db.Store("C", id(1))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := commit(st, []byte("x")); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("error %v, want ErrClosed", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestOpenFailsClearly(t *testing.T) {
	dir := t.TempDir()
	// A directory where the database file should be.
	if _, err := engine.Open(dir); err == nil {
		t.Fatal("opened a directory as a database")
	}
	if _, err := engine.OpenFile(dir); err == nil {
		t.Fatal("opened a directory as an object database")
	}
}
