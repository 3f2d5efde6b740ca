package engine

import (
	"fmt"

	"github.com/ncruces/go-sqlite3"
)

// fileStmt names one of Durable's own statements on an object's
// connection. They are prepared at their first use, not when the
// connection opens: a new object's in-memory connection, closed once its
// first write made the file, uses a handful of them, and compiling all of
// them was a tenth of a new object's first call.
type fileStmt int

const (
	stmtBegin fileStmt = iota
	stmtCommit
	stmtRollback
	stmtSavepoint
	stmtRelease
	stmtRollbackTo
	stmtLoadState
	stmtSaveState
	stmtKVGet
	stmtKVPut
	stmtKVDelete
	stmtKVWipe
	stmtAlarmGet
	stmtAlarmSet
	stmtAlarmDelete
	stmtPageCount
	stmtPageSize
	stmtSchemaVersion
	stmtScanAsc
	stmtScanDesc
	stmtScanAscTo
	stmtScanDescTo
	numFileStmts
)

var fileStmtSQL = [numFileStmts]string{
	stmtBegin:         `BEGIN IMMEDIATE`,
	stmtCommit:        `COMMIT`,
	stmtRollback:      `ROLLBACK`,
	stmtSavepoint:     `SAVEPOINT durable`,
	stmtRelease:       `RELEASE durable`,
	stmtRollbackTo:    `ROLLBACK TO durable`,
	stmtLoadState:     `SELECT state FROM _durable_state WHERE id = 1`,
	stmtSaveState:     `INSERT INTO _durable_state (id, state) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state`,
	stmtKVGet:         `SELECT value FROM _durable_kv WHERE key = ?1`,
	stmtKVPut:         `INSERT INTO _durable_kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
	stmtKVDelete:      `DELETE FROM _durable_kv WHERE key = ?`,
	stmtKVWipe:        `DELETE FROM _durable_kv`,
	stmtAlarmGet:      `SELECT at_ms FROM _durable_alarm WHERE id = 1`,
	stmtAlarmSet:      `INSERT INTO _durable_alarm (id, at_ms) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms`,
	stmtAlarmDelete:   `DELETE FROM _durable_alarm`,
	stmtPageCount:     `SELECT (SELECT * FROM pragma_page_count) - (SELECT * FROM pragma_freelist_count)`, // pages in use
	stmtPageSize:      `PRAGMA page_size`,
	stmtSchemaVersion: `PRAGMA schema_version`,
	stmtScanAsc:       scanSQL(`_durable_kv`, ``, false, "ASC"),
	stmtScanDesc:      scanSQL(`_durable_kv`, ``, false, "DESC"),
	stmtScanAscTo:     scanSQL(`_durable_kv`, ``, true, "ASC"),
	stmtScanDescTo:    scanSQL(`_durable_kv`, ``, true, "DESC"),
}

// stmt returns Durable's statement k on the connection, preparing it the
// first time. It is prepared as Durable's, past the authorizer, even when
// asked for while the object's SQL runs; a database opened from an earlier
// version was repaired before any of them (see repairSchema).
func (f *fileStore) stmt(k fileStmt) (*sqlite3.Stmt, error) {
	if s := f.stmts[k]; s != nil {
		return s, nil
	}
	trusted := f.trusted
	f.trusted = true
	s, _, err := f.conn.Prepare(fileStmtSQL[k])
	f.trusted = trusted
	if err != nil {
		return nil, fmt.Errorf("storage: prepare %q: %w", fileStmtSQL[k], err)
	}
	f.stmts[k] = s
	return s, nil
}

// exec runs Durable's statement k, which takes no parameters.
func (f *fileStore) exec(k fileStmt) error {
	s, err := f.stmt(k)
	if err != nil {
		return err
	}
	return s.Exec()
}

// pickScan returns the scan of an object's keys over kr.
func pickScan(kr keyRange) fileStmt {
	switch {
	case kr.hasHi && kr.reverse:
		return stmtScanDescTo
	case kr.hasHi:
		return stmtScanAscTo
	case kr.reverse:
		return stmtScanDesc
	}
	return stmtScanAsc
}
