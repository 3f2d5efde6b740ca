package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/durablego/durable/internal/engine"
)

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling, not synchronization
	}
}

// poolFiles lists the regular files under the pool's directory.
func poolFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestFilePoolKeepsEmptyFilesReady checks that a pool fills up to its size
// with empty files, refills after a Take, hands out each file once, moves
// to new directories as it goes, and leaves nothing at Close.
func TestFilePoolKeepsEmptyFilesReady(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pool")
	p, err := engine.NewFilePool(dir, engine.WithPoolSize(4))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "4 files ready", func() bool { return p.Ready() == 4 })
	seen := map[string]bool{}
	for range 200 { // past several directories' worth
		waitFor(t, "a file ready", func() bool { return p.Ready() > 0 })
		path, ok := p.Take()
		if !ok {
			t.Fatal("Take found no file with Ready > 0")
		}
		if seen[path] {
			t.Fatalf("%s handed out twice", path)
		}
		seen[path] = true
		fi, err := os.Stat(path)
		if err != nil || fi.Size() != 0 || !fi.Mode().IsRegular() {
			t.Fatalf("taken file %s: %v, %v", path, fi, err)
		}
		os.Remove(path) // the taker's
	}
	waitFor(t, "the pool refilled", func() bool { return p.Ready() == 4 })
	if n := len(poolFiles(t, dir)); n != 4 {
		t.Fatalf("%d files under the pool, want the 4 ready", n)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if got := poolFiles(t, dir); len(got) != 0 {
		t.Fatalf("files left after Close: %v", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Fatalf("directories left after Close: %v", entries)
	}
	if _, ok := p.Take(); ok {
		t.Fatal("Take after Close gave a file")
	}
}

// TestFilePoolRemovesLeftovers checks that a new pool deletes what an
// earlier process left in its directory (a crash between a Take and the
// rename leaves a file there), files and directories.
func TestFilePoolRemovesLeftovers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pool")
	old := filepath.Join(dir, "abc-3")
	if err := os.MkdirAll(old, 0o750); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(old, "abc-3.db.new"), filepath.Join(dir, "stray")} {
		if err := os.WriteFile(p, []byte("half a database"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	p, err := engine.NewFilePool(dir, engine.WithPoolSize(1))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, gone := range []string{old, filepath.Join(dir, "stray")} {
		if _, err := os.Stat(gone); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s survived the new pool: %v", gone, err)
		}
	}
}

// budget is a TryFileLimiter of n files that records the most held at
// once, and signals each attempt.
type budget struct {
	mu             sync.Mutex
	free, held, hi int
	tried          chan struct{}
}

func (b *budget) TryAcquire() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case b.tried <- struct{}{}:
	default:
	}
	if b.free == 0 {
		return false
	}
	b.free--
	b.held++
	b.hi = max(b.hi, b.held)
	return true
}

func (b *budget) Release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free++
	b.held--
}

// TestFilePoolCountsInTheBudget checks that the pool creates a file only
// with one of the budget's files in hand, gives it back, and creates none
// when the budget is spent.
func TestFilePoolCountsInTheBudget(t *testing.T) {
	b := &budget{free: 1, tried: make(chan struct{}, 1)}
	p, err := engine.NewFilePool(filepath.Join(t.TempDir(), "pool"), engine.WithPoolSize(3), engine.WithPoolLimiter(b))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 files ready", func() bool { return p.Ready() == 3 })
	p.Close()
	b.mu.Lock()
	if b.hi != 1 || b.held != 0 {
		t.Fatalf("budget: at most %d held, %d still held; want 1 and 0", b.hi, b.held)
	}
	b.mu.Unlock()

	spent := &budget{tried: make(chan struct{}, 1)}
	p, err = engine.NewFilePool(filepath.Join(t.TempDir(), "pool"), engine.WithPoolLimiter(spent))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	<-spent.tried // refused: the filler waits for a Take
	if n := p.Ready(); n != 0 {
		t.Fatalf("%d files made with the budget spent", n)
	}
}

