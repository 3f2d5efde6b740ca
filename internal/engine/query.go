package engine

import (
	"context"
	"fmt"
)

// ErrNotReadOnly is returned by SQL.Query for a statement that could write,
// or for more than one statement. It matches ErrInvalid.
var ErrNotReadOnly = invalid("storage: not a single read-only statement")

// Query runs one statement that writes nothing (a SELECT, or a read-only
// PRAGMA the sandbox allows), with the sandbox and limits of Exec: the
// operator's window on an object's database, which must not change it.
// Whether a statement writes is SQLite's own judgement (sqlite3_stmt_readonly).
func (s *SQL) Query(ctx context.Context, query string, args ...any) (*Cursor, error) {
	if err := s.checkReadOnly(query); err != nil {
		return nil, err
	}
	return s.Exec(ctx, query, args...)
}

func (s *SQL) checkReadOnly(query string) (err error) {
	if s == nil || s.f == nil {
		return ErrNoSQL
	}
	f := s.f
	if err := s.fence.enter(); err != nil {
		return err
	}
	defer s.fence.exit()
	if f.calls == 0 {
		return ErrNotInCall
	}
	defer func() { f.trusted = true }()
	f.trusted, f.denied = false, ""
	stmt, tail, err := f.prepareGuarded(query)
	if err != nil {
		return f.sqlError(err)
	}
	if stmt == nil {
		return fmt.Errorf("%w: no statement", ErrNotReadOnly)
	}
	defer closeGuarded(stmt)
	switch {
	case !blankSQL(tail):
		return fmt.Errorf("%w: more than one statement", ErrNotReadOnly)
	case !stmt.ReadOnly():
		return fmt.Errorf("%w: the statement writes", ErrNotReadOnly)
	}
	return nil
}
