package engine

import (
	"fmt"
	"maps"

	"github.com/ncruces/go-sqlite3"
)

const nodeSchema = `
CREATE TABLE IF NOT EXISTS objects (
	class TEXT NOT NULL,
	id    BLOB NOT NULL,
	state BLOB NOT NULL,
	PRIMARY KEY (class, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alarms (
	class TEXT NOT NULL,
	id    BLOB NOT NULL,
	at_ms INTEGER NOT NULL,
	PRIMARY KEY (class, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alarms_due ON alarms (at_ms, class, id);
CREATE TABLE IF NOT EXISTS kv (
	class TEXT NOT NULL,
	id    BLOB NOT NULL,
	key   TEXT NOT NULL,
	value BLOB NOT NULL,
	PRIMARY KEY (class, id, key)
) WITHOUT ROWID;
`

func open(path string, flags sqlite3.OpenFlag) (*sqlite3.Conn, error) {
	c, err := sqlite3.OpenFlags(path, flags)
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	return c, nil
}

func pragmas(c *sqlite3.Conn, sql string) error {
	if err := c.Exec(sql); err != nil {
		c.Close()
		return fmt.Errorf("storage: configure: %w", err)
	}
	return nil
}

func synchronous(d Durability) string {
	if d == PowerSafe {
		return "FULL"
	}
	return "NORMAL"
}

// prepare prepares each statement of stmts into its destination, closing
// what it prepared if one fails.
func prepare(c *sqlite3.Conn, stmts map[**sqlite3.Stmt]string) error {
	for dst, sql := range stmts {
		s, _, err := c.Prepare(sql)
		if err != nil {
			for dst := range stmts {
				if *dst != nil {
					(*dst).Close()
				}
			}
			return fmt.Errorf("storage: prepare %q: %w", sql, err)
		}
		*dst = s
	}
	return nil
}

func closeAll(stmts ...*sqlite3.Stmt) {
	for _, s := range stmts {
		if s != nil {
			closeGuarded(s)
		}
	}
}

// writer is the one connection that writes; only the commit loop uses it.
type writer struct {
	conn                    *sqlite3.Conn
	begin, commit, rollback *sqlite3.Stmt
	upsert                  *sqlite3.Stmt
	kvPut, kvDelete, kvWipe *sqlite3.Stmt
	alarmSet, alarmDelete   *sqlite3.Stmt
	catPut, catDelete       *sqlite3.Stmt
	objDelete               *sqlite3.Stmt
	superseded              []bool // stateSuperseded's, reused
}

func openWriter(path string, d Durability) (*writer, error) {
	c, err := open(path, sqlite3.OPEN_READWRITE|sqlite3.OPEN_CREATE|sqlite3.OPEN_NOMUTEX)
	if err != nil {
		return nil, err
	}
	if err := pragmas(c, `PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000; PRAGMA synchronous=`+synchronous(d)+`;`+nodeSchema+metaSchema+catalogSchema); err != nil {
		return nil, err
	}
	if err := backfillCatalog(c); err != nil {
		c.Close()
		return nil, err
	}
	w := &writer{conn: c}
	stmts := map[**sqlite3.Stmt]string{
		&w.begin:    `BEGIN IMMEDIATE`,
		&w.commit:   `COMMIT`,
		&w.rollback: `ROLLBACK`,
		&w.upsert: `INSERT INTO objects (class, id, state) VALUES (?, ?, ?)
			ON CONFLICT (class, id) DO UPDATE SET state = excluded.state`,
		&w.kvPut: `INSERT INTO kv (class, id, key, value) VALUES (?, ?, ?, ?)
			ON CONFLICT (class, id, key) DO UPDATE SET value = excluded.value`,
		&w.kvDelete: `DELETE FROM kv WHERE class = ? AND id = ? AND key = ?`,
		&w.kvWipe:   `DELETE FROM kv WHERE class = ? AND id = ?`,
		&w.alarmSet: `INSERT INTO alarms (class, id, at_ms) VALUES (?, ?, ?)
			ON CONFLICT (class, id) DO UPDATE SET at_ms = excluded.at_ms`,
		&w.alarmDelete: `DELETE FROM alarms WHERE class = ? AND id = ?`,
	}
	maps.Copy(stmts, w.catalogStatements())
	if err := prepare(c, stmts); err != nil {
		c.Close()
		return nil, err
	}
	return w, nil
}

// apply commits the batches in one transaction, all or nothing, and
// returns the bytes of states, keys and values it wrote; committed is false
// when there was nothing to write.
func (w *writer) apply(batches []*Batch) (n int, committed bool, err error) {
	writes := false
	for _, b := range batches {
		writes = writes || !b.empty()
	}
	if !writes {
		return 0, false, nil
	}
	if err := w.begin.Exec(); err != nil {
		return 0, false, fmt.Errorf("storage: begin: %w", err)
	}
	defer func() {
		if err != nil {
			w.rollback.Exec() // the original error matters, not this one
		}
	}()
	superseded := stateSuperseded(batches, w.superseded[:0])
	w.superseded = superseded[:0] // kept for the next group
	for i, b := range batches {
		m, err := w.applyOne(b, i < len(superseded) && superseded[i])
		if err != nil {
			return 0, false, fmt.Errorf("storage: write %s object: %w", b.class, err)
		}
		n += m
	}
	if err := w.commit.Exec(); err != nil {
		return 0, false, fmt.Errorf("storage: commit: %w", err)
	}
	return n, true, nil
}

