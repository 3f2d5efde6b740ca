package engine

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/ext/fts5"
)

// Limits on an object's SQL, Cloudflare's (its documented limits, applied
// as its runtime, workerd, applies them: with sqlite3_limit). A statement
// over one fails with an error matching ErrSQLLimit.
const (
	// MaxSQLStatementSize is the longest statement, in bytes.
	MaxSQLStatementSize = 100_000
	// MaxSQLColumns is the most columns of a table, an index, a result or
	// an ORDER BY or GROUP BY.
	MaxSQLColumns = 100
	// MaxSQLParameters is the most bound parameters of a statement (?100
	// is the last).
	MaxSQLParameters = 100
	// MaxSQLPatternSize is the longest LIKE or GLOB pattern, in bytes.
	MaxSQLPatternSize = 50
	// MaxSQLCompoundTerms is the most SELECTs a compound SELECT (UNION,
	// INTERSECT, EXCEPT) joins.
	MaxSQLCompoundTerms = 5
	// MaxSQLValueSize is the largest string, blob or table row the
	// object's SQL may make, in bytes.
	MaxSQLValueSize = 2_000_000
)

// sqlLimits are the limits set on an object's connection for good.
// Durable's own statements fit them; the length of values does not (a
// state or a key-value entry may be larger than MaxSQLValueSize with its
// row's header), so it is set only while the object's SQL runs: see
// SQL.Exec. ATTACH is refused by the authorizer rather than by
// SQLITE_LIMIT_ATTACHED, which would also stop VACUUM INTO.
var sqlLimits = []struct {
	id sqlite3.LimitCategory
	n  int
}{
	{sqlite3.LIMIT_SQL_LENGTH, MaxSQLStatementSize},
	{sqlite3.LIMIT_COLUMN, MaxSQLColumns},
	{sqlite3.LIMIT_VARIABLE_NUMBER, MaxSQLParameters},
	{sqlite3.LIMIT_LIKE_PATTERN_LENGTH, MaxSQLPatternSize},
	{sqlite3.LIMIT_COMPOUND_SELECT, MaxSQLCompoundTerms},
	// Not documented by Cloudflare but set by workerd.
	{sqlite3.LIMIT_EXPR_DEPTH, 100},
	{sqlite3.LIMIT_VDBE_OP, 25_000},
	{sqlite3.LIMIT_FUNCTION_ARG, 127},
	{sqlite3.LIMIT_TRIGGER_DEPTH, 10},
	{sqlite3.LIMIT_WORKER_THREADS, 0},
}

// limitMessages are how SQLite words the errors of the limits that
// report SQLITE_ERROR (the length limits report SQLITE_TOOBIG).
var limitMessages = []string{
	"too many SQL variables", "variable number must be between", "too many columns",
	"too many terms in compound SELECT", "LIKE or GLOB pattern too complex",
	"Expression tree is too large", "too many arguments on function",
	"too many levels of trigger recursion", "statement too long",
}

// overLimit reports whether err is SQLite refusing a statement over one of
// sqlLimits or MaxSQLValueSize.
func overLimit(err error) bool {
	if errors.Is(err, sqlite3.TOOBIG) {
		return true
	}
	var serr *sqlite3.Error
	if !errors.As(err, &serr) {
		return false
	}
	for _, m := range limitMessages {
		if strings.Contains(serr.Error(), m) {
			return true
		}
	}
	return false
}

