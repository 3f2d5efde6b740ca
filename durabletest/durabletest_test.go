package durabletest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/durablego/durable"
	"github.com/durablego/durable/client"
	"github.com/durablego/durable/durabletest"
	"github.com/durablego/durable/examples/analytics"
	"github.com/durablego/durable/examples/counter"
	"github.com/durablego/durable/examples/session"
	analyticsv1 "github.com/durablego/durable/gen/examples/analytics/v1"
	"github.com/durablego/durable/gen/examples/analytics/v1/analyticsv1durable"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	sessionv1 "github.com/durablego/durable/gen/examples/session/v1"
	"github.com/durablego/durable/gen/examples/session/v1/sessionv1durable"
	"github.com/durablego/durable/server"
)

var ctx = context.Background()

func counters(t *testing.T, ts *durabletest.Server) *counterv1durable.CounterNamespace {
	t.Helper()
	ns, err := counterv1durable.RegisterCounter(ts.Server, counter.Counter{})
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func increment(t *testing.T, s counterv1durable.CounterStub, n int64) int64 {
	t.Helper()
	res, err := s.Increment(ctx, &counterv1.IncrementRequest{Amount: n})
	if err != nil {
		t.Fatalf("Increment: %v", err)
	}
	return res.GetValue()
}

// TestRunSetsUpAndInspects sets a counter's state and a key inside the
// object, calls it in process and remotely (Connect and gRPC), and reads
// the state and the key back inside the object.
func TestRunSetsUpAndInspects(t *testing.T) {
	ts := durabletest.New(t)
	ns := counters(t, ts)
	id := ns.IDFromName("user-123")
	durabletest.Run(t, ts, id, func(ctx context.Context, o *counterv1durable.CounterObject) error {
		o.State.Value = 40
		return o.Storage.Put(ctx, "note", []byte("set up"))
	})
	if got := increment(t, ns.Get(id), 1); got != 41 {
		t.Fatalf("in process: %d, want 41", got)
	}
	remote := counterv1durable.NewCounterClient(ts.Client(), ts.URL())
	if got := increment(t, remote.Get(remote.IDFromName("user-123")), 1); got != 42 {
		t.Fatalf("Connect: %d, want 42", got)
	}
	grpc := counterv1durable.NewCounterClient(ts.Client(), ts.URL(), client.WithClientOptions(connect.WithGRPC()))
	if got := increment(t, grpc.Get(grpc.IDFromName("user-123")), 1); got != 43 {
		t.Fatalf("gRPC: %d, want 43", got)
	}
	durabletest.Run(t, ts, id, func(ctx context.Context, o *counterv1durable.CounterObject) error {
		v, ok, err := o.Storage.Get(ctx, "note")
		if o.State.GetValue() != 43 || !ok || !bytes.Equal(v, []byte("set up")) || err != nil {
			t.Errorf("inside: value %d, note %q %v %v; want 43 and the note", o.State.GetValue(), v, ok, err)
		}
		return nil
	})
}

// TestRunFailureUndoes: server.Run, which durabletest.Run wraps, returns
// the function's error and undoes its changes, as for a failing method.
func TestRunFailureUndoes(t *testing.T) {
	ts := durabletest.New(t)
	ns := counters(t, ts)
	id := ns.IDFromName("c")
	increment(t, ns.Get(id), 5)
	boom := errors.New("boom")
	err := server.Run(ctx, ts.Server, id, func(ctx context.Context, o *counterv1durable.CounterObject) error {
		o.State.Value = 1000
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Run: %v, want boom", err)
	}
	if got := increment(t, ns.Get(id), 1); got != 6 {
		t.Fatalf("after a failed Run: %d, want 6", got)
	}
}

// TestRunBadInputs: the zero ID, a class that is not registered and a
// state type that is not the class's are errors, not panics.
func TestRunBadInputs(t *testing.T) {
	ts := durabletest.New(t)
	ns := counters(t, ts)
	nop := func(context.Context, *counterv1durable.CounterObject) error { return nil }
	if err := server.Run(ctx, ts.Server, durable.ID{}, nop); !errors.Is(err, durable.ErrInvalidID) {
		t.Errorf("zero ID: %v", err)
	}
	other := durable.NewIDSpace("Nope", []byte("0123456789abcdef")).FromName("x")
	if err := server.Run(ctx, ts.Server, other, nop); !errors.Is(err, durable.ErrClassNotFound) {
		t.Errorf("unknown class: %v", err)
	}
	err := server.Run(ctx, ts.Server, ns.IDFromName("x"), func(context.Context, *sessionv1durable.SessionObject) error { return nil })
	if err == nil {
		t.Errorf("wrong state type: no error")
	}
	if _, err := server.RunAlarm(ctx, ts.Server, durable.ID{}); !errors.Is(err, durable.ErrInvalidID) {
		t.Errorf("RunAlarm, zero ID: %v", err)
	}
}

// TestRunAlarmNow runs a session's alarm, set 30 minutes ahead, at once:
// the hook sees the alarm's time, and with a clock past the idle period it
// deletes the session; the alarm is gone after it, so a second run finds
// none.
func TestRunAlarmNow(t *testing.T) {
	ts := durabletest.New(t)
	now := time.UnixMilli(time.Now().UnixMilli())
	clock := func() time.Time { return now }
	sessions, err := sessionv1durable.RegisterSession(ts.Server, session.Session{Now: func() time.Time { return clock() }})
	if err != nil {
		t.Fatal(err)
	}
	id := sessions.IDFromName("alice")
	if _, err := sessions.Get(id).SetData(ctx, &sessionv1.SetDataRequest{Key: "k", Value: "v"}); err != nil {
		t.Fatal(err)
	}
	durabletest.Run(t, ts, id, func(ctx context.Context, o *sessionv1durable.SessionObject) error {
		at, ok, err := o.GetAlarm(ctx)
		if want := now.Add(session.DefaultIdle); !ok || !at.Equal(want) || err != nil {
			t.Errorf("alarm %v %v %v, want %v", at, ok, err, want)
		}
		return nil
	})
	later := now.Add(session.DefaultIdle)
	clock = func() time.Time { return later }
	if !durabletest.RunAlarm(t, ts, id) {
		t.Fatal("RunAlarm: no alarm ran")
	}
	r, err := sessions.Get(id).Peek(ctx, &sessionv1.PeekRequest{})
	if err != nil || len(r.GetSession().GetData()) != 0 || r.GetAlarmAtMs() != 0 {
		t.Fatalf("after the alarm: %v %v, want an empty session without an alarm", r, err)
	}
	if durabletest.RunAlarm(t, ts, id) {
		t.Fatal("second RunAlarm: an alarm ran, want none")
	}
}

// TestRunAlarmFailureKeepsAlarm: a failing hook's error comes back from
// server.RunAlarm and the alarm stays.
func TestRunAlarmFailureKeepsAlarm(t *testing.T) {
	ts := durabletest.New(t)
	sessions, err := sessionv1durable.RegisterSession(ts.Server, failingAlarm{})
	if err != nil {
		t.Fatal(err)
	}
	id := sessions.IDFromName("bob")
	if _, err := sessions.Get(id).Touch(ctx, &sessionv1.TouchRequest{}); err != nil {
		t.Fatal(err)
	}
	ran, err := server.RunAlarm(ctx, ts.Server, id)
	if !ran || !errors.Is(err, errAlarm) {
		t.Fatalf("RunAlarm: %v %v, want true and the hook's error", ran, err)
	}
	durabletest.Run(t, ts, id, func(ctx context.Context, o *sessionv1durable.SessionObject) error {
		if _, ok, err := o.GetAlarm(ctx); !ok || err != nil {
			t.Errorf("alarm after a failed run: %v %v, want it kept", ok, err)
		}
		return nil
	})
}

var errAlarm = errors.New("alarm failed")

type failingAlarm struct{ session.Session }

func (failingAlarm) Alarm(context.Context, *sessionv1durable.SessionObject, durable.AlarmInfo) error {
	return errAlarm
}

// TestObjectIDs lists the objects that exist: those that stored something,
// not one that was only read, in byte order, for a class without SQL and
// one with; each test's server starts empty.
func TestObjectIDs(t *testing.T) {
	ts := durabletest.New(t)
	ns := counters(t, ts)
	an, err := analyticsv1durable.RegisterAnalytics(ts.Server, analytics.Analytics{})
	if err != nil {
		t.Fatal(err)
	}
	if ids := durabletest.ObjectIDs(t, ts, counterv1durable.CounterClassName); len(ids) != 0 {
		t.Fatalf("a new server has %d counters", len(ids))
	}
	var want []durable.ID
	for _, name := range []string{"a", "b", "c"} {
		increment(t, ns.Get(ns.IDFromName(name)), 1)
		want = append(want, ns.IDFromName(name))
	}
	if _, err := ns.Get(ns.IDFromName("read-only")).GetValue(ctx, &counterv1.GetValueRequest{}); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(want, compareIDs)
	wantIDs(t, "counters", durabletest.ObjectIDs(t, ts, counterv1durable.CounterClassName), want)

	a := an.IDFromName("site")
	if _, err := an.Get(a).TrackEvent(ctx, &analyticsv1.TrackEventRequest{Name: "view"}); err != nil {
		t.Fatal(err)
	}
	if _, err := an.Get(an.IDFromName("empty")).GetEventCounts(ctx, &analyticsv1.GetEventCountsRequest{}); err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "analytics", durabletest.ObjectIDs(t, ts, analyticsv1durable.AnalyticsClassName), []durable.ID{a})

	// Paging: after the first, the rest.
	page, err := ts.ObjectIDs(ctx, counterv1durable.CounterClassName, want[0], 10)
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "page after the first", page, want[1:])
	if _, err := ts.ObjectIDs(ctx, "Nope", durable.ID{}, 10); !errors.Is(err, durable.ErrClassNotFound) {
		t.Errorf("unknown class: %v", err)
	}
	if _, err := ts.ObjectIDs(ctx, counterv1durable.CounterClassName, a, 10); !errors.Is(err, durable.ErrIDNamespace) {
		t.Errorf("paging with another class's ID: %v", err)
	}
}

