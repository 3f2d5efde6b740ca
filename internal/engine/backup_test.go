package engine

import (
	"context"
	"fmt"
	"github.com/ncruces/go-sqlite3"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// bigDB is a node database of about mb MiB: objects with 4 KiB values.
func bigDB(t testing.TB, mb int) *DB { return filledDB(t, mb*256, 4096) }

// filledDB is a node database of rows objects with one value of size bytes.
func filledDB(t testing.TB, rows, size int) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "objects.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c, err := open(db.path, 0x2)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Exec(fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d)
		INSERT INTO kv (class, id, key, value) SELECT 'C', randomblob(32), 'k' || i, randomblob(%d) FROM n`, rows, size)); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestBackupFileIsConsistentAndComplete(t *testing.T) {
	ctx := context.Background()
	db := bigDB(t, 1)
	commitWith(t, db, "C", [32]byte{7}, "seven", "last")
	for _, m := range []backupMethod{backupVacuum, backupPages} {
		dst := filepath.Join(t.TempDir(), "copy", "objects.db")
		if err := backupFile(ctx, db.path, dst, m, defaultPace); err != nil {
			t.Fatal(err)
		}
		copyDB, err := Open(dst)
		if err != nil {
			t.Fatal(err)
		}
		e, found, err := copyDB.CatalogEntry(ctx, "C", [32]byte{7})
		if err != nil || !found || e.Name != "seven" {
			t.Errorf("method %d: entry %+v %v %v", m, e, found, err)
		}
		copyDB.Close()
		if err := backupFile(ctx, db.path, dst, m, defaultPace); err == nil {
			t.Errorf("method %d: backup over an existing file succeeded", m)
		}
	}
}

// BenchmarkBackupFile compares the two ways of copying a database of
// 64 MiB: of 4 KiB values, and of 100-byte values (many more rows).
func BenchmarkBackupFile(b *testing.B) {
	for _, shape := range []struct {
		name        string
		rows, bytes int
	}{{"4KiB-values", 16_384, 4096}, {"100B-values", 400_000, 100}} {
		db := filledDB(b, shape.rows, shape.bytes)
		benchBackupFile(b, shape.name, db)
	}
}

func benchBackupFile(b *testing.B, shape string, db *DB) {
	st, _ := os.Stat(db.path)
	for _, m := range []struct {
		name string
		m    backupMethod
	}{{"vacuum-into", backupVacuum}, {"backup-api", backupPages}} {
		b.Run(shape+"/"+m.name, func(b *testing.B) {
			b.SetBytes(st.Size())
			dir := b.TempDir()
			for i := range b.N {
				if err := backupFile(context.Background(), db.path, filepath.Join(dir, fmt.Sprint(i)), m.m, backupPace{stepPages: -1, share: 1}); err != nil {
					b.Fatal(err)
				}
				os.Remove(filepath.Join(dir, fmt.Sprint(i)))
			}
		})
	}
}

// TestPagedBackupIsOneSnapshotUnderWrites copies a database in many small
// paced steps while another connection keeps committing: the copy
// completes (commits between its steps do not make it start over) and is
// one snapshot: two counters every commit raises together are equal in it.
func TestPagedBackupIsOneSnapshotUnderWrites(t *testing.T) {
	db := bigDB(t, 4) // 1,024 pages: 64 steps of 16
	w, err := open(db.path, sqlite3.OPEN_READWRITE)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Exec(`PRAGMA busy_timeout=5000; CREATE TABLE pair (a INTEGER, b INTEGER); INSERT INTO pair VALUES (0, 0)`); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var commits atomic.Int64
	var writerDone atomic.Bool // the writer ran its whole bounded loop
	var wg sync.WaitGroup
	wg.Go(func() {
		defer func() { writerDone.Store(commits.Load() == 100_000) }()
		for range 100_000 {
			select {
			case <-stop:
				return
			default:
			}
			if err := w.Exec(`BEGIN IMMEDIATE; UPDATE pair SET a = a + 1; UPDATE pair SET b = b + 1; COMMIT`); err != nil {
				t.Error(err)
				return
			}
			commits.Add(1)
		}
	})
	dst := filepath.Join(t.TempDir(), "copy.db")
	before := commits.Load()
	err = backupFile(context.Background(), db.path, dst, backupPages, backupPace{stepPages: 16, share: 0.5})
	during := commits.Load() - before
	outlasted := writerDone.Load()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if outlasted {
		t.Fatal("the backup ended only once the writes stopped: it started over at every commit")
	}
	c, err := open(dst, sqlite3.OPEN_READONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, _, err := c.Prepare(`SELECT a, b, (SELECT integrity_check FROM pragma_integrity_check) FROM pair`)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Step() {
		t.Fatalf("no row in the copy: %v", s.Err())
	}
	if a, b, ok := s.ColumnInt64(0), s.ColumnInt64(1), s.ColumnText(2); a != b || ok != "ok" {
		t.Errorf("the copy has a = %d, b = %d, integrity %q: not one snapshot", a, b, ok)
	}
	t.Logf("%d commits while the backup ran", during)
}
