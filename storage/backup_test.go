package storage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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
		if err := backupFile(ctx, db.path, dst, m); err != nil {
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
		if err := backupFile(ctx, db.path, dst, m); err == nil {
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
				if err := backupFile(context.Background(), db.path, filepath.Join(dir, fmt.Sprint(i)), m.m); err != nil {
					b.Fatal(err)
				}
				os.Remove(filepath.Join(dir, fmt.Sprint(i)))
			}
		})
	}
}
