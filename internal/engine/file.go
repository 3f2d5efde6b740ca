package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"
	"syscall"

	"github.com/ncruces/go-sqlite3"
)

// FileOption configures OpenFile.
type FileOption func(*fileConfig)

type fileConfig struct {
	durability Durability
	maxSize    int64
	maxRows    int64       // bytes of a cursor's rows: see WithMaxResultSize
	hints      *alarmHints // the node index of due alarms, if any
	limiter    FileLimiter
	pool       *FilePool // empty files for the first commit, if any
}

// FileLimiter bounds how many object databases are open on disk at once:
// each holds two file descriptors (the database and its WAL; the WAL index
// is in memory, the connection holding the file's lock), and a process that runs out of them fails every open. A store
// acquires one of its files before it opens its database on disk (on
// OpenFile of an existing database, or when a new object is first
// written) and releases it after closing the database.
type FileLimiter interface {
	// Acquire reserves a file, waiting for one if need be. Its error,
	// which should match ErrTooManyOpenFiles, fails the open or the write
	// that needed the file.
	Acquire() error
	// Release returns a file Acquire reserved.
	Release()
}

// WithFileLimiter has the store hold one of l's files while its database
// is open on disk. Default: no limit, past which opens fail as the
// operating system refuses them.
func WithFileLimiter(l FileLimiter) FileOption { return func(c *fileConfig) { c.limiter = l } }

// WithFilePool has the object's first commit write its new database into
// one of p's empty files, if one is ready, instead of creating a file on
// the caller's path. The result is the same file. Default: no pool.
func WithFilePool(p *FilePool) FileOption { return func(c *fileConfig) { c.pool = p } }

// WithFileDurability sets what an acknowledged write survives. Default
// CrashSafe.
func WithFileDurability(d Durability) FileOption { return func(c *fileConfig) { c.durability = d } }

// WithAlarmIndex keeps the node database's index of due alarms in step
// with the object's alarm, so that a node finds due alarms without opening
// every object's file. The object's own file stays the truth: the index
// entry is written before a new alarm commits, and removed after a deleted
// one has, so the index may wake an object for nothing but never misses an
// alarm.
func WithAlarmIndex(db ObjectStore, class string, id [32]byte) FileOption {
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

// OpenFile opens the SQL database of one object, which also holds its
// state and key-value storage, so that one commit covers all three. The
// object's goroutine commits it; each call runs in a savepoint.
//
// A database that does not exist yet is not created: the store starts in
// memory (see memImage: no file descriptor), runs calls there, and
// creates the file at the first commit that writes something (state,
// keys, an alarm or SQL rows or schema), so that an object only read, or
// only initialized, leaves nothing on disk. The file appears whole, by
// rename, before that commit is acknowledged (see materialize).
func OpenFile(path string, opts ...FileOption) (*Store, error) {
	cfg := fileConfig{maxSize: DefaultMaxSQLSize, maxRows: DefaultMaxResultSize}
	for _, o := range opts {
		o(&cfg)
	}
	f := &fileStore{path: path, cfg: cfg, trusted: true}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		f.mem = true
	} else if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	if err := f.openConn(); err != nil {
		return nil, err
	}
	g := newGuarded(f, f, f)
	kv := newKV(g)
	kv.tx = g
	kv.fence = g.fence
	return &Store{KV: kv, SQL: &SQL{f: f, fence: g.fence}, b: g}, nil
}