// stateSuperseded tells, for each batch of a group, whether a later batch
// of the same object in the group writes the object's state too. Only the
// last state of an object is written then: the group commits atomically,
// so no reader can see the states in between. Key-value writes and alarms
// are applied batch by batch, in order, which gives the same result as
// merging them. It appends to buf, which the writer reuses from group to
// group, and returns it empty when no batch is superseded (a group with one
// batch per object).
func stateSuperseded(batches []*Batch, buf []bool) []bool {
	if len(batches) < 2 {
		return buf[:0]
	}
	type object struct {
		class string
		id    [32]byte
	}
	out := buf[:0]
	mark := func(i int) {
		if len(out) == 0 {
			out = append(out, make([]bool, len(batches))...)
		}
		out[i] = true
	}
	writesState := func(b *Batch) bool { return (b.side == nil || b.side.meta == nil) && b.writeState }
	if len(batches) <= 16 { // small groups, the usual: no map
		for i, b := range batches[:len(batches)-1] {
			if !writesState(b) {
				continue
			}
			for _, later := range batches[i+1:] {
				if writesState(later) && later.id == b.id && later.class == b.class {
					mark(i)
					break
				}
			}
		}
		return out
	}
	last := make(map[object]int, len(batches)) // the latest batch writing an object's state
	for i, b := range batches {
		if !writesState(b) {
			continue
		}
		k := object{b.class, b.id}
		if j, ok := last[k]; ok {
			mark(j)
		}
		last[k] = i
	}
	return out
}

