package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/ncruces/go-sqlite3"
)

// FileOption configures OpenFile.
type FileOption func(*fileConfig)

type fileConfig struct {
	durability Durability
	maxSize    int64
	hints      *alarmHints
}

// WithFileDurability sets what an acknowledged write survives. Default
// CrashSafe.
func WithFileDurability(d Durability) FileOption { return func(c *fileConfig) { c.durability = d } }

// WithAlarmIndex keeps the node database's index of due alarms in step
// with the object's alarm, so that a node finds due alarms without opening
// every object's file. The object's own file stays the truth: the index
// entry is written before a new alarm commits, and removed after a deleted
// one has, so the index may wake an object for nothing but never misses an
// alarm.
func WithAlarmIndex(db *DB, class string, id [32]byte) FileOption {
	return func(c *fileConfig) { c.hints = &alarmHints{db: db, class: class, id: id} }
}

// WithMaxSize caps the database file; a write past it fails with
// ErrDatabaseFull. Default DefaultMaxSQLSize (1 GiB).
func WithMaxSize(bytes int64) FileOption { return func(c *fileConfig) { c.maxSize = bytes } }

const fileSchema = `
CREATE TABLE IF NOT EXISTS _durable_state (
	id    INTEGER PRIMARY KEY CHECK (id = 1),
	state BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS _durable_alarm (
	id    INTEGER PRIMARY KEY CHECK (id = 1),
	at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS _durable_kv (
	key   TEXT PRIMARY KEY,
	value BLOB NOT NULL
) WITHOUT ROWID;
`

// reservedPrefix starts the names of Durable's own tables in an object's
// database, which its SQL may not touch.
const reservedPrefix = "_durable_"

