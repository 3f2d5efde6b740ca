package engine

import (
	"context"
	"fmt"
	"testing"
)

// commitWith commits one batch of an object of db with state and key k,
// recording name in the catalog when given.
func commitWith(t testing.TB, db *DB, class string, id [32]byte, name, k string) {
	t.Helper()
	s := db.Store(class, id)
	if err := s.BeginCall(); err != nil {
		t.Fatal(err)
	}
	if err := s.KV.Put(context.Background(), k, []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := s.EndCall(true); err != nil {
		t.Fatal(err)
	}
	if name != "" {
		s.Catalog(name, 1000)
	}
	done := make(chan error, 1)
	s.Commit([]byte("state"), true, nil, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestCatalogEntryListAndDelete(t *testing.T) {
	ctx := context.Background()
	db, err := Open(t.TempDir() + "/objects.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ids := map[string][32]byte{}
	for i, name := range []string{"b-2", "a-1", "b-1", "c"} {
		var id [32]byte
		id[0] = byte(10 - i)
		ids[name] = id
		commitWith(t, db, "C", id, name, "k")
	}
	// An object committed without a catalog write has no entry.
	commitWith(t, db, "C", [32]byte{99}, "", "k")
	if _, found, err := db.CatalogEntry(ctx, "C", [32]byte{99}); err != nil || found {
		t.Fatalf("entry of an object never cataloged: found %v, %v", found, err)
	}
	e, found, err := db.CatalogEntry(ctx, "C", ids["a-1"])
	if err != nil || !found || e.Name != "a-1" || e.Written != 1000 {
		t.Fatalf("entry %+v found %v err %v", e, found, err)
	}
	// Keeping the stored name when none is given, and the latest time.
	if err := db.PutCatalog(ctx, "C", ids["a-1"], "", 5000); err != nil {
		t.Fatal(err)
	}
	if e, _, _ := db.CatalogEntry(ctx, "C", ids["a-1"]); e.Name != "a-1" || e.Written != 5000 {
		t.Fatalf("after PutCatalog without a name: %+v", e)
	}
	if n, err := db.CountCatalog(ctx, "C"); err != nil || n != 4 {
		t.Fatalf("count %d, %v; want 4", n, err)
	}
	// By prefix, in name order, two pages of one.
	var names []string
	var after CatalogEntry
	for range 5 {
		page, err := db.ListCatalog(ctx, "C", CatalogListOptions{NamePrefix: "b-", After: after, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		if page[0].Size != int64(len("state")+len("k")+len("v")) {
			t.Fatalf("size %d", page[0].Size)
		}
		names = append(names, page[0].Name)
		after = page[0]
	}
	if fmt.Sprint(names) != "[b-1 b-2]" {
		t.Fatalf("by prefix: %v", names)
	}
	// In ID order, all of them.
	all, err := db.ListCatalog(ctx, "C", CatalogListOptions{Limit: 10})
	if err != nil || len(all) != 4 || all[0].Name != "c" {
		t.Fatalf("all: %+v, %v", all, err)
	}
	// Deleting an object removes all of it, its entry included.
	if err := db.DeleteObject(ctx, "C", ids["c"]); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := db.CatalogEntry(ctx, "C", ids["c"]); found {
		t.Fatal("entry still there after DeleteObject")
	}
	s := db.Store("C", ids["c"])
	if _, found, err := s.LoadState(ctx); err != nil || found {
		t.Fatalf("state still there after DeleteObject: %v %v", found, err)
	}
}

func TestCatalogBackfillsObjectsWrittenBefore(t *testing.T) {
	ctx := context.Background()
	path := t.TempDir() + "/objects.db"
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	commitWith(t, db, "C", [32]byte{1}, "", "k")
	// As a database of a version without the catalog: no entries, no mark.
	c, err := open(path, 0x2) // READWRITE
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(`DELETE FROM catalog; DELETE FROM meta WHERE key = 'catalog'`); err != nil {
		t.Fatal(err)
	}
	c.Close()
	db.Close()
	if db, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if e, found, err := db.CatalogEntry(ctx, "C", [32]byte{1}); err != nil || !found || e.Name != "" {
		t.Fatalf("backfilled entry %+v found %v err %v", e, found, err)
	}
}
