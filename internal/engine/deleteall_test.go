package engine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/durablego/durable/internal/engine"
)

// fillSQL gives the object's database one of each kind of schema object,
// rows that need foreign keys deferred to be dropped (a cycle), and 1 MB
// of data.
func fillSQL(t testing.TB, st *engine.Store) {
	t.Helper()
	exec(t, st, `
		CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT, b INTEGER REFERENCES b (id) DEFERRABLE INITIALLY DEFERRED);
		CREATE TABLE b (id INTEGER PRIMARY KEY, a INTEGER REFERENCES a (id));
		INSERT INTO a VALUES (1, 1); INSERT INTO b VALUES (1, 1);
		CREATE INDEX a_b ON a (b);
		CREATE VIEW ab AS SELECT * FROM a JOIN b USING (id);
		CREATE TRIGGER a_ins AFTER INSERT ON a BEGIN INSERT INTO b VALUES (NEW.id + 100, NULL); END;
		CREATE VIRTUAL TABLE docs USING fts5(body);
		INSERT INTO docs VALUES ('hello world');
		CREATE TABLE big (v BLOB);
		WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) INSERT INTO big SELECT zeroblob(100000) FROM n;
		ANALYZE a`)
}

// TestDeleteAllDeletesTheSQLDatabase: on an object with SQL, DeleteAll
// deletes every table, view, index, trigger and virtual table, the keys and
// the alarm, at once (the rest of the call sees an empty database); the
// state stays; a failed call undoes it; and once committed the file shrinks
// back, so that filling and deleting again and again does not grow it.
func TestDeleteAllDeletesTheSQLDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "object.db")
	st := openFileAt(t, path)
	st.HandleAlarms(func(engine.AlarmChange) {})
	ctx := context.Background()
	fill := func() {
		call(t, st, func(kv *engine.KV) error {
			fillSQL(t, st)
			kv.Put(ctx, "k", []byte("v"))
			return kv.SetAlarm(ctx, time.Now().Add(time.Hour))
		})
		if err := commit(st, []byte("state")); err != nil {
			t.Fatal(err)
		}
	}
	fill()
	// A failed call's DeleteAll is undone, SQL included.
	call(t, st, func(kv *engine.KV) error {
		if err := kv.DeleteAll(ctx); err != nil {
			t.Fatal(err)
		}
		return errors.New("the call fails")
	})
	call(t, st, func(kv *engine.KV) error {
		if got := schemaNames(t, st); len(got) < 6 {
			t.Errorf("after a failed DeleteAll the schema is %v", got)
		}
		return nil
	})
	grown := fileSize(t, path)

	for round := range 3 {
		call(t, st, func(kv *engine.KV) error {
			if err := kv.DeleteAll(ctx); err != nil {
				t.Fatalf("round %d: DeleteAll: %v", round, err)
			}
			if got := schemaNames(t, st); len(got) != 0 {
				t.Errorf("round %d: schema after DeleteAll in the same call: %v", round, got)
			}
			if _, err := st.SQL.Exec(ctx, `SELECT * FROM a`); err == nil || !strings.Contains(err.Error(), "no such table") {
				t.Errorf("round %d: SELECT from a dropped table: %v", round, err)
			}
			return nil
		})
		if err := commit(st, nil); err != nil {
			t.Fatal(err)
		}
		call(t, st, func(kv *engine.KV) error {
			if got := schemaNames(t, st); len(got) != 0 {
				t.Errorf("round %d: schema in the next call: %v", round, got)
			}
			if _, ok, _ := kv.Get(ctx, "k"); ok {
				t.Errorf("round %d: the key survived", round)
			}
			if _, ok, _ := kv.GetAlarm(ctx); ok {
				t.Errorf("round %d: the alarm survived", round)
			}
			if n, err := st.SQL.DatabaseSize(ctx); err != nil || n > 8192 {
				t.Errorf("round %d: DatabaseSize after DeleteAll = %d, %v; want a page or two", round, n, err)
			}
			// A brand-new database: the same names can be created again.
			return nil
		})
		if got, _, err := st.LoadState(ctx); err != nil || string(got) != "state" {
			t.Errorf("round %d: the state is %q, %v; DeleteAll keeps it", round, got, err)
		}
		if n := fileSize(t, path); n >= grown/4 {
			t.Errorf("round %d: the file takes %d bytes after DeleteAll, %d before", round, n, grown)
		}
		fill()
	}
	// Every round filled the same: the file did not grow past the first.
	if n := fileSize(t, path); n > grown+grown/4 {
		t.Errorf("after rounds of fill and DeleteAll the file takes %d bytes, %d after the first fill", n, grown)
	}
}