// TestPooledFileIsLikeANewOne checks that an object whose first write went
// into a pooled file (the same inode, renamed into place) gets the database
// an object without a pool gets: page size, WAL, Durable's tables and the
// object's, the size cap, its size, DeleteAll, the file's mode.
func TestPooledFileIsLikeANewOne(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p, err := engine.NewFilePool(filepath.Join(dir, "pool"), engine.WithPoolSize(1))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	waitFor(t, "a file ready", func() bool { return p.Ready() == 1 })
	pooledFile := poolFiles(t, filepath.Join(dir, "pool"))[0]
	before, err := os.Stat(pooledFile)
	if err != nil {
		t.Fatal(err)
	}

	const maxSize = 64 << 10
	type result struct {
		schema         string
		pageSize, size int64
		journal        string
		mode           os.FileMode
		fullErr        error
	}
	make1 := func(name string, opts ...engine.FileOption) (string, result) {
		path := filepath.Join(dir, "sql", "Class", name+".db")
		st := openFileAt(t, path, append(opts, engine.WithMaxSize(maxSize))...)
		call(t, st, func(kv *engine.KV) error {
			exec(t, st, `CREATE TABLE events (id INTEGER PRIMARY KEY, name TEXT); CREATE INDEX events_name ON events (name)`)
			exec(t, st, `INSERT INTO events (name) VALUES ('first')`)
			return kv.Put(ctx, "k", []byte("v"))
		})
		if err := commit(st, []byte("state")); err != nil {
			t.Fatal(err)
		}
		st.Close()
		st = openFileAt(t, path, append(opts, engine.WithMaxSize(maxSize))...)
		var r result
		call(t, st, func(*engine.KV) error {
			cur := exec(t, st, `SELECT group_concat(type || ':' || name || ':' || coalesce(sql, ''), '|') FROM (SELECT * FROM sqlite_schema ORDER BY name)`)
			cur.Next()
			cur.Scan(&r.schema)
			cur = exec(t, st, `PRAGMA page_size`)
			cur.Next()
			cur.Scan(&r.pageSize)
			r.size, err = st.SQL.DatabaseSize(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return nil
		})
		// Past the cap, in a call of its own: SQLite rolls back the batch.
		if err := st.BeginCall(); err != nil {
			t.Fatal(err)
		}
		_, r.fullErr = st.SQL.Exec(ctx, `INSERT INTO events (name) VALUES (printf('%.*c', 100000, 'x'))`)
		st.EndCall(false)
		if err := commit(st, nil); err != nil {
			t.Fatal(err)
		}
		call(t, st, func(kv *engine.KV) error { return kv.DeleteAll(ctx) })
		if err := commit(st, nil); err != nil {
			t.Fatal(err)
		}
		call(t, st, func(kv *engine.KV) error {
			if _, ok, err := kv.Get(ctx, "k"); ok || err != nil {
				t.Fatalf("%s: key after DeleteAll: %v %v", name, ok, err)
			}
			if _, err := st.SQL.Exec(ctx, `SELECT * FROM events`); err == nil {
				t.Fatalf("%s: the object's table survived DeleteAll", name)
			}
			return nil
		})
		st.Close()
		h, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		r.journal = fmt.Sprint(h[18], h[19])
		fi, _ := os.Stat(path)
		r.mode = fi.Mode()
		return path, r
	}
	pooledPath, pooled := make1("pooled", engine.WithFilePool(p))
	_, plain := make1("plain")

	after, err := os.Stat(pooledPath)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Fatal("the object's file is not the pool's: the pool was not used")
	}
	if !errors.Is(pooled.fullErr, engine.ErrDatabaseFull) || !errors.Is(plain.fullErr, engine.ErrDatabaseFull) {
		t.Fatalf("writes past the cap: pooled %v, plain %v; want ErrDatabaseFull", pooled.fullErr, plain.fullErr)
	}
	pooled.fullErr, plain.fullErr = nil, nil
	if pooled != plain {
		t.Fatalf("pooled file differs from a new one:\npooled %+v\nplain  %+v", pooled, plain)
	}
	if pooled.journal != "2 2" || pooled.pageSize != 4096 {
		t.Fatalf("file: header %s (want WAL, 2 2), page size %d", pooled.journal, pooled.pageSize)
	}
}

// TestPoolFileGoneFallsBack checks that an object whose pooled file
// vanished (deleted by hand) still gets its file: the store creates one.
func TestPoolFileGoneFallsBack(t *testing.T) {
	dir := t.TempDir()
	p, err := engine.NewFilePool(filepath.Join(dir, "pool"), engine.WithPoolSize(1))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	waitFor(t, "a file ready", func() bool { return p.Ready() == 1 })
	for _, f := range poolFiles(t, filepath.Join(dir, "pool")) {
		os.Remove(f)
	}
	path := filepath.Join(dir, "sql", "Class", "object.db")
	st := openFileAt(t, path, engine.WithFilePool(p))
	call(t, st, func(*engine.KV) error {
		exec(t, st, `CREATE TABLE t (x)`)
		return nil
	})
	if err := commit(st, nil); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no database after the pool's file vanished: %v", err)
	}
	if _, err := os.Stat(path + ".new"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the fallback's temporary file is left: %v", err)
	}
}
