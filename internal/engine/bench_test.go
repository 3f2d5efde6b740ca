package engine_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/durablego/durable/internal/engine"
)

// benchStores runs a benchmark on both kinds of store.
func benchStores(b *testing.B, fn func(b *testing.B, st *engine.Store)) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) { fn(b, be.open(b, b.TempDir())) })
	}
}

// BenchmarkKVPut: one call putting one key, committed, per iteration.
func BenchmarkKVPut(b *testing.B) {
	benchStores(b, func(b *testing.B, st *engine.Store) {
		ctx := context.Background()
		value := make([]byte, 100)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			call(b, st, func(kv *engine.KV) error { return kv.Put(ctx, fmt.Sprint("key", i%1000), value) })
			if err := commit(st, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkKVGet: a committed key read from the database (not from the
// write buffers) per iteration.
func BenchmarkKVGet(b *testing.B) {
	benchStores(b, func(b *testing.B, st *engine.Store) {
		ctx := context.Background()
		call(b, st, func(kv *engine.KV) error {
			for i := range 100 {
				kv.Put(ctx, fmt.Sprint("key", i), make([]byte, 100))
			}
			return nil
		})
		if err := commit(st, nil); err != nil {
			b.Fatal(err)
		}
		st.BeginCall()
		defer st.EndCall(true)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, ok, err := st.KV.Get(ctx, fmt.Sprint("key", i%100)); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
}

// BenchmarkKVList1000: List of 1,000 committed keys under a prefix.
func BenchmarkKVList1000(b *testing.B) {
	benchStores(b, func(b *testing.B, st *engine.Store) {
		ctx := context.Background()
		for batch := range 10 {
			call(b, st, func(kv *engine.KV) error {
				for i := range 100 {
					kv.Put(ctx, fmt.Sprintf("item:%04d", batch*100+i), make([]byte, 100))
				}
				kv.Put(ctx, fmt.Sprint("other:", batch), nil)
				return nil
			})
		}
		if err := commit(st, nil); err != nil {
			b.Fatal(err)
		}
		st.BeginCall()
		defer st.EndCall(true)
		b.ReportAllocs()
		for b.Loop() {
			entries, err := st.KV.List(ctx, engine.ListOptions{Prefix: "item:"})
			if err != nil || len(entries) != 1000 {
				b.Fatal(len(entries), err)
			}
		}
	})
}

// BenchmarkSQLInsert: one call inserting one row, committed, per iteration.
func BenchmarkSQLInsert(b *testing.B) {
	st := openFile(b)
	ctx := context.Background()
	call(b, st, func(*engine.KV) error {
		_, err := st.SQL.Exec(ctx, `CREATE TABLE events (id INTEGER PRIMARY KEY, name TEXT, ts INTEGER);
			CREATE INDEX events_ts ON events (ts)`)
		return err
	})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		call(b, st, func(*engine.KV) error {
			_, err := st.SQL.Exec(ctx, `INSERT INTO events (name, ts) VALUES (?, ?)`, "view", i)
			return err
		})
		if err := commit(st, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSQLIndexedSelect: a range of 10 rows through an index, among
// 10,000.
func BenchmarkSQLIndexedSelect(b *testing.B) {
	st := openFile(b)
	ctx := context.Background()
	call(b, st, func(*engine.KV) error {
		_, err := st.SQL.Exec(ctx, `CREATE TABLE events (id INTEGER PRIMARY KEY, name TEXT, ts INTEGER);
			CREATE INDEX events_ts ON events (ts);
			WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 9999)
			INSERT INTO events (name, ts) SELECT 'e' || i, i FROM n`)
		return err
	})
	if err := commit(st, nil); err != nil {
		b.Fatal(err)
	}
	st.BeginCall()
	defer st.EndCall(true)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		cur, err := st.SQL.Exec(ctx, `SELECT name, ts FROM events WHERE ts >= ? ORDER BY ts LIMIT 10`, i%9990)
		if err != nil || len(cur.All()) != 10 {
			b.Fatal(err)
		}
	}
}

// BenchmarkGroupCommit: 64 writers, each an object of its own, committing
// one state change per batch to the node database.
func BenchmarkGroupCommit(b *testing.B) {
	db := openDB(b, filepath.Join(b.TempDir(), "objects.db"))
	state := make([]byte, 64)
	b.SetParallelism(32)
	var next atomicInt
	b.RunParallel(func(pb *testing.PB) {
		st := db.Store("C", id(next.add()))
		for pb.Next() {
			if err := commit(st, state); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

type atomicInt struct{ n atomic.Int64 }

func (a *atomicInt) add() int { return int(a.n.Add(1)) }

// BenchmarkNewFileFirstWrite: the life of a new SQL object whose first call
// writes: OpenFile of a file that does not exist, a call creating a table
// and inserting a row, the commit that creates the file, and Close.
func BenchmarkNewFileFirstWrite(b *testing.B) {
	dir := b.TempDir()
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		st, err := engine.OpenFile(filepath.Join(dir, fmt.Sprint(i, ".db")))
		if err != nil {
			b.Fatal(err)
		}
		call(b, st, func(*engine.KV) error {
			_, err := st.SQL.Exec(ctx, `CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, name TEXT, ts INTEGER);
				INSERT INTO events (name, ts) VALUES ('view', 1)`)
			return err
		})
		if err := commit(st, []byte("state")); err != nil {
			b.Fatal(err)
		}
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