// fileSize is the bytes of the database at path and its WAL.
func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	var n int64
	for _, p := range []string{path, path + "-wal"} {
		fi, err := os.Stat(p)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if err == nil {
			n += fi.Size()
		}
	}
	return n
}

// TestDeleteAllOfANewObject: DeleteAll on an object whose database is
// still in memory drops what the call made, and the object is stored with
// nothing of it.
func TestDeleteAllOfANewObject(t *testing.T) {
	path := filepath.Join(t.TempDir(), "object.db")
	st := openFileAt(t, path)
	ctx := context.Background()
	call(t, st, func(kv *engine.KV) error {
		fillSQL(t, st)
		if err := kv.DeleteAll(ctx); err != nil {
			t.Fatal(err)
		}
		exec(t, st, `CREATE TABLE after (x)`)
		return nil
	})
	if err := commit(st, nil); err != nil {
		t.Fatal(err)
	}
	call(t, st, func(*engine.KV) error {
		if got := schemaNames(t, st); !slices.Equal(got, []string{"after"}) {
			t.Errorf("schema = %v, want only the table made after DeleteAll", got)
		}
		return nil
	})
}

// TestTransactionRules: as on Cloudflare, a transaction that called
// Rollback cannot be used again (key-value and SQL), and DeleteAll is
// refused inside a transaction; the call goes on once it returns.
func TestTransactionRules(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func() *engine.Store) {
		ctx := context.Background()
		st := open()
		sql := strings.HasSuffix(t.Name(), "/file")
		call(t, st, func(kv *engine.KV) error {
			if sql {
				exec(t, st, `CREATE TABLE t (x)`)
			}
			err := kv.Transaction(ctx, func(tx *engine.KV) error {
				tx.Put(ctx, "undone", []byte("1"))
				tx.Rollback()
				tx.Rollback() // twice is no different
				ops := map[string]error{
					"Put":         tx.Put(ctx, "after", []byte("1")),
					"DeleteAll":   tx.DeleteAll(ctx),
					"Transaction": tx.Transaction(ctx, func(*engine.KV) error { return nil }),
				}
				_, _, ops["Get"] = tx.Get(ctx, "undone")
				_, ops["List"] = tx.List(ctx, engine.ListOptions{})
				_, ops["DeleteMany"] = tx.DeleteMany(ctx, []string{"undone"})
				if sql {
					_, ops["SQL.Exec"] = st.SQL.Exec(ctx, `INSERT INTO t VALUES (1)`)
				}
				for name, err := range ops {
					if !errors.Is(err, engine.ErrRolledBack) || !errors.Is(err, engine.ErrInvalid) {
						t.Errorf("%s after Rollback: %v, want ErrRolledBack", name, err)
					}
				}
				return nil
			})
			if err != nil {
				t.Errorf("Transaction that rolled back: %v", err)
			}
			// Only the inner transaction is done.
			err = kv.Transaction(ctx, func(outer *engine.KV) error {
				outer.Transaction(ctx, func(inner *engine.KV) error { inner.Rollback(); return nil })
				if err := outer.Put(ctx, "outer", []byte("1")); err != nil {
					t.Errorf("the outer transaction after the inner rolled back: %v", err)
				}
				if err := outer.DeleteAll(ctx); !errors.Is(err, engine.ErrDeleteAllInTransaction) || !errors.Is(err, engine.ErrInvalid) {
					t.Errorf("DeleteAll in a transaction: %v, want ErrDeleteAllInTransaction", err)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if sql {
				exec(t, st, `INSERT INTO t VALUES (2)`)
			}
			if _, ok, err := kv.Get(ctx, "outer"); !ok || err != nil {
				t.Errorf("after the transactions: outer %v, %v", ok, err)
			}
			return nil
		})
		if err := commit(st, nil); err != nil {
			t.Fatal(err)
		}
		call(t, st, func(kv *engine.KV) error {
			if _, ok, _ := kv.Get(ctx, "undone"); ok {
				t.Error("the rolled back write was committed")
			}
			if sql {
				if rows := exec(t, st, `SELECT x FROM t`).Raw(); len(rows) != 1 || rows[0][0] != int64(2) {
					t.Errorf("rows = %v, want only the one written after the transactions", rows)
				}
			}
			return nil
		})
	})
}

// TestDeleteManyCountsDistinctKeys: a key listed twice is deleted, and
// counted, once; keys written in the call count, missing ones do not.
func TestDeleteManyCountsDistinctKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func() *engine.Store) {
		ctx := context.Background()
		st := open()
		call(t, st, func(kv *engine.KV) error { return kv.PutMany(ctx, map[string][]byte{"a": nil, "b": nil}) })
		if err := commit(st, nil); err != nil {
			t.Fatal(err)
		}
		call(t, st, func(kv *engine.KV) error {
			kv.Put(ctx, "c", []byte("new"))
			n, err := kv.DeleteMany(ctx, []string{"a", "b", "a", "c", "c", "missing", "missing"})
			if n != 3 || err != nil {
				t.Errorf("DeleteMany = %d, %v; want 3", n, err)
			}
			if n, _ := kv.DeleteMany(ctx, []string{"a", "a"}); n != 0 {
				t.Errorf("DeleteMany of deleted keys = %d, want 0", n)
			}
			return nil
		})
	})
}

