package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/ncruces/go-sqlite3"
)

// SQL is the SQL database of one object, Cloudflare's ctx.storage.sql,
// reachable from a method as Object.SQL for classes declared with sql:
// true. Every call runs in its own savepoint of the batch's transaction, so
// a call's statements commit with its state and key-value writes, or not at
// all. Each object's database is its own file: ATTACH, extension loading,
// explicit transactions (BEGIN, COMMIT, SAVEPOINT; use KV.Transaction) and
// Durable's own tables (_durable_*) are refused with ErrSQLForbidden.
type SQL struct {
	f     *fileStore // nil: the class has no SQL database
	fence *fence     // the store's; see Store.Fence
}

// Exec runs query, which may hold several statements separated by
// semicolons; args bind to the parameters of the last one. It returns the
// last statement's rows. Arguments may be nil, bool, any integer or float
// type, string, []byte, or time.Time (bound as RFC 3339 text).
func (s *SQL) Exec(ctx context.Context, query string, args ...any) (*Cursor, error) {
	if s == nil || s.f == nil {
		return nil, ErrNoSQL
	}
	f := s.f
	if err := s.fence.enter(); err != nil {
		return nil, err
	}
	defer s.fence.exit()
	if f.calls == 0 {
		return nil, ErrNotInCall
	}
	if f.undone != 0 {
		return nil, ErrRolledBack
	}
	old := f.conn.SetInterrupt(s.fence.interruptible(ctx))
	defer s.fence.done()
	defer f.conn.SetInterrupt(old)
	// Cloudflare's limit on values, for the object's statements only: see
	// sqlLimits.
	defer f.conn.Limit(sqlite3.LIMIT_LENGTH, f.conn.Limit(sqlite3.LIMIT_LENGTH, MaxSQLValueSize))
	defer func() { f.trusted = true }()

	before := f.conn.TotalChanges()
	cur := &Cursor{}
	if stmt := f.cache[query]; stmt != nil {
		f.trusted, f.denied = false, ""
		err := f.runCached(query, stmt, cur, args)
		if err != nil {
			return nil, f.sqlError(err)
		}
		cur.written = f.conn.TotalChanges() - before
		return cur, nil
	}
	if err := f.useFTS5(query); err != nil {
		return nil, err
	}
	for rest := query; ; {
		f.trusted, f.denied = false, ""
		stmt, tail, err := f.prepareGuarded(rest)
		if err != nil {
			return nil, f.sqlError(err)
		}
		if stmt == nil { // only white space and comments remain
			if rest == query {
				return nil, fmt.Errorf("%w: the SQL holds no statement, only white space, semicolons or comments", ErrInvalid)
			}
			break
		}
		last := blankSQL(tail)
		err = f.runOnce(stmt, cur, last, args)
		if err == nil && last && rest == query {
			f.keep(query, stmt) // a single statement: worth preparing once
		} else {
			closeGuarded(stmt)
		}
		if err != nil {
			return nil, f.sqlError(err)
		}
		if last {
			break
		}
		rest = tail
	}
	cur.written = f.conn.TotalChanges() - before
	return cur, nil
}

// DefaultMaxResultSize is the default cap on the rows one Exec returns, in
// bytes of their values: see WithMaxResultSize.
const DefaultMaxResultSize = 64 << 20

// WithMaxResultSize caps the bytes of the values of the rows one Exec
// returns, which a Cursor holds in memory (Cloudflare's cursor streams
// them, within its isolate's 128 MB): a query whose rows would take more
// fails with ErrOutOfMemory instead of exhausting the process's memory.
// Default DefaultMaxResultSize (64 MiB).
func WithMaxResultSize(bytes int64) FileOption {
	return func(c *fileConfig) { c.maxRows = max(1, bytes) }
}

// prepareGuarded prepares the first statement of sql; a panic of the
// binding is an error.
func (f *fileStore) prepareGuarded(sql string) (stmt *sqlite3.Stmt, tail string, err error) {
	defer recoverSQLite(&err)
	return f.conn.Prepare(sql)
}

// runOnce runs a statement the caller closes whatever happens: a panic of
// the binding (out of memory) is returned as an error, so that the caller
// reaches its Close. A statement left unfinalized would keep the
// connection, and its memory, from ever closing.
func (f *fileStore) runOnce(stmt *sqlite3.Stmt, cur *Cursor, last bool, args []any) (err error) {
	defer recoverSQLite(&err)
	return f.run(stmt, cur, last, args)
}