// openConn opens the store's connection: on the file, holding one of the
// limiter's files, or on a fresh private in-memory database when f.mem.
func (f *fileStore) openConn() error {
	name, flags := f.path, sqlite3.OPEN_READWRITE|sqlite3.OPEN_CREATE|sqlite3.OPEN_NOMUTEX
	// synchronous=OFF in memory: nothing there to sync; materialize does
	// the fsyncs the durability needs.
	sync, locking := "OFF", ""
	var imageName string
	// A file materialize has just written holds Durable's tables, made in
	// memory under the authorizer, and nothing to repair; so does a new
	// in-memory database, a copy of the template. Only a file of an
	// earlier activation (or an earlier version) needs both.
	fresh := f.fresh
	f.fresh = false
	if f.mem {
		// An image of its own, which materialize writes to the file,
		// starting as a copy of the template: Durable's tables made once
		// per process, not parsed and committed again for every object.
		f.image, imageName, name = newMemImage()
		flags |= sqlite3.OPEN_URI
		t, err := memTemplate()
		if err != nil {
			return err
		}
		f.image.data = append(make([]byte, 0, 2*len(t)), t...)
		fresh = true
	} else {
		sync = synchronous(f.cfg.durability)
		// The object's goroutine is the file's only user: with the lock
		// held for the connection's life, set before the database is first
		// read, SQLite keeps the WAL index in the connection's memory, so
		// there is no -shm file to create, map and lock on every
		// transaction, and the file holds two descriptors, not three. A
		// second connection (an evicted instance still closing) waits for
		// the lock under busy_timeout.
		locking = "PRAGMA locking_mode=EXCLUSIVE;"
		if err := f.acquireFile(); err != nil {
			return err
		}
	}
	c, err := open(name, flags)
	if imageName != "" {
		memImages.Delete(imageName) // the connection took it, or failed to
	}
	if err == nil {
		setup := connSetup(locking, sync, f.cfg.maxSize)
		if !fresh {
			setup += fileSchema
		}
		err = pragmas(c, setup)
	}
	if err == nil && f.mem {
		// A new database holds Durable's tables and nothing else: nothing
		// its first schema change must tolerate (see runChecked), known
		// without reading the schema.
		f.tolerated = map[string]bool{}
	}
	if err == nil {
		if err = f.sandbox(c); err != nil {
			c.Close()
		}
	}
	if err == nil && !fresh && !f.mem {
		// Before Durable's statements are prepared: a trigger an older
		// version let an object put on Durable's tables must not run.
		if err = repairSchema(c); err != nil {
			c.Close()
		}
	}
	if err == nil {
		err = f.authorizeOn(c)
	}
	if err != nil {
		f.releaseFile()
		if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
			err = fmt.Errorf("%w: %w", ErrTooManyOpenFiles, err)
		}
		return err
	}
	f.conn = c
	return nil
}

// connSetup returns the pragmas every connection of an object's database
// runs first, with locking (a pragma or "") and synchronous's value, and
// maxSize the cap of the database in bytes.
func connSetup(locking, sync string, maxSize int64) string {
	// busy_timeout first: an evicted object's connection may still be
	// closing when the object is activated again.
	return fmt.Sprintf(`PRAGMA busy_timeout=5000; %s PRAGMA page_size=4096; PRAGMA journal_mode=WAL; PRAGMA synchronous=%s;
		PRAGMA max_page_count=%d; PRAGMA foreign_keys=ON;`, locking, sync, max(1, maxSize/4096))
}

// memTemplate returns the image every new object's in-memory database
// starts from: an empty database with the page size and Durable's tables,
// made once per process by the setup a new database would otherwise run
// itself (about a third of a millisecond of parsing and committing per
// object). What lives only in a connection (the other pragmas, the
// authorizer, the statements) each connection still sets.
//
// The template is made at its first use, not when the package is
// initialized: a program that links the engine without running an object
// (a remote-only client) must not link SQLite for it.
func memTemplate() ([]byte, error) {
	template.once.Do(func() { template.data, template.err = makeMemTemplate() })
	return template.data, template.err
}

// template is memTemplate's image, made once.
var template struct {
	once sync.Once
	data []byte
	err  error
}

func makeMemTemplate() ([]byte, error) {
	m, imageName, uri := newMemImage()
	c, err := open(uri, sqlite3.OPEN_READWRITE|sqlite3.OPEN_CREATE|sqlite3.OPEN_NOMUTEX|sqlite3.OPEN_URI)
	memImages.Delete(imageName)
	if err != nil {
		return nil, err
	}
	if err := pragmas(c, connSetup("", "OFF", DefaultMaxSQLSize)+fileSchema); err != nil {
		return nil, err
	}
	if err := c.Close(); err != nil {
		return nil, fmt.Errorf("storage: template database: %w", err)
	}
	return m.data, nil
}

// authorizeOn installs the authorizer on c, the connection of f; on an
// error it closes c. Durable's statements are prepared at their first use
// (see stmt), most of them never on a new object's in-memory connection.
func (f *fileStore) authorizeOn(c *sqlite3.Conn) error {
	if err := c.SetAuthorizer(f.authorize); err != nil {
		c.Close()
		return fmt.Errorf("storage: %w", err)
	}
	return nil
}