// sandbox configures c as Cloudflare's runtime configures an object's
// database: its limits, double-quoted string literals accepted (SQLite's
// legacy default, which Cloudflare keeps and this build turns off),
// defensive mode (no writes to FTS5's shadow tables or to the schema) and
// the FTS5 module. The authorizer is set by authorizeOn.
//
// Registering FTS5 costs about half a millisecond per connection, as much
// as opening it, so it is registered only on a database that has virtual
// tables, and otherwise before the first statement that names the module
// (see useFTS5).
func (f *fileStore) sandbox(c *sqlite3.Conn) error {
	for _, l := range sqlLimits {
		c.Limit(l.id, l.n)
	}
	for _, op := range []sqlite3.DBConfig{sqlite3.DBCONFIG_DQS_DML, sqlite3.DBCONFIG_DQS_DDL, sqlite3.DBCONFIG_DEFENSIVE} {
		if _, err := c.Config(op, true); err != nil {
			return fmt.Errorf("storage: configure: %w", err)
		}
	}
	f.fts5 = false
	stmt, _, err := c.Prepare(`SELECT 1 FROM sqlite_schema WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%' LIMIT 1`)
	if err != nil {
		return fmt.Errorf("storage: configure: %w", err)
	}
	vtabs := stmt.Step()
	if err := stmt.Close(); err != nil {
		return fmt.Errorf("storage: configure: %w", err)
	}
	if vtabs {
		return f.registerFTS5(c)
	}
	return nil
}

func (f *fileStore) registerFTS5(c *sqlite3.Conn) error {
	if err := fts5.Register(c); err != nil {
		return fmt.Errorf("storage: register FTS5: %w", err)
	}
	f.fts5 = true
	return nil
}

// useFTS5 registers FTS5 before the object's query is prepared if it may
// create a table of it: if it names fts5 (or fts5vocab), in any case.
func (f *fileStore) useFTS5(query string) error {
	if f.fts5 {
		return nil
	}
	for i := 0; i+4 <= len(query); i++ {
		if query[i]|0x20 == 'f' && query[i+1]|0x20 == 't' && query[i+2]|0x20 == 's' && query[i+3] == '5' {
			return f.registerFTS5(f.conn)
		}
	}
	return nil
}

// vtabModules are the virtual table modules an object's SQL may create
// tables of, as on Cloudflare (which also has R*Tree, not in this build).
var vtabModules = map[string]bool{"fts5": true, "fts5vocab": true}

// sqlFunctions are the functions an object's SQL may call: Cloudflare's
// list, SQLite's core, date, aggregate, window, math, JSON and FTS5
// functions. Those that describe the build (sqlite_version,
// sqlite_source_id, sqlite_compileoption_*, sqlite_offset) and everything
// else are refused, as on Cloudflare. Durable's own statements are not
// checked.
var sqlFunctions = setOf(
	// https://sqlite.org/lang_corefunc.html
	"abs", "changes", "char", "coalesce", "concat", "concat_ws", "format", "glob", "hex",
	"ifnull", "iif", "instr", "last_insert_rowid", "length", "like", "likelihood", "likely",
	"lower", "ltrim", "max_scalar", "min_scalar", "nullif", "octet_length", "printf",
	"quote", "random", "randomblob", "replace", "round", "rtrim", "sign", "soundex",
	"substr", "substring", "total_changes", "trim", "typeof", "unhex", "unicode", "unlikely",
	"upper", "zeroblob",
	// https://sqlite.org/lang_datefunc.html
	"date", "time", "datetime", "julianday", "unixepoch", "strftime", "timediff",
	"current_date", "current_time", "current_timestamp",
	// https://sqlite.org/lang_aggfunc.html
	"avg", "count", "group_concat", "max", "min", "string_agg", "sum", "total",
	// https://sqlite.org/windowfunctions.html#builtins
	"row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead",
	"first_value", "last_value", "nth_value",
	// https://sqlite.org/lang_mathfunc.html
	"acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "ceil", "ceiling", "cos", "cosh",
	"degrees", "exp", "floor", "ln", "log", "log10", "log2", "mod", "pi", "pow", "power",
	"radians", "sin", "sinh", "sqrt", "tan", "tanh", "trunc",
	// https://sqlite.org/json1.html
	"json", "jsonb", "json_array", "jsonb_array", "json_array_length", "json_extract",
	"jsonb_extract", "->", "->>", "json_insert", "jsonb_insert", "json_object", "jsonb_object",
	"json_patch", "jsonb_patch", "json_remove", "jsonb_remove", "json_replace", "jsonb_replace",
	"json_set", "jsonb_set", "json_type", "json_valid", "json_quote", "json_group_array",
	"jsonb_group_array", "json_group_object", "jsonb_group_object", "json_each", "json_tree",
	// https://sqlite.org/fts5.html
	"match", "highlight", "bm25", "snippet",
	// What ALTER TABLE runs on the object's schema.
	"sqlite_rename_column", "sqlite_rename_table", "sqlite_rename_test", "sqlite_drop_column",
	"sqlite_rename_quotefix",
)

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// An object's SQL runs with the authorizer on, but Durable's own statements
// do not (they touch _durable_* tables, which the object's SQL may not).
// So any schema object that makes Durable's statements run code of the
// object's — a trigger on a _durable_* table, an index on one (an
// expression index is code), a foreign key into one — would run that code
// with Durable's privileges. Two layers keep that from happening:
//
//   - The authorizer refuses, while the statement is prepared, what SQLite
//     lets it see: DDL naming a _durable_* table as its object or its
//     target table, and TEMP objects.
//   - What SQLite does not show the authorizer is checked after the
//     statement ran, inside a savepoint of its own that is rolled back if
//     the check fails: the new name of ALTER TABLE … RENAME TO, the bodies
//     of views and triggers, foreign keys, and a TEMP trigger created on a
//     main table (which SQLite reports as a main one). See schemaViolation.