// runCached runs the statement cached for query and leaves it reset for
// the next Exec, even when the run panics; one that cannot be reset is
// closed and dropped from the cache.
func (f *fileStore) runCached(query string, stmt *sqlite3.Stmt, cur *Cursor, args []any) (err error) {
	defer func() {
		if f.resetGuarded(stmt) != nil {
			delete(f.cache, query)
			closeGuarded(stmt)
		}
	}()
	return f.runOnce(stmt, cur, true, args)
}

// closeGuarded finalizes stmt. Finalizing a statement whose last step ran
// out of memory reports that error again, and the binding panics with it:
// the statement is finalized all the same.
func closeGuarded(stmt *sqlite3.Stmt) {
	var err error
	defer recoverSQLite(&err)
	stmt.Close()
}

// resetGuarded resets stmt and clears its bindings; the error of the last
// run is not an error of the reset.
func (f *fileStore) resetGuarded(stmt *sqlite3.Stmt) (err error) {
	defer recoverSQLite(&err)
	stmt.Reset()
	return stmt.ClearBindings()
}

// maxCachedStatements bounds the prepared statements an object keeps.
const maxCachedStatements = 64

// keep caches a prepared single-statement query for the next Exec of the
// same text: preparing costs more than running most statements.
func (f *fileStore) keep(query string, stmt *sqlite3.Stmt) {
	if stmt == f.ddlStmt { // schema changes are checked on every run
		stmt.Close()
		return
	}
	stmt.Reset()
	stmt.ClearBindings()
	if len(f.cache) >= maxCachedStatements {
		f.dropCache()
	}
	if f.cache == nil {
		f.cache = make(map[string]*sqlite3.Stmt)
	}
	f.cache[query] = stmt
}

func (f *fileStore) dropCache() {
	for _, s := range f.cache {
		closeGuarded(s)
	}
	clear(f.cache)
}

// run executes one statement, keeping its rows in cur when it is the last.
func (f *fileStore) run(stmt *sqlite3.Stmt, cur *Cursor, last bool, args []any) error {
	if f.ddl { // the authorizer saw it change the schema: see sandbox.go
		return f.runChecked(stmt, cur, last, args)
	}
	if !last && stmt.BindCount() > 0 {
		// As on Cloudflare: a parameter left unbound would silently be NULL.
		return fmt.Errorf("%w: only the last of several statements may have parameters", ErrInvalid)
	}
	if last {
		if n := stmt.BindCount(); n != len(args) {
			return fmt.Errorf("%w: the statement has %d parameters, %d arguments given", ErrInvalid, n, len(args))
		}
		for i, a := range args {
			if err := bind(stmt, i+1, a); err != nil {
				return err
			}
		}
		cur.columns = make([]string, stmt.ColumnCount())
		for i := range cur.columns {
			cur.columns[i] = stmt.ColumnName(i)
		}
		cur.rows = cur.rows[:0]
	}
	var size int64
	for stmt.Step() {
		cur.read++
		if !last {
			continue
		}
		row := make([]any, stmt.ColumnCount())
		for i := range row {
			row[i] = column(stmt, i)
			size += valueSize(row[i])
		}
		if size > f.cfg.maxRows {
			cur.rows = nil
			return fmt.Errorf("%w: the rows of the query take more than %d bytes (storage.WithMaxResultSize); select fewer with LIMIT", ErrOutOfMemory, f.cfg.maxRows)
		}
		cur.rows = append(cur.rows, row)
	}
	return stmt.Err()
}

// valueSize is about what a value of a row takes in memory.
func valueSize(v any) int64 {
	const word = 16 // the interface, or the number it holds
	switch v := v.(type) {
	case string:
		return word + int64(len(v))
	case []byte:
		return word + int64(len(v))
	}
	return word
}

// sqlError makes the errors of an object's SQL clear: which rule a refused
// statement broke, and the size cap for a full database.
func (f *fileStore) sqlError(err error) error {
	f.ddl = false // of a statement that failed to prepare, never run
	switch {
	case f.denied != "":
		return fmt.Errorf("%w: %s", ErrSQLForbidden, f.denied)
	case errors.Is(err, sqlite3.FULL):
		return fmt.Errorf("%w: the cap is %d bytes: %w", ErrDatabaseFull, f.cfg.maxSize, err)
	case errors.Is(err, ErrInvalid):
		return err
	case overLimit(err):
		return fmt.Errorf("%w: %w", ErrSQLLimit, err)
	}
	return fmt.Errorf("storage: sql: %w", err)
}

