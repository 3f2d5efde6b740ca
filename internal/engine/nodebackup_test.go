package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ncruces/go-sqlite3"
)

// TestNodeBackupIsOneCommitUnderWrites backs the node database up in many
// small paced steps while objects keep committing through it: the copy
// completes while they write (their commits do not make it start over),
// holds every batch acknowledged before the backup began, and holds whole
// batches only: each object's two keys and its state, which every batch
// sets to one value together, agree in it.
func TestNodeBackupIsOneCommitUnderWrites(t *testing.T) {
	ctx := context.Background()
	db := bigDB(t, 4) // 1,024 pages: 64 steps of 16
	const objects, rounds = 4, 50_000
	var acked [objects]atomic.Int64
	var finished atomic.Int32 // writers that ran their whole bounded loop
	stop := make(chan struct{})
	warm := make(chan struct{}, objects) // a writer's tenth acknowledgement
	var wg sync.WaitGroup
	for o := range objects {
		wg.Go(func() {
			s := db.Store("P", [32]byte{byte(o + 1)})
			for i := int64(1); i <= rounds; i++ {
				select {
				case <-stop:
					return
				default:
				}
				v := []byte(strconv.FormatInt(i, 10))
				if err := s.BeginCall(); err != nil {
					t.Error(err)
					return
				}
				if err := s.KV.Put(ctx, "a", v); err != nil {
					t.Error(err)
					return
				}
				if err := s.KV.Put(ctx, "b", v); err != nil {
					t.Error(err)
					return
				}
				if err := s.EndCall(true); err != nil {
					t.Error(err)
					return
				}
				done := make(chan error, 1)
				s.Commit(v, true, nil, func(err error) { done <- err })
				if err := <-done; err != nil {
					t.Error(err)
					return
				}
				acked[o].Store(i)
				if i == 10 {
					warm <- struct{}{}
				}
			}
			finished.Add(1)
		})
	}
	// Some writes first, so that "acknowledged before" means something.
	for range objects {
		<-warm
	}
	var before [objects]int64
	for o := range objects {
		before[o] = acked[o].Load()
	}
	dst := filepath.Join(t.TempDir(), "copy", "objects.db")
	err := db.backupWith(ctx, dst, backupPace{stepPages: 16, share: 0.5})
	outlasted := finished.Load() > 0
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if outlasted {
		t.Fatal("a writer finished its bounded loop before the backup ended: it started over at commits")
	}
	c, err := open(dst, sqlite3.OPEN_READONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	check, _, err := c.Prepare(`SELECT integrity_check FROM pragma_integrity_check`)
	if err != nil {
		t.Fatal(err)
	}
	if !check.Step() || check.ColumnText(0) != "ok" {
		t.Errorf("integrity of the copy: %q %v", check.ColumnText(0), check.Err())
	}
	check.Close()
	s, _, err := c.Prepare(`SELECT
		(SELECT value FROM kv WHERE class = 'P' AND id = ?1 AND key = 'a'),
		(SELECT value FROM kv WHERE class = 'P' AND id = ?1 AND key = 'b'),
		(SELECT state FROM objects WHERE class = 'P' AND id = ?1)`)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for o := range objects {
		id := [32]byte{byte(o + 1)}
		s.BindBlob(1, id[:])
		if !s.Step() {
			t.Fatalf("object %d: %v", o, s.Err())
		}
		a, b, state := s.ColumnText(0), s.ColumnText(1), s.ColumnText(2)
		s.Reset()
		n, _ := strconv.ParseInt(a, 10, 64)
		switch {
		case a != b || a != state:
			t.Errorf("object %d: a = %q, b = %q, state = %q in the copy: half of a batch", o, a, b, state)
		case n < before[o]:
			t.Errorf("object %d: the copy has %d, but %d was acknowledged before the backup began", o, n, before[o])
		}
		t.Logf("object %d: %d acknowledged before the backup, %d in the copy, %d at the end", o, before[o], n, acked[o].Load())
	}
	if err := db.Backup(ctx, dst); err == nil {
		t.Error("a backup over an existing file succeeded")
	}
}

// TestNodeBackupEndsWithItsContext stops a backup whose context ends, and
// removes its partial copy; the database goes on committing.
func TestNodeBackupEndsWithItsContext(t *testing.T) {
	db := bigDB(t, 4)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dst := filepath.Join(t.TempDir(), "copy.db")
	if err := db.backupWith(ctx, dst, backupPace{stepPages: 1, share: 0.01}); err == nil {
		t.Fatal("a backup with an ended context succeeded")
	}
	if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the cancelled backup left %s: %v", dst, err)
	}
	commitWith(t, db, "C", [32]byte{9}, "", "after")
	for i := range 2 {
		if err := db.Backup(context.Background(), filepath.Join(t.TempDir(), fmt.Sprint(i))); err != nil {
			t.Fatalf("backup %d after a cancelled one: %v", i, err)
		}
	}
}