// ddlActions are the authorizer actions of statements that change the
// schema: a statement that causes one is run under the schema check.
var ddlActions = map[sqlite3.AuthorizerActionCode]bool{
	sqlite3.AUTH_CREATE_INDEX: true, sqlite3.AUTH_CREATE_TABLE: true, sqlite3.AUTH_CREATE_TRIGGER: true,
	sqlite3.AUTH_CREATE_VIEW: true, sqlite3.AUTH_CREATE_VTABLE: true, sqlite3.AUTH_ALTER_TABLE: true,
	sqlite3.AUTH_DROP_INDEX: true, sqlite3.AUTH_DROP_TABLE: true, sqlite3.AUTH_DROP_TRIGGER: true,
	sqlite3.AUTH_DROP_VIEW: true, sqlite3.AUTH_DROP_VTABLE: true,
}

// tempActions create or drop TEMP objects, which an object's SQL may not
// (as on Cloudflare): a TEMP trigger may sit on a main table, and TEMP
// objects would outlive the call in the connection without being part of
// the object's database.
var tempActions = map[sqlite3.AuthorizerActionCode]bool{
	sqlite3.AUTH_CREATE_TEMP_INDEX: true, sqlite3.AUTH_CREATE_TEMP_TABLE: true,
	sqlite3.AUTH_CREATE_TEMP_TRIGGER: true, sqlite3.AUTH_CREATE_TEMP_VIEW: true,
	sqlite3.AUTH_DROP_TEMP_INDEX: true, sqlite3.AUTH_DROP_TEMP_TABLE: true,
	sqlite3.AUTH_DROP_TEMP_TRIGGER: true, sqlite3.AUTH_DROP_TEMP_VIEW: true,
}

// authorizeSchema is the part of the authorizer about schema changes; it
// returns a reason to refuse, or "". It also marks the statement being
// prepared as one to run under the schema check.
func (f *fileStore) authorizeSchema(action sqlite3.AuthorizerActionCode, name3, name4, schema string) string {
	if action == sqlite3.AUTH_CREATE_VTABLE && !vtabModules[strings.ToLower(name4)] {
		return fmt.Sprintf("virtual table module %s: only fts5 and fts5vocab tables may be created", name4)
	}
	if tempActions[action] || (ddlActions[action] && strings.EqualFold(schema, "temp")) {
		return "TEMP tables, views, indexes and triggers are not allowed"
	}
	if !ddlActions[action] {
		return ""
	}
	f.ddl = true
	switch action {
	case sqlite3.AUTH_CREATE_TRIGGER, sqlite3.AUTH_CREATE_INDEX, sqlite3.AUTH_DROP_TRIGGER, sqlite3.AUTH_DROP_INDEX:
		// name3 is the trigger or index, name4 its table.
		if reserved(name4) {
			return fmt.Sprintf("table %s belongs to Durable: no trigger or index may be created on it or dropped from it", name4)
		}
	case sqlite3.AUTH_ALTER_TABLE:
		// name3 is the database, name4 the table.
		if reserved(name4) {
			return fmt.Sprintf("table %s belongs to Durable", name4)
		}
	}
	return ""
}

