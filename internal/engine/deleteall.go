package engine

import (
	"fmt"
	"strings"

	"github.com/ncruces/go-sqlite3"
)

// userSchemaSQL lists what the object's SQL created, for DeleteAll:
// virtual tables first (dropping one drops its shadow tables, which
// defensive mode keeps from being dropped on their own), then views and
// tables (their indexes and triggers go with them). SQLite's own tables
// (sqlite_sequence, which loses its rows with their tables, sqlite_stat*)
// and Durable's are left.
const userSchemaSQL = `
SELECT type, name FROM sqlite_schema
 WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\_%' ESCAPE '\'
   AND name NOT IN ('_durable_state', '_durable_alarm', '_durable_kv')
 ORDER BY type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%' DESC`

// deleteAll drops the object's whole SQL schema, in the call's savepoint,
// so that a failed call undoes it; KV.DeleteAll clears the key-value data
// and the alarm. Foreign keys are deferred while it runs: the tables are
// dropped in any order, and once all of them are gone no row is left to
// violate one.
//
// It runs outside SQL.Exec, where the authorizer lets Durable's
// statements through (f.trusted).
func (f *fileStore) deleteAll() error {
	f.dropCache() // their tables are about to go
	f.tolerated = nil
	drops, err := f.userSchema()
	if err == nil {
		err = f.conn.Exec(`PRAGMA defer_foreign_keys = ON; ` + drops +
			`DROP TABLE IF EXISTS sqlite_stat1; DROP TABLE IF EXISTS sqlite_stat4; PRAGMA defer_foreign_keys = OFF`)
	}
	if err != nil {
		return fmt.Errorf("storage: delete all: %w", err)
	}
	return nil
}

// userSchema returns the DROP statements of what userSchemaSQL lists,
// with IF EXISTS: a virtual table's shadow tables are gone once it is.
func (f *fileStore) userSchema() (string, error) {
	stmt, _, err := f.conn.Prepare(userSchemaSQL)
	if err != nil {
		return "", err
	}
	defer stmt.Close()
	var drops strings.Builder
	for stmt.Step() {
		kind := "TABLE"
		if stmt.ColumnText(0) == "view" {
			kind = "VIEW"
		}
		fmt.Fprintf(&drops, "DROP %s IF EXISTS %s; ", kind, sqlite3.QuoteIdentifier(stmt.ColumnText(1)))
	}
	return drops.String(), stmt.Err()
}

// compact gives the pages DeleteAll freed back to the file system, after
// the batch that deleted committed: VACUUM, then a checkpoint that
// truncates the WAL the VACUUM wrote. It is best effort: the batch is
// durable already, and SQLite reuses free pages for later writes, so a
// database that failed to compact does not grow either.
func (f *fileStore) compact() {
	f.conn.Exec(`VACUUM; PRAGMA wal_checkpoint(TRUNCATE)`) // trusted, as deleteAll
}

// rolledBack records that the innermost Transaction rolled back: the
// object's SQL fails with ErrRolledBack until it ends (see endTx).
func (f *fileStore) rolledBack() { f.undone = f.calls }