// fileStore is the backend of an object with its own SQL database.
type fileStore struct {
	conn *sqlite3.Conn // nil after materialize until the next call opens the file
	path string
	cfg  fileConfig
	// mem: the object has no file yet and its database is in memory, in
	// image.
	mem   bool
	image *memImage
	// fresh: materialize has just written the file, which the next
	// openConn needs neither to give Durable's tables nor to repair.
	fresh bool
	// In memory: a successful call of the open batch wrote SQL, and what
	// tells, the connection's changes and schema version as the current
	// call began.
	wrote      bool
	mark       int64
	markSchema int64
	holding    bool // one of the limiter's files is held
	inTx       bool // a batch's transaction is open
	calls      int  // savepoints open: the call's and its transactions'
	undone     int  // the savepoint of a Transaction that called Rollback, or 0
	fts5       bool // the FTS5 module is registered on conn (see sandbox)
	// trusted is false only while the object's own SQL is prepared and run,
	// so the authorizer applies to it and not to Durable's statements.
	trusted bool
	denied  string                   // why the authorizer refused the last statement
	cache   map[string]*sqlite3.Stmt // the object's single-statement queries

	// The schema check of the object's SQL (see sandbox.go): whether the
	// statement being prepared changes the schema, the last statement run
	// under the check, and what the check found before the object's first
	// schema change of this activation (nil until then).
	ddl       bool
	ddlStmt   *sqlite3.Stmt
	tolerated map[string]bool

	stmts [numFileStmts]*sqlite3.Stmt // Durable's, nil until first used
}

func (f *fileStore) loadState(context.Context) ([]byte, bool, error) {
	if err := f.reopen(); err != nil {
		return nil, false, err
	}
	s, err := f.stmt(stmtLoadState)
	if err != nil {
		return nil, false, err
	}
	return one(s)
}

func (f *fileStore) get(_ context.Context, key string) ([]byte, bool, error) {
	s, err := f.stmt(stmtKVGet)
	if err != nil {
		return nil, false, err
	}
	s.BindText(1, key)
	return one(s)
}

func (f *fileStore) scan(_ context.Context, kr keyRange, limit int, fn func(string, []byte) bool) error {
	s, err := f.stmt(pickScan(kr))
	if err != nil {
		return err
	}
	return runScan(s, kr, limit, fn)
}

func (f *fileStore) alarm(context.Context) (int64, bool, error) {
	s, err := f.stmt(stmtAlarmGet)
	if err != nil {
		return 0, false, err
	}
	return oneInt(s)
}

func (f *fileStore) beginCall() error {
	if err := f.reopen(); err != nil {
		return err
	}
	if !f.inTx {
		if err := f.exec(stmtBegin); err != nil {
			return fmt.Errorf("storage: begin: %w", err)
		}
		f.inTx = true
	}
	if f.mem {
		var err error
		if f.markSchema, err = f.schemaVersion(); err != nil {
			return err
		}
		f.mark = f.conn.TotalChanges()
	}
	return f.beginTx()
}

func (f *fileStore) endCall(ok bool) error {
	for f.calls > 1 { // savepoints of transactions a panic left open
		if err := f.endTx(false); err != nil {
			return err
		}
	}
	if err := f.endTx(ok); err != nil {
		return err
	}
	if ok && f.mem && !f.wrote {
		// Rows written (triggers included) or a schema changed. A call
		// that wrote and undid it with a rolled back Transaction counts
		// too: the object is then created with nothing in it but Init's.
		v, err := f.schemaVersion()
		if err != nil {
			return err
		}
		f.wrote = v != f.markSchema || f.conn.TotalChanges() != f.mark
	}
	return nil
}

func (f *fileStore) schemaVersion() (int64, error) {
	s, err := f.stmt(stmtSchemaVersion)
	if err != nil {
		return 0, err
	}
	v, _, err := oneInt(s)
	if err != nil {
		return 0, fmt.Errorf("storage: schema version: %w", err)
	}
	return v, nil
}

// initialized forgets that the batch wrote SQL: what Init wrote is kept
// for the first batch that writes something else.
func (f *fileStore) initialized() { f.wrote = false }

// reopen opens the file materialize wrote, at the object's first call
// after it (again at each call while that fails).
func (f *fileStore) reopen() error {
	if f.conn != nil {
		return nil
	}
	return f.openConn()
}

func (f *fileStore) beginTx() error {
	if err := f.exec(stmtSavepoint); err != nil {
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
	if f.undone > f.calls {
		f.undone = 0
	}
	if f.conn.GetAutocommit() {
		f.inTx, f.calls, f.undone = false, 0, 0
		return errTxLost
	}
	if !commit {
		if err := f.exec(stmtRollbackTo); err != nil {
			return fmt.Errorf("storage: roll back to savepoint: %w", err)
		}
	}
	if err := f.exec(stmtRelease); err != nil {
		return fmt.Errorf("storage: release savepoint: %w", err)
	}
	return nil
}

// needsCommit: on disk, an open transaction must end; in memory, only a
// batch that wrote SQL has anything to commit (it creates the file).
func (f *fileStore) needsCommit() bool {
	if f.mem {
		return f.wrote
	}
	return f.inTx
}

func (f *fileStore) commit(state []byte, writeState bool, kv *layer, _ func() bool, done func(error)) {
	done(f.safely(func() error { return f.commitNow(state, writeState, kv) }))
}

// safely runs op, which runs SQLite statements outside the object's own
// code: a panic (out of memory, on a huge batch) becomes op's error and
// rolls back the batch, instead of ending the process.
func (f *fileStore) safely(op func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = recovered(r)
			quietly(f.reset)
		}
	}()
	return op()
}

