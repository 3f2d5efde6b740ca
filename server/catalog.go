package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/durablego/durable"
	"github.com/durablego/durable/internal/engine"
)

// catalogState is what an actor knows of its object's entry in the
// catalog (engine.CatalogEntry), so that it rewrites the entry only when
// needed: on the first write, when it learns the object's name, and at most
// once per engine.CatalogRefresh to keep the last write time.
type catalogState struct {
	known   bool   // the catalog has an entry
	name    string // the entry's name
	written int64  // the entry's last write, Unix milliseconds
}

// loadCatalog reads the object's catalog entry when it is activated, and
// takes its name from it: an object activated by its ID (an alarm, a call
// by ID) knows the name it was created from.
func (a *actor[S]) loadCatalog() error {
	if a.ns.srv.ownDB == nil {
		return nil // no catalog: see errNoNodeDB
	}
	e, found, err := a.ns.srv.ownDB.CatalogEntry(context.Background(), a.key.Class, a.key.ID)
	if err != nil {
		return err
	}
	a.cat = catalogState{known: found, name: e.Name, written: e.Written}
	if e.Name != "" && a.obj.ID.Name() == "" {
		a.obj.ID = durable.IDFromBytes(a.key.Class, a.key.ID, e.Name)
	}
	return nil
}

// recordCatalog has the batch about to be committed record the object's
// catalog entry when the entry is missing, lacks the name or is older than
// engine.CatalogRefresh: in the batch's own transaction for an object of
// the node database, just before it (and waiting for it) for an object
// with its own SQL file.
func (a *actor[S]) recordCatalog() error {
	if a.ns.srv.ownDB == nil {
		return nil
	}
	name := a.obj.ID.Name()
	// The batch's start, read once for the time limit, stands for its
	// last write: the catalog keeps it to within a minute anyway.
	start := a.batchStart
	if start.IsZero() { // no call ran under a time limit
		start = time.Now()
	}
	now := start.UnixMilli()
	if a.cat.known && (name == "" || a.cat.name != "") && now-a.cat.written < engine.CatalogRefresh.Milliseconds() {
		return nil
	}
	if !a.store.Catalog(name, now) {
		if err := a.ns.srv.ownDB.PutCatalog(context.Background(), a.key.Class, a.key.ID, name, now); err != nil {
			return err
		}
	}
	// Optimistic for the node database: a failed commit poisons the actor,
	// which reloads the entry with its state.
	a.cat = catalogState{known: true, name: max(name, a.cat.name), written: now}
	return nil
}

// errNoNodeDB refuses what needs the node database (the catalog, backups)
// on a server whose objects live in another store (WithStore).
var errNoNodeDB = errors.New("server: the catalog of stored objects and backups need the node database, which a server with WithStore does not have")

// catalogSQLKey records in the node database that the SQL objects of the
// data directory are in the catalog.
const catalogSQLKey = "catalog_sql"

// backfillSQLCatalog lists in the catalog, once per data directory, the
// SQL objects written before the catalog existed: the files under sql/,
// with their modification time as their last write and no name (the name
// is learnt at the object's next call by name).
func backfillSQLCatalog(ctx context.Context, db *engine.DB) error {
	if _, done, err := db.Meta(ctx, catalogSQLKey); err != nil || done {
		return err
	}
	var entries []engine.CatalogEntry
	err := db.SQLFiles(func(class string, id [32]byte, path string) error {
		e := engine.CatalogEntry{Class: class, ID: id}
		if info, err := os.Stat(path); err == nil {
			e.Written = info.ModTime().UnixMilli()
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return fmt.Errorf("server: list the SQL objects: %w", err)
	}
	if err := db.PutCatalogMany(ctx, entries); err != nil {
		return err
	}
	return db.SetMeta(ctx, catalogSQLKey, "v1")
}
