package storage

import (
	"fmt"

	"github.com/ncruces/go-sqlite3"
)

const schema = `
CREATE TABLE IF NOT EXISTS objects (
	class TEXT NOT NULL,
	id    BLOB NOT NULL,
	state BLOB NOT NULL,
	PRIMARY KEY (class, id)
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

// writer is the one connection that writes; only the commit loop uses it.
type writer struct {
	conn                    *sqlite3.Conn
	begin, commit, rollback *sqlite3.Stmt
	upsert                  *sqlite3.Stmt
}

func openWriter(path string, d Durability) (*writer, error) {
	c, err := open(path, sqlite3.OPEN_READWRITE|sqlite3.OPEN_CREATE|sqlite3.OPEN_NOMUTEX)
	if err != nil {
		return nil, err
	}
	sync := "NORMAL"
	if d == PowerSafe {
		sync = "FULL"
	}
	if err := pragmas(c, `PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000; PRAGMA synchronous=`+sync+`;`+schema); err != nil {
		return nil, err
	}
	w := &writer{conn: c}
	for stmt, sql := range map[**sqlite3.Stmt]string{
		&w.begin:    `BEGIN IMMEDIATE`,
		&w.commit:   `COMMIT`,
		&w.rollback: `ROLLBACK`,
		&w.upsert: `INSERT INTO objects (class, id, state) VALUES (?, ?, ?)
			ON CONFLICT (class, id) DO UPDATE SET state = excluded.state`,
	} {
		if *stmt, _, err = c.Prepare(sql); err != nil {
			w.close()
			return nil, fmt.Errorf("storage: prepare: %w", err)
		}
	}
	return w, nil
}

// apply commits the batches in one transaction, all or nothing.
func (w *writer) apply(batches []*Batch) (err error) {
	writes := false
	for _, b := range batches {
		if !b.empty() {
			writes = true
			break
		}
	}
	if !writes {
		return nil
	}
	if err := w.begin.Exec(); err != nil {
		return fmt.Errorf("storage: begin: %w", err)
	}
	defer func() {
		if err != nil {
			w.rollback.Exec() // the original error matters, not this one
		}
	}()
	for _, b := range batches {
		if !b.WriteState {
			continue
		}
		w.upsert.BindText(1, b.Class)
		w.upsert.BindBlob(2, b.ID[:])
		w.upsert.BindBlob(3, nonNil(b.State))
		if err := w.upsert.Exec(); err != nil {
			return fmt.Errorf("storage: write state of %s object: %w", b.Class, err)
		}
	}
	if err := w.commit.Exec(); err != nil {
		return fmt.Errorf("storage: commit: %w", err)
	}
	return nil
}

// nonNil keeps empty states from binding as NULL, which the schema refuses.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func (w *writer) close() error {
	for _, s := range []*sqlite3.Stmt{w.begin, w.commit, w.rollback, w.upsert} {
		if s != nil {
			s.Close()
		}
	}
	return w.conn.Close()
}

// reader is a read-only connection of the pool.
type reader struct {
	conn *sqlite3.Conn
	load *sqlite3.Stmt
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
	r.load, _, err = c.Prepare(`SELECT state FROM objects WHERE class = ? AND id = ?`)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("storage: prepare: %w", err)
	}
	return r, nil
}

func (r *reader) loadState(class string, id [32]byte) ([]byte, bool, error) {
	defer r.load.Reset()
	r.load.BindText(1, class)
	r.load.BindBlob(2, id[:])
	if r.load.Step() {
		return r.load.ColumnBlob(0, []byte{}), true, nil
	}
	if err := r.load.Err(); err != nil {
		return nil, false, fmt.Errorf("storage: load state of %s object: %w", class, err)
	}
	return nil, false, nil
}

func (r *reader) close() {
	r.load.Close()
	r.conn.Close()
}
