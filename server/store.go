package server

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/durablego/durable/internal/engine"
)

// WithStore runs the server's objects on store instead of the node
// database: their state, key-value storage and alarms, and the server's
// facts about its data (the fingerprint of the ID secret), live there. The
// cluster module's etcd store (etcdstore.Open) is one, so that an
// acknowledged call survives the loss of the node. The interface a store
// implements is the engine's, internal to Durable's modules: stores come
// from the cluster module, not from users. The data directory still holds the
// server's lock and, unless WithSecret is given, its secret: servers that
// share a store must share the secret (New refuses another one). Classes
// with SQL cannot be registered on such a server: their databases are
// files of the node. The server does not close store: its owner closes it
// after Shutdown. Default: the node database, "objects.db" in the data
// directory.
func WithStore(store engine.ObjectStore) Option { return func(o *options) { o.store = store } }

// errSQLOnStore refuses a class with SQL on a server given WithStore.
var errSQLOnStore = errors.New("server: classes with SQL (sql: true) cannot run on a store given with WithStore: their databases are files of one node")

// openStore returns the store of the server's objects, and the node
// database the server opened for it, which it closes at Shutdown (nil
// with WithStore).
func openStore(o *options) (engine.ObjectStore, *engine.DB, error) {
	if o.store != nil {
		return o.store, nil, nil
	}
	// What a crash left of SQL objects' files being created, before any
	// object opens its file.
	if err := engine.RemoveLeftovers(filepath.Join(o.dataDir, "sql")); err != nil {
		return nil, nil, fmt.Errorf("server: %w", err)
	}
	db, err := engine.Open(filepath.Join(o.dataDir, "objects.db"), engine.WithDurability(o.durability))
	if err != nil {
		return nil, nil, err
	}
	return db, db, nil
}

// closeStore closes the node database the server opened, if any.
func (s *Server) closeStore() error {
	if s.ownDB == nil {
		return nil
	}
	// The pool first: its files are deleted, and it creates none after.
	return errors.Join(s.sqlFiles.closePool(), s.ownDB.Close())
}