func (f *fileStore) commitNow(state []byte, writeState bool, kv *layer) (err error) {
	if err := f.reopen(); err != nil { // a commit with no call before it
		return err
	}
	if kv.alarm.kind == alarmSet && f.cfg.hints != nil {
		// Index first: a crash after it wakes the object for nothing; one
		// before the object's commit could otherwise lose the alarm.
		if err := f.cfg.hints.set(kv.alarm.at); err != nil {
			f.reset()
			return fmt.Errorf("storage: index the alarm: %w", err)
		}
	}
	if f.mem && !writeState && kv.empty() && !f.wrote {
		// Nothing to write: the batch's transaction stays open in memory,
		// with Init's writes, for the first batch that writes.
		return nil
	}
	if !f.inTx {
		if writeState || !kv.empty() {
			if err := f.exec(stmtBegin); err != nil {
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
			err = fullError(err, fmt.Sprintf("cap %d bytes", f.cfg.maxSize))
		}
	}()
	if writeState {
		s, err := f.stmt(stmtSaveState)
		if err != nil {
			return err
		}
		s.BindBlob(1, nonNil(state))
		if err := s.Exec(); err != nil {
			return fmt.Errorf("storage: write state: %w", err)
		}
	}
	if kv.cleared {
		if err := f.exec(stmtKVWipe); err != nil {
			return fmt.Errorf("storage: delete all keys: %w", err)
		}
	}
	for key, v := range kv.writes {
		k := stmtKVPut
		if v.deleted {
			k = stmtKVDelete
		}
		s, err := f.stmt(k)
		if err != nil {
			return err
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
		var s *sqlite3.Stmt
		if s, err = f.stmt(stmtAlarmSet); err == nil {
			s.BindInt64(1, kv.alarm.at)
			err = s.Exec()
		}
	case alarmDeleted:
		err = f.exec(stmtAlarmDelete)
	}
	if err != nil {
		return fmt.Errorf("storage: write the alarm: %w", err)
	}
	if err := f.exec(stmtCommit); err != nil {
		return fmt.Errorf("storage: commit: %w", err)
	}
	f.inTx = false
	if f.mem {
		if err := f.materialize(); err != nil {
			return err
		}
	} else if kv.cleared {
		f.compact() // DeleteAll freed the object's tables
	}
	if kv.alarm.kind == alarmDeleted && f.cfg.hints != nil {
		f.cfg.hints.remove()
	}
	return nil
}

func (f *fileStore) reset() {
	if f.conn == nil {
		return
	}
	if f.inTx || !f.conn.GetAutocommit() {
		f.exec(stmtRollback) // nothing better to do if even this fails
	}
	f.inTx, f.calls, f.wrote, f.undone = false, 0, false, 0
}

func (f *fileStore) close() error {
	if f.conn == nil {
		f.releaseFile()
		return nil
	}
	f.reset()
	err := f.closeConn()
	f.releaseFile()
	return err
}

// closeStmts closes Durable's statements and the object's cached ones.
func (f *fileStore) closeStmts() {
	f.dropCache()
	closeAll(f.stmts[:]...)
	clear(f.stmts[:])
}

// closeConn closes the connection and every statement on it.
func (f *fileStore) closeConn() error {
	f.closeStmts()
	// Whatever statement is still open (there should be none) would keep
	// the connection, and its memory, from closing.
	for _, s := range slices.Collect(f.conn.Stmts()) {
		closeGuarded(s)
	}
	err := f.conn.Close()
	f.conn, f.image = nil, nil
	return err
}

// acquireFile takes one of the limiter's files, unless the store holds
// one already; releaseFile gives it back.
func (f *fileStore) acquireFile() error {
	if l := f.cfg.limiter; l != nil && !f.holding {
		if err := l.Acquire(); err != nil {
			return err
		}
		f.holding = true
	}
	return nil
}

func (f *fileStore) releaseFile() {
	if f.holding {
		f.holding = false
		f.cfg.limiter.Release()
	}
}

func (f *fileStore) size() (int64, error) {
	var n [2]int64
	for i, k := range []fileStmt{stmtPageCount, stmtPageSize} {
		s, err := f.stmt(k)
		if err != nil {
			return 0, err
		}
		if s.Step() {
			n[i] = s.ColumnInt64(0)
		}
		if err := s.Reset(); err != nil {
			return 0, fmt.Errorf("storage: database size: %w", err)
		}
	}
	return max(n[0]-durableRootPages, 1) * n[1], nil
}
