package storage

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// oomMessage is how the SQLite layer (github.com/ncruces/go-sqlite3)
// reports SQLITE_NOMEM: it panics with an error of this text rather than
// returning it, since most of its API has no error result.
const oomMessage = "sqlite3: out of memory"

// recovered turns a panic raised on the storage path into the error of
// the operation it interrupted, so that what one call did (a huge value, a
// runaway query) fails that call and never the process. A panic that is
// not SQLite's out-of-memory report is a bug: its stack is kept in the
// error for the log.
func recovered(r any) error {
	err, ok := r.(error)
	switch {
	case ok && err.Error() == oomMessage:
		return fmt.Errorf("%w: %w", ErrOutOfMemory, err)
	case ok && strings.HasPrefix(err.Error(), "sqlite3: "):
		return fmt.Errorf("storage: SQLite failed: %w", err)
	}
	return fmt.Errorf("storage: SQLite panicked: %v\n%s", r, debug.Stack())
}

// catch is deferred by the operations that run SQLite statements: a panic
// becomes *err.
func catch(err *error) {
	if r := recover(); r != nil {
		*err = recovered(r)
	}
}
