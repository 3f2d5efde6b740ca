package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/ncruces/go-sqlite3"
)

// catalogSchema is the node database's catalog of stored objects, of every
// class, with or without SQL: an object's class, ID, the name it was
// created from (NULL when created by ID) and when it last committed a
// write, to within CatalogRefresh. Listing objects reads it alone: no
// object's file is opened and no object activated. The second index serves
// listings by name prefix.
//
// An object of the node database gets its entry in the same transaction as
// its first write; an object with an SQL file gets it just before its first
// commit (as the alarm index does), so a catalog may list an object whose
// first commit failed, and never misses one.
const catalogSchema = `
CREATE TABLE IF NOT EXISTS catalog (
	class      TEXT NOT NULL,
	id         BLOB NOT NULL,
	name       TEXT,
	written_ms INTEGER NOT NULL,
	PRIMARY KEY (class, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS catalog_by_name ON catalog (class, name, id);
`

// catalogBackfill lists, once, the objects a database written before the
// catalog existed holds (their names are unknown), and records that it did.
const catalogBackfill = `
INSERT OR IGNORE INTO catalog (class, id, name, written_ms)
	SELECT class, id, NULL, 0 FROM objects
	UNION SELECT class, id, NULL, 0 FROM kv
	UNION SELECT class, id, NULL, 0 FROM alarms;
INSERT INTO meta (key, value) VALUES ('catalog', 'v1');
`

// CatalogRefresh is how stale an object's last write time in the catalog
// may be: the server rewrites an entry only on an object's first write, when
// it learns the object's name, and on a write more than this after the
// entry's time, so that the hot path of an active object pays nothing.
const CatalogRefresh = time.Minute

// catalogWrite is a batch's change to the catalog: an upsert of the
// object's entry, after the batch's other writes, or, with remove, the
// deletion of the object entirely (state, key-value entries, alarm and
// entry), before them.
type catalogWrite struct {
	name      string // "" keeps the stored name
	writtenMs int64
	remove    bool
}

// CatalogEntry is one object of the catalog.
type CatalogEntry struct {
	Class string
	ID    [32]byte
	// Name is the name the object was created from, or "".
	Name string
	// Written is when the object last committed a write, in Unix
	// milliseconds, to within CatalogRefresh; 0 if unknown.
	Written int64
	// Size is the bytes of the object's state and key-value entries in the
	// node database (0 for an object with its own SQL file).
	Size int64
	// Alarm is the object's alarm in Unix milliseconds, when HasAlarm.
	Alarm    int64
	HasAlarm bool
}

// Catalog has the next Commit of a node-database store record the object's
// catalog entry, in the same transaction as its writes: name (unless "")
// and writtenMs. It reports false for a store with its own SQL file, whose
// entry the caller records with DB.PutCatalog before committing.
func (s *Store) Catalog(name string, writtenMs int64) bool {
	n, ok := s.b.b.(*nodeStore)
	if ok {
		n.side = &sideWrite{cat: &catalogWrite{name: name, writtenMs: writtenMs}}
	}
	return ok
}

// Forget has the next Commit of a node-database store delete the object
// entirely before the commit's own writes: its state, key-value entries,
// alarm and catalog entry, so that a call of the batch after the one that
// forgot writes on a blank object. It reports false for a store with its
// own SQL file.
func (s *Store) Forget() bool {
	n, ok := s.b.b.(*nodeStore)
	if ok {
		n.side = &sideWrite{cat: &catalogWrite{remove: true}}
	}
	return ok
}

// PutCatalog records the catalog entry of the object (class, id), keeping
// its stored name when name is "", and returns once it is durable.
func (db *DB) PutCatalog(ctx context.Context, class string, id [32]byte, name string, writtenMs int64) error {
	return db.submitWait(ctx, &Batch{class: class, id: id, kv: &layer{}, side: &sideWrite{cat: &catalogWrite{name: name, writtenMs: writtenMs}}}, "catalog of "+class+" object")
}