// TestKeyValueLimitsOfSQLClasses: a class with SQL takes keys and values
// up to MaxSQLEntrySize bytes together, as Cloudflare's SQLite-backed
// storage, and stores and reads them back from disk.
func TestKeyValueLimitsOfSQLClasses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "object.db")
	st := openFileAt(t, path)
	ctx := context.Background()
	bigKey := strings.Repeat("k", engine.MaxSQLEntrySize)
	value := make([]byte, engine.MaxSQLEntrySize-1)
	value[0], value[len(value)-1] = 1, 2
	call(t, st, func(kv *engine.KV) error {
		if err := kv.Put(ctx, bigKey, nil); err != nil {
			t.Errorf("a key of MaxSQLEntrySize bytes: %v", err)
		}
		if err := kv.Put(ctx, bigKey+"k", nil); !errors.Is(err, engine.ErrKeyTooLarge) {
			t.Errorf("a key over MaxSQLEntrySize: %v, want ErrKeyTooLarge", err)
		}
		if err := kv.Put(ctx, "v", value); err != nil {
			t.Errorf("a value filling the entry: %v", err)
		}
		if err := kv.PutMany(ctx, map[string][]byte{"vv": value, "fine": nil}); !errors.Is(err, engine.ErrValueTooLarge) {
			t.Errorf("an entry one byte over: %v, want ErrValueTooLarge", err)
		}
		return nil
	})
	if err := commit(st, make([]byte, 2<<20)); err != nil { // the default cap of the state, 2 MiB
		t.Fatal(err)
	}
	st.Close()
	st = openFileAt(t, path)
	call(t, st, func(kv *engine.KV) error {
		got, ok, err := kv.Get(ctx, "v")
		if err != nil || !ok || len(got) != len(value) || got[0] != 1 || got[len(got)-1] != 2 {
			t.Errorf("Get of the large value: %d bytes, %v, %v", len(got), ok, err)
		}
		if _, ok, err := kv.Get(ctx, bigKey); !ok || err != nil {
			t.Errorf("Get of the large key: %v, %v", ok, err)
		}
		if _, ok, _ := kv.Get(ctx, "fine"); ok {
			t.Error("PutMany wrote part of a refused batch")
		}
		return nil
	})
}
