package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durablego/durable/internal/engine"
)

// initObject runs an Init-like first call on st (a table, a key, an
// alarm) and sets its writes apart, as the server does after Init.
func initObject(t *testing.T, st *engine.Store) {
	t.Helper()
	ctx := context.Background()
	st.HandleAlarms(func(engine.AlarmChange) {})
	call(t, st, func(kv *engine.KV) error {
		exec(t, st, `CREATE TABLE events (name TEXT)`)
		if err := kv.Put(ctx, "init", []byte("1")); err != nil {
			return err
		}
		return kv.SetAlarm(ctx, time.Now().Add(time.Hour))
	})
	st.Initialized()
}

// readObject runs a call that reads the table, the key and the alarm Init
// wrote, as a read-only method would.
func readObject(t *testing.T, st *engine.Store) {
	t.Helper()
	ctx := context.Background()
	call(t, st, func(kv *engine.KV) error {
		exec(t, st, `SELECT count(*) FROM events`)
		if v, ok, err := kv.Get(ctx, "init"); err != nil || !ok || string(v) != "1" {
			t.Fatalf("Init's key: %q %v %v", v, ok, err)
		}
		if _, ok, err := kv.GetAlarm(ctx); err != nil || !ok {
			t.Fatalf("Init's alarm: %v %v", ok, err)
		}
		return nil
	})
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// TestSQLObjectOnlyReadLeavesNothing checks that a new object's database
// stays in memory through Init and calls that write nothing, failed calls
// that wrote included: no file, not even its directory.
func TestSQLObjectOnlyReadLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sql", "Class", "object.db")
	st, err := engine.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	initObject(t, st)
	readObject(t, st)
	call(t, st, func(*engine.KV) error {
		exec(t, st, `INSERT INTO events VALUES ('undone')`)
		exec(t, st, `CREATE TABLE undone (x)`)
		return errors.New("fail")
	})
	call(t, st, func(*engine.KV) error {
		exec(t, st, `CREATE TABLE IF NOT EXISTS events (name TEXT)`) // exists: no change
		exec(t, st, `UPDATE events SET name = 'x' WHERE 0`)
		return nil
	})
	if st.Dirty() {
		t.Fatal("Dirty after Init and calls that wrote nothing")
	}
	if err := commit(st, nil); err != nil {
		t.Fatal(err)
	}
	readObject(t, st) // Init's writes are still there in memory
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if got := files(t, dir); len(got) != 0 {
		t.Fatalf("files after reads of a new object: %v", got)
	}
}

