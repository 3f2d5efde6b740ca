package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

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
	// backupPages is SQLite's online backup API (sqlite3_backup_step with
	// -1: every page in one step, under one read transaction), a copy of
	// the pages as they are.
	backupPages
)

// defaultBackup is the cheaper method as measured by BenchmarkBackupFile
// (BENCHMARKS.md): the online backup API, page for page.
const defaultBackup = backupPages

// BackupFile writes a consistent copy of the SQLite database at src, which
// other connections may be writing, to the new file dst (which must not
// exist), and syncs it. A server backs up its node database and each
// object's database with it while serving.
func BackupFile(ctx context.Context, src, dst string) error {
	return backupFile(ctx, src, dst, defaultBackup)
}

func backupFile(ctx context.Context, src, dst string, m backupMethod) (err error) {
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
		err = c.Backup("main", dst)
	}
	if err != nil {
		os.Remove(dst)
		return fmt.Errorf("storage: backup %s: %w", src, err)
	}
	f, err := os.Open(dst)
	if err != nil {
		return fmt.Errorf("storage: backup: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("storage: backup: sync %s: %w", dst, err)
	}
	return nil
}

// Backup writes a consistent copy of the node database to the new file
// dst while it serves: every batch acknowledged before Backup was called
// is in the copy.
func (db *DB) Backup(ctx context.Context, dst string) error {
	return BackupFile(ctx, db.path, dst)
}
