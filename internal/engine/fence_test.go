package engine_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/durablego/durable/internal/engine"
)

// started is a context that never ends and tells when it is first asked
// whether it has: SQLite asks as a statement starts.
type started struct {
	context.Context
	once sync.Once
	ch   chan struct{}
}

func (s *started) Err() error {
	s.once.Do(func() { close(s.ch) })
	return nil
}

func TestFenceInterruptsAndCutsOffAFileStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "object.db")
	st, err := engine.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	call(t, st, func(*engine.KV) error { exec(t, st, `CREATE TABLE t (x)`); return nil })
	if err := commit(st, []byte("state")); err != nil {
		t.Fatal(err)
	}
	if err := st.BeginCall(); err != nil {
		t.Fatal(err)
	}
	exec(t, st, `INSERT INTO t VALUES (1)`)
	if err := st.KV.Put(context.Background(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	// A runaway query whose context never ends: only the fence stops it.
	ctx := &started{Context: context.Background(), ch: make(chan struct{})}
	ran := make(chan error, 1)
	go func() {
		_, err := st.SQL.Exec(ctx, `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c`)
		ran <- err
	}()
	<-ctx.ch
	st.Fence()
	if err := <-ran; err == nil {
		t.Fatal("the runaway query succeeded")
	}
	st.Fence() // twice is fine

	if _, err := st.SQL.Exec(context.Background(), `SELECT 1`); !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("Exec after Fence: %v", err)
	}
	if _, _, err := st.KV.Get(context.Background(), "k"); !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("Get after Fence: %v", err)
	}
	if err := st.KV.Put(context.Background(), "k2", nil); !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("Put after Fence: %v", err)
	}
	if err := st.EndCall(true); !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("EndCall after Fence: %v", err)
	}
	if err := commit(st, []byte("lost")); !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("Commit after Fence: %v", err)
	}
	if _, _, err := st.LoadState(context.Background()); !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("LoadState after Fence: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close after Fence: %v", err)
	}

	// The file is free at once, and holds only what was committed.
	st2 := openFileAt(t, path)
	state, _, err := st2.LoadState(context.Background())
	if err != nil || string(state) != "state" {
		t.Fatalf("state %q, %v", state, err)
	}
	call(t, st2, func(kv *engine.KV) error {
		if one, err := exec(t, st2, `SELECT count(*) AS n FROM t`).One(); err != nil || one["n"] != int64(0) {
			t.Fatalf("rows %v, %v: the fenced call's insert was kept", one, err)
		}
		if _, found, err := kv.Get(context.Background(), "k"); found || err != nil {
			t.Fatalf("the fenced call's key: %v, %v", found, err)
		}
		exec(t, st2, `INSERT INTO t VALUES (2)`)
		return nil
	})
	if err := commit(st2, nil); err != nil {
		t.Fatalf("commit on the fresh store: %v", err)
	}
}

func TestFenceCutsOffANodeStore(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "objects.db"))
	st := db.Store("C", id(1))
	if err := st.BeginCall(); err != nil {
		t.Fatal(err)
	}
	if err := st.KV.Put(context.Background(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	st.Fence()
	if _, _, err := st.KV.Get(context.Background(), "other"); !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("Get after Fence: %v", err)
	}
	st.EndCall(true)
	if err := commit(st, []byte("lost")); !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("Commit after Fence: %v", err)
	}
	fresh := db.Store("C", id(1))
	if _, found, err := fresh.LoadState(context.Background()); found || err != nil {
		t.Fatalf("state of the fenced store: found %v, %v", found, err)
	}
}
