package engine

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// oomMessage is how the SQLite layer (github.com/ncruces/go-sqlite3)
// reports SQLITE_NOMEM: it panics with an error of this text rather than
// returning it, since most of its API has no error result.
const oomMessage = sqlitePrefix + "out of memory"

// sqlitePrefix starts the text of every error of the SQLite layer.
const sqlitePrefix = "sqlite3: "

// fromSQLite reports whether the panic r was raised by the SQLite layer.
func fromSQLite(r any) bool {
	err, ok := r.(error)
	return ok && strings.HasPrefix(err.Error(), sqlitePrefix)
}

// recovered turns a panic raised on the storage path into the error of
// the operation it interrupted, so that what one call did (a huge value, a
// runaway query) fails that call and never the process. A panic that is
// not SQLite's out-of-memory report is a bug: its stack is kept in the
// error for the log.
func recovered(r any) error {
	if fromSQLite(r) {
		err := r.(error)
		if err.Error() == oomMessage {
			return fmt.Errorf("%w: %w", ErrOutOfMemory, err)
		}
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

// recoverSQLite is deferred around the binding's calls that run the
// object's SQL: a panic of the binding becomes *err (see recovered). The
// binding panics instead of returning SQLITE_NOMEM when a connection
// reaches its memory limit; every other panic, one of the object's own
// code, goes on.
func recoverSQLite(err *error) {
	if r := recover(); r != nil {
		if !fromSQLite(r) {
			panic(r)
		}
		*err = recovered(r)
	}
}

// quietly runs op, a clean-up after a panic of SQLite (closing or rolling
// back a connection), ignoring a panic of its own: there is nothing better
// to do if even that fails.
func quietly(op func()) {
	defer func() { recover() }()
	op()
}
