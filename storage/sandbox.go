package storage

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ncruces/go-sqlite3"
)

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
	if err == nil {
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