func bind(s *sqlite3.Stmt, i int, a any) error {
	switch v := a.(type) {
	case nil:
		return s.BindNull(i)
	case bool:
		return s.BindBool(i, v)
	case int:
		return s.BindInt64(i, int64(v))
	case int8:
		return s.BindInt64(i, int64(v))
	case int16:
		return s.BindInt64(i, int64(v))
	case int32:
		return s.BindInt64(i, int64(v))
	case int64:
		return s.BindInt64(i, v)
	case uint8:
		return s.BindInt64(i, int64(v))
	case uint16:
		return s.BindInt64(i, int64(v))
	case uint32:
		return s.BindInt64(i, int64(v))
	case uint:
		if uint64(v) > math.MaxInt64 {
			return fmt.Errorf("%w: argument %d overflows a 64-bit integer", ErrInvalid, i)
		}
		return s.BindInt64(i, int64(v))
	case uint64:
		if v > math.MaxInt64 {
			return fmt.Errorf("%w: argument %d overflows a 64-bit integer", ErrInvalid, i)
		}
		return s.BindInt64(i, int64(v))
	case float32:
		return s.BindFloat(i, float64(v))
	case float64:
		return s.BindFloat(i, v)
	case string:
		return s.BindText(i, v)
	case []byte:
		return s.BindBlob(i, v)
	case time.Time:
		return s.BindText(i, v.Format(time.RFC3339Nano))
	}
	return fmt.Errorf("%w: argument %d has unsupported type %T", ErrInvalid, i, a)
}

func column(s *sqlite3.Stmt, i int) any {
	switch s.ColumnType(i) {
	case sqlite3.INTEGER:
		return s.ColumnInt64(i)
	case sqlite3.FLOAT:
		return s.ColumnFloat(i)
	case sqlite3.TEXT:
		return s.ColumnText(i)
	case sqlite3.BLOB:
		return s.ColumnBlob(i, []byte{})
	}
	return nil
}

// blankSQL reports whether sql holds nothing but white space, semicolons
// and comments.
func blankSQL(sql string) bool {
	for sql != "" {
		switch {
		case strings.HasPrefix(sql, "--"):
			i := strings.IndexByte(sql, '\n')
			if i < 0 {
				return true
			}
			sql = sql[i+1:]
		case strings.HasPrefix(sql, "/*"):
			i := strings.Index(sql[2:], "*/")
			if i < 0 {
				return true
			}
			sql = sql[i+4:]
		case strings.ContainsRune(" \t\r\n\f;", rune(sql[0])):
			sql = sql[1:]
		default:
			return false
		}
	}
	return true
}

// durableRootPages are the first pages of Durable's three tables, which
// DatabaseSize leaves out: a fresh object's database then takes one page,
// its schema, as a fresh database does on Cloudflare. What Durable's
// tables hold beyond their first pages (a large state, many keys) counts.
const durableRootPages = 3

// DatabaseSize returns the bytes of the pages of the object's database in
// use, as Cloudflare's databaseSize reports them: page_count less
// freelist_count, times the page size, so that it shrinks when a table is
// dropped. A fresh object reports 4,096 bytes. It counts the object's
// tables and indexes, its key-value storage and its state, but not the
// first page of each of Durable's own tables (see durableRootPages).
func (s *SQL) DatabaseSize(ctx context.Context) (int64, error) {
	if s == nil || s.f == nil {
		return 0, ErrNoSQL
	}
	if err := s.fence.enter(); err != nil {
		return 0, err
	}
	defer s.fence.exit()
	return s.f.size()
}

// safePragmas are the pragmas an object's SQL may run: they read the
// schema or check integrity and change nothing Durable relies on. The value
// tells whether the pragma takes an argument (a table or index name); one
// that does not is refused with one, since that would set it.
var safePragmas = map[string]bool{
	"table_info": true, "table_xinfo": true, "table_list": true, "index_list": true,
	"index_info": true, "index_xinfo": true, "foreign_key_list": true, "foreign_key_check": true,
	"integrity_check": true, "quick_check": true,
	"page_count": false, "page_size": false, "freelist_count": false, "collation_list": false,
	"data_version": false,
}

