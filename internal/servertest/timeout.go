package servertest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/durablego/durable"
	"github.com/durablego/durable/client"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/probe"
	"github.com/durablego/durable/server"
)

// shortLimit is the call time limit of these tests: short, so that a stuck
// call is reset quickly, and long enough for ordinary calls on a loaded
// machine.
const shortLimit = 300 * time.Millisecond

// hang is a method body that ignores its context: armed, it blocks until
// released, then tries its storage again and reports what it got.
type hang struct {
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
	after   chan error
	once    sync.Once
}

func newHang(t testing.TB) *hang {
	h := &hang{entered: make(chan struct{}, 16), release: make(chan struct{}), after: make(chan error, 16)}
	// Registered after the env, so it runs before its Shutdown.
	t.Cleanup(h.free)
	return h
}

func (h *hang) free() { h.once.Do(func() { close(h.release) }) }

// block blocks if armed, ignoring ctx, then runs again, once released.
func (h *hang) block(again func() error) error {
	if !h.armed.CompareAndSwap(true, false) {
		return nil
	}
	h.entered <- struct{}{}
	<-h.release
	h.after <- again()
	return nil
}

// afterRelease frees the stuck goroutine and returns the error of its
// storage call.
func (h *hang) afterRelease(t testing.TB) error {
	t.Helper()
	h.free()
	select {
	case err := <-h.after:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("the stuck goroutine did not return")
		return nil
	}
}

func wantDeadline(t testing.TB, err error, method string) {
	t.Helper()
	var rpc *durable.RPCError
	if !errors.As(err, &rpc) || rpc.Code != connect.CodeDeadlineExceeded || rpc.Method != method ||
		!errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "time limit") {
		t.Fatalf("error %v (code %v), want a DeadlineExceeded RPCError of %s naming the time limit", err, connect.CodeOf(err), method)
	}
}

func testCallTimeoutEndsTheContext(t *testing.T, d Deployment) {
	e, m := metricsEnv(t, d, server.WithCallTimeout(shortLimit))
	stub := e.probes.Get(e.probes.IDFromName("patient"))
	ctx := context.Background()
	if _, err := stub.Add(ctx, &durabletestv1.AddRequest{Amount: 1}); err != nil {
		t.Fatal(err)
	}
	// Block waits for its gate or its context: the limit ends the context.
	_, err := stub.Block(ctx, &durabletestv1.BlockRequest{})
	wantDeadline(t, err, "Block")
	<-e.probe.Entered
	if v := probeValue(t, e, "patient"); v != 1 {
		t.Fatalf("value %d, want 1", v)
	}
	f := m.gather(t)
	if got := f.get("durable_evictions_total", "class", "Probe", "reason", "reset"); got != 0 {
		t.Fatalf("%v resets: a method that returns at its limit must not reset its object", got)
	}
	if got := f.get("durable_calls_total", "class", "Probe", "method", "Block", "code", "deadline_exceeded"); got != 1 {
		t.Fatalf("%v Block calls counted as deadline_exceeded, want 1", got)
	}
}

