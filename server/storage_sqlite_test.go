package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/durablego/durable"
	"github.com/durablego/durable/examples/session"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	sessionv1 "github.com/durablego/durable/gen/examples/session/v1"
	"github.com/durablego/durable/gen/examples/session/v1/sessionv1durable"
	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/probe"
	"github.com/durablego/durable/server"
)

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

// TestStorageOutOfMemoryFailsTheCallNotTheProcess: with the state cap
// lifted, states of tens of MiB run SQLite out of memory in the node
// database's writer; the call fails with ResourceExhausted and the server
// goes on serving every other object, and that one.
func TestStorageOutOfMemoryFailsTheCallNotTheProcess(t *testing.T) {
	e := newEnv(t, server.WithMaxStateSize(1<<30))
	sessions := registerSessions(t, e)
	ctx := context.Background()
	stub := sessions.Get(sessions.IDFromName("huge"))
	value := strings.Repeat("x", 16<<20)
	var err error
	for i := 0; i < 16 && err == nil; i++ {
		_, err = stub.SetData(ctx, &sessionv1.SetDataRequest{Key: fmt.Sprint(i), Value: value})
	}
	if !errors.Is(err, engine.ErrOutOfMemory) || connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("growing the state by 16 MiB a call: %v, want engine.ErrOutOfMemory with ResourceExhausted", err)
	}
	counter := e.counters.Get(e.counters.IDFromName("other"))
	for range 3 {
		if _, err := counter.Increment(ctx, &counterv1.IncrementRequest{Amount: 1}); err != nil {
			t.Fatalf("another object after the failure: %v", err)
		}
	}
	if _, err := stub.Touch(ctx, &sessionv1.TouchRequest{}); err != nil && connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("the object that failed, called again: %v", err)
	}
}

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

func registerSessions(t testing.TB, e *env) *sessionv1durable.SessionNamespace {
	t.Helper()
	sessions, err := sessionv1durable.RegisterSession(e.srv, session.Session{})
	if err != nil {
		t.Fatal(err)
	}
	return sessions
}
