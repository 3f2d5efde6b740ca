package servertest

import (
	"context"
	"errors"
	"fmt"
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

// testEveryKindOfWriteRollsBack checks that a method that fails or panics
// leaves its state, key-value and SQL writes undone, in one commit.
func testEveryKindOfWriteRollsBack(t *testing.T, d Deployment) {
	requireSQL(t, d)
	e := newEnv(t, d)
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

func testStorageLimitIsInvalidArgument(t *testing.T, d Deployment) {
	e := newEnv(t, d)
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

func testValidation(t *testing.T, d Deployment) {
	requireSQL(t, d)
	e := newEnv(t, d)
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

func testObjectsAreIsolated(t *testing.T, d Deployment) {
	requireSQL(t, d)
	e := newEnv(t, d)
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

func testSQLObjectSurvivesEvictionAndRestart(t *testing.T, d Deployment) {
	requireSQL(t, d)
	st := d.Storage(t)
	e := newEnvOn(t, st, server.WithIdleTimeout(5*time.Millisecond))
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

	e2 := newEnvOn(t, st)
	ledgers2 := registerLedger(t, e2)
	if r := read(t, ledgers2, "durable"); r.GetState().GetEntries() != 5 || len(r.GetRows()) != 5 || len(r.GetKeys()) != 5 {
		t.Fatalf("after restart: %v", r)
	}
}

func testSQLSizeCapFailsCleanly(t *testing.T, d Deployment) {
	requireSQL(t, d)
	e := newEnv(t, d, server.WithMaxSQLSize(64<<10))
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
