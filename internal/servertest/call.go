package servertest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/durablego/durable"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/internal/probe"
	"github.com/durablego/durable/server"
)

func testCounterInProcess(t *testing.T, d Deployment) {
	e := newEnv(t, d)
	ctx := context.Background()
	stub := e.counters.Get(e.counters.IDFromName("user-123"))

	steps := []struct {
		name string
		call func() (int64, error)
		want int64
	}{
		{"increment by absent amount adds 1", func() (int64, error) {
			r, err := stub.Increment(ctx, &counterv1.IncrementRequest{})
			return r.GetValue(), err
		}, 1},
		{"increment by 5", func() (int64, error) {
			r, err := stub.Increment(ctx, &counterv1.IncrementRequest{Amount: 5})
			return r.GetValue(), err
		}, 6},
		{"decrement by 2", func() (int64, error) {
			r, err := stub.Decrement(ctx, &counterv1.DecrementRequest{Amount: 2})
			return r.GetValue(), err
		}, 4},
		{"decrement floors at zero", func() (int64, error) {
			r, err := stub.Decrement(ctx, &counterv1.DecrementRequest{Amount: 100})
			return r.GetValue(), err
		}, 0},
		{"increment after floor", func() (int64, error) {
			r, err := stub.Increment(ctx, &counterv1.IncrementRequest{Amount: 3})
			return r.GetValue(), err
		}, 3},
		{"get value", func() (int64, error) {
			r, err := stub.GetValue(ctx, &counterv1.GetValueRequest{})
			return r.GetValue(), err
		}, 3},
		{"reset", func() (int64, error) {
			r, err := stub.Reset(ctx, &counterv1.ResetRequest{})
			return r.GetValue(), err
		}, 0},
		{"get after reset", func() (int64, error) {
			r, err := stub.GetValue(ctx, &counterv1.GetValueRequest{})
			return r.GetValue(), err
		}, 0},
	}
	for _, s := range steps {
		got, err := s.call()
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got != s.want {
			t.Fatalf("%s: value %d, want %d", s.name, got, s.want)
		}
	}

	other := e.counters.Get(e.counters.IDFromName("user-456"))
	if r, err := other.GetValue(ctx, &counterv1.GetValueRequest{}); err != nil || r.GetValue() != 0 {
		t.Fatalf("another counter: value %d, err %v; want 0, nil", r.GetValue(), err)
	}
}

func testConcurrentCallsAreSerialized(t *testing.T, d Deployment) {
	e := newEnv(t, d)
	stub := e.counters.Get(e.counters.IDFromName("hot"))
	const callers, each = 64, 40
	seen := make([]int64, 0, callers*each)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range each {
				r, err := stub.Increment(context.Background(), &counterv1.IncrementRequest{Amount: 1})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen = append(seen, r.GetValue())
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// Strictly serialized calls return every value from 1 to the total
	// exactly once; a lost update would repeat one and skip another.
	got := make(map[int64]bool, len(seen))
	for _, v := range seen {
		if got[v] {
			t.Fatalf("value %d returned twice: calls ran concurrently", v)
		}
		got[v] = true
	}
	for v := int64(1); v <= callers*each; v++ {
		if !got[v] {
			t.Fatalf("value %d never returned", v)
		}
	}
	r, err := stub.GetValue(context.Background(), &counterv1.GetValueRequest{})
	if err != nil || r.GetValue() != callers*each {
		t.Fatalf("final value %d, err %v; want %d", r.GetValue(), err, callers*each)
	}
}

func testMethodErrorRollsBackState(t *testing.T, d Deployment) {
	e := newEnv(t, d)
	ctx := context.Background()
	stub := e.probes.Get(e.probes.IDFromName("p"))
	if _, err := stub.Add(ctx, &durabletestv1.AddRequest{Amount: 5}); err != nil {
		t.Fatal(err)
	}

	_, err := stub.Add(ctx, &durabletestv1.AddRequest{Amount: 7, Fail: true})
	var rpc *durable.RPCError
	if !errors.As(err, &rpc) {
		t.Fatalf("error %v (%T), want *durable.RPCError", err, err)
	}
	if rpc.Class != "Probe" || rpc.Method != "Add" || rpc.Code != connect.CodeUnknown || rpc.Message != probe.ErrAsked.Error() {
		t.Errorf("RPCError = %+v", rpc)
	}
	if !errors.Is(err, probe.ErrAsked) {
		t.Errorf("errors.Is(err, the method's error) = false; Unwrap must reach it in process")
	}

	_, err = stub.Add(ctx, &durabletestv1.AddRequest{Amount: 7, Fail: true, Code: int32(connect.CodeFailedPrecondition)})
	if !errors.As(err, &rpc) || rpc.Code != connect.CodeFailedPrecondition {
		t.Fatalf("error %v, want an RPCError with the method's code FailedPrecondition", err)
	}
	if connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Errorf("connect.CodeOf = %v, want the method's own code", connect.CodeOf(err))
	}

	if v := probeValue(t, e, "p"); v != 5 {
		t.Fatalf("value after failed calls = %d, want 5: the failed calls' changes must be undone", v)
	}
}

