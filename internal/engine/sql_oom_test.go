package engine_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/durablego/durable/internal/engine"
)

// hugeQuery asks SQLite for 100 columns, each a copy of one of the 100
// arguments: with arguments near MaxSQLValueSize (no single value may be
// larger), more than the connection's memory (256 MiB).
var hugeQuery = func() string {
	cols := make([]string, engine.MaxSQLParameters)
	for i := range cols {
		cols[i] = fmt.Sprintf("?%d || ''", i+1)
	}
	return "SELECT " + strings.Join(cols, ", ")
}()

func hugeArgs(n int) []any {
	args := make([]any, engine.MaxSQLParameters)
	for i := range args {
		args[i] = strings.Repeat("x", n)
	}
	return args
}

// TestSQLOutOfMemoryIsAnErrorAndTheConnectionCloses runs a query that
// exhausts the connection's memory, first prepared fresh and then from the
// statement cache: each is an error matching ErrOutOfMemory, not a panic,
// the store keeps working, and it closes (a statement left unfinalized
// made Close fail with BUSY and kept the connection's memory forever).
func TestSQLOutOfMemoryIsAnErrorAndTheConnectionCloses(t *testing.T) {
	st, err := engine.OpenFile(t.TempDir() + "/object.db")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, n := range []int{10, engine.MaxSQLValueSize - 100, 20, engine.MaxSQLValueSize - 100} { // cached after the first
		var got error
		call(t, st, func(*engine.KV) error {
			_, got = st.SQL.Exec(ctx, hugeQuery, hugeArgs(n)...)
			return got
		})
		if small := n < 1000; small != (got == nil) || !small && !errors.Is(got, engine.ErrOutOfMemory) {
			t.Fatalf("length %d: err %v, want ErrOutOfMemory only for the huge one", n, got)
		}
	}
	// A multi-statement query is prepared and run without the cache.
	call(t, st, func(*engine.KV) error {
		_, got := st.SQL.Exec(ctx, `CREATE TABLE t (x); `+hugeQuery, hugeArgs(engine.MaxSQLValueSize-100)...)
		if !errors.Is(got, engine.ErrOutOfMemory) {
			t.Fatalf("multi-statement query: err %v, want ErrOutOfMemory", got)
		}
		return got
	})
	call(t, st, func(*engine.KV) error {
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

// TestSQLResultSizeCap: the rows a Cursor holds are capped
// (WithMaxResultSize): a query whose rows take more fails with
// ErrOutOfMemory, cached or not, and the store goes on.
func TestSQLResultSizeCap(t *testing.T) {
	st := openFile(t, engine.WithMaxResultSize(1<<20))
	ctx := context.Background()
	rows := `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) SELECT i, zeroblob(400000) FROM n`
	call(t, st, func(*engine.KV) error {
		for _, n := range []int{2, 3, 2, 3, 1000} { // cached after the first
			cur, err := st.SQL.Exec(ctx, rows, n)
			if fits := n*400_000 < 1<<20; fits != (err == nil) || !fits && !errors.Is(err, engine.ErrOutOfMemory) {
				t.Errorf("%d rows of 400 kB: %v", n, err)
			} else if fits && len(cur.Raw()) != n {
				t.Errorf("%d rows of 400 kB: got %d", n, len(cur.Raw()))
			}
		}
		exec(t, st, `CREATE TABLE after (x)`)
		return nil
	})
}