// applyOne writes b and returns the bytes of state, keys and values it
// wrote. With skipState, a later batch of the group writes the object's
// state, and b's is not written.
func (w *writer) applyOne(b *Batch, skipState bool) (n int, err error) {
	var cat *catalogWrite
	if b.side != nil {
		if b.side.meta != nil {
			return w.applyMeta(b.side.meta)
		}
		cat = b.side.cat
	}
	if cat != nil && cat.remove {
		if err := w.applyCatalog(b.class, b.id, cat); err != nil {
			return 0, err
		}
	}
	if b.writeState && !skipState {
		w.upsert.BindText(1, b.class)
		w.upsert.BindBlob(2, b.id[:])
		w.upsert.BindBlob(3, nonNil(b.state))
		if err := w.upsert.Exec(); err != nil {
			return 0, err
		}
		n += len(b.state)
	}
	if b.kv.cleared {
		w.kvWipe.BindText(1, b.class)
		w.kvWipe.BindBlob(2, b.id[:])
		if err := w.kvWipe.Exec(); err != nil {
			return 0, err
		}
	}
	if op := b.kv.alarm; op.kind != alarmUnchanged {
		s := w.alarmDelete
		if op.kind == alarmSet {
			s = w.alarmSet
			s.BindInt64(3, op.at)
		}
		s.BindText(1, b.class)
		s.BindBlob(2, b.id[:])
		if err := s.Exec(); err != nil {
			return 0, err
		}
	}
	for key, v := range b.kv.writes {
		s := w.kvPut
		if v.deleted {
			s = w.kvDelete
		}
		s.BindText(1, b.class)
		s.BindBlob(2, b.id[:])
		s.BindText(3, key)
		if !v.deleted {
			s.BindBlob(4, nonNil(v.data))
		}
		if err := s.Exec(); err != nil {
			return 0, err
		}
		n += len(key) + len(v.data)
	}
	if cat != nil && !cat.remove {
		if err := w.applyCatalog(b.class, b.id, cat); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// nonNil keeps empty values from binding as NULL, which the schema refuses.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func (w *writer) close() error {
	closeAll(w.begin, w.commit, w.rollback, w.upsert, w.kvPut, w.kvDelete, w.kvWipe, w.alarmSet, w.alarmDelete, w.catPut, w.catDelete, w.objDelete)
	return w.conn.Close()
}

// reader is a read-only connection of the pool.
type reader struct {
	conn     *sqlite3.Conn
	load     *sqlite3.Stmt
	kvGet    *sqlite3.Stmt
	alarmGet *sqlite3.Stmt
	due      *sqlite3.Stmt
	catGet   *sqlite3.Stmt
	scans    scans
}

func openReader(path string) (*reader, error) {
	c, err := open(path, sqlite3.OPEN_READONLY|sqlite3.OPEN_NOMUTEX)
	if err != nil {
		return nil, err
	}
	if err := pragmas(c, `PRAGMA busy_timeout=5000; PRAGMA query_only=1;`); err != nil {
		return nil, err
	}
	r := &reader{conn: c}
	stmts := map[**sqlite3.Stmt]string{
		&r.load:     `SELECT state FROM objects WHERE class = ?1 AND id = ?2`,
		&r.kvGet:    `SELECT value FROM kv WHERE class = ?1 AND id = ?2 AND key = ?3`,
		&r.alarmGet: `SELECT at_ms FROM alarms WHERE class = ?1 AND id = ?2`,
		&r.catGet:   `SELECT coalesce(name, ''), written_ms FROM catalog WHERE class = ?1 AND id = ?2`,
		&r.due: `SELECT class, id, at_ms FROM alarms
			WHERE (at_ms, class, id) > (?1, ?2, ?3) AND at_ms <= ?4
			ORDER BY at_ms, class, id LIMIT ?5`,
	}
	r.scans.add(stmts, `kv`, `class = ?1 AND id = ?2 AND `)
	if err := prepare(c, stmts); err != nil {
		c.Close()
		return nil, err
	}
	return r, nil
}

func (r *reader) loadState(class string, id [32]byte) ([]byte, bool, error) {
	r.load.BindText(1, class)
	r.load.BindBlob(2, id[:])
	return one(r.load)
}

func (r *reader) get(class string, id [32]byte, key string) ([]byte, bool, error) {
	r.kvGet.BindText(1, class)
	r.kvGet.BindBlob(2, id[:])
	r.kvGet.BindText(3, key)
	return one(r.kvGet)
}

func (r *reader) alarm(class string, id [32]byte) (int64, bool, error) {
	r.alarmGet.BindText(1, class)
	r.alarmGet.BindBlob(2, id[:])
	return oneInt(r.alarmGet)
}

func (r *reader) scan(class string, id [32]byte, kr keyRange, limit int, fn func(string, []byte) bool) error {
	s := r.scans.pick(kr)
	s.BindText(1, class)
	s.BindBlob(2, id[:])
	return runScan(s, kr, limit, fn)
}

func (r *reader) close() {
	closeAll(r.load, r.kvGet, r.alarmGet, r.due, r.catGet)
	r.scans.close()
	r.conn.Close()
}

// one returns the single blob column of the single row s selects.
func one(s *sqlite3.Stmt) ([]byte, bool, error) {
	defer s.Reset()
	if s.Step() {
		return s.ColumnBlob(0, []byte{}), true, nil
	}
	if err := s.Err(); err != nil {
		return nil, false, err
	}
	return nil, false, nil
}

// oneInt returns the single integer column of the single row s selects.
func oneInt(s *sqlite3.Stmt) (int64, bool, error) {
	defer s.Reset()
	if s.Step() {
		return s.ColumnInt64(0), true, nil
	}
	return 0, false, s.Err()
}

// scans are the four range queries over a key-value table: ascending or
// descending, with or without an upper bound. Parameters ?1 and ?2 belong to
// the caller's filter; ?3 is the lower bound, ?4 the upper, ?5 the limit.
type scans struct {
	asc, desc, ascTo, descTo *sqlite3.Stmt
}

func (sc *scans) add(stmts map[**sqlite3.Stmt]string, table, filter string) {
	stmts[&sc.asc] = scanSQL(table, filter, false, "ASC")
	stmts[&sc.desc] = scanSQL(table, filter, false, "DESC")
	stmts[&sc.ascTo] = scanSQL(table, filter, true, "ASC")
	stmts[&sc.descTo] = scanSQL(table, filter, true, "DESC")
}

// scanSQL is the range query over table's keys, ordered by order ("ASC"
// or "DESC"), with an upper bound when bounded; filter, if any, ends in
// AND.
func scanSQL(table, filter string, bounded bool, order string) string {
	upper := ""
	if bounded {
		upper = ` AND key < ?4`
	}
	return `SELECT key, value FROM ` + table + ` WHERE ` + filter + `key >= ?3` + upper +
		` ORDER BY key ` + order + ` LIMIT ?5`
}

func (sc *scans) pick(kr keyRange) *sqlite3.Stmt {
	switch {
	case kr.hasHi && kr.reverse:
		return sc.descTo
	case kr.hasHi:
		return sc.ascTo
	case kr.reverse:
		return sc.desc
	}
	return sc.asc
}

// runScan runs s, one of the scans, over kr.
func runScan(s *sqlite3.Stmt, kr keyRange, limit int, fn func(string, []byte) bool) error {
	defer s.Reset()
	s.BindText(3, kr.lo)
	if kr.hasHi {
		s.BindText(4, kr.hi)
	}
	s.BindInt(5, limit)
	for s.Step() {
		if !fn(s.ColumnText(0), s.ColumnBlob(1, []byte{})) {
			return nil
		}
	}
	return s.Err()
}

func (sc *scans) close() { closeAll(sc.asc, sc.desc, sc.ascTo, sc.descTo) }
