package engine_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/durablego/durable/internal/engine"
)

// TestSQLLimits: each of Cloudflare's SQL limits holds at the limit and
// fails just past it with ErrSQLLimit (an ErrInvalid), on a database on
// disk.
func TestSQLLimits(t *testing.T) {
	st := openFile(t)
	ctx := context.Background()
	commitWrite(t, st) // on disk
	columns := func(n int) string {
		cols := make([]string, n)
		for i := range cols {
			cols[i] = fmt.Sprintf("c%d", i)
		}
		return strings.Join(cols, ", ")
	}
	params := func(n int) (string, []any) {
		qs, args := make([]string, n), make([]any, n)
		for i := range qs {
			qs[i], args[i] = "?", i
		}
		return "SELECT " + strings.Join(qs, ", "), args
	}
	compound := func(n int) string {
		terms := make([]string, n)
		for i := range terms {
			terms[i] = fmt.Sprintf("SELECT %d", i)
		}
		return strings.Join(terms, " UNION ALL ")
	}
	statement := func(n int) string { // n bytes long
		q := "SELECT '"
		return q + strings.Repeat("x", n-len(q)-1) + "'"
	}
	pattern := func(n int) string { return "SELECT 'a' LIKE '" + strings.Repeat("a", n) + "'" }
	call(t, st, func(*engine.KV) error {
		for _, c := range []struct {
			name     string
			at, past string
			atArgs   []any
			pastArgs []any
		}{
			{name: "columns", at: "CREATE TABLE wide (" + columns(100) + ")", past: "CREATE TABLE wider (" + columns(101) + ")"},
			{name: "statement", at: statement(engine.MaxSQLStatementSize), past: statement(engine.MaxSQLStatementSize + 1)},
			{name: "compound", at: compound(5), past: compound(6)},
			{name: "pattern", at: pattern(50), past: pattern(51)},
			{name: "string", at: "SELECT zeroblob(2000000)", past: "SELECT zeroblob(2000001)"},
		} {
			if _, err := st.SQL.Exec(ctx, c.at, c.atArgs...); err != nil {
				t.Errorf("%s at the limit: %v", c.name, err)
			}
			_, err := st.SQL.Exec(ctx, c.past, c.pastArgs...)
			if !errors.Is(err, engine.ErrSQLLimit) || !errors.Is(err, engine.ErrInvalid) {
				t.Errorf("%s past the limit: %v, want ErrSQLLimit", c.name, err)
			}
		}
		q, args := params(100)
		if _, err := st.SQL.Exec(ctx, q, args...); err != nil {
			t.Errorf("100 parameters: %v", err)
		}
		q, args = params(101)
		if _, err := st.SQL.Exec(ctx, q, args...); !errors.Is(err, engine.ErrSQLLimit) {
			t.Errorf("101 parameters: %v, want ErrSQLLimit", err)
		}
		// A bound value over the limit, and a row made over it.
		exec(t, st, `CREATE TABLE blobs (a BLOB, b BLOB)`)
		if _, err := st.SQL.Exec(ctx, `INSERT INTO blobs VALUES (?, NULL)`, make([]byte, engine.MaxSQLValueSize+1)); !errors.Is(err, engine.ErrSQLLimit) {
			t.Errorf("bound blob past the limit: %v, want ErrSQLLimit", err)
		}
		half := make([]byte, engine.MaxSQLValueSize/2)
		if _, err := st.SQL.Exec(ctx, `INSERT INTO blobs VALUES (?, ?)`, half, half); !errors.Is(err, engine.ErrSQLLimit) {
			t.Errorf("row past the limit: %v, want ErrSQLLimit", err)
		}
		if _, err := st.SQL.Exec(ctx, `INSERT INTO blobs VALUES (?, NULL)`, half); err != nil {
			t.Errorf("a row within the limit: %v", err)
		}
		return nil
	})
	// The length limit binds the object's SQL only: a state larger than
	// it is Durable's to store.
	state := make([]byte, engine.MaxSQLValueSize+100)
	if err := commit(st, state); err != nil {
		t.Fatalf("state of %d bytes: %v", len(state), err)
	}
}

// commitWrite commits a batch with a key, so that st's database is on
// disk.
func commitWrite(t testing.TB, st *engine.Store) {
	t.Helper()
	call(t, st, func(kv *engine.KV) error { return kv.Put(context.Background(), "on-disk", []byte("1")) })
	if err := commit(st, nil); err != nil {
		t.Fatal(err)
	}
}

// TestSQLFTS5: full-text search works, on disk and after reopening; other
// virtual table modules are refused.
func TestSQLFTS5(t *testing.T) {
	path := t.TempDir() + "/object.db"
	st := openFileAt(t, path)
	ctx := context.Background()
	call(t, st, func(*engine.KV) error {
		exec(t, st, `CREATE VIRTUAL TABLE docs USING fts5(title, body)`)
		exec(t, st, `INSERT INTO docs VALUES ('hello', 'the quick brown fox'), ('bye', 'a lazy dog')`)
		return nil
	})
	if err := commit(st, nil); err != nil {
		t.Fatal(err)
	}
	st.Close()
	st = openFileAt(t, path)
	call(t, st, func(*engine.KV) error {
		rows := exec(t, st, `SELECT title, highlight(docs, 1, '[', ']') AS h FROM docs WHERE docs MATCH 'fox' ORDER BY bm25(docs)`).All()
		if len(rows) != 1 || rows[0]["title"] != "hello" || rows[0]["h"] != "the quick brown [fox]" {
			t.Errorf("MATCH fox = %v", rows)
		}
		exec(t, st, `CREATE VIRTUAL TABLE terms USING fts5vocab(docs, 'row')`)
		if n := len(exec(t, st, `SELECT term FROM terms`).All()); n != 9 {
			t.Errorf("fts5vocab has %d terms, want 9", n)
		}
		// Defensive mode: FTS5's shadow tables are read-only.
		if _, err := st.SQL.Exec(ctx, `DELETE FROM docs_data`); err == nil {
			t.Error("a write to an FTS5 shadow table succeeded")
		}
		if _, err := st.SQL.Exec(ctx, `CREATE VIRTUAL TABLE s USING json_each`); !errors.Is(err, engine.ErrSQLForbidden) {
			t.Errorf("a virtual table of another module: %v, want ErrSQLForbidden", err)
		}
		exec(t, st, `DROP TABLE terms; DROP TABLE docs`)
		return nil
	})
}

// TestSQLDialect: what Cloudflare's SQLite accepts and refuses besides the
// limits: double-quoted strings, TEMP objects, empty statements, pragmas
// and functions, parameters of statements but the last.
func TestSQLDialect(t *testing.T) {
	st := openFile(t)
	ctx := context.Background()
	call(t, st, func(*engine.KV) error {
		if v := exec(t, st, `SELECT "foo" AS v`).All(); len(v) != 1 || v[0]["v"] != "foo" {
			t.Errorf(`SELECT "foo" = %v, want the string foo`, v)
		}
		exec(t, st, `CREATE TABLE t (x TEXT DEFAULT "d", CHECK (x <> "bad"))`)
		exec(t, st, `INSERT INTO t DEFAULT VALUES`)
		if v := exec(t, st, `SELECT x FROM t WHERE x = "d"`).All(); len(v) != 1 {
			t.Errorf(`a double-quoted string in DDL and WHERE: %v`, v)
		}
		// A double-quoted name that exists is the column, as in SQLite.
		if v := exec(t, st, `SELECT "x" AS v FROM t`).All(); len(v) != 1 || v[0]["v"] != "d" {
			t.Errorf(`SELECT "x" FROM t = %v, want the column`, v)
		}
		for _, q := range []string{
			`CREATE TEMP TABLE tt (x)`, `CREATE TEMPORARY TABLE tt (x)`, `CREATE TABLE temp.tt (x)`,
			`CREATE TEMP VIEW tv AS SELECT 1`, `CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END`,
			`SELECT sqlite_version()`, `SELECT sqlite_source_id()`, `SELECT sqlite_compileoption_used('x')`,
			`SELECT fts5_source_id()`,
		} {
			if _, err := st.SQL.Exec(ctx, q); !errors.Is(err, engine.ErrSQLForbidden) {
				t.Errorf("Exec(%q) = %v, want ErrSQLForbidden", q, err)
			}
		}
		for _, q := range []string{"", ";", "  ;\n; ", "-- only a comment", "/* a comment */", "/* unterminated"} {
			if _, err := st.SQL.Exec(ctx, q); !errors.Is(err, engine.ErrInvalid) || !strings.Contains(err.Error(), "no statement") {
				t.Errorf("Exec(%q) = %v, want ErrInvalid: no statement", q, err)
			}
		}
		// After a statement, trailing comments and semicolons are fine.
		exec(t, st, "SELECT 1; -- done\n;")
		if v := exec(t, st, `PRAGMA data_version`).Raw(); len(v) != 1 {
			t.Errorf("PRAGMA data_version = %v", v)
		}
		if _, err := st.SQL.Exec(ctx, `PRAGMA data_version = 3`); !errors.Is(err, engine.ErrSQLForbidden) {
			t.Errorf("PRAGMA data_version = 3: %v, want ErrSQLForbidden", err)
		}
		if v := exec(t, st, `SELECT upper(x) || printf('%d', 7) || json_extract('{"a":1}', '$.a') AS v FROM t`).All(); len(v) != 1 || v[0]["v"] != "D71" {
			t.Errorf("allowed functions: %v", v)
		}
		if _, err := st.SQL.Exec(ctx, `INSERT INTO t VALUES (?); SELECT ?`, "a", "b"); !errors.Is(err, engine.ErrInvalid) {
			t.Errorf("a parameter in a statement before the last: %v, want ErrInvalid", err)
		}
		return nil
	})
}

// TestSQLDatabaseSize: the size is the pages in use, as on Cloudflare: one
// page for a fresh object, in memory or on disk, and back down after a
// table is dropped.
func TestSQLDatabaseSize(t *testing.T) {
	st := openFile(t)
	ctx := context.Background()
	size := func() int64 {
		t.Helper()
		n, err := st.SQL.DatabaseSize(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	call(t, st, func(*engine.KV) error {
		if n := size(); n != 4096 {
			t.Errorf("fresh object in memory: %d, want 4096", n)
		}
		return nil
	})
	commitWrite(t, st)
	call(t, st, func(*engine.KV) error {
		if n := size(); n != 4096 {
			t.Errorf("fresh object on disk with one key: %d, want 4096", n)
		}
		exec(t, st, `CREATE TABLE big (b BLOB)`)
		for range 10 {
			exec(t, st, `INSERT INTO big VALUES (zeroblob(100000))`)
		}
		return nil
	})
	if err := commit(st, nil); err != nil {
		t.Fatal(err)
	}
	var grown int64
	call(t, st, func(*engine.KV) error {
		if grown = size(); grown < 1_000_000 {
			t.Errorf("with 1 MB in a table: %d", grown)
		}
		exec(t, st, `DROP TABLE big`)
		return nil
	})
	if err := commit(st, nil); err != nil {
		t.Fatal(err)
	}
	call(t, st, func(*engine.KV) error {
		if n := size(); n != 4096 {
			t.Errorf("after DROP TABLE: %d, want 4096 (was %d)", n, grown)
		}
		return nil
	})
}
