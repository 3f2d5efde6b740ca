package engine

import (
	"context"
	"fmt"
)

// Objects returns the IDs of the objects of class that hold something in
// the node database (state, a key or an alarm), in byte order, starting
// after the ID after (nil: from the first), at most limit of them. An
// object exists once it stores something, so these are the objects of a
// class without SQL that exist; objects with SQL keep their data in files
// of their own and appear here only by their alarm. Test kits and
// operators list objects with it; no call path uses it.
func (db *DB) Objects(ctx context.Context, class string, after []byte, limit int) ([][32]byte, error) {
	if limit <= 0 {
		return nil, nil
	}
	var ids [][32]byte
	_, _, err := withReader(ctx, db, func(r *reader) ([]byte, bool, error) {
		// Prepared per call: listing is rare, and the reader's cached
		// statements are the call path's.
		s, _, err := r.conn.Prepare(`SELECT id FROM objects WHERE class = ?1 AND id > ?2
			UNION SELECT id FROM kv WHERE class = ?1 AND id > ?2
			UNION SELECT id FROM alarms WHERE class = ?1 AND id > ?2
			ORDER BY id LIMIT ?3`)
		if err != nil {
			return nil, false, err
		}
		defer s.Close()
		s.BindText(1, class)
		// Never nil: a nil blob binds NULL, which compares with nothing.
		s.BindBlob(2, append([]byte{}, after...))
		s.BindInt(3, limit)
		for s.Step() {
			var id [32]byte
			if n := copy(id[:], s.ColumnRawBlob(0)); n != len(id) {
				return nil, false, fmt.Errorf("an ID of %d bytes in the node database", n)
			}
			ids = append(ids, id)
		}
		return nil, false, s.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("storage: list the objects of %s: %w", class, err)
	}
	return ids, nil
}
