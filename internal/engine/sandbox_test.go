package engine_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"

	"github.com/durablego/durable/internal/engine"
)

// sandboxSetup is the user schema each attack starts from: tables t and u,
// and a trigger of the object's own on t, which a rename would carry along.
const sandboxSetup = `
	CREATE TABLE t (x);
	CREATE TABLE u (y);
	CREATE TRIGGER t_log AFTER INSERT ON t BEGIN INSERT INTO u VALUES (NEW.x); END`

// TestSQLSandboxRefusesSchemaThatReachesDurablesTables runs each statement
// that could make Durable's own statements run the object's code (or put
// the object's objects among Durable's tables) on a real file: each is
// refused with ErrSQLForbidden, the call that ignored the refusal commits,
// and afterwards state-changing calls still commit and a key-value Put
// survives reopening the file.
func TestSQLSandboxRefusesSchemaThatReachesDurablesTables(t *testing.T) {
	for _, q := range engine.RefusedSchema {
		t.Run(q, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "object.db")
			ctx := context.Background()
			st := openFileAt(t, path)
			call(t, st, func(kv *engine.KV) error {
				exec(t, st, sandboxSetup)
				return kv.Put(ctx, "before", []byte("1"))
			})
			if err := commit(st, []byte("state-1")); err != nil {
				t.Fatal(err)
			}

			// The call ignores the refusal and commits the rest.
			call(t, st, func(kv *engine.KV) error {
				if _, err := st.SQL.Exec(ctx, q); !errors.Is(err, engine.ErrSQLForbidden) {
					t.Errorf("Exec = %v, want ErrSQLForbidden", err)
				}
				return nil
			})
			if err := commit(st, []byte("state-2")); err != nil {
				t.Fatalf("commit after the refused statement: %v", err)
			}
			// State, key-value and SQL writes still commit, and the
			// object's own trigger still works.
			call(t, st, func(kv *engine.KV) error {
				exec(t, st, `INSERT INTO t VALUES (1)`)
				return kv.Put(ctx, "after", []byte("2"))
			})
			if err := commit(st, []byte("state-3")); err != nil {
				t.Fatalf("a state-changing call after the refused statement: %v", err)
			}
			st.Close()

			st = openFileAt(t, path)
			if state, _, err := st.LoadState(ctx); err != nil || string(state) != "state-3" {
				t.Errorf("state after reopening = %q, %v; want state-3", state, err)
			}
			call(t, st, func(kv *engine.KV) error {
				for _, k := range []string{"before", "after"} {
					if _, ok, err := kv.Get(ctx, k); !ok || err != nil {
						t.Errorf("key %q after reopening: found %v, %v", k, ok, err)
					}
				}
				if rows := exec(t, st, `SELECT y FROM u`).Raw(); len(rows) != 1 || rows[0][0] != int64(1) {
					t.Errorf("u holds %v, want only the row of the object's trigger", rows)
				}
				if got := schemaNames(t, st); !slices.Equal(got, []string{"t", "t_log", "u"}) && !slices.Equal(got, []string{"fine", "t", "t_log", "u"}) {
					t.Errorf("the object's schema is %v, want t, t_log, u (and fine)", got)
				}
				return nil
			})
		})
	}
}

// TestSQLSandboxAllowsTheObjectsOwnSchema checks that the same kinds of
// statements are allowed on the object's own tables, including when a
// cached statement runs again.
func TestSQLSandboxAllowsTheObjectsOwnSchema(t *testing.T) {
	st := openFile(t)
	call(t, st, func(*engine.KV) error {
		exec(t, st, sandboxSetup)
		for _, q := range []string{
			`CREATE TABLE IF NOT EXISTS p (id INTEGER PRIMARY KEY, name TEXT)`,
			`CREATE TABLE IF NOT EXISTS p (id INTEGER PRIMARY KEY, name TEXT)`, // again: not cached, checked again
			`CREATE TABLE ch (p INTEGER REFERENCES p (id) ON DELETE CASCADE)`,
			`CREATE INDEX p_name ON p (name)`,
			`CREATE VIEW names AS SELECT name FROM p`,
			`CREATE TRIGGER p_del AFTER DELETE ON p BEGIN INSERT INTO u VALUES (OLD.name); END`,
			`ALTER TABLE t RENAME TO t2`,
			`ALTER TABLE t2 ADD COLUMN z`,
			`ALTER TABLE t2 RENAME COLUMN z TO w`,
			`INSERT INTO p (name) VALUES ('a')`,
			`DELETE FROM p`,
			`DROP VIEW names`,
			`DROP INDEX p_name`,
			`DROP TRIGGER p_del`,
			`DROP TABLE ch`,
		} {
			exec(t, st, q)
		}
		if rows := exec(t, st, `SELECT y FROM u`).Raw(); len(rows) != 1 || rows[0][0] != "a" {
			t.Errorf("the object's trigger wrote %v to u", rows)
		}
		return nil
	})
	if err := commit(st, nil); err != nil {
		t.Fatal(err)
	}
}

