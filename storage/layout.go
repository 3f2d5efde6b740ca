package storage

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SQLStore opens the storage of the object id of class, for a class whose
// objects each have a SQL database: a file of its own, named by the ID,
// under sql/<class>/ beside the node database. Storage owns this layout;
// the file is created by the object's first write (see OpenFile), and the
// object's alarm is kept in step with the node database's index of due
// alarms, which the scheduler reads. opts configure the file: its
// durability, its size cap, its descriptor budget.
func (db *DB) SQLStore(class string, id [32]byte, opts ...FileOption) (*Store, error) {
	path := filepath.Join(db.sqlDir(class), hex.EncodeToString(id[:])+".db")
	return OpenFile(path, append(opts, WithAlarmIndex(db, class, id))...)
}

// sqlDir is the directory of the SQL database files of class.
func (db *DB) sqlDir(class string) string {
	return filepath.Join(filepath.Dir(db.path), "sql", class)
}

// SQLObjects returns the IDs of the objects of class that have a SQL
// database file (see SQLStore), after from, in byte order, at most limit
// of them. Other files (a write-ahead log, a temporary copy being
// written) are skipped.
func (db *DB) SQLObjects(class string, from []byte, limit int) ([][32]byte, error) {
	entries, err := os.ReadDir(db.sqlDir(class)) // sorted by name: hexadecimal, so byte order
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("storage: list objects: %w", err)
	}
	var ids [][32]byte
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".db")
		var id [32]byte
		if !ok || len(name) != hex.EncodedLen(len(id)) || !e.Type().IsRegular() {
			continue
		}
		if _, err := hex.Decode(id[:], []byte(name)); err != nil || name != strings.ToLower(name) || bytes.Compare(id[:], from) <= 0 {
			continue
		}
		if ids = append(ids, id); len(ids) == limit {
			break
		}
	}
	return ids, nil
}