// schemaViolationSQL finds the schema objects an object's SQL may not
// leave behind, reported as (kind, name, detail). Views and triggers are
// judged by their text: a body that names a _durable_* table in any way
// (quoted, bracketed, with its schema) holds "_durable_" in its text. It
// runs trusted, on Durable's side of the authorizer.
const schemaViolationSQL = `
SELECT type, name, 'is named like Durable''s own tables' FROM sqlite_schema
 WHERE name LIKE '\_durable\_%' ESCAPE '\' AND name NOT IN ('_durable_state', '_durable_alarm', '_durable_kv')
UNION ALL
SELECT type, name, 'is on ' || tbl_name || ', which belongs to Durable' FROM sqlite_schema
 WHERE type IN ('index', 'trigger') AND tbl_name LIKE '\_durable\_%' ESCAPE '\' AND name NOT LIKE 'sqlite\_autoindex\_%' ESCAPE '\'
UNION ALL
SELECT type, name, 'refers to Durable''s tables (_durable_*)' FROM sqlite_schema
 WHERE type IN ('view', 'trigger') AND sql LIKE '%\_durable\_%' ESCAPE '\'
UNION ALL
SELECT 'foreign key of table', s.name, 'refers to ' || k."table" || ', which belongs to Durable'
  FROM sqlite_schema AS s, pragma_foreign_key_list(s.name) AS k
 WHERE s.type = 'table' AND k."table" LIKE '\_durable\_%' ESCAPE '\'
UNION ALL
SELECT 'TEMP ' || type, name, 'TEMP objects are not allowed' FROM sqlite_temp_schema`

// schemaViolations returns why the current schema is not one an object's
// SQL may leave: one sentence per object, none if it is.
func (f *fileStore) schemaViolations() (map[string]bool, error) {
	stmt, _, err := f.conn.Prepare(schemaViolationSQL)
	if err != nil {
		return nil, fmt.Errorf("storage: check the schema: %w", err)
	}
	defer stmt.Close()
	found := make(map[string]bool)
	for stmt.Step() {
		found[fmt.Sprintf("%s %s %s", stmt.ColumnText(0), stmt.ColumnText(1), stmt.ColumnText(2))] = true
	}
	if err := stmt.Err(); err != nil {
		return nil, fmt.Errorf("storage: check the schema: %w", err)
	}
	return found, nil
}

// schemaViolation returns why the statement that just ran left the schema
// in a state an object's SQL may not, or "". What a database written
// before the check already held (a view on a _durable_* table, a table
// renamed into the namespace: harmless once the triggers and indexes on
// Durable's tables are gone, see repairSchema) is tolerated, so that such
// an object can still change its own schema; it is read before the
// object's first schema change.
func (f *fileStore) schemaViolation(before map[string]bool) (string, error) {
	after, err := f.schemaViolations()
	if err != nil {
		return "", err
	}
	var why []string
	for v := range after {
		if !before[v] {
			why = append(why, v)
		}
	}
	if len(why) == 0 {
		f.tolerated = after // what was dropped is no longer tolerated
		return "", nil
	}
	slices.Sort(why)
	return strings.Join(why, "; "), nil
}