func testCallTimeoutResetsAStuckObject(t *testing.T, d Deployment) {
	e, m := metricsEnv(t, d, server.WithCallTimeout(shortLimit))
	h := newHang(t)
	e.probe.OnPut = func(_ context.Context, o *durabletestv1durable.ProbeObject) error {
		return h.block(func() error {
			_, _, err := o.Storage.Get(context.Background(), "kept")
			return err
		})
	}
	ctx := context.Background()
	stub := e.probes.Get(e.probes.IDFromName("stuck"))
	if _, err := stub.Put(ctx, &durabletestv1.PutRequest{Key: "kept", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	h.armed.Store(true)
	_, err := stub.Put(ctx, &durabletestv1.PutRequest{Key: "lost", Value: []byte("v")})
	wantDeadline(t, err, "Put")

	// A fresh instance serves the object, from what storage holds.
	if s := e.probeState(t, "stuck"); s.GetValue() != 1 || s.GetInitRuns() != 1 {
		t.Fatalf("state %v after the reset, want value 1 and Init run once", s)
	}
	if _, err := stub.Put(ctx, &durabletestv1.PutRequest{Key: "again", Value: []byte("v")}); err != nil {
		t.Fatalf("a call after the reset: %v", err)
	}

	// The stuck goroutine returns: its storage is cut off, and nothing it
	// did is committed.
	if err := h.afterRelease(t); !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("storage call of the stuck goroutine: %v, want ErrFenced", err)
	}
	list, err := stub.List(ctx, &durabletestv1.ListRequest{})
	if err != nil || !slices.Equal(list.GetKeys(), []string{"again", "kept"}) {
		t.Fatalf("keys %v, %v: want [again kept]", list.GetKeys(), err)
	}
	if v := probeValue(t, e, "stuck"); v != 2 {
		t.Fatalf("value %d, want 2", v)
	}
	f := m.gather(t)
	if got := f.get("durable_calls_total", "class", "Probe", "method", "Put", "code", "deadline_exceeded"); got != 1 {
		t.Fatalf("%v Put calls counted as deadline_exceeded, want 1", got)
	}
	if got := f.get("durable_evictions_total", "class", "Probe", "reason", "reset"); got != 1 {
		t.Fatalf("%v resets, want 1", got)
	}
}

func testCallTimeoutOverTheNetwork(t *testing.T, d Deployment) {
	e := newEnv(t, d, server.WithCallTimeout(shortLimit))
	e.serve(t)
	h := newHang(t)
	e.probe.OnPut = func(context.Context, *durabletestv1durable.ProbeObject) error {
		return h.block(func() error { return nil })
	}
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			probes := durabletestv1durable.NewProbeClient(h2cClient(), e.url, client.WithClientOptions(p.opts...))
			stub := probes.Get(probes.IDFromName("remote-" + p.name))
			h.armed.Store(true)
			_, err := stub.Put(context.Background(), &durabletestv1.PutRequest{Key: "k"})
			if connect.CodeOf(err) != connect.CodeDeadlineExceeded || !strings.Contains(err.Error(), "time limit") {
				t.Fatalf("error %v (code %v), want DeadlineExceeded naming the time limit", err, connect.CodeOf(err))
			}
			<-h.entered
			r, err := stub.Get(context.Background(), &durabletestv1.GetRequest{})
			if err != nil || r.GetState().GetValue() != 0 {
				t.Fatalf("after the reset: state %v, %v", r.GetState(), err)
			}
		})
	}
}