func testPanicBecomesInternalErrorAndRollsBack(t *testing.T, d Deployment) {
	e := newEnv(t, d)
	ctx := context.Background()
	stub := e.probes.Get(e.probes.IDFromName("p"))
	if _, err := stub.Add(ctx, &durabletestv1.AddRequest{Amount: 2}); err != nil {
		t.Fatal(err)
	}
	_, err := stub.Add(ctx, &durabletestv1.AddRequest{Amount: 40, Panic: true})
	var rpc *durable.RPCError
	if !errors.As(err, &rpc) || rpc.Code != connect.CodeInternal || rpc.Method != "Add" {
		t.Fatalf("error %v, want an Internal RPCError for Add", err)
	}
	if v := probeValue(t, e, "p"); v != 2 {
		t.Fatalf("value after panic = %d, want 2", v)
	}
	// The object, and the server, keep working.
	if r, err := stub.Add(ctx, &durabletestv1.AddRequest{Amount: 1}); err != nil || r.GetValue() != 3 {
		t.Fatalf("after panic: value %d, err %v; want 3", r.GetValue(), err)
	}
}

// testFailedCallInBatchKeepsOthers queues calls behind a blocked one so that
// they run as one group-committed batch, and checks that the failing ones in
// the middle undo only their own changes.
func testFailedCallInBatchKeepsOthers(t *testing.T, d Deployment) {
	e := newEnv(t, d)
	ctx := context.Background()
	stub := e.probes.Get(e.probes.IDFromName("batch"))

	blocked := make(chan error, 1)
	go func() {
		_, err := stub.Block(ctx, &durabletestv1.BlockRequest{})
		blocked <- err
	}()
	<-e.probe.Entered

	reqs := []*durabletestv1.AddRequest{
		{Amount: 1}, {Amount: 10, Fail: true}, {Amount: 100}, {Amount: 1000, Panic: true}, {Amount: 10000},
	}
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Go(func() { _, errs[i] = stub.Add(ctx, req) })
	}
	// All five are queued once the mailbox holds them; then release.
	eventually(t, "five calls are queued", func() bool { return e.srv.QueuedCalls("Probe", stub.ID()) == len(reqs) })
	e.probe.Gate <- struct{}{}
	wg.Wait()
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	for i, req := range reqs {
		if failed := errs[i] != nil; failed != (req.Fail || req.Panic) {
			t.Errorf("call %d (%v): err %v", i, req, errs[i])
		}
	}
	if v := probeValue(t, e, "batch"); v != 10101 {
		t.Fatalf("value = %d, want 10101", v)
	}
}

func testInitRunsOnceAndFailureIsRetried(t *testing.T, d Deployment) {
	e := newEnv(t, d, server.WithIdleTimeout(5*time.Millisecond))
	ctx := context.Background()
	stub := e.probes.Get(e.probes.IDFromName("init"))

	e.probe.InitFail.Store(true)
	_, err := stub.Add(ctx, &durabletestv1.AddRequest{Amount: 1})
	var rpc *durable.RPCError
	if !errors.As(err, &rpc) || !strings.Contains(rpc.Message, "Init") {
		t.Fatalf("error %v, want an RPCError that names Init", err)
	}
	e.probe.InitFail.Store(false)
	if _, err := stub.Add(ctx, &durabletestv1.AddRequest{Amount: 1}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the object is evicted", func() bool { return e.srv.ActiveObjects() == 0 })
	r, err := stub.Get(ctx, &durabletestv1.GetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetState().GetInitRuns() != 1 || r.GetState().GetValue() != 1 {
		t.Fatalf("state %v, want init_runs 1 (Init does not run on reactivation), value 1", r.GetState())
	}
}

func probeValue(t testing.TB, e *env, name string) int64 {
	t.Helper()
	r, err := e.probes.Get(e.probes.IDFromName(name)).Get(context.Background(), &durabletestv1.GetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return r.GetState().GetValue()
}