// TestSQLObjectFirstWriteCreatesWholeFile checks that the first write
// creates the file, in WAL mode, holding Init's writes with the batch's,
// and leaves no temporary file, for both durabilities.
func TestSQLObjectFirstWriteCreatesWholeFile(t *testing.T) {
	for _, d := range []engine.Durability{engine.CrashSafe, engine.PowerSafe} {
		dir := t.TempDir()
		path := filepath.Join(dir, "sql", "Class", "object.db")
		// Leftovers a crash could leave: a half copy, and a WAL and a
		// journal of no database, which must not be applied to the new one.
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{path + ".new", path + "-wal", path + "-journal"} {
			if err := os.WriteFile(p, []byte("garbage garbage garbage"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		st, err := engine.OpenFile(path, engine.WithFileDurability(d))
		if err != nil {
			t.Fatal(err)
		}
		initObject(t, st)
		call(t, st, func(*engine.KV) error {
			exec(t, st, `INSERT INTO events VALUES ('first')`)
			return nil
		})
		if !st.Dirty() {
			t.Fatal("not Dirty after an INSERT")
		}
		if err := commit(st, []byte("state")); err != nil {
			t.Fatal(err)
		}
		// The store goes on, on the file.
		call(t, st, func(*engine.KV) error {
			exec(t, st, `INSERT INTO events VALUES ('second')`)
			return nil
		})
		if err := commit(st, nil); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		got := files(t, dir)
		if !slices.Equal(got, []string{"sql", "sql/Class", "sql/Class/object.db"}) {
			t.Fatalf("durability %v: files %v, want the database alone", d, got)
		}

		st, err = engine.OpenFile(path)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if state, ok, err := st.LoadState(ctx); err != nil || !ok || string(state) != "state" {
			t.Fatalf("state %q %v %v", state, ok, err)
		}
		call(t, st, func(kv *engine.KV) error {
			if mode := exec(t, st, `SELECT count(*) AS n FROM events`).All(); mode[0]["n"] != int64(2) {
				t.Fatalf("rows %v", mode)
			}
			if _, ok, _ := kv.Get(ctx, "init"); !ok {
				t.Fatal("Init's key was not committed with the first write")
			}
			if _, ok, _ := kv.GetAlarm(ctx); !ok {
				t.Fatal("Init's alarm was not committed with the first write")
			}
			return nil
		})
		st.Close()
		// WAL mode is recorded in the header: bytes 18 and 19 are 2.
		b, err := os.ReadFile(path)
		if err != nil || len(b) < 20 || b[18] != 2 || b[19] != 2 {
			t.Fatalf("header of the created file: %v", err)
		}
	}
}

// limiter is an engine.FileLimiter that refuses while full is set.
type limiter struct {
	full          atomic.Bool
	held, acquire atomic.Int64
}

func (l *limiter) Acquire() error {
	l.acquire.Add(1)
	if l.full.Load() {
		return engine.ErrTooManyOpenFiles
	}
	l.held.Add(1)
	return nil
}
func (l *limiter) Release() { l.held.Add(-1) }

// TestSQLObjectFirstWriteWithoutAFile checks that a first write that
// gets no file from the limiter fails with ErrTooManyOpenFiles, creates
// nothing, and forgets what the store held in memory (the server then
// reloads and runs Init again); and that the file is held from the
// creation to the end of the write, from the next call to Close, and from
// an open of an existing file.
func TestSQLObjectFirstWriteWithoutAFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "object.db")
	var l limiter
	st, err := engine.OpenFile(path, engine.WithFileLimiter(&l))
	if err != nil {
		t.Fatal(err)
	}
	if l.acquire.Load() != 0 {
		t.Fatal("a new object's store took a file before its first write")
	}
	initObject(t, st)
	call(t, st, func(*engine.KV) error {
		exec(t, st, `INSERT INTO events VALUES ('first')`)
		return nil
	})
	l.full.Store(true)
	if err := commit(st, []byte("state")); !errors.Is(err, engine.ErrTooManyOpenFiles) {
		t.Fatalf("first write without a file: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file after a refused first write: %v", err)
	}
	st.Reset()
	if _, ok, err := st.LoadState(context.Background()); ok || err != nil {
		t.Fatalf("state after a refused first write: %v %v", ok, err)
	}
	l.full.Store(false)
	initObject(t, st)
	call(t, st, func(*engine.KV) error {
		exec(t, st, `INSERT INTO events VALUES ('again')`)
		return nil
	})
	if err := commit(st, []byte("state")); err != nil {
		t.Fatal(err)
	}
	// The write held a file while it created it; the file is opened again,
	// and held, from the object's next call to Close.
	if l.held.Load() != 0 || l.acquire.Load() == 0 {
		t.Fatalf("files held after the first write: %d (acquired %d), want 0 (and some)", l.held.Load(), l.acquire.Load())
	}
	call(t, st, func(*engine.KV) error {
		if rows := exec(t, st, `SELECT * FROM events`).Raw(); len(rows) != 1 {
			t.Errorf("rows after the first write: %v, want 1", rows)
		}
		return nil
	})
	if l.held.Load() != 1 {
		t.Fatalf("files held by the call after the first write: %d, want 1", l.held.Load())
	}
	st.Close()
	if l.held.Load() != 0 {
		t.Fatalf("files held after Close: %d", l.held.Load())
	}
	// An existing file takes one at open; a refused open fails clearly.
	l.full.Store(true)
	if _, err := engine.OpenFile(path, engine.WithFileLimiter(&l)); !errors.Is(err, engine.ErrTooManyOpenFiles) {
		t.Fatalf("open without a file: %v", err)
	}
	l.full.Store(false)
	st, err = engine.OpenFile(path, engine.WithFileLimiter(&l))
	if err != nil || l.held.Load() != 1 {
		t.Fatalf("open: %v, held %d", err, l.held.Load())
	}
	st.Close()
	if l.held.Load() != 0 {
		t.Fatalf("files held after Close: %d", l.held.Load())
	}
}

// TestInitWritesWaitForAWrite checks, in the node database, that the
// writes set apart by Initialized are read by the object, committed with
// the first batch that writes, and forgotten by Reset.
func TestInitWritesWaitForAWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "objects.db")
	db := openDB(t, path)
	ctx := context.Background()
	st := db.Store("Test", id(1))
	initObject2 := func() {
		call(t, st, func(kv *engine.KV) error { return kv.Put(ctx, "init", []byte("1")) })
		st.Initialized()
	}
	initObject2()
	call(t, st, func(kv *engine.KV) error {
		if _, ok, _ := kv.Get(ctx, "init"); !ok {
			t.Fatal("Init's key is not visible")
		}
		return nil
	})
	if st.Dirty() {
		t.Fatal("Dirty with only Init's writes")
	}
	st.Reset()
	other := db.Store("Test", id(1))
	call(t, other, func(kv *engine.KV) error {
		if _, ok, _ := kv.Get(ctx, "init"); ok {
			t.Fatal("Init's key was stored without a write")
		}
		return nil
	})
	initObject2()
	call(t, st, func(kv *engine.KV) error { return kv.Put(ctx, "call", []byte("2")) })
	if err := commit(st, []byte("s")); err != nil {
		t.Fatal(err)
	}
	other = db.Store("Test", id(1))
	call(t, other, func(kv *engine.KV) error {
		got, err := kv.List(ctx, engine.ListOptions{})
		if err != nil || len(got) != 2 {
			t.Fatalf("keys after the first write: %v %v", got, err)
		}
		return nil
	})
}

