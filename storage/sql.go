package storage

import (
	"context"

	"github.com/durablego/durable/internal/engine"
)

// SQL is the SQL database of one object, Cloudflare's ctx.storage.sql,
// reachable from a method as Object.SQL for classes declared with sql:
// true. Every call runs in its own savepoint of the batch's transaction, so
// a call's statements commit with its state and key-value writes, or not at
// all. Each object's database is its own file: ATTACH, extension loading,
// explicit transactions (BEGIN, COMMIT, SAVEPOINT; use KV.Transaction) and
// Durable's own tables (_durable_*) are refused with ErrSQLForbidden.
type SQL engine.SQL

// Cursor holds the rows of an Exec, Cloudflare's SqlStorageCursor. The
// rows are read when Exec runs, so a cursor stays valid after the call.
type Cursor engine.Cursor

// Exec runs query, which may hold several statements separated by
// semicolons; args bind to the parameters of the last one. It returns the
// last statement's rows. Arguments may be nil, bool, any integer or float
// type, string, []byte, or time.Time (bound as RFC 3339 text).
func (s *SQL) Exec(ctx context.Context, query string, args ...any) (*Cursor, error) {
	c, err := (*engine.SQL)(s).Exec(ctx, query, args...)
	return (*Cursor)(c), err
}

// Query runs one statement that writes nothing (a SELECT, or a read-only
// PRAGMA the sandbox allows), with the sandbox and limits of Exec: the
// operator's window on an object's database, which must not change it.
// Whether a statement writes is SQLite's own judgement (sqlite3_stmt_readonly).
func (s *SQL) Query(ctx context.Context, query string, args ...any) (*Cursor, error) {
	c, err := (*engine.SQL)(s).Query(ctx, query, args...)
	return (*Cursor)(c), err
}

// DatabaseSize returns the bytes of the pages of the object's database in
// use, as Cloudflare's databaseSize reports them: page_count less
// freelist_count, times the page size, so that it shrinks when a table is
// dropped. A fresh object reports 4,096 bytes. It counts the object's
// tables and indexes, its key-value storage and its state, but not the
// first page of each of Durable's own tables (see durableRootPages).
func (s *SQL) DatabaseSize(ctx context.Context) (int64, error) {
	return (*engine.SQL)(s).DatabaseSize(ctx)
}

// Columns returns the names of the columns.
func (c *Cursor) Columns() []string {
	return (*engine.Cursor)(c).Columns()
}

// Next advances to the next row; it reports false when none is left.
func (c *Cursor) Next() bool {
	return (*engine.Cursor)(c).Next()
}

// Values returns the current row's values: int64, float64, string, []byte
// or nil, in column order.
func (c *Cursor) Values() []any {
	return (*engine.Cursor)(c).Values()
}

// Scan copies the current row into dest, which takes pointers to int64,
// int, float64, string, []byte, bool or any.
func (c *Cursor) Scan(dest ...any) error {
	return (*engine.Cursor)(c).Scan(dest...)
}

// All returns the rows not yet read with Next, each as a map from column
// name to value: Cloudflare's toArray.
func (c *Cursor) All() []map[string]any {
	return (*engine.Cursor)(c).All()
}

// One returns the only row left, or an error unless exactly one is left.
func (c *Cursor) One() (map[string]any, error) {
	return (*engine.Cursor)(c).One()
}

// Raw returns the rows not yet read with Next, as values without column
// names.
func (c *Cursor) Raw() [][]any {
	return (*engine.Cursor)(c).Raw()
}

// RowsRead returns how many rows the statements produced.
func (c *Cursor) RowsRead() int64 {
	return (*engine.Cursor)(c).RowsRead()
}

// RowsWritten returns how many rows the statements inserted, updated or
// deleted.
func (c *Cursor) RowsWritten() int64 {
	return (*engine.Cursor)(c).RowsWritten()
}