func testCallTimeoutResetsAStuckSQLObject(t *testing.T, d Deployment) {
	requireSQL(t, d)
	e := newEnv(t, d, server.WithCallTimeout(shortLimit))
	h := newHang(t)
	ledgers, err := durabletestv1durable.RegisterLedger(e.srv, probe.Ledger{OnRecord: func(_ context.Context, o *durabletestv1durable.LedgerObject) error {
		return h.block(func() error {
			_, err := o.SQL.Exec(context.Background(), `SELECT count(*) FROM entries`)
			return err
		})
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stub := ledgers.Get(ledgers.IDFromName("stuck"))
	if _, err := stub.Record(ctx, &durabletestv1.RecordRequest{Key: "kept"}); err != nil {
		t.Fatal(err)
	}
	h.armed.Store(true)
	_, err = stub.Record(ctx, &durabletestv1.RecordRequest{Key: "lost"})
	wantDeadline(t, err, "Record")

	// The fresh instance opens the same file: the stuck one's transaction
	// was rolled back, so it is neither busy nor holding "lost".
	if r := read(t, ledgers, "stuck"); r.GetState().GetEntries() != 1 || !slices.Equal(r.GetRows(), []string{"kept"}) || !slices.Equal(r.GetKeys(), []string{"kept"}) {
		t.Fatalf("after the reset: %v", r)
	}
	if _, err := stub.Record(ctx, &durabletestv1.RecordRequest{Key: "again"}); err != nil {
		t.Fatalf("a call after the reset: %v", err)
	}
	if err := h.afterRelease(t); !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("SQL of the stuck goroutine: %v, want ErrFenced", err)
	}
	if r := read(t, ledgers, "stuck"); r.GetState().GetEntries() != 2 || !slices.Equal(r.GetRows(), []string{"again", "kept"}) {
		t.Fatalf("at the end: %v", r)
	}
}

// runaway never ends by itself.
const runaway = `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c`

func testCallTimeoutInterruptsRunawySQL(t *testing.T, d Deployment) {
	requireSQL(t, d)
	for _, tc := range []struct {
		name string
		ctx  func(ctx context.Context) context.Context
	}{
		// With the call's context, the limit interrupts the query.
		{"call context", func(ctx context.Context) context.Context { return ctx }},
		// With a context that never ends, the reset's fence does.
		{"background", func(context.Context) context.Context { return context.Background() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, d, server.WithCallTimeout(shortLimit))
			var armed atomic.Bool
			returned := make(chan error, 1)
			ledgers, err := durabletestv1durable.RegisterLedger(e.srv, probe.Ledger{OnRecord: func(ctx context.Context, o *durabletestv1durable.LedgerObject) error {
				if !armed.CompareAndSwap(true, false) {
					return nil
				}
				_, err := o.SQL.Exec(tc.ctx(ctx), runaway)
				returned <- err
				return err
			}})
			if err != nil {
				t.Fatal(err)
			}
			stub := ledgers.Get(ledgers.IDFromName("runaway"))
			if _, err := stub.Record(context.Background(), &durabletestv1.RecordRequest{Key: "kept"}); err != nil {
				t.Fatal(err)
			}
			armed.Store(true)
			_, err = stub.Record(context.Background(), &durabletestv1.RecordRequest{Key: "lost"})
			wantDeadline(t, err, "Record")
			select {
			case err := <-returned:
				if err == nil {
					t.Fatal("the runaway query succeeded")
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the runaway query was not interrupted")
			}
			if r := read(t, ledgers, "runaway"); !slices.Equal(r.GetRows(), []string{"kept"}) {
				t.Fatalf("after the runaway call: %v", r)
			}
		})
	}
}

func testCallersThatGaveUpFreeTheirMailboxSlots(t *testing.T, d Deployment) {
	const size = 4
	e := newEnv(t, d, server.WithMailboxSize(size))
	id := e.probes.IDFromName("busy")
	stub := e.probes.Get(id)
	blocked := make(chan error, 1)
	go func() {
		_, err := stub.Block(context.Background(), &durabletestv1.BlockRequest{})
		blocked <- err
	}()
	<-e.probe.Entered

	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, size)
	for range size {
		go func() {
			_, err := stub.Add(ctx, &durabletestv1.AddRequest{Amount: 100})
			gaveUp <- err
		}()
	}
	eventually(t, "the mailbox is full", func() bool { return e.srv.QueuedCalls("Probe", id) == size })
	if _, err := stub.Add(context.Background(), &durabletestv1.AddRequest{Amount: 1}); !errors.Is(err, durable.ErrOverloaded) {
		t.Fatalf("with a full mailbox: %v, want ErrOverloaded", err)
	}
	cancel()
	for range size {
		if err := <-gaveUp; connect.CodeOf(err) != connect.CodeCanceled {
			t.Fatalf("a caller that gave up: %v", err)
		}
	}
	if n := e.srv.QueuedCalls("Probe", id); n != 0 {
		t.Fatalf("%d calls still queued after their callers gave up", n)
	}

	// A new caller is queued, and the calls given up never run.
	served := make(chan error, 1)
	go func() {
		_, err := stub.Add(context.Background(), &durabletestv1.AddRequest{Amount: 1})
		served <- err
	}()
	eventually(t, "the new call is queued", func() bool { return e.srv.QueuedCalls("Probe", id) == 1 })
	e.probe.Gate <- struct{}{}
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("the new caller: %v", err)
	}
	if v := probeValue(t, e, "busy"); v != 1 {
		t.Fatalf("value %d, want 1: calls whose callers gave up ran", v)
	}
}

