package engine_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/durablego/durable/internal/engine"
)

// TestMetaSurvivesReopenAndEmpty: SetMeta's value is durable once it
// returns and replaces the previous one; Empty tells a database without
// objects from one with an object's state.
func TestMetaSurvivesReopenAndEmpty(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "objects.db")
	db, err := engine.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := db.Meta(ctx, "k"); ok || err != nil {
		t.Fatalf("Meta of a fresh database: %v, %v", ok, err)
	}
	if empty, err := db.Empty(ctx); !empty || err != nil {
		t.Fatalf("Empty of a fresh database = %v, %v", empty, err)
	}
	for _, v := range []string{"one", "two"} {
		if err := db.SetMeta(ctx, "k", v); err != nil {
			t.Fatal(err)
		}
	}
	if empty, err := db.Empty(ctx); !empty || err != nil {
		t.Fatalf("Empty with only meta = %v, %v", empty, err)
	}
	st := db.Store("C", id(1))
	call(t, st, func(*engine.KV) error { return nil })
	if err := commit(st, []byte("s")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openDB(t, path)
	if v, ok, err := db.Meta(ctx, "k"); v != "two" || !ok || err != nil {
		t.Fatalf("Meta after reopening = %q, %v, %v; want two", v, ok, err)
	}
	if empty, err := db.Empty(ctx); empty || err != nil {
		t.Fatalf("Empty with an object's state = %v, %v", empty, err)
	}
	if err := db.SetMeta(ctx, "k", "three"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := db.SetMeta(ctx, "k", "four"); err == nil {
		t.Fatal("SetMeta after Close succeeded")
	}
}