// TestSQLObjectInitAlarmIndexedAtFirstWrite checks that the alarm Init
// sets on a new SQL object reaches the node's index only with the first
// write (written ahead of the file's creation), not on reads.
func TestSQLObjectInitAlarmIndexedAtFirstWrite(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "objects.db"))
	st, err := engine.OpenFile(filepath.Join(dir, "object.db"), engine.WithAlarmIndex(db, "Class", id(3)))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	due := func() int {
		got, err := db.DueAlarms(context.Background(), engine.DueAlarm{}, time.Now().Add(2*time.Hour).UnixMilli(), 10)
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}
	initObject(t, st)
	readObject(t, st)
	if err := commit(st, nil); err != nil {
		t.Fatal(err)
	}
	if n := due(); n != 0 {
		t.Fatalf("%d alarms indexed after reads of a new object, want 0", n)
	}
	call(t, st, func(*engine.KV) error {
		exec(t, st, `INSERT INTO events VALUES ('first')`)
		return nil
	})
	if err := commit(st, []byte("state")); err != nil {
		t.Fatal(err)
	}
	if n := due(); n != 1 {
		t.Fatalf("%d alarms indexed after the first write, want Init's", n)
	}
}

// TestRemoveLeftovers: what a crash while creating an object's file can
// leave is removed, a half-written copy and the journals of a database
// that does not exist, and nothing else: a database, its own WAL, other
// files and directories stay.
func TestRemoveLeftovers(t *testing.T) {
	dir := t.TempDir()
	class := filepath.Join(dir, "Ledger")
	if err := os.MkdirAll(filepath.Join(class, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	st, err := engine.OpenFile(filepath.Join(class, "kept.db"))
	if err != nil {
		t.Fatal(err)
	}
	initObject(t, st)
	if err := commit(st, []byte("state")); err != nil {
		t.Fatal(err)
	}
	st.Close()
	for _, name := range []string{"kept.db-wal", "gone.db.new", "gone.db.new-journal", "other.db-wal", "other.db-shm", "other.db-journal", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(class, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "top.db.new"), nil, 0o600); err != nil { // not in a class's directory
		t.Fatal(err)
	}
	if err := engine.RemoveLeftovers(dir); err != nil {
		t.Fatal(err)
	}
	var left []string
	entries, _ := os.ReadDir(class)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if want := []string{"kept.db", "kept.db-wal", "notes.txt", "sub"}; !slices.Equal(left, want) {
		t.Fatalf("left %v, want %v", left, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "top.db.new")); err != nil {
		t.Fatalf("a file outside the classes' directories: %v", err)
	}
	if err := engine.RemoveLeftovers(filepath.Join(dir, "none")); err != nil {
		t.Fatalf("a directory that does not exist: %v", err)
	}
}

// TestSQLObjectFileHasNoSharedMemory: an object's open database is its
// file and its WAL, and no -shm: its one connection holds the file's lock
// and keeps the WAL index in memory, so the file costs two descriptors.
// Closed, it leaves the file alone, whole.
func TestSQLObjectFileHasNoSharedMemory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "object.db")
	st, err := engine.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	initObject(t, st)
	if err := commit(st, []byte("state")); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the call that opens the file, and one on it
		call(t, st, func(*engine.KV) error {
			exec(t, st, `INSERT INTO events VALUES ('more')`)
			return nil
		})
		if err := commit(st, []byte("state")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Fatalf("the open database's WAL: %v", err)
	}
	if _, err := os.Stat(path + "-shm"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("-shm of the open database: %v, want none", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = engine.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	call(t, st, func(*engine.KV) error {
		if rows := exec(t, st, `SELECT * FROM events`).Raw(); len(rows) != 2 {
			t.Errorf("rows after reopening: %v, want 2", rows)
		}
		return nil
	})
}

// TestNewSQLObjectsStartApart: every new object's in-memory database is
// its own copy of the template made once per process. A table, a row, a
// key and the state of one new object appear in none opened before or
// after it, and each still materializes into a file of its own. Object 1
// writes only a key, which fits the template's pages: a copy that shared
// the template's bytes would hand that key to object 2.
func TestNewSQLObjectsStartApart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var stores []*engine.Store
	for i := range 3 {
		st := openFileAt(t, filepath.Join(dir, fmt.Sprintf("object-%d.db", i)))
		stores = append(stores, st)
		if err := call(t, st, func(kv *engine.KV) error {
			var tables int64
			if cur := exec(t, st, `SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE '\_durable\_%' ESCAPE '\'`); !cur.Next() || cur.Scan(&tables) != nil || tables != 0 {
				return fmt.Errorf("object %d starts with %d tables of another", i, tables)
			}
			if _, found, err := kv.Get(ctx, "mine"); err != nil || found {
				return fmt.Errorf("object %d starts with another's key (found %v, %v)", i, found, err)
			}
			if i != 1 { // object 1 writes a key only: its pages do not grow
				exec(t, st, fmt.Sprintf(`CREATE TABLE t%d (v TEXT)`, i))
				exec(t, st, fmt.Sprintf(`INSERT INTO t%d VALUES ('row %d')`, i, i))
			}
			return kv.Put(ctx, "mine", []byte(fmt.Sprint(i)))
		}); err != nil {
			t.Fatal(err)
		}
		if i == 1 { // one of them materializes between the others' opening
			if err := commit(st, []byte("state 1")); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, st := range stores {
		if i != 1 {
			if err := commit(st, []byte(fmt.Sprint("state ", i))); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		st = openFileAt(t, filepath.Join(dir, fmt.Sprintf("object-%d.db", i)))
		if err := call(t, st, func(kv *engine.KV) error {
			names := exec(t, st, `SELECT name FROM sqlite_schema WHERE name NOT LIKE '\_durable\_%' ESCAPE '\' ORDER BY name`)
			var got []string
			for names.Next() {
				var name string
				if err := names.Scan(&name); err != nil {
					return err
				}
				got = append(got, name)
			}
			want := []string{fmt.Sprint("t", i)}
			if i == 1 {
				want = nil
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("object %d's tables = %q, want %q", i, got, want)
			}
			v, _, err := kv.Get(ctx, "mine")
			if err != nil || string(v) != fmt.Sprint(i) {
				return fmt.Errorf("object %d's key = %q, %v", i, v, err)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if s, _, err := st.LoadState(ctx); err != nil || string(s) != fmt.Sprint("state ", i) {
			t.Fatalf("object %d's state = %q, %v", i, s, err)
		}
	}
}