// OpenFile opens (creating if needed) the SQL database of one object, which
// also holds its state and key-value storage, so that one commit covers all
// three. The object's goroutine commits it; each call runs in a savepoint.
func OpenFile(path string, opts ...FileOption) (*Store, error) {
	cfg := fileConfig{maxSize: DefaultMaxSQLSize}
	for _, o := range opts {
		o(&cfg)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	c, err := open(path, sqlite3.OPEN_READWRITE|sqlite3.OPEN_CREATE|sqlite3.OPEN_NOMUTEX)
	if err != nil {
		return nil, err
	}
	pages := max(1, cfg.maxSize/4096)
	// busy_timeout first: an evicted object's connection may still be
	// closing when the object is activated again.
	if err := pragmas(c, fmt.Sprintf(`PRAGMA busy_timeout=5000; PRAGMA page_size=4096; PRAGMA journal_mode=WAL; PRAGMA synchronous=%s;
		PRAGMA max_page_count=%d; PRAGMA foreign_keys=ON;`, synchronous(cfg.durability), pages)+fileSchema); err != nil {
		return nil, err
	}
	f := &fileStore{conn: c, path: path, maxSize: cfg.maxSize, hints: cfg.hints, trusted: true}
	stmts := map[**sqlite3.Stmt]string{
		&f.begin:        `BEGIN IMMEDIATE`,
		&f.commitStmt:   `COMMIT`,
		&f.rollback:     `ROLLBACK`,
		&f.savepoint:    `SAVEPOINT durable`,
		&f.release:      `RELEASE durable`,
		&f.rollbackTo:   `ROLLBACK TO durable`,
		&f.loadStmt:     `SELECT state FROM _durable_state WHERE id = 1`,
		&f.saveState:    `INSERT INTO _durable_state (id, state) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state`,
		&f.kvGet:        `SELECT value FROM _durable_kv WHERE key = ?1`,
		&f.kvPut:        `INSERT INTO _durable_kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
		&f.kvDelete:     `DELETE FROM _durable_kv WHERE key = ?`,
		&f.kvWipe:       `DELETE FROM _durable_kv`,
		&f.alarmGet:     `SELECT at_ms FROM _durable_alarm WHERE id = 1`,
		&f.alarmSet:     `INSERT INTO _durable_alarm (id, at_ms) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms`,
		&f.alarmDelete:  `DELETE FROM _durable_alarm`,
		&f.pageCount:    `PRAGMA page_count`,
		&f.pageSizeStmt: `PRAGMA page_size`,
	}
	f.scans.add(stmts, `_durable_kv`, ``)
	if err := prepare(c, stmts); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.SetAuthorizer(f.authorize); err != nil {
		f.close()
		return nil, fmt.Errorf("storage: %w", err)
	}
	kv := newKV(f)
	kv.tx = f
	return &Store{KV: kv, SQL: &SQL{f: f}, b: f}, nil
}

// fileStore is the backend of an object with its own SQL database.
type fileStore struct {
	conn    *sqlite3.Conn
	path    string
	maxSize int64
	inTx    bool // a batch's transaction is open
	calls   int  // savepoints open: the call's and its transactions'
	// trusted is false only while the object's own SQL is prepared and run,
	// so the authorizer applies to it and not to Durable's statements.
	trusted bool
	denied  string                   // why the authorizer refused the last statement
	hints   *alarmHints              // the node index of due alarms, if any
	cache   map[string]*sqlite3.Stmt // the object's single-statement queries

	begin, commitStmt, rollback, savepoint, release, rollbackTo *sqlite3.Stmt
	loadStmt, saveState, kvGet, kvPut, kvDelete, kvWipe         *sqlite3.Stmt
	alarmGet, alarmSet, alarmDelete                             *sqlite3.Stmt
	pageCount, pageSizeStmt                                     *sqlite3.Stmt
	scans                                                       scans
}

func (f *fileStore) loadState(context.Context) ([]byte, bool, error) { return one(f.loadStmt) }

func (f *fileStore) get(_ context.Context, key string) ([]byte, bool, error) {
	f.kvGet.BindText(1, key)
	return one(f.kvGet)
}

func (f *fileStore) scan(_ context.Context, kr keyRange, limit int, fn func(string, []byte) bool) error {
	return f.scans.run(f.scans.pick(kr), kr, limit, fn)
}

func (f *fileStore) alarm(context.Context) (int64, bool, error) { return oneInt(f.alarmGet) }

func (f *fileStore) beginCall() error {
	if !f.inTx {
		if err := f.begin.Exec(); err != nil {
			return fmt.Errorf("storage: begin: %w", err)
		}
		f.inTx = true
	}
	return f.beginTx()
}

func (f *fileStore) endCall(ok bool) error {
	for f.calls > 1 { // savepoints of transactions a panic left open
		if err := f.endTx(false); err != nil {
			return err
		}
	}
	return f.endTx(ok)
}

func (f *fileStore) beginTx() error {
	if err := f.savepoint.Exec(); err != nil {
		return fmt.Errorf("storage: savepoint: %w", err)
	}
	f.calls++
	return nil
}

// errTxLost: SQLite rolled back the whole transaction itself (it may, on
// SQLITE_FULL or an I/O error), so the batch cannot be committed.
var errTxLost = errors.New("storage: the database rolled back the batch's transaction")

func (f *fileStore) endTx(commit bool) error {
	f.calls--
	if f.conn.GetAutocommit() {
		f.inTx, f.calls = false, 0
		return errTxLost
	}
	if !commit {
		if err := f.rollbackTo.Exec(); err != nil {
			return fmt.Errorf("storage: roll back to savepoint: %w", err)
		}
	}
	if err := f.release.Exec(); err != nil {
		return fmt.Errorf("storage: release savepoint: %w", err)
	}
	return nil
}

func (f *fileStore) needsCommit() bool { return f.inTx }

func (f *fileStore) commit(state []byte, writeState bool, kv *layer, _ func() bool, done func(error)) {
	done(f.commitNow(state, writeState, kv))
}

func (f *fileStore) commitNow(state []byte, writeState bool, kv *layer) (err error) {
	if kv.alarm.kind == alarmSet && f.hints != nil {
		// Index first: a crash after it wakes the object for nothing; one
		// before the object's commit could otherwise lose the alarm.
		if err := f.hints.set(kv.alarm.at); err != nil {
			f.reset()
			return fmt.Errorf("storage: index the alarm: %w", err)
		}
	}
	if !f.inTx {
		if writeState || !kv.empty() {
			if err := f.begin.Exec(); err != nil {
				return fmt.Errorf("storage: begin: %w", err)
			}
			f.inTx = true
		} else {
			return nil
		}
	}
	defer func() {
		if err != nil {
			f.reset()
			if errors.Is(err, sqlite3.FULL) {
				err = fmt.Errorf("%w (cap %d bytes): %w", ErrDatabaseFull, f.maxSize, err)
			}
		}
	}()
	if writeState {
		f.saveState.BindBlob(1, nonNil(state))
		if err := f.saveState.Exec(); err != nil {
			return fmt.Errorf("storage: write state: %w", err)
		}
	}
	if kv.cleared {
		if err := f.kvWipe.Exec(); err != nil {
			return fmt.Errorf("storage: delete all keys: %w", err)
		}
	}
	for key, v := range kv.writes {
		s := f.kvPut
		if v.deleted {
			s = f.kvDelete
		}
		s.BindText(1, key)
		if !v.deleted {
			s.BindBlob(2, nonNil(v.data))
		}
		if err := s.Exec(); err != nil {
			return fmt.Errorf("storage: write key %.64q: %w", key, err)
		}
	}
	switch kv.alarm.kind {
	case alarmSet:
		f.alarmSet.BindInt64(1, kv.alarm.at)
		err = f.alarmSet.Exec()
	case alarmDeleted:
		err = f.alarmDelete.Exec()
	}
	if err != nil {
		return fmt.Errorf("storage: write the alarm: %w", err)
	}
	if err := f.commitStmt.Exec(); err != nil {
		return fmt.Errorf("storage: commit: %w", err)
	}
	f.inTx = false
	if kv.alarm.kind == alarmDeleted && f.hints != nil {
		f.hints.remove()
	}
	return nil
}

func (f *fileStore) reset() {
	if f.inTx || !f.conn.GetAutocommit() {
		f.rollback.Exec() // nothing better to do if even this fails
	}
	f.inTx, f.calls = false, 0
}

func (f *fileStore) close() error {
	if f.conn == nil {
		return nil
	}
	f.reset()
	f.dropCache()
	closeAll(f.begin, f.commitStmt, f.rollback, f.savepoint, f.release, f.rollbackTo,
		f.loadStmt, f.saveState, f.kvGet, f.kvPut, f.kvDelete, f.kvWipe, f.alarmGet, f.alarmSet, f.alarmDelete,
		f.pageCount, f.pageSizeStmt)
	f.scans.close()
	// Whatever statement is still open (there should be none) would keep
	// the connection, and its memory, from closing.
	for _, s := range slices.Collect(f.conn.Stmts()) {
		closeGuarded(s)
	}
	err := f.conn.Close()
	f.conn = nil
	return err
}

func (f *fileStore) size() (int64, error) {
	var n [2]int64
	for i, s := range []*sqlite3.Stmt{f.pageCount, f.pageSizeStmt} {
		if s.Step() {
			n[i] = s.ColumnInt64(0)
		}
		if err := s.Reset(); err != nil {
			return 0, fmt.Errorf("storage: database size: %w", err)
		}
	}
	return n[0] * n[1], nil
}
