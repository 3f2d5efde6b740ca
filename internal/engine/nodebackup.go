package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ncruces/go-sqlite3"
)

// The node database is backed up by its own writer.
//
// A backup of a file other connections write (BackupFile) must hold one
// read transaction for the whole copy, or the online backup API starts
// over at every commit. On the node database, which every object's
// batches go through, that transaction kept the WAL from being
// checkpointed for the length of the copy (23 s for 1 GiB), and commits
// slowed as it grew: callers lost 35–37% of their rate (BENCHMARKS.md).
// SQLite has a better way for a database written by one connection: a
// backup whose source is the connection that writes is not restarted by
// its writes; the pages they change are written into the copy as they are
// committed. So the commit loop runs the backup itself, on the writer's
// connection, a paced step at a time between group commits: no read
// transaction outlives a step, the WAL is checkpointed as usual, and the
// finished copy is the database after one group commit, so it holds
// whole calls only, and every batch acknowledged before Backup was called.

// nodePace paces the node database's backup: steps of 1 MiB (256 pages)
// and a tenth of the writer goroutine's time, since every object's commit
// waits behind a step. With a quarter (and 4 MiB steps) the steps held the
// writer 18% of the time and callers lost 26–29% of their rate during a
// 1 GiB backup; with a tenth, and the copy synced by Backup's caller
// (backupTarget, copyFlusher), 7.5–11.3% (BENCHMARKS.md).
var nodePace = backupPace{stepPages: 256, share: 0.1}

// backupJob is an online backup of the node database, run by the commit
// loop.
type backupJob struct {
	ctx  context.Context
	dst  string
	pace backupPace
	done chan error // buffered: the loop never waits for the caller
	b    *sqlite3.Backup
}

// Backup writes a consistent copy of the node database to the new file
// dst (which must not exist) while it serves, and syncs it: every batch
// acknowledged before Backup was called is in the copy, and no batch is in
// it in part. The copy takes a tenth of the writer's time at most
// (nodePace); commits go on between its steps. Backups of one DB run one at a time.
func (db *DB) Backup(ctx context.Context, dst string) error {
	return db.backupWith(ctx, dst, nodePace)
}

func (db *DB) backupWith(ctx context.Context, dst string, pace backupPace) error {
	if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("storage: backup: %s exists", dst)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return fmt.Errorf("storage: backup: %w", err)
	}
	job := &backupJob{ctx: ctx, dst: dst, pace: pace, done: make(chan error, 1)}
	select {
	case db.backups <- job:
	case <-db.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// The loop ends the job when ctx ends, within one step. Meanwhile this
	// goroutine, not the writer, syncs what the steps have written.
	tick := time.NewTicker(copyEvery)
	defer tick.Stop()
	flush := copyFlusher{path: dst}
	for {
		select {
		case err := <-job.done:
			if err != nil {
				os.Remove(dst)
				return fmt.Errorf("storage: backup %s: %w", db.path, err)
			}
			return syncFile(dst)
		case <-tick.C:
			flush.maybe()
		}
	}
}

// startBackup begins job on the writer's connection. The caller is the
// commit loop.
func (db *DB) startBackup(job *backupJob) (err error) {
	defer recoverSQLite(&err)
	if db.writer == nil {
		if db.writer, err = openWriter(db.path, db.cfg.durability); err != nil {
			return fmt.Errorf("reopen the writer after a failure: %w", err)
		}
	}
	job.b, err = db.writer.conn.BackupInit("main", backupTarget(job.dst))
	return err
}

// stepBackup copies the job's next step of pages and returns how long to
// rest before the next one, or done. The caller is the commit loop.
func (db *DB) stepBackup(job *backupJob) (rest time.Duration, done bool, err error) {
	defer recoverSQLite(&err)
	if err := job.ctx.Err(); err != nil {
		return 0, false, err
	}
	start := time.Now()
	done, err = job.b.Step(job.pace.stepPages)
	return time.Duration(float64(time.Since(start)) * (1/job.pace.share - 1)), done, err
}

// endBackup finishes job with err (nil: the copy is complete) and tells
// its caller. The caller is the commit loop; the job's Backup must end
// before the writer's connection closes.
func (db *DB) endBackup(job *backupJob, err error) {
	quietly(func() {
		if cerr := job.b.Close(); err == nil {
			err = cerr
		}
	})
	job.done <- err
}

// syncFile syncs the file at path to stable storage.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("storage: backup: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("storage: backup: sync %s: %w", path, err)
	}
	return nil
}
