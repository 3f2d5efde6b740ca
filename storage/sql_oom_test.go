package storage_test

import (
	"context"
	"errors"
	"testing"

	"github.com/durablego/durable/storage"
)

// hugeString asks SQLite for a string of n bytes: past the connection's
// memory (256 MiB), the binding runs out of memory.
const hugeString = `SELECT length(printf('%.*c', ?, 'x'))`

// TestSQLOutOfMemoryIsAnErrorAndTheConnectionCloses runs a query that
// exhausts the connection's memory, first prepared fresh and then from the
// statement cache: each is an error matching ErrOutOfMemory, not a panic,
// the store keeps working, and it closes (a statement left unfinalized
// made Close fail with BUSY and kept the connection's memory forever).
func TestSQLOutOfMemoryIsAnErrorAndTheConnectionCloses(t *testing.T) {
	st, err := storage.OpenFile(t.TempDir() + "/object.db")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, n := range []int{10, 400 << 20, 20, 400 << 20} { // cached after the first
		var got error
		call(t, st, func(*storage.KV) error {
			_, got = st.SQL.Exec(ctx, hugeString, n)
			return got
		})
		if small := n < 1000; small != (got == nil) || !small && !errors.Is(got, storage.ErrOutOfMemory) {
			t.Fatalf("length %d: err %v, want ErrOutOfMemory only for the huge one", n, got)
		}
	}
	// A multi-statement query is prepared and run without the cache.
	call(t, st, func(*storage.KV) error {
		_, got := st.SQL.Exec(ctx, `CREATE TABLE t (x); SELECT length(printf('%.*c', 400000000, 'x'))`)
		if !errors.Is(got, storage.ErrOutOfMemory) {
			t.Fatalf("multi-statement query: err %v, want ErrOutOfMemory", got)
		}
		return got
	})
	call(t, st, func(*storage.KV) error {
		exec(t, st, `CREATE TABLE u (x)`)
		return nil
	})
	if err := commit(st, []byte("s")); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close after running out of memory: %v", err)
	}
}