// runChecked runs a statement that changes the schema in a savepoint of
// its own, and rolls it back if it left the schema with an object that
// would let the object's SQL reach Durable's tables.
func (f *fileStore) runChecked(stmt *sqlite3.Stmt, cur *Cursor, last bool, args []any) error {
	f.ddl = false
	f.ddlStmt = stmt // never cached: each run is checked again
	if f.tolerated == nil {
		err := f.asDurable(func() (err error) {
			f.tolerated, err = f.schemaViolations()
			return err
		})
		if err != nil {
			return err
		}
	}
	trusted := func(sql string) error {
		return f.asDurable(func() error { return f.conn.Exec(sql) })
	}
	if err := trusted(`SAVEPOINT durable_ddl`); err != nil {
		return fmt.Errorf("storage: savepoint: %w", err)
	}
	err := f.run(stmt, cur, last, args)
	if err == nil && mayReachDurable(f.tolerated, stmt.SQL()) {
		var why string
		err = f.asDurable(func() (err error) {
			why, err = f.schemaViolation(f.tolerated)
			return err
		})
		if err == nil && why != "" {
			f.denied = why
			err = ErrSQLForbidden
		}
	}
	if err != nil {
		if rerr := trusted(`ROLLBACK TO durable_ddl`); rerr != nil {
			return fmt.Errorf("%w (and rolling it back failed: %w)", err, rerr)
		}
	}
	if rerr := trusted(`RELEASE durable_ddl`); rerr != nil && err == nil {
		err = fmt.Errorf("storage: release savepoint: %w", rerr)
	}
	return err
}

// mayReachDurable reports whether a schema change of text, in a database
// whose schema tolerated the violations tolerated, needs the check that
// follows it: most of a new object's first call, its CREATE TABLEs, is
// the check's compilation otherwise. Every violation the check finds
// names Durable's tables or is a TEMP object, so it is spelled in the
// statement: "_durable" (a _durable_* name in any quoting or case, a
// virtual table named "_durable" whose shadow tables would be _durable_*),
// or "temp" (TEMP, TEMPORARY, the temp schema); SQLite identifiers have no
// escapes that would hide either. A statement with neither is skipped
// only when nothing is tolerated: otherwise the check also forgets what
// the statement dropped.
func mayReachDurable(tolerated map[string]bool, text string) bool {
	if len(tolerated) > 0 {
		return true
	}
	lower := strings.ToLower(text)
	return strings.Contains(lower, "_durable") || strings.Contains(lower, "temp")
}

// asDurable runs op as Durable's own statements run, without the
// authorizer, and then turns it back on for the object's SQL.
func (f *fileStore) asDurable(op func() error) error {
	f.trusted = true
	defer func() { f.trusted = false }()
	return op()
}

// repairSchemaSQL drops what a database written before the schema check
// may hold that would run the object's code with Durable's privileges:
// triggers and indexes on _durable_* tables. Durable creates none, so
// every one was made by the object's SQL through a hole since closed.
const repairSchemaSQL = `
SELECT type, name FROM sqlite_schema
 WHERE type IN ('index', 'trigger') AND tbl_name LIKE '\_durable\_%' ESCAPE '\'
   AND name NOT LIKE 'sqlite\_autoindex\_%' ESCAPE '\'`

// repairSchema drops the triggers and indexes on _durable_* tables of an
// object's database when it is opened, before Durable prepares its own
// statements (which would otherwise fire them).
func repairSchema(c *sqlite3.Conn) error {
	stmt, _, err := c.Prepare(repairSchemaSQL)
	if err != nil {
		return fmt.Errorf("storage: check the schema: %w", err)
	}
	var drops []string
	for stmt.Step() {
		drops = append(drops, fmt.Sprintf("DROP %s %s;", strings.ToUpper(stmt.ColumnText(0)), sqlite3.QuoteIdentifier(stmt.ColumnText(1))))
	}
	err = stmt.Close()
	if err != nil {
		return fmt.Errorf("storage: check the schema: %w", err)
	}
	if len(drops) == 0 {
		return nil
	}
	if err := c.Exec(strings.Join(drops, " ")); err != nil {
		return fmt.Errorf("storage: drop the triggers and indexes on Durable's tables: %w", err)
	}
	return nil
}
