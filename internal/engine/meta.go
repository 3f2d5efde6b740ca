package engine

import (
	"context"
	"fmt"
)

// metaSchema is the node database's table of facts about the database
// itself, such as the fingerprint of the secret its IDs were minted with.
const metaSchema = `
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) WITHOUT ROWID;
`

// metaWrite is a batch's write to the meta table.
type metaWrite struct{ key, value string }

// Meta returns the value recorded under key by SetMeta, and whether there
// is one.
func (db *DB) Meta(ctx context.Context, key string) (string, bool, error) {
	v, ok, err := withReader(ctx, db, func(r *reader) ([]byte, bool, error) {
		s, _, err := r.conn.Prepare(`SELECT value FROM meta WHERE key = ?`)
		if err != nil {
			return nil, false, err
		}
		defer s.Close()
		s.BindText(1, key)
		return one(s)
	})
	if err != nil {
		return "", false, fmt.Errorf("storage: read meta %q: %w", key, err)
	}
	return string(v), ok, nil
}

// SetMeta records value under key, replacing any other, and returns once
// it is durable. Servers record facts about the data directory with it;
// it is not for objects' data.
func (db *DB) SetMeta(ctx context.Context, key, value string) error {
	return db.submitWait(ctx, &Batch{side: &sideWrite{meta: &metaWrite{key, value}}, kv: &layer{}}, fmt.Sprintf("write meta %q", key))
}

// applyMeta writes m on the writer's connection, inside the group's
// transaction.
func (w *writer) applyMeta(m *metaWrite) (int, error) {
	s, _, err := w.conn.Prepare(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	s.BindText(1, m.key)
	s.BindText(2, m.value)
	return len(m.key) + len(m.value), s.Exec()
}

// Empty reports whether the database holds no object's state, key or
// alarm: a server tells a fresh data directory from one with data by it.
func (db *DB) Empty(ctx context.Context) (bool, error) {
	_, found, err := withReader(ctx, db, func(r *reader) ([]byte, bool, error) {
		s, _, err := r.conn.Prepare(`SELECT 1 WHERE EXISTS (SELECT 1 FROM objects) OR EXISTS (SELECT 1 FROM kv) OR EXISTS (SELECT 1 FROM alarms)`)
		if err != nil {
			return nil, false, err
		}
		defer s.Close()
		return one(s)
	})
	if err != nil {
		return false, fmt.Errorf("storage: %w", err)
	}
	return !found, nil
}
