package engine

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/ncruces/go-sqlite3"
)

// fullError wraps err with ErrDatabaseFull when SQLite failed for want of
// room, saying which: SQLITE_FULL, which SQLite returns when a database
// reaches its page cap (limit describes it, "" when there is none) or the
// disk is full; or a write the file system refused (SQLITE_IOERR_WRITE),
// which is how a full disk (ENOSPC), a full quota (EDQUOT) or the process's
// file size limit (EFBIG) reach SQLite. Other errors are returned as they
// are.
func fullError(err error, limit string) error {
	switch {
	case err == nil, errors.Is(err, ErrDatabaseFull):
		return err
	case errors.Is(err, sqlite3.FULL):
		if limit != "" {
			return fmt.Errorf("%w (%s, or the disk is full): %w", ErrDatabaseFull, limit, err)
		}
		return fmt.Errorf("%w: the disk is full: %w", ErrDatabaseFull, err)
	case errors.Is(err, sqlite3.IOERR_WRITE), errors.Is(err, syscall.ENOSPC),
		errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EFBIG):
		return fmt.Errorf("%w: the disk is full (the file system refused a write): %w", ErrDatabaseFull, err)
	}
	return err
}