func testAlarmThatOverrunsIsRetried(t *testing.T, d Deployment) {
	e := alarmEnv(t, d, server.WithAlarmRetry(5*time.Millisecond), server.WithCallTimeout(shortLimit))
	h := newHang(t)
	h.armed.Store(true)
	e.probe.OnAlarm = func(_ context.Context, o *durabletestv1durable.ProbeObject, _ durable.AlarmInfo) error {
		return h.block(func() error { return nil })
	}
	e.alarmAt(t, "late", time.Now())
	if r := e.nextRun(t); r.Info.RetryCount != 0 {
		t.Fatalf("first run: %+v", r.Info)
	}
	<-h.entered
	if r := e.nextRun(t); r.Info.RetryCount != 1 {
		t.Fatalf("the run after the overrun: %+v, want the first retry", r.Info)
	}
	eventually(t, "the retry is committed", func() bool { return e.probeState(t, "late").GetAlarmRuns() == 1 })
	if s := e.probeState(t, "late"); s.GetAlarmRetry() != 1 {
		t.Fatalf("state %v", s)
	}
}

func testShutdownWithAStuckObject(t *testing.T, d Deployment) {
	requireSQL(t, d)
	st := d.Storage(t)
	// No limit in reach: only Shutdown's deadline cuts the stuck calls.
	e := newEnvOn(t, st, server.WithCallTimeout(time.Hour))
	h := newHang(t)
	e.probe.OnPut = func(_ context.Context, o *durabletestv1durable.ProbeObject) error {
		return h.block(func() error { return o.Storage.Put(context.Background(), "late", nil) })
	}
	sql := newHang(t)
	ledgers, err := durabletestv1durable.RegisterLedger(e.srv, probe.Ledger{OnRecord: func(_ context.Context, o *durabletestv1durable.LedgerObject) error {
		return sql.block(func() error {
			_, err := o.SQL.Exec(context.Background(), `INSERT INTO entries (key) VALUES ('late')`)
			return err
		})
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	probes := e.probes.Get(e.probes.IDFromName("stuck"))
	ledger := ledgers.Get(ledgers.IDFromName("stuck"))
	h.armed.Store(true)
	sql.armed.Store(true)
	answers := make(chan error, 2)
	go func() {
		_, err := probes.Put(ctx, &durabletestv1.PutRequest{Key: "lost"})
		answers <- err
	}()
	go func() {
		_, err := ledger.Record(ctx, &durabletestv1.RecordRequest{Key: "lost"})
		answers <- err
	}()
	<-h.entered
	<-sql.entered

	e.closed = true
	sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := e.srv.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want its deadline's error", err)
	}
	for range 2 {
		if err := <-answers; !errors.Is(err, durable.ErrShutdown) {
			t.Fatalf("a stuck call: %v, want ErrShutdown", err)
		}
	}
	// The stuck goroutines return after Shutdown: their storage is cut
	// off, not closed under them.
	if err := h.afterRelease(t); !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("KV of the stuck goroutine: %v, want ErrFenced", err)
	}
	if err := sql.afterRelease(t); !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("SQL of the stuck goroutine: %v, want ErrFenced", err)
	}
	if err := e.release(); err != nil {
		t.Fatal(err)
	}

	e2 := newEnvOn(t, st)
	ledgers2, err := durabletestv1durable.RegisterLedger(e2.srv, probe.Ledger{})
	if err != nil {
		t.Fatal(err)
	}
	if v := probeValue(t, e2, "stuck"); v != 0 {
		t.Fatalf("value %d after the restart: the stuck call was committed", v)
	}
	if r := read(t, ledgers2, "stuck"); len(r.GetRows()) != 0 || r.GetState().GetEntries() != 0 {
		t.Fatalf("ledger after the restart: %v", r)
	}
}

