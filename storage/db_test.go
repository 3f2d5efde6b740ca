package storage_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/durablego/durable/storage"
)

func open(t *testing.T, path string, opts ...storage.Option) *storage.DB {
	t.Helper()
	db, err := storage.Open(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// submit submits b and waits for its acknowledgement.
func submit(db *storage.DB, b storage.Batch) error {
	done := make(chan error, 1)
	b.Done = func(err error) { done <- err }
	db.Submit(&b)
	return <-done
}

func id(n int) [32]byte {
	var id [32]byte
	copy(id[:], fmt.Sprint(n))
	return id
}

func TestStateRoundTripAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "objects.db")
	db := open(t, path)
	ctx := context.Background()

	if _, found, err := db.LoadState(ctx, "Counter", id(1)); found || err != nil {
		t.Fatalf("state of a new object: found %v, err %v", found, err)
	}
	for _, state := range [][]byte{[]byte("one"), []byte("two"), {}} {
		if err := submit(db, storage.Batch{Class: "Counter", ID: id(1), State: state, WriteState: true}); err != nil {
			t.Fatal(err)
		}
		got, found, err := db.LoadState(ctx, "Counter", id(1))
		if err != nil || !found || string(got) != string(state) {
			t.Fatalf("LoadState = %q, %v, %v; want %q", got, found, err, state)
		}
	}
	// Class and ID together name an object.
	if _, found, _ := db.LoadState(ctx, "Other", id(1)); found {
		t.Fatal("state of another class with the same ID bytes")
	}
	if err := submit(db, storage.Batch{Class: "Counter", ID: id(2), State: []byte("kept"), WriteState: true}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db2 := open(t, path, storage.WithDurability(storage.PowerSafe))
	got, found, err := db2.LoadState(ctx, "Counter", id(2))
	if err != nil || !found || string(got) != "kept" {
		t.Fatalf("after reopen: %q, %v, %v", got, found, err)
	}
}

func TestBatchWithoutWritesIsAcknowledged(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "objects.db"))
	if err := submit(db, storage.Batch{Class: "Counter", ID: id(1)}); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := db.LoadState(context.Background(), "Counter", id(1)); found {
		t.Fatal("a batch without writes created a state row")
	}
}

func TestInvalidBatchIsSkipped(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "objects.db"))
	err := submit(db, storage.Batch{Class: "Counter", ID: id(1), State: []byte("x"), WriteState: true, Valid: func() bool { return false }})
	if !errors.Is(err, storage.ErrStale) {
		t.Fatalf("error %v, want ErrStale", err)
	}
	if _, found, _ := db.LoadState(context.Background(), "Counter", id(1)); found {
		t.Fatal("an invalid batch was written")
	}
}

func TestConcurrentBatchesAllCommit(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "objects.db"))
	const writers, each = 16, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := submit(db, storage.Batch{Class: "C", ID: id(w), State: []byte(fmt.Sprint(i)), WriteState: true}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for w := range writers {
		got, _, err := db.LoadState(context.Background(), "C", id(w))
		if err != nil || string(got) != fmt.Sprint(each-1) {
			t.Fatalf("writer %d: %q, %v", w, got, err)
		}
	}
}

func TestSubmitAfterClose(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "objects.db"))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := submit(db, storage.Batch{Class: "C", ID: id(1), State: []byte("x"), WriteState: true}); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("error %v, want ErrClosed", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestOpenFailsClearly(t *testing.T) {
	dir := t.TempDir()
	// A directory where the database file should be.
	if _, err := storage.Open(dir); err == nil {
		t.Fatal("opened a directory as a database")
	}
}

// BenchmarkGroupCommit measures commits of one-object batches submitted by
// 64 writers at once: the node-level group commit.
func BenchmarkGroupCommit(b *testing.B) {
	db, err := storage.Open(filepath.Join(b.TempDir(), "objects.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	state := make([]byte, 64)
	b.SetParallelism(32)
	var n sync.Mutex
	next := 0
	b.RunParallel(func(pb *testing.PB) {
		n.Lock()
		next++
		me := next
		n.Unlock()
		for pb.Next() {
			if err := submit(db, storage.Batch{Class: "C", ID: id(me), State: state, WriteState: true}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