// DeleteObject deletes what the node database holds of the object (class,
// id): state, key-value entries, alarm (or alarm index entry) and catalog
// entry, in one transaction, and returns once that is durable. The server
// calls it from the object's mailbox, never beside a running call.
func (db *DB) DeleteObject(ctx context.Context, class string, id [32]byte) error {
	return db.submitWait(ctx, &Batch{class: class, id: id, kv: &layer{}, side: &sideWrite{cat: &catalogWrite{remove: true}}}, "catalog of "+class+" object")
}

// submitWait submits b, a write of the node database's own (meta,
// catalog) rather than an object's call, and waits for its commit; what
// names the write in an error.
func (db *DB) submitWait(ctx context.Context, b *Batch, what string) error {
	done := make(chan error, 1)
	b.done = func(err error) { done <- err }
	db.submit(b)
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("storage: %s: %w", what, err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// applyCatalog writes c for (class, id) inside the group's transaction.
func (w *writer) applyCatalog(class string, id [32]byte, c *catalogWrite) error {
	stmts := []*sqlite3.Stmt{w.catPut}
	if c.remove {
		stmts = []*sqlite3.Stmt{w.objDelete, w.kvWipe, w.alarmDelete, w.catDelete}
	}
	for _, s := range stmts {
		s.BindText(1, class)
		s.BindBlob(2, id[:])
		if !c.remove {
			if c.name != "" {
				s.BindText(3, c.name)
			} else {
				s.BindNull(3)
			}
			s.BindInt64(4, c.writtenMs)
		}
		if err := s.Exec(); err != nil {
			return err
		}
	}
	return nil
}

// catalogStatements are the writer's statements of the catalog.
func (w *writer) catalogStatements() map[**sqlite3.Stmt]string {
	return map[**sqlite3.Stmt]string{
		&w.catPut: `INSERT INTO catalog (class, id, name, written_ms) VALUES (?1, ?2, ?3, ?4)
			ON CONFLICT (class, id) DO UPDATE SET written_ms = max(written_ms, excluded.written_ms),
			name = coalesce(excluded.name, name)`,
		&w.catDelete: `DELETE FROM catalog WHERE class = ?1 AND id = ?2`,
		&w.objDelete: `DELETE FROM objects WHERE class = ?1 AND id = ?2`,
	}
}

// backfillCatalog lists in the catalog the objects of a database written
// before it existed, once.
func backfillCatalog(c *sqlite3.Conn) error {
	s, _, err := c.Prepare(`SELECT 1 FROM meta WHERE key = 'catalog'`)
	if err != nil {
		return err
	}
	done := s.Step()
	err = s.Close()
	if done || err != nil {
		return err
	}
	if err := c.Exec(`BEGIN IMMEDIATE;` + catalogBackfill + `COMMIT;`); err != nil {
		c.Exec(`ROLLBACK`)
		return fmt.Errorf("storage: backfill the catalog: %w", err)
	}
	return nil
}

// CatalogListOptions selects a page of the catalog.
type CatalogListOptions struct {
	// NamePrefix keeps the objects whose name starts with it, in name
	// order; empty lists every object, in ID order.
	NamePrefix string
	// After is the last entry of the previous page (its Name and ID); the
	// zero entry starts from the beginning.
	After CatalogEntry
	// Limit caps the page; at least 1.
	Limit int
}

// catalogColumns are the columns of a listing, for scanEntry.
const catalogColumns = `c.id, c.name, c.written_ms,
	coalesce((SELECT length(state) FROM objects o WHERE o.class = c.class AND o.id = c.id), 0)
	+ coalesce((SELECT sum(length(key) + length(value)) FROM kv k WHERE k.class = c.class AND k.id = c.id), 0),
	(SELECT at_ms FROM alarms a WHERE a.class = c.class AND a.id = c.id)`

// ListCatalog returns a page of the objects of class the catalog lists.
// It reads index ranges only: a page costs its size, whatever the number of
// objects stored.
func (db *DB) ListCatalog(ctx context.Context, class string, opts CatalogListOptions) ([]CatalogEntry, error) {
	limit := max(1, opts.Limit)
	var out []CatalogEntry
	_, _, err := withReader(ctx, db, func(r *reader) ([]byte, bool, error) {
		var q string
		if opts.NamePrefix == "" {
			q = `SELECT ` + catalogColumns + ` FROM catalog c WHERE c.class = ?1 AND c.id > ?2 ORDER BY c.id LIMIT ?3`
		} else {
			q = `SELECT ` + catalogColumns + ` FROM catalog c WHERE c.class = ?1 AND c.name >= ?4
				AND (?5 IS NULL OR c.name < ?5) AND (c.name, c.id) > (?6, ?2) ORDER BY c.name, c.id LIMIT ?3`
		}
		s, _, err := r.conn.Prepare(q)
		if err != nil {
			return nil, false, err
		}
		defer s.Close()
		s.BindText(1, class)
		s.BindBlob(2, opts.After.ID[:])
		s.BindInt(3, limit)
		if opts.NamePrefix != "" {
			s.BindText(4, opts.NamePrefix)
			if hi, ok := successor(opts.NamePrefix); ok {
				s.BindText(5, hi)
			} else {
				s.BindNull(5)
			}
			s.BindText(6, opts.After.Name)
		}
		for s.Step() {
			e := CatalogEntry{Class: class, Name: s.ColumnText(1), Written: s.ColumnInt64(2), Size: s.ColumnInt64(3)}
			copy(e.ID[:], s.ColumnRawBlob(0))
			if s.ColumnType(4) != sqlite3.NULL {
				e.Alarm, e.HasAlarm = s.ColumnInt64(4), true
			}
			out = append(out, e)
		}
		return nil, false, s.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("storage: list the catalog of %s: %w", class, err)
	}
	return out, nil
}

// CatalogEntry returns the catalog's entry of the object (class, id), and
// whether there is one. Size and the alarm are not filled in.
func (db *DB) CatalogEntry(ctx context.Context, class string, id [32]byte) (CatalogEntry, bool, error) {
	e := CatalogEntry{Class: class, ID: id}
	_, found, err := withReader(ctx, db, func(r *reader) ([]byte, bool, error) {
		s := r.catGet
		defer s.Reset()
		s.BindText(1, class)
		s.BindBlob(2, id[:])
		if !s.Step() {
			return nil, false, s.Err()
		}
		e.Name, e.Written = s.ColumnText(0), s.ColumnInt64(1)
		return nil, true, nil
	})
	if err != nil {
		return e, false, fmt.Errorf("storage: read the catalog: %w", err)
	}
	return e, found, nil
}

// CountCatalog returns how many objects of class the catalog lists.
func (db *DB) CountCatalog(ctx context.Context, class string) (int64, error) {
	var n int64
	_, _, err := withReader(ctx, db, func(r *reader) ([]byte, bool, error) {
		s, _, err := r.conn.Prepare(`SELECT count(*) FROM catalog WHERE class = ?`)
		if err != nil {
			return nil, false, err
		}
		defer s.Close()
		s.BindText(1, class)
		n, _, err = oneInt(s)
		return nil, false, err
	})
	if err != nil {
		return 0, fmt.Errorf("storage: count the catalog of %s: %w", class, err)
	}
	return n, nil
}

// PutCatalogMany is PutCatalog of every entry (its Class, ID, Name and
// Written), committed in as few transactions as the writer groups them
// into; it returns once all are durable.
func (db *DB) PutCatalogMany(ctx context.Context, entries []CatalogEntry) error {
	errs := make(chan error, len(entries))
	for _, e := range entries {
		db.submit(&Batch{class: e.Class, id: e.ID, kv: &layer{},
			side: &sideWrite{cat: &catalogWrite{name: e.Name, writtenMs: e.Written}}, done: func(err error) { errs <- err }})
	}
	for range entries {
		select {
		case err := <-errs:
			if err != nil {
				return fmt.Errorf("storage: catalog: %w", err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// sideWrite is a batch's rare write beside an object's data, out of line
// so that the batch of an ordinary commit keeps its size class.
type sideWrite struct {
	meta *metaWrite    // a write to the meta table instead (SetMeta)
	cat  *catalogWrite // the object's catalog entry, or its deletion
}
