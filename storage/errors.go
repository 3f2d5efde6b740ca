package storage

import "github.com/durablego/durable/internal/engine"

// ErrInvalid matches every error caused by what the caller asked for
// rather than by the storage: each limit below, bad list options, and SQL
// that an object may not run. Servers report it as InvalidArgument.
var ErrInvalid = engine.ErrInvalid

// Errors a call may get from storage. Each matches ErrInvalid, except
// ErrNoSQL, ErrNoAlarmHandler, ErrDatabaseFull, ErrTooManyOpenFiles,
// ErrNotInCall and ErrOutOfMemory; nothing was written when one is returned.
var (
	// ErrKeyEmpty: a key is "".
	ErrKeyEmpty = engine.ErrKeyEmpty
	// ErrKeyTooLarge: a key is longer than MaxKeySize (a class without SQL).
	ErrKeyTooLarge = engine.ErrKeyTooLarge
	// ErrKeyNotUTF8: a key is not valid UTF-8.
	ErrKeyNotUTF8 = engine.ErrKeyNotUTF8
	// ErrValueTooLarge: a value is larger than MaxValueSize (a class
	// without SQL), or a key and its value larger than MaxSQLEntrySize.
	ErrValueTooLarge = engine.ErrValueTooLarge
	// ErrTooManyKeys: more than MaxKeysPerCall keys in one call.
	ErrTooManyKeys = engine.ErrTooManyKeys
	// ErrListOptions: ListOptions that select nothing coherent (Start
	// and StartAfter together, a negative Limit).
	ErrListOptions = engine.ErrListOptions
	// ErrSQLForbidden: a statement an object's database refuses (ATTACH,
	// extensions, explicit transactions, Durable's own _durable_ tables).
	ErrSQLForbidden = engine.ErrSQLForbidden
	// ErrSQLLimit: a statement went past one of Cloudflare's limits
	// (MaxSQLStatementSize and the others).
	ErrSQLLimit = engine.ErrSQLLimit
	// ErrNotReadOnly: SQL.Query was given a statement that could write,
	// or more than one statement.
	ErrNotReadOnly = engine.ErrNotReadOnly
	// ErrRolledBack: the storage was used in a Transaction after its
	// Rollback; its function can only return.
	ErrRolledBack = engine.ErrRolledBack
	// ErrDeleteAllInTransaction: DeleteAll was called inside a
	// Transaction, which Cloudflare refuses too.
	ErrDeleteAllInTransaction = engine.ErrDeleteAllInTransaction
	// ErrInvalidAlarm: SetAlarm was given the zero time, or a time before
	// 1970.
	ErrInvalidAlarm = engine.ErrInvalidAlarm
	// ErrNoAlarmHandler: SetAlarm on an object whose class does not
	// implement the Alarm hook, so the alarm could never run.
	ErrNoAlarmHandler = engine.ErrNoAlarmHandler

	// ErrNoSQL: the object's class was not declared with sql: true.
	ErrNoSQL = engine.ErrNoSQL
	// ErrDatabaseFull: a write would take the object's SQL database past
	// its size cap, or the disk is full. Servers report it as
	// ResourceExhausted.
	ErrDatabaseFull = engine.ErrDatabaseFull
	// ErrTooManyOpenFiles: the object's database could not be opened, or
	// created by its first write, because too many are open. Servers
	// report it as ResourceExhausted.
	ErrTooManyOpenFiles = engine.ErrTooManyOpenFiles
	// ErrNotInCall: the handle was used outside the call it was passed to.
	ErrNotInCall = engine.ErrNotInCall
	// ErrOutOfMemory: SQLite ran out of the memory one connection may use
	// running a query or committing a batch. Nothing of the calls
	// concerned was kept. Servers report it as ResourceExhausted.
	ErrOutOfMemory = engine.ErrOutOfMemory
)

// Errors of the store under an object, which a call may get from any
// storage method; the server maps each to a status.
var (
	// ErrTooLarge: the call's writes are more than the store commits in
	// one atomic write (the etcd store of cluster mode); nothing of them
	// is written. Servers report it as ResourceExhausted.
	ErrTooLarge = engine.ErrTooLarge
	// ErrUnavailable: the store cannot serve the object now (another
	// node owns it, or the cluster is out of reach). Servers report it
	// as Unavailable: a retry may succeed.
	ErrUnavailable = engine.ErrUnavailable
	// ErrFenced: the call overran its time limit and the object was
	// reset; nothing this instance writes is committed.
	ErrFenced = engine.ErrFenced
	// ErrClosed: the server's storage is closed (it is shutting down).
	ErrClosed = engine.ErrClosed
)
