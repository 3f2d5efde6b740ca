package engine_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/durablego/durable/internal/engine"
)

func openFile(t testing.TB, opts ...engine.FileOption) *engine.Store {
	t.Helper()
	return openFileAt(t, filepath.Join(t.TempDir(), "object.db"), opts...)
}

// openFileAt opens the object database at path, closing it at the end of
// the test.
func openFileAt(t testing.TB, path string, opts ...engine.FileOption) *engine.Store {
	t.Helper()
	st, err := engine.OpenFile(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func exec(t testing.TB, st *engine.Store, query string, args ...any) *engine.Cursor {
	t.Helper()
	cur, err := st.SQL.Exec(context.Background(), query, args...)
	if err != nil {
		t.Fatalf("Exec(%q): %v", query, err)
	}
	return cur
}

func TestSQLExecAndCursor(t *testing.T) {
	st := openFile(t)
	ctx := context.Background()
	call(t, st, func(*engine.KV) error {
		cur := exec(t, st, `
			CREATE TABLE events (id INTEGER PRIMARY KEY, name TEXT NOT NULL, props TEXT, ts INTEGER NOT NULL);
			CREATE INDEX events_ts ON events (ts);
			-- arguments bind to the last statement
			INSERT INTO events (name, props, ts) VALUES (?, ?, ?), (?, NULL, ?)`,
			"view", `{"page":"/"}`, 10, "click", 20)
		if cur.RowsWritten() != 2 {
			t.Fatalf("RowsWritten = %d, want 2", cur.RowsWritten())
		}
		exec(t, st, `INSERT INTO events (name, ts) VALUES (?, ?)`, "view", int64(30))

		cur = exec(t, st, `SELECT name, COUNT(*) AS count FROM events WHERE ts > ? GROUP BY name ORDER BY name`, 5)
		if got := cur.Columns(); strings.Join(got, ",") != "name,count" {
			t.Fatalf("Columns = %v", got)
		}
		rows := cur.All()
		if len(rows) != 2 || rows[0]["name"] != "click" || rows[0]["count"] != int64(1) || rows[1]["count"] != int64(2) {
			t.Fatalf("All = %v", rows)
		}
		if cur.RowsRead() != 2 || cur.RowsWritten() != 0 {
			t.Fatalf("RowsRead %d, RowsWritten %d", cur.RowsRead(), cur.RowsWritten())
		}

		cur = exec(t, st, `SELECT id, name, props, ts, 1.5 AS f, x'00ff' AS b FROM events ORDER BY ts DESC`)
		if !cur.Next() {
			t.Fatal("no first row")
		}
		var (
			id, ts int64
			name   string
			props  any
			f      float64
			b      []byte
		)
		if err := cur.Scan(&id, &name, &props, &ts, &f, &b); err != nil {
			t.Fatal(err)
		}
		if id != 3 || name != "view" || props != nil || ts != 30 || f != 1.5 || string(b) != "\x00\xff" {
			t.Fatalf("Scan = %v %v %v %v %v %q", id, name, props, ts, f, b)
		}
		if raw := cur.Raw(); len(raw) != 2 || raw[0][1] != "click" {
			t.Fatalf("Raw after one Next = %v", raw)
		}

		one, err := exec(t, st, `SELECT COUNT(*) AS n FROM events`).One()
		if err != nil || one["n"] != int64(3) {
			t.Fatalf("One = %v, %v", one, err)
		}
		if _, err := exec(t, st, `SELECT * FROM events`).One(); err == nil {
			t.Fatal("One of three rows succeeded")
		}
		if _, err := st.SQL.Exec(ctx, `SELECT ?`, 1, 2); !errors.Is(err, engine.ErrInvalid) {
			t.Fatalf("wrong argument count: %v", err)
		}
		if _, err := st.SQL.Exec(ctx, `SELECT ?`, struct{}{}); !errors.Is(err, engine.ErrInvalid) {
			t.Fatalf("unsupported argument type: %v", err)
		}
		if _, err := st.SQL.Exec(ctx, `SELEC oops`); err == nil || errors.Is(err, engine.ErrInvalid) {
			t.Fatalf("syntax error: %v", err)
		}
		if size, err := st.SQL.DatabaseSize(ctx); err != nil || size <= 0 {
			t.Fatalf("DatabaseSize = %d, %v", size, err)
		}
		return nil
	})
	if err := commit(st, []byte("state")); err != nil {
		t.Fatal(err)
	}
}

func TestSQLRefusesWhatBreaksIsolation(t *testing.T) {
	st := openFile(t)
	call(t, st, func(*engine.KV) error {
		exec(t, st, `CREATE TABLE t (x)`)
		for _, q := range []string{
			`ATTACH DATABASE '/tmp/other.db' AS other`,
			`DETACH DATABASE main`,
			`BEGIN`,
			`COMMIT`,
			`ROLLBACK`,
			`SAVEPOINT s`,
			`RELEASE s`,
			`PRAGMA journal_mode=DELETE`,
			`PRAGMA synchronous=OFF`,
			`PRAGMA max_page_count=100000000`,
			`PRAGMA writable_schema=1`,
			`PRAGMA page_size=512`,
			`SELECT * FROM _durable_kv`,
			`DELETE FROM _durable_state`,
			`DROP TABLE _durable_kv`,
			`CREATE TABLE _durable_mine (x)`,
			`ALTER TABLE _durable_kv ADD COLUMN y`,
			`INSERT INTO t VALUES (1); BEGIN`,
		} {
			_, err := st.SQL.Exec(context.Background(), q)
			if !errors.Is(err, engine.ErrSQLForbidden) {
				t.Errorf("Exec(%q) = %v, want ErrSQLForbidden", q, err)
			}
		}
		// Extensions cannot load: the function is not even compiled in.
		if _, err := st.SQL.Exec(context.Background(), `SELECT load_extension('x')`); err == nil || !strings.Contains(err.Error(), "load_extension") {
			t.Errorf("load_extension: %v", err)
		}
		for _, q := range []string{`PRAGMA table_info(t)`, `PRAGMA index_list(t)`, `PRAGMA page_count`, `PRAGMA quick_check`} {
			if _, err := st.SQL.Exec(context.Background(), q); err != nil {
				t.Errorf("Exec(%q) = %v, want it allowed", q, err)
			}
		}
		return nil
	})
}

func TestSQLCallAndTransactionRollback(t *testing.T) {
	st := openFile(t)
	ctx := context.Background()
	count := func() int64 {
		var n int64
		call(t, st, func(*engine.KV) error {
			cur := exec(t, st, `SELECT COUNT(*) FROM t`)
			cur.Next()
			cur.Scan(&n)
			return nil
		})
		return n
	}
	call(t, st, func(*engine.KV) error { exec(t, st, `CREATE TABLE t (x)`); return nil })
	commit(st, nil)

	// A failing call undoes its SQL and its key-value writes together.
	err := call(t, st, func(kv *engine.KV) error {
		exec(t, st, `INSERT INTO t VALUES (1)`)
		kv.Put(ctx, "k", []byte("v"))
		return errors.New("fail")
	})
	if err == nil || count() != 0 {
		t.Fatalf("after a failed call: %d rows", count())
	}
	// A transaction that fails undoes its SQL, and the call keeps the rest.
	call(t, st, func(kv *engine.KV) error {
		exec(t, st, `INSERT INTO t VALUES (1)`)
		kv.Transaction(ctx, func(tx *engine.KV) error {
			exec(t, st, `INSERT INTO t VALUES (2)`)
			return errors.New("undo")
		})
		return nil
	})
	if err := commit(st, nil); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("rows = %d, want 1", n)
	}
	call(t, st, func(kv *engine.KV) error {
		if _, ok, _ := kv.Get(ctx, "k"); ok {
			t.Fatal("the failed call's key-value write survived")
		}
		return nil
	})
}

func TestSQLSizeCap(t *testing.T) {
	st := openFile(t, engine.WithMaxSize(64<<10))
	ctx := context.Background()
	call(t, st, func(*engine.KV) error { exec(t, st, `CREATE TABLE blobs (b BLOB)`); return nil })
	if err := commit(st, nil); err != nil {
		t.Fatal(err)
	}
	if err := st.BeginCall(); err != nil {
		t.Fatal(err)
	}
	var err error
	for range 100 {
		if _, err = st.SQL.Exec(ctx, `INSERT INTO blobs VALUES (randomblob(4096))`); err != nil {
			break
		}
	}
	if !errors.Is(err, engine.ErrDatabaseFull) || !strings.Contains(err.Error(), "65536 bytes") {
		t.Fatalf("filling past the cap: %v, want ErrDatabaseFull naming the cap", err)
	}
	// SQLite may abort the whole transaction on SQLITE_FULL; EndCall then
	// says the batch is lost, and the server resets the store.
	if err := st.EndCall(false); err != nil {
		st.Reset()
	} else if err := commit(st, nil); err != nil {
		t.Fatalf("commit after a refused call: %v", err)
	}
	// The refused call left nothing, and the object still works.
	call(t, st, func(*engine.KV) error {
		one, err := exec(t, st, `SELECT COUNT(*) AS n FROM blobs`).One()
		if err != nil || one["n"] != int64(0) {
			t.Fatalf("rows after the refused call: %v, %v", one, err)
		}
		exec(t, st, `INSERT INTO blobs VALUES (x'01')`)
		return nil
	})
	if err := commit(st, nil); err != nil {
		t.Fatal(err)
	}
}

func TestNoSQLOnNodeStore(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "objects.db"))
	st := db.Store("C", id(1))
	call(t, st, func(*engine.KV) error {
		if _, err := st.SQL.Exec(context.Background(), `SELECT 1`); !errors.Is(err, engine.ErrNoSQL) {
			t.Fatalf("Exec on a class without SQL: %v", err)
		}
		if _, err := st.SQL.DatabaseSize(context.Background()); !errors.Is(err, engine.ErrNoSQL) {
			t.Fatalf("DatabaseSize on a class without SQL: %v", err)
		}
		return nil
	})
}
