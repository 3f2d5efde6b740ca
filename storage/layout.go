package storage

import (
	"encoding/hex"
	"path/filepath"
)

// SQLStore opens the storage of the object id of class, for a class whose
// objects each have a SQL database: a file of its own, named by the ID,
// under sql/<class>/ beside the node database. Storage owns this layout;
// the file is created by the object's first write (see OpenFile), and the
// object's alarm is kept in step with the node database's index of due
// alarms, which the scheduler reads. opts configure the file: its
// durability, its size cap, its descriptor budget.
func (db *DB) SQLStore(class string, id [32]byte, opts ...FileOption) (*Store, error) {
	path := filepath.Join(filepath.Dir(db.path), "sql", class, hex.EncodeToString(id[:])+".db")
	return OpenFile(path, append(opts, WithAlarmIndex(db, class, id))...)
}