func compareIDs(a, b durable.ID) int {
	x, y := a.Bytes(), b.Bytes()
	return bytes.Compare(x[:], y[:])
}

func wantIDs(t *testing.T, what string, got, want []durable.ID) {
	t.Helper()
	if !slices.EqualFunc(got, want, durable.ID.Equal) {
		t.Errorf("%s: %v, want %v", what, got, want)
	}
}

// TestIsolatedAndRestart: a second server of the same test has storage of
// its own, and Open on a shut down server's Dir finds its objects again.
func TestIsolatedAndRestart(t *testing.T) {
	first := durabletest.New(t)
	ns := counters(t, first)
	increment(t, ns.Get(ns.IDFromName("x")), 1)
	second := durabletest.New(t)
	counters(t, second)
	if ids := durabletest.ObjectIDs(t, second, counterv1durable.CounterClassName); len(ids) != 0 {
		t.Fatalf("a second server sees %d counters", len(ids))
	}
	first.Shutdown()
	again := durabletest.Open(t, first.Dir)
	ns = counters(t, again)
	if got := increment(t, ns.Get(ns.IDFromName("x")), 1); got != 2 {
		t.Fatalf("after restart: %d, want 2", got)
	}
}

// TestRunFatalInside: t.Fatal inside Run's function (on another goroutine
// than the test's) undoes the call's changes, stops the test when Run
// returns, and leaves the object serving; a panic there is the call's
// error. A recorder stands in for the test's t, so that the test itself
// does not fail.
func TestRunFatalInside(t *testing.T) {
	ts := durabletest.New(t)
	ns := counters(t, ts)
	id := ns.IDFromName("c")
	increment(t, ns.Get(id), 1)
	for _, tc := range []struct {
		name string
		fail func(r *recorder)
		want string
	}{
		{"Fatal", func(r *recorder) { r.Fatalf("inside") }, "inside"},
		{"panic", func(*recorder) { panic("boom") }, "Run on"},
	} {
		r := &recorder{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			durabletest.Run(r, ts, id, func(_ context.Context, o *counterv1durable.CounterObject) error {
				o.State.Value = 99
				tc.fail(r)
				return nil
			})
			r.returned = true
		}()
		<-done
		if !r.failed || r.returned || !strings.Contains(r.msg, tc.want) {
			t.Errorf("%s: failed %v, returned %v, message %q; want a failure naming %q", tc.name, r.failed, r.returned, r.msg, tc.want)
		}
	}
	if got := increment(t, ns.Get(id), 1); got != 2 {
		t.Fatalf("after the failed runs: %d, want 2", got)
	}
}

// recorder is a testing.TB whose failures are recorded, not reported.
type recorder struct {
	testing.TB
	mu       sync.Mutex
	failed   bool
	returned bool
	msg      string
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.failed, r.msg = true, r.msg+fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *recorder) FailNow() {
	r.mu.Lock()
	r.failed = true
	r.mu.Unlock()
	runtime.Goexit()
}