// authorize is the SQLite authorizer of an object's database.
func (f *fileStore) authorize(action sqlite3.AuthorizerActionCode, name3, name4, schema, _ string) sqlite3.AuthorizerReturnCode {
	if f.trusted {
		return sqlite3.AUTH_OK
	}
	deny := func(why string) sqlite3.AuthorizerReturnCode {
		if f.denied == "" {
			f.denied = why
		}
		return sqlite3.AUTH_DENY
	}
	switch action {
	case sqlite3.AUTH_ATTACH, sqlite3.AUTH_DETACH:
		return deny("ATTACH and DETACH: each object's database is isolated")
	case sqlite3.AUTH_TRANSACTION, sqlite3.AUTH_SAVEPOINT:
		return deny("BEGIN, COMMIT, ROLLBACK and SAVEPOINT: every call is a transaction already; use Storage.Transaction to undo part of one")
	case sqlite3.AUTH_FUNCTION:
		if !sqlFunctions[strings.ToLower(name4)] {
			return deny(fmt.Sprintf("function %s is not available in an object's database", name4))
		}
	case sqlite3.AUTH_PRAGMA:
		takesArg, safe := safePragmas[strings.ToLower(name3)]
		if !safe || (name4 != "" && !takesArg) {
			return deny(fmt.Sprintf("PRAGMA %s: only schema and integrity pragmas are allowed", name3))
		}
	}
	if why := f.authorizeSchema(action, name3, name4, schema); why != "" {
		return deny(why)
	}
	if reserved(name3) {
		return deny(fmt.Sprintf("table %s belongs to Durable", name3))
	}
	return sqlite3.AUTH_OK
}

func reserved(name string) bool { return strings.HasPrefix(strings.ToLower(name), reservedPrefix) }

// Cursor holds the rows of an Exec, Cloudflare's SqlStorageCursor. The
// rows are read when Exec runs, so a cursor stays valid after the call.
type Cursor struct {
	columns []string
	rows    [][]any
	next    int
	read    int64
	written int64
}

// Columns returns the names of the columns.
func (c *Cursor) Columns() []string { return c.columns }

// Next advances to the next row; it reports false when none is left.
func (c *Cursor) Next() bool {
	if c.next >= len(c.rows) {
		return false
	}
	c.next++
	return true
}

// Values returns the current row's values: int64, float64, string, []byte
// or nil, in column order.
func (c *Cursor) Values() []any {
	if c.next == 0 {
		return nil
	}
	return c.rows[c.next-1]
}

// Scan copies the current row into dest, which takes pointers to int64,
// int, float64, string, []byte, bool or any.
func (c *Cursor) Scan(dest ...any) error {
	row := c.Values()
	if row == nil {
		return errors.New("storage: Scan called without a current row; call Next first")
	}
	if len(dest) != len(row) {
		return fmt.Errorf("storage: Scan of %d columns into %d destinations", len(row), len(dest))
	}
	for i, d := range dest {
		if err := assign(d, row[i]); err != nil {
			return fmt.Errorf("storage: column %s: %w", c.columns[i], err)
		}
	}
	return nil
}

func assign(dest, v any) error {
	switch d := dest.(type) {
	case *any:
		*d = v
		return nil
	case *int64:
		if n, ok := v.(int64); ok {
			*d = n
			return nil
		}
	case *int:
		if n, ok := v.(int64); ok {
			*d = int(n)
			return nil
		}
	case *float64:
		switch n := v.(type) {
		case float64:
			*d = n
			return nil
		case int64:
			*d = float64(n)
			return nil
		}
	case *string:
		switch s := v.(type) {
		case string:
			*d = s
			return nil
		case []byte:
			*d = string(s)
			return nil
		}
	case *[]byte:
		switch s := v.(type) {
		case []byte:
			*d = s
			return nil
		case string:
			*d = []byte(s)
			return nil
		}
	case *bool:
		if n, ok := v.(int64); ok {
			*d = n != 0
			return nil
		}
	}
	return fmt.Errorf("cannot scan %T into %T", v, dest)
}

// All returns the rows not yet read with Next, each as a map from column
// name to value: Cloudflare's toArray.
func (c *Cursor) All() []map[string]any {
	out := make([]map[string]any, 0, len(c.rows)-c.next)
	for ; c.next < len(c.rows); c.next++ {
		m := make(map[string]any, len(c.columns))
		for i, name := range c.columns {
			m[name] = c.rows[c.next][i]
		}
		out = append(out, m)
	}
	return out
}

// One returns the only row left, or an error unless exactly one is left.
func (c *Cursor) One() (map[string]any, error) {
	if n := len(c.rows) - c.next; n != 1 {
		return nil, fmt.Errorf("storage: One: the query returned %d rows, not exactly one", n)
	}
	return c.All()[0], nil
}

// Raw returns the rows not yet read with Next, as values without column
// names.
func (c *Cursor) Raw() [][]any {
	out := c.rows[c.next:]
	c.next = len(c.rows)
	return out
}

// RowsRead returns how many rows the statements produced.
func (c *Cursor) RowsRead() int64 { return c.read }

// RowsWritten returns how many rows the statements inserted, updated or
// deleted.
func (c *Cursor) RowsWritten() int64 { return c.written }
