package server_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/durablego/durable"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/server"
)

// sqlRunner is an SQL class registered by hand whose one method runs the
// request's key as SQL, after waiting on gate when the request asks to
// (Entries > 0), so that a test can hold an object busy.
type sqlRunner struct {
	ns      *server.Namespace[*durabletestv1.LedgerState]
	gate    chan struct{}
	entered chan struct{}
}

func newSQLRunner(t testing.TB, e *env) *sqlRunner {
	t.Helper()
	ns, err := server.Register[*durabletestv1.LedgerState](e.srv, server.Class{Name: "SQLRunner", SQL: true}, struct{}{})
	if err != nil {
		t.Fatal(err)
	}
	return &sqlRunner{ns: ns, gate: make(chan struct{}), entered: make(chan struct{}, 1)}
}

func (r *sqlRunner) run(ctx context.Context, name, query string, wait bool) error {
	req := &durabletestv1.RecordRequest{Key: query}
	if wait {
		req.Entries = 1
	}
	_, err := server.Invoke(ctx, r.ns, r.ns.IDFromName(name), "Run", req,
		func(ctx context.Context, o *durable.Object[*durabletestv1.LedgerState], req *durabletestv1.RecordRequest) (*durabletestv1.RecordResponse, error) {
			if _, err := o.SQL.Exec(ctx, req.GetKey()); err != nil {
				return nil, err
			}
			if req.GetEntries() > 0 {
				r.entered <- struct{}{}
				<-r.gate
			}
			return &durabletestv1.RecordResponse{}, nil
		})
	return err
}

// TestSQLFileBudgetExhausted holds the only SQL file of the budget in an
// object busy in a call: another object's first write cannot get a file,
// and fails after the bounded wait with ResourceExhausted and
// storage.ErrTooManyOpenFiles, naming the budget, never with SQLite's
// "unable to open database file". Once the busy object is done it leaves,
// having been asked to, and the write goes through.
func TestSQLFileBudgetExhausted(t *testing.T) {
	e := newEnv(t, server.WithIdleTimeout(time.Hour), server.WithMaxOpenSQLFiles(1))
	r := newSQLRunner(t, e)
	ctx := context.Background()
	if err := r.run(ctx, "holder", `CREATE TABLE t (x)`, false); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := r.run(ctx, "holder", `SELECT 1`, true); err != nil {
			t.Error(err)
		}
	})
	<-r.entered
	err := r.run(ctx, "other", `CREATE TABLE t (x)`, false)
	var rpc *durable.RPCError
	if !errors.As(err, &rpc) || rpc.Code != connect.CodeResourceExhausted || !errors.Is(err, engine.ErrTooManyOpenFiles) ||
		!strings.Contains(err.Error(), "WithMaxOpenSQLFiles") || strings.Contains(err.Error(), "unable to open") {
		t.Fatalf("first write with the budget held by a busy object: %v", err)
	}
	close(r.gate)
	wg.Wait()
	if err := r.run(ctx, "other", `CREATE TABLE t (x)`, false); err != nil {
		t.Fatalf("first write once the holder is idle: %v", err)
	}
	// The write created the file; the object's next call opens it.
	if err := r.run(ctx, "other", `SELECT 1`, false); err != nil {
		t.Fatalf("the call after the first write: %v", err)
	}
	if n := e.srv.OpenSQLFiles(); n != 1 {
		t.Fatalf("%d SQL files open, want 1", n)
	}
}

// pastMemoryLimit needs more than an SQL connection's memory (256 MiB)
// within Cloudflare's limits (no value over 2 MB, 100 columns): a subquery
// that is not flattened (OFFSET) holds 100 values of 2 MB while the outer
// query makes a copy of each.
var pastMemoryLimit = func() string {
	inner, outer := make([]string, engine.MaxSQLColumns), make([]string, engine.MaxSQLColumns)
	for i := range inner {
		inner[i] = fmt.Sprintf("printf('%%.*c', %d, 'x') AS a%d", engine.MaxSQLValueSize-1000, i)
		outer[i] = fmt.Sprintf("a%d || ''", i)
	}
	return "SELECT " + strings.Join(outer, ", ") + " FROM (SELECT " + strings.Join(inner, ", ") + " LIMIT 1 OFFSET 0)"
}()

// TestSQLOutOfMemoryLeavesNothingOpen runs a query past the SQL
// connection's memory limit on a real server: the caller gets
// ResourceExhausted (storage.ErrOutOfMemory), the object keeps working,
// and when it leaves memory its connection closes without a complaint.
// Before, the statement stayed unfinalized: Close failed with "unable to
// close due to unfinalized statements" and the connection's memory (up to
// 256 MiB) stayed allocated for the life of the process.
func TestSQLOutOfMemoryLeavesNothingOpen(t *testing.T) {
	var logs logBuffer
	e := newEnv(t, server.WithIdleTimeout(10*time.Millisecond),
		server.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	r := newSQLRunner(t, e)
	ctx := context.Background()
	if err := r.run(ctx, "oom", `CREATE TABLE t (x)`, false); err != nil {
		t.Fatal(err)
	}
	err := r.run(ctx, "oom", pastMemoryLimit, false)
	var rpc *durable.RPCError
	if !errors.As(err, &rpc) || rpc.Code != connect.CodeResourceExhausted || !errors.Is(err, engine.ErrOutOfMemory) {
		t.Fatalf("query past the memory limit: %v", err)
	}
	if err := r.run(ctx, "oom", `INSERT INTO t VALUES (1)`, false); err != nil {
		t.Fatalf("the object after running out of memory: %v", err)
	}
	eventually(t, "the object leaves memory", func() bool { return e.srv.ActiveObjects() == 0 })
	e.shutdown(t)
	if logs.String() != "" {
		t.Fatalf("warnings: %s", logs.String())
	}
}