// TestSQLSandboxRepairsATamperedFile opens a file whose schema holds what
// the sandbox now refuses, as a file written before it could: triggers and
// an index on Durable's tables. Opening drops them, so a Put survives
// reopening and commits keep working.
func TestSQLSandboxRepairsATamperedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "object.db")
	ctx := context.Background()
	st := openFileAt(t, path)
	call(t, st, func(*engine.KV) error { exec(t, st, sandboxSetup); return nil })
	if err := commit(st, []byte("state-1")); err != nil {
		t.Fatal(err)
	}
	st.Close()

	c, err := sqlite3.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(`
		CREATE TRIGGER evil_kv AFTER INSERT ON _durable_kv BEGIN DELETE FROM _durable_kv; END;
		CREATE TRIGGER evil_state AFTER UPDATE ON _durable_state BEGIN INSERT INTO u SELECT state FROM _durable_state; END;
		CREATE TRIGGER evil_alarm BEFORE INSERT ON _durable_alarm BEGIN SELECT RAISE(ABORT, 'no alarms'); END;
		CREATE INDEX evil_index ON _durable_kv (json(value));`); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	st = openFileAt(t, path)
	st.HandleAlarms(func(engine.AlarmChange) {})
	if err := call(t, st, func(kv *engine.KV) error {
		if err := kv.SetAlarm(ctx, time.Now().Add(time.Hour)); err != nil {
			return err
		}
		return kv.Put(ctx, "k", []byte("not json"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := commit(st, []byte("state-2")); err != nil {
		t.Fatalf("commit on the repaired file: %v", err)
	}
	st.Close()
	st = openFileAt(t, path)
	call(t, st, func(kv *engine.KV) error {
		if v, ok, err := kv.Get(ctx, "k"); !ok || err != nil || string(v) != "not json" {
			t.Errorf("Get after reopening = %q, %v, %v", v, ok, err)
		}
		if rows := exec(t, st, `SELECT y FROM u`).Raw(); len(rows) != 0 {
			t.Errorf("the state was copied into u: %v", rows)
		}
		if got := schemaNames(t, st); !slices.Equal(got, []string{"t", "t_log", "u"}) {
			t.Errorf("schema after the repair: %v", got)
		}
		return nil
	})
}

// schemaNames returns the names of the object's own tables, views, indexes
// and triggers, main and TEMP, sorted.
func schemaNames(t testing.TB, st *engine.Store) []string {
	t.Helper()
	var names []string
	for _, row := range exec(t, st, `
		SELECT name FROM sqlite_schema WHERE name NOT LIKE '\_durable\_%' ESCAPE '\' AND name NOT LIKE 'sqlite\_%' ESCAPE '\'
		UNION ALL SELECT name FROM sqlite_temp_schema ORDER BY 1`).Raw() {
		names = append(names, row[0].(string))
	}
	return names
}

// TestSQLSandboxToleratesWhatAnOlderFileHeld: objects an older version let
// the object's SQL create, which the sandbox now refuses but which cannot
// run with Durable's privileges (a view on a _durable_* table, a table
// renamed into the namespace), do not keep the object from changing its
// own schema; new ones are still refused, and the old view still cannot be
// read.
func TestSQLSandboxToleratesWhatAnOlderFileHeld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "object.db")
	ctx := context.Background()
	st := openFileAt(t, path)
	call(t, st, func(*engine.KV) error { exec(t, st, sandboxSetup); return nil })
	if err := commit(st, nil); err != nil {
		t.Fatal(err)
	}
	st.Close()
	c, err := sqlite3.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(`CREATE VIEW old_view AS SELECT * FROM _durable_kv; ALTER TABLE u RENAME TO _durable_old`); err != nil {
		t.Fatal(err)
	}
	c.Close()

	st = openFileAt(t, path)
	call(t, st, func(kv *engine.KV) error {
		exec(t, st, `CREATE TABLE more (a); CREATE INDEX more_a ON more (a)`)
		for _, q := range []string{
			`CREATE VIEW new_view AS SELECT * FROM _durable_kv`,
			`ALTER TABLE more RENAME TO _durable_more`,
			`SELECT * FROM old_view`,
		} {
			if _, err := st.SQL.Exec(ctx, q); !errors.Is(err, engine.ErrSQLForbidden) {
				t.Errorf("Exec(%q) = %v, want ErrSQLForbidden", q, err)
			}
		}
		exec(t, st, `DROP VIEW old_view`)
		exec(t, st, `CREATE TABLE more2 (a)`)
		return kv.Put(ctx, "k", []byte("v"))
	})
	if err := commit(st, nil); err != nil {
		t.Fatal(err)
	}
	st.Close()
	st = openFileAt(t, path)
	call(t, st, func(kv *engine.KV) error {
		if _, ok, err := kv.Get(ctx, "k"); !ok || err != nil {
			t.Errorf("Get after reopening: %v, %v", ok, err)
		}
		if got := schemaNames(t, st); !slices.Equal(got, []string{"more", "more2", "more_a", "t", "t_log"}) {
			t.Errorf("schema: %v", got)
		}
		return nil
	})
}
