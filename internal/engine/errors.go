package engine

import (
	"errors"
	"fmt"
)

// Limits on key-value storage, as Cloudflare sets them.
const (
	// MaxKeySize is the largest key, in bytes of UTF-8, of a class without
	// SQL.
	MaxKeySize = 2 << 10
	// MaxValueSize is the largest value, in bytes, of a class without SQL.
	MaxValueSize = 128 << 10
	// MaxSQLEntrySize is the largest key and value together, in bytes, of
	// a class with SQL: Cloudflare's limit for its SQLite-backed storage,
	// which has no other limit on keys or values.
	MaxSQLEntrySize = 2_000_000
	// MaxKeysPerCall is the most keys one GetMany, PutMany or DeleteMany
	// call takes.
	MaxKeysPerCall = 128
	// DefaultMaxSQLSize is the default cap on an object's SQL database.
	DefaultMaxSQLSize = 1 << 30
)

// ErrInvalid matches every error caused by what the caller asked for
// rather than by the storage: each limit below, bad list options, and SQL
// that an object may not run. Servers report it as InvalidArgument.
var ErrInvalid = errors.New("storage: invalid request")

// Errors a call may get from storage. Each matches ErrInvalid, except
// ErrNoSQL, ErrDatabaseFull, ErrNotInCall and ErrOutOfMemory; nothing was
// written when one is returned.
var (
	ErrKeyEmpty      = invalid("storage: key is empty")
	ErrKeyTooLarge   = invalid("storage: key is too large")
	ErrKeyNotUTF8    = invalid("storage: key is not valid UTF-8")
	ErrValueTooLarge = invalid("storage: value is too large")
	ErrTooManyKeys   = invalid(fmt.Sprintf("storage: more than %d keys in one call", MaxKeysPerCall))
	ErrListOptions   = invalid("storage: invalid list options")
	ErrSQLForbidden  = invalid("storage: statement not allowed in an object's database")
	// ErrSQLLimit: a statement of the object's SQL went past one of
	// Cloudflare's limits (MaxSQLStatementSize and the others).
	ErrSQLLimit = invalid(fmt.Sprintf("storage: statement over a limit of an object's database (%d-byte statements, %d columns, %d parameters, %d-byte strings, blobs and rows, %d-byte LIKE and GLOB patterns, %d terms of a compound SELECT)",
		MaxSQLStatementSize, MaxSQLColumns, MaxSQLParameters, MaxSQLValueSize, MaxSQLPatternSize, MaxSQLCompoundTerms))
	// ErrRolledBack: the storage was used in a Transaction after its
	// Rollback; its function can only return.
	ErrRolledBack = invalid("storage: the transaction was rolled back; only returning from its function is left")
	// ErrDeleteAllInTransaction: DeleteAll was called inside a
	// Transaction, which Cloudflare refuses too.
	ErrDeleteAllInTransaction = invalid("storage: DeleteAll cannot be called inside a transaction")

	// ErrNoSQL: the object's class was not declared with sql: true.
	ErrNoSQL = errors.New("storage: this object class has no SQL database (declare it with sql: true)")
	// ErrDatabaseFull: a write would take the object's SQL database past
	// its size cap, or the disk is full. Servers report it as
	// ResourceExhausted.
	ErrDatabaseFull = errors.New("storage: object database is full")
	// ErrTooManyOpenFiles: the object's database could not be opened, or
	// created by its first write, because too many are open (the server's
	// budget of SQL files, or the process's descriptors). Servers report it
	// as ResourceExhausted.
	ErrTooManyOpenFiles = errors.New("storage: too many object databases open")
	// ErrNotInCall: the handle was used outside the call it was passed to.
	ErrNotInCall = errors.New("storage: used outside the object's call")
	// ErrOutOfMemory: SQLite ran out of the memory one connection may use
	// (256 MiB in this build) running a query or committing a batch.
	// Nothing of the calls concerned was kept; other objects are not
	// affected. Servers report it as ResourceExhausted.
	ErrOutOfMemory = errors.New("storage: SQLite ran out of memory")
)

type invalidError struct{ msg string }

func invalid(msg string) error { return &invalidError{msg} }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }
