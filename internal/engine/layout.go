package engine

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
	return OpenFile(db.SQLPath(class, id), append(opts, WithAlarmIndex(db, class, id))...)
}

// NewSQLFilePool starts the FilePool of the objects' SQL databases beside
// the node database, in sql-pool/ (outside sql/, so that an empty pool is
// not taken for objects; on the same file system, so that its files can be
// renamed into sql/). Pass it to SQLStore with WithFilePool; one pool per
// DB, which its owner closes before the DB.
func (db *DB) NewSQLFilePool(opts ...PoolOption) (*FilePool, error) {
	return NewFilePool(filepath.Join(filepath.Dir(db.path), "sql-pool"), opts...)
}

// SQLPath is the file of the SQL database of the object id of class (see
// SQLStore), whether it exists or not.
func (db *DB) SQLPath(class string, id [32]byte) string {
	return filepath.Join(db.sqlDir(class), hex.EncodeToString(id[:])+".db")
}

// RemoveSQLFile deletes the SQL database of the object id of class with
// its write-ahead log; the object's store must be closed. A database that
// does not exist is no error.
func (db *DB) RemoveSQLFile(class string, id [32]byte) error {
	path := db.SQLPath(class, id)
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("storage: delete the object's database: %w", err)
		}
	}
	return nil
}

// SQLFiles calls fn with every object's SQL database file (see SQLStore),
// class by class, each class's in byte order of the IDs, and stops at the
// first error fn returns.
func (db *DB) SQLFiles(fn func(class string, id [32]byte, path string) error) error {
	classes, err := os.ReadDir(filepath.Join(filepath.Dir(db.path), "sql"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("storage: list objects: %w", err)
	}
	for _, c := range classes {
		if !c.IsDir() {
			continue
		}
		ids, err := db.SQLObjects(c.Name(), nil, -1)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := fn(c.Name(), id, db.SQLPath(c.Name(), id)); err != nil {
				return err
			}
		}
	}
	return nil
}

// sqlDir is the directory of the SQL database files of class.
func (db *DB) sqlDir(class string) string {
	return filepath.Join(filepath.Dir(db.path), "sql", class)
}

// SQLObjects returns the IDs of the objects of class that have a SQL
// database file (see SQLStore), after from, in byte order, at most limit
// of them. Other files (a write-ahead log, a temporary copy being
// written) are skipped. A negative limit lists them all.
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
