package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/ncruces/go-sqlite3"
)

// backupMethod is how BackupFile copies a database: both give a
// consistent copy of a database other connections keep writing (WAL mode:
// the copy is of one read transaction, and writers are not blocked).
type backupMethod int

const (
	// backupVacuum is VACUUM INTO: a compacted copy, built by re-inserting
	// every row, which costs CPU per row and index.
	backupVacuum backupMethod = iota
	// backupPages is SQLite's online backup API, a copy of the pages as
	// they are, paced (see backupPace) under one read transaction.
	backupPages
)

// backupPace paces the online backup so that it takes a bounded share of
// one core from the objects being served: it copies stepPages pages, then
// rests share⁻¹ − 1 times as long as the step took. Without it a backup
// runs one core flat out, and on a 2-core machine the callers lost half
// their rate while a 1 GiB directory was copied (BENCHMARKS.md).
type backupPace struct {
	stepPages int
	share     float64 // of one core, in (0, 1]
}

// defaultPace is a quarter of a core in steps of 4 MiB (1,024 pages).
var defaultPace = backupPace{stepPages: 1024, share: 0.25}

// defaultBackup is the cheaper method as measured by BenchmarkBackupFile
// (BENCHMARKS.md): the online backup API, page for page.
const defaultBackup = backupPages

// BackupFile writes a consistent copy of the SQLite database at src, which
// other connections may be writing, to the new file dst (which must not
// exist), and syncs it. A server backs up its node database and each
// object's database with it while serving.
func BackupFile(ctx context.Context, src, dst string) error {
	return backupFile(ctx, src, dst, defaultBackup, defaultPace)
}

func backupFile(ctx context.Context, src, dst string, m backupMethod, pace backupPace) (err error) {
	defer recoverSQLite(&err)
	if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("storage: backup: %s exists", dst)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return fmt.Errorf("storage: backup: %w", err)
	}
	c, err := open(src, sqlite3.OPEN_READONLY|sqlite3.OPEN_NOMUTEX)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := pragmas(c, `PRAGMA busy_timeout=5000;`); err != nil {
		return err
	}
	old := c.SetInterrupt(ctx)
	defer c.SetInterrupt(old)
	switch m {
	case backupVacuum:
		s, _, err := c.Prepare(`VACUUM INTO ?`)
		if err != nil {
			return fmt.Errorf("storage: backup %s: %w", src, err)
		}
		defer s.Close()
		s.BindText(1, dst)
		err = s.Exec()
	default:
		err = pagedBackup(ctx, c, dst, pace)
	}
	if err != nil {
		os.Remove(dst)
		return fmt.Errorf("storage: backup %s: %w", src, err)
	}
	return syncFile(dst)
}

// pagedBackup copies the database of c to dst with the online backup API,
// pace's steps at a time. It holds one read transaction on c for the whole
// copy: the copy is of that snapshot, and writers (in WAL mode) neither
// wait for it nor make it start over, as they would between steps that
// each took a snapshot of their own.
func pagedBackup(ctx context.Context, c *sqlite3.Conn, dst string, pace backupPace) error {
	if err := c.Exec(`BEGIN; SELECT count(*) FROM sqlite_schema;`); err != nil {
		return err
	}
	defer c.Exec(`ROLLBACK`)
	b, err := c.BackupInit("main", backupTarget(dst))
	if err != nil {
		return err
	}
	defer b.Close()
	rest := time.NewTimer(0)
	defer rest.Stop()
	flush := copyFlusher{path: dst, last: time.Now()}
	for {
		start := time.Now()
		done, err := b.Step(pace.stepPages)
		if err != nil || done {
			if err == nil {
				err = b.Close()
			}
			return err
		}
		flush.maybe()
		rest.Reset(time.Duration(float64(time.Since(start)) * (1/pace.share - 1)))
		select {
		case <-rest.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// backupTarget is the URI the online backup opens its copy dst with. The
// copy needs no journal and no syncs of its own: it is incomplete, and
// removed, until its Backup returns, and Backup syncs it as a whole.
// With SQLite's defaults the copy's pages piled up in the page cache, and
// the commit of its last step synced them all at once, on the node
// database's writer, stalling every commit behind a flush of the whole
// copy (seconds for 1 GiB).
func backupTarget(dst string) string {
	u := url.URL{Scheme: "file", Path: dst, RawQuery: "_pragma=journal_mode(off)&_pragma=synchronous(off)"}
	return u.String()
}

// copyEvery is how often a running backup syncs its copy, so that what it
// has written reaches the disk in steady portions that the commits'
// own syncs do not wait behind, rather than in one flush at the end.
const copyEvery = time.Second

// copyFlusher syncs a backup's copy every copyEvery.
type copyFlusher struct {
	path string
	last time.Time
}

// maybe syncs the copy if copyEvery has passed since it last did. It
// ignores errors: the copy is synced, and its errors reported, at the end.
func (f *copyFlusher) maybe() {
	if time.Since(f.last) < copyEvery {
		return
	}
	f.last = time.Now()
	if file, err := os.Open(f.path); err == nil {
		file.Sync()
		file.Close()
	}
}