func testCallContextHasTheEarlierDeadline(t *testing.T, d Deployment) {
	for _, tc := range []struct {
		name   string
		limit  time.Duration
		caller time.Duration
	}{
		{"limit first", shortLimit * 10, time.Hour},
		{"caller first", time.Hour, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, d, server.WithCallTimeout(tc.limit))
			var got time.Time
			var ok bool
			e.probe.OnPut = func(ctx context.Context, _ *durabletestv1durable.ProbeObject) error {
				got, ok = ctx.Deadline()
				return nil
			}
			ctx, cancel := context.WithTimeout(context.Background(), tc.caller)
			defer cancel()
			caller, _ := ctx.Deadline()
			if _, err := e.probes.Get(e.probes.IDFromName("deadline")).Put(ctx, &durabletestv1.PutRequest{Key: "k"}); err != nil {
				t.Fatal(err)
			}
			switch {
			case !ok:
				t.Fatal("the call's context has no deadline")
			case tc.caller < tc.limit && !got.Equal(caller):
				t.Fatalf("deadline %v, want the caller's %v", got, caller)
			case tc.limit < tc.caller && !got.Before(caller):
				t.Fatalf("deadline %v, want the limit's, before the caller's %v", got, caller)
			}
		})
	}
}

func testInitThatOverrunsFailsTheActivation(t *testing.T, d Deployment) {
	e := newEnv(t, d, server.WithCallTimeout(shortLimit))
	h := newHang(t)
	h.armed.Store(true)
	e.probe.OnInit = func(_ context.Context, o *durabletestv1durable.ProbeObject) error {
		return h.block(func() error { return o.Storage.Put(context.Background(), "k", nil) })
	}
	stub := e.probes.Get(e.probes.IDFromName("slow-init"))
	_, err := stub.Get(context.Background(), &durabletestv1.GetRequest{})
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "Init overran its time limit") {
		t.Fatalf("a call waiting for an Init that overran: %v (code %v)", err, connect.CodeOf(err))
	}
	<-h.entered
	// The next call activates a fresh instance, whose Init returns.
	if s := e.probeState(t, "slow-init"); s.GetInitRuns() != 1 {
		t.Fatalf("state %v, want Init run once", s)
	}
	if err := h.afterRelease(t); !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("storage of the stuck Init: %v, want ErrFenced", err)
	}
	if s := e.probeState(t, "slow-init"); s.GetInitRuns() != 1 {
		t.Fatalf("state %v after the stuck Init returned", s)
	}
}

// testCallTimeoutCountsFromEachCallsStart: a call queued behind a slow one
// in the same batch gets its whole limit, although the limit of a batch's
// later calls first counts from the batch's start (to spare a clock read
// per call): the watchdog gives such a call a full limit from when it
// finds it past that.
func testCallTimeoutCountsFromEachCallsStart(t *testing.T, d Deployment) {
	const limit = 400 * time.Millisecond
	e := newEnv(t, d, server.WithCallTimeout(limit))
	work := func(ctx context.Context, d time.Duration) error {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		return nil
	}
	e.probe.OnPut = func(ctx context.Context, o *durabletestv1durable.ProbeObject) error {
		return work(ctx, 3*limit/4) // together, the two Puts run past one limit
	}
	ctx := context.Background()
	id := e.probes.IDFromName("batched")
	stub := e.probes.Get(id)
	blocked := make(chan error, 1)
	go func() { _, err := stub.Block(ctx, &durabletestv1.BlockRequest{}); blocked <- err }()
	<-e.probe.Entered
	puts := make(chan error, 2)
	for _, key := range []string{"first", "second"} {
		go func() { _, err := stub.Put(ctx, &durabletestv1.PutRequest{Key: key}); puts <- err }()
	}
	for deadline := time.Now().Add(10 * time.Second); e.srv.QueuedCalls("Probe", id) < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the two Puts never queued behind Block")
		}
	}
	e.probe.Gate <- struct{}{} // the Puts now run as one batch
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-puts; err != nil {
			t.Fatalf("a Put within its own limit failed: %v", err)
		}
	}
}
