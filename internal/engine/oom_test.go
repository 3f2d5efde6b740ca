package engine_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/durablego/durable/internal/engine"
)

// hugeState is larger than what SQLite's memory (256 MiB per connection in
// this build) can bind and write in one statement.
func hugeState() []byte { return bytes.Repeat([]byte{7}, 200<<20) }

// TestOutOfMemoryFailsOnlyItsCommit: a commit that runs SQLite out of memory
// fails with ErrOutOfMemory, in the node database's writer goroutine and in
// an object's own file, and the storage serves the next commit, the same
// object's included.
func TestOutOfMemoryFailsOnlyItsCommit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func() *engine.Store) {
		ctx := context.Background()
		st := open()
		if err := commit(st, []byte("before")); err != nil {
			t.Fatal(err)
		}
		err := commit(st, hugeState())
		if !errors.Is(err, engine.ErrOutOfMemory) {
			t.Fatalf("commit of a 200 MiB state: %v, want ErrOutOfMemory", err)
		}
		st.Reset()
		if got, _, err := st.LoadState(ctx); err != nil || string(got) != "before" {
			t.Fatalf("state after the failed commit: %q, %v; want the one before", got, err)
		}
		if err := commit(st, []byte("after")); err != nil {
			t.Fatalf("commit after the failed one: %v", err)
		}
		if got, _, err := st.LoadState(ctx); err != nil || string(got) != "after" {
			t.Fatalf("state: %q, %v", got, err)
		}
	})
}

// TestOutOfMemoryInTheWriterLeavesOtherObjects: the failed batch does not
// take the node database's other objects with it once it is out of the
// group.
func TestOutOfMemoryInTheWriterLeavesOtherObjects(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "objects.db"))
	big, small := db.Store("C", id(1)), db.Store("C", id(2))
	if err := commit(big, hugeState()); !errors.Is(err, engine.ErrOutOfMemory) {
		t.Fatalf("huge commit: %v", err)
	}
	for i := range 3 {
		if err := commit(small, []byte{byte(i)}); err != nil {
			t.Fatalf("commit %d of another object: %v", i, err)
		}
	}
}
