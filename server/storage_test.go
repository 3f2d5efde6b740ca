package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/durablego/durable"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/probe"
	"github.com/durablego/durable/server"
)

func registerLedger(t testing.TB, e *env) *durabletestv1durable.LedgerNamespace {
	t.Helper()
	ledgers, err := durabletestv1durable.RegisterLedger(e.srv, probe.Ledger{})
	if err != nil {
		t.Fatal(err)
	}
	return ledgers
}

func read(t testing.TB, ledgers *durabletestv1durable.LedgerNamespace, name string) *durabletestv1.ReadResponse {
	t.Helper()
	r, err := ledgers.Get(ledgers.IDFromName(name)).Read(context.Background(), &durabletestv1.ReadRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestEveryKindOfWriteRollsBack checks that a method that fails or panics
// leaves its state, key-value and SQL writes undone, in one commit.
func TestEveryKindOfWriteRollsBack(t *testing.T) {
	e := newEnv(t)
	ledgers := registerLedger(t, e)
	ctx := context.Background()
	stub := ledgers.Get(ledgers.IDFromName("l"))
	if _, err := stub.Record(ctx, &durabletestv1.RecordRequest{Key: "a"}); err != nil {
		t.Fatal(err)
	}
	_, err := stub.Record(ctx, &durabletestv1.RecordRequest{Key: "b", Fail: true})
	if !errors.Is(err, probe.ErrAsked) {
		t.Fatalf("failing Record: %v", err)
	}
	_, err = stub.Record(ctx, &durabletestv1.RecordRequest{Key: "c", Panic: true})
	var rpc *durable.RPCError
	if !errors.As(err, &rpc) || rpc.Code != connect.CodeInternal {
		t.Fatalf("panicking Record: %v", err)
	}
	r := read(t, ledgers, "l")
	if r.GetState().GetEntries() != 1 || !slices.Equal(r.GetKeys(), []string{"a"}) || !slices.Equal(r.GetRows(), []string{"a"}) {
		t.Fatalf("after failures: %v", r)
	}

	// The same for an object whose storage is in the node database.
	p := e.probes.Get(e.probes.IDFromName("kv"))
	if _, err := p.Put(ctx, &durabletestv1.PutRequest{Key: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Put(ctx, &durabletestv1.PutRequest{Key: "y", Fail: true}); !errors.Is(err, probe.ErrAsked) {
		t.Fatalf("failing Put: %v", err)
	}
	l, err := p.List(ctx, &durabletestv1.ListRequest{})
	if err != nil || !slices.Equal(l.GetKeys(), []string{"x"}) || probeValue(t, e, "kv") != 1 {
		t.Fatalf("after a failed Put: keys %v, value %d, err %v", l.GetKeys(), probeValue(t, e, "kv"), err)
	}
}

func TestStorageLimitIsInvalidArgument(t *testing.T) {
	e := newEnv(t)
	_, err := e.probes.Get(e.probes.IDFromName("big")).Put(context.Background(),
		&durabletestv1.PutRequest{Key: "k", Value: make([]byte, engine.MaxValueSize+1)})
	var rpc *durable.RPCError
	if !errors.Is(err, engine.ErrValueTooLarge) || !errors.As(err, &rpc) || rpc.Code != connect.CodeInvalidArgument {
		t.Fatalf("oversized value: %v", err)
	}
	if v := probeValue(t, e, "big"); v != 0 {
		t.Fatalf("value %d after a refused write", v)
	}
}

func TestValidation(t *testing.T) {
	e := newEnv(t)
	ledgers := registerLedger(t, e)
	ctx := context.Background()
	stub := ledgers.Get(ledgers.IDFromName("v"))
	if _, err := stub.Record(ctx, &durabletestv1.RecordRequest{Key: "a", Owner: "ann"}); err != nil {
		t.Fatal(err)
	}
	// A request that breaks its rules never reaches the method.
	_, err := stub.Record(ctx, &durabletestv1.RecordRequest{Key: ""})
	var rpc *durable.RPCError
	if !errors.As(err, &rpc) || rpc.Code != connect.CodeInvalidArgument || !strings.Contains(rpc.Message, "key") {
		t.Fatalf("invalid request: %v", err)
	}
	// A call that would leave the state breaking its rules is rolled back.
	_, err = stub.Record(ctx, &durabletestv1.RecordRequest{Key: "b", Owner: "a name much longer than sixteen"})
	if !errors.As(err, &rpc) || rpc.Code != connect.CodeInvalidArgument || !strings.Contains(rpc.Message, "owner") {
		t.Fatalf("invalid state: %v", err)
	}
	_, err = stub.Record(ctx, &durabletestv1.RecordRequest{Key: "c", Entries: 2_000_000_000})
	if !errors.As(err, &rpc) || rpc.Code != connect.CodeInvalidArgument || !strings.Contains(rpc.Message, "entries") {
		t.Fatalf("invalid state: %v", err)
	}
	r := read(t, ledgers, "v")
	if r.GetState().GetOwner() != "ann" || r.GetState().GetEntries() != 1 || !slices.Equal(r.GetRows(), []string{"a"}) {
		t.Fatalf("after invalid calls: %v", r)
	}
}

func TestObjectsAreIsolated(t *testing.T) {
	e := newEnv(t)
	ledgers := registerLedger(t, e)
	ctx := context.Background()
	for _, name := range []string{"one", "two"} {
		if _, err := ledgers.Get(ledgers.IDFromName(name)).Record(ctx, &durabletestv1.RecordRequest{Key: "only-" + name}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.probes.Get(e.probes.IDFromName(name)).Put(ctx, &durabletestv1.PutRequest{Key: "only-" + name}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"one", "two"} {
		r := read(t, ledgers, name)
		if !slices.Equal(r.GetRows(), []string{"only-" + name}) || !slices.Equal(r.GetKeys(), []string{"only-" + name}) {
			t.Fatalf("ledger %s sees %v", name, r)
		}
		l, err := e.probes.Get(e.probes.IDFromName(name)).List(ctx, &durabletestv1.ListRequest{})
		if err != nil || !slices.Equal(l.GetKeys(), []string{"only-" + name}) {
			t.Fatalf("probe %s sees %v, %v", name, l.GetKeys(), err)
		}
	}
}

func TestSQLObjectSurvivesEvictionAndRestart(t *testing.T) {
	dir := t.TempDir()
	e := newEnvIn(t, dir, server.WithIdleTimeout(5*time.Millisecond))
	ledgers := registerLedger(t, e)
	ctx := context.Background()
	for i := range 5 {
		if _, err := ledgers.Get(ledgers.IDFromName("durable")).Record(ctx, &durabletestv1.RecordRequest{Key: fmt.Sprint("k", i)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the ledger is evicted", func() bool { return e.srv.ActiveObjects() == 0 })
	if r := read(t, ledgers, "durable"); r.GetState().GetEntries() != 5 || len(r.GetRows()) != 5 || len(r.GetKeys()) != 5 {
		t.Fatalf("after eviction: %v", r)
	}
	e.shutdown(t)

	e2 := newEnvIn(t, dir)
	ledgers2 := registerLedger(t, e2)
	if r := read(t, ledgers2, "durable"); r.GetState().GetEntries() != 5 || len(r.GetRows()) != 5 || len(r.GetKeys()) != 5 {
		t.Fatalf("after restart: %v", r)
	}
}

func TestSQLSizeCapFailsCleanly(t *testing.T) {
	e := newEnv(t, server.WithMaxSQLSize(64<<10))
	ledgers := registerLedger(t, e)
	ctx := context.Background()
	stub := ledgers.Get(ledgers.IDFromName("full"))
	var err error
	recorded := 0
	for i := range 200 {
		key := fmt.Sprintf("%04d%s", i, strings.Repeat("x", 2000))
		if _, err = stub.Record(ctx, &durabletestv1.RecordRequest{Key: key}); err != nil {
			break
		}
		recorded++
	}
	var rpc *durable.RPCError
	if !errors.Is(err, engine.ErrDatabaseFull) || !errors.As(err, &rpc) || rpc.Code != connect.CodeResourceExhausted {
		t.Fatalf("after %d records: %v, want ErrDatabaseFull with ResourceExhausted", recorded, err)
	}
	if r := read(t, ledgers, "full"); int(r.GetState().GetEntries()) != recorded || len(r.GetRows()) != recorded {
		t.Fatalf("after the refused write: %d entries, %d rows, want %d", r.GetState().GetEntries(), len(r.GetRows()), recorded)
	}
}

// BenchmarkHotObjectKVPut: 64 callers on one object, each call putting one
// key-value entry and changing the state.
func BenchmarkHotObjectKVPut(b *testing.B) {
	e := newEnv(b)
	stub := e.probes.Get(e.probes.IDFromName("hot-kv"))
	b.SetParallelism(parallelism())
	b.ReportAllocs()
	start := time.Now()
	var next atomicCounter
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		me := next.add()
		value := make([]byte, 100)
		for i := 0; pb.Next(); i++ {
			if _, err := stub.Put(ctx, &durabletestv1.PutRequest{Key: fmt.Sprint(me, ":", i%100), Value: value}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, start)
}

// BenchmarkHotSQLObject: 64 callers on one object with SQL, each call
// inserting a row, putting an entry and changing the state.
func BenchmarkHotSQLObject(b *testing.B) {
	e := newEnv(b)
	ledgers := registerLedger(b, e)
	stub := ledgers.Get(ledgers.IDFromName("hot-sql"))
	b.SetParallelism(parallelism())
	b.ReportAllocs()
	start := time.Now()
	var next atomicCounter
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		me := next.add()
		for i := 0; pb.Next(); i++ {
			if _, err := stub.Record(ctx, &durabletestv1.RecordRequest{Key: fmt.Sprint(me, ":", i)}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, start)
}

func TestCorruptNodeDatabaseFailsClearly(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "objects.db"), bytes.Repeat([]byte("not sqlite "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := server.New(server.WithDataDir(dir))
	if err == nil || !strings.Contains(err.Error(), "not a database") {
		t.Fatalf("New on a corrupt database: %v", err)
	}
}

func TestCorruptObjectDatabaseFailsItsCallsOnly(t *testing.T) {
	dir := t.TempDir()
	e := newEnvIn(t, dir)
	ledgers := registerLedger(t, e)
	ctx := context.Background()
	if _, err := ledgers.Get(ledgers.IDFromName("broken")).Record(ctx, &durabletestv1.RecordRequest{Key: "a"}); err != nil {
		t.Fatal(err)
	}
	e.shutdown(t)
	files, _ := filepath.Glob(filepath.Join(dir, "sql", "Ledger", "*.db"))
	if len(files) != 1 {
		t.Fatalf("object database files: %v", files)
	}
	for _, f := range append(files, files[0]+"-wal", files[0]+"-shm") {
		os.Remove(f)
	}
	if err := os.WriteFile(files[0], bytes.Repeat([]byte("garbage "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}

	e2 := newEnvIn(t, dir)
	ledgers2 := registerLedger(t, e2)
	_, err := ledgers2.Get(ledgers2.IDFromName("broken")).Read(ctx, &durabletestv1.ReadRequest{})
	var rpc *durable.RPCError
	if !errors.As(err, &rpc) || rpc.Code != connect.CodeInternal || !strings.Contains(rpc.Message, "not a database") {
		t.Fatalf("call to a corrupt object: %v", err)
	}
	// Other objects, and the server, are unaffected.
	if r := read(t, ledgers2, "healthy"); r.GetState().GetEntries() != 0 {
		t.Fatalf("healthy ledger: %v", r)
	}
}
