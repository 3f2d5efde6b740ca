package ratelimiter_test

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/durablego/durable/examples/internal/exampletest"
	"github.com/durablego/durable/examples/ratelimiter"
	ratelimiterv1 "github.com/durablego/durable/gen/examples/ratelimiter/v1"
	"github.com/durablego/durable/gen/examples/ratelimiter/v1/ratelimiterv1durable"
)

var (
	ctx = context.Background()
	t0  = time.UnixMilli(1_700_000_000_000)
)

func start(t *testing.T, clock *exampletest.Clock) *ratelimiterv1durable.RateLimiterNamespace {
	t.Helper()
	srv := exampletest.Start(t, t.TempDir())
	ns, err := ratelimiterv1durable.RegisterRateLimiter(srv.Server, ratelimiter.RateLimiter{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// check calls Check{limit: 3, window_ms: 1000} at t0+at and compares.
func check(t *testing.T, clock *exampletest.Clock, r ratelimiterv1durable.RateLimiterStub, at time.Duration, allowed bool, remaining int64, resetAt time.Duration) {
	t.Helper()
	clock.Advance(t0.Add(at).Sub(clock.Now()))
	res, err := r.Check(ctx, &ratelimiterv1.CheckRequest{Limit: 3, WindowMs: 1000})
	if err != nil {
		t.Fatalf("Check at t0+%v: %v", at, err)
	}
	if res.GetAllowed() != allowed || res.GetRemaining() != remaining || res.GetResetAtMs() != t0.Add(resetAt).UnixMilli() {
		t.Fatalf("Check at t0+%v = allowed %v, remaining %d, reset at t0+%dms; want %v, %d, t0+%v",
			at, res.GetAllowed(), res.GetRemaining(), res.GetResetAtMs()-t0.UnixMilli(), allowed, remaining, resetAt)
	}
}

func TestSlidingWindow(t *testing.T) {
	clock := exampletest.NewClock(t0)
	ns := start(t, clock)
	r := ns.Get(ns.IDFromName("api-key-1"))
	const ms = time.Millisecond

	check(t, clock, r, 0, true, 2, 1000*ms)
	check(t, clock, r, 100*ms, true, 1, 1000*ms)
	check(t, clock, r, 200*ms, true, 0, 1000*ms)
	// Full: denied, and the denied request is not recorded.
	check(t, clock, r, 300*ms, false, 0, 1000*ms)
	check(t, clock, r, 999*ms, false, 0, 1000*ms)
	// At t0+1000 the request of t0 is at the window's start, so out of it
	// (only requests after now - window count): one slot frees up, and the
	// oldest left, t0+100, sets the reset time.
	check(t, clock, r, 1000*ms, true, 0, 1100*ms)
	check(t, clock, r, 1050*ms, false, 0, 1100*ms)
	check(t, clock, r, 1100*ms, true, 0, 1200*ms)
	// Long after, the window is empty again.
	check(t, clock, r, 5000*ms, true, 2, 6000*ms)

	// Another key has its own window.
	check(t, clock, ns.Get(ns.IDFromName("api-key-2")), 5000*ms, true, 2, 6000*ms)
}

func TestReset(t *testing.T) {
	clock := exampletest.NewClock(t0)
	ns := start(t, clock)
	r := ns.Get(ns.IDFromName("k"))
	const ms = time.Millisecond
	for i := range 3 {
		check(t, clock, r, time.Duration(i)*ms, true, int64(2-i), 1000*ms)
	}
	check(t, clock, r, 10*ms, false, 0, 1000*ms)
	if _, err := r.Reset(ctx, &ratelimiterv1.ResetRequest{}); err != nil {
		t.Fatal(err)
	}
	check(t, clock, r, 20*ms, true, 2, 1020*ms)
}

// TestInvalidRequestsAreRefused needs the server to validate requests
// against their protovalidate rules.
func TestInvalidRequestsAreRefused(t *testing.T) {
	ns := start(t, exampletest.NewClock(t0))
	r := ns.Get(ns.IDFromName("k"))
	for _, req := range []*ratelimiterv1.CheckRequest{
		{Limit: 0, WindowMs: 1000},
		{Limit: -1, WindowMs: 1000},
		{Limit: 10001, WindowMs: 1000},
		{Limit: 3, WindowMs: 0},
		{Limit: 3, WindowMs: -1},
	} {
		_, err := r.Check(ctx, req)
		exampletest.WantError(t, "Check "+req.String(), err, connect.CodeInvalidArgument, "")
	}
}
