package analytics_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/durablego/durable/examples/analytics"
	"github.com/durablego/durable/examples/internal/exampletest"
	analyticsv1 "github.com/durablego/durable/gen/examples/analytics/v1"
	"github.com/durablego/durable/gen/examples/analytics/v1/analyticsv1durable"
)

var (
	ctx = context.Background()
	t0  = time.UnixMilli(1_700_000_000_000)
)

func start(t *testing.T, dir string, clock *exampletest.Clock) (*exampletest.Server, *analyticsv1durable.AnalyticsNamespace) {
	t.Helper()
	srv := exampletest.Start(t, dir)
	ns, err := analyticsv1durable.RegisterAnalytics(srv.Server, analytics.Analytics{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return srv, ns
}

func track(t *testing.T, a analyticsv1durable.AnalyticsStub, name string, props map[string]any) *analyticsv1.TrackEventResponse {
	t.Helper()
	req := &analyticsv1.TrackEventRequest{Name: name}
	if props != nil {
		s, err := structpb.NewStruct(props)
		if err != nil {
			t.Fatal(err)
		}
		req.Properties = s
	}
	r, err := a.TrackEvent(ctx, req)
	if err != nil {
		t.Fatalf("TrackEvent %q: %v", name, err)
	}
	return r
}

func recent(t *testing.T, a analyticsv1durable.AnalyticsStub, limit int32) []*analyticsv1.Event {
	t.Helper()
	r, err := a.GetRecentEvents(ctx, &analyticsv1.GetRecentEventsRequest{Limit: limit})
	if err != nil {
		t.Fatalf("GetRecentEvents %d: %v", limit, err)
	}
	return r.GetEvents()
}

func counts(t *testing.T, a analyticsv1durable.AnalyticsStub, since time.Time) string {
	t.Helper()
	r, err := a.GetEventCounts(ctx, &analyticsv1.GetEventCountsRequest{SinceMs: since.UnixMilli()})
	if err != nil {
		t.Fatalf("GetEventCounts: %v", err)
	}
	s := ""
	for _, c := range r.GetCounts() {
		s += fmt.Sprintf("%s=%d ", c.GetName(), c.GetCount())
	}
	return s
}

func TestTrackAndQuery(t *testing.T) {
	clock := exampletest.NewClock(t0)
	_, ns := start(t, t.TempDir(), clock)
	a := ns.Get(ns.IDFromName("site"))

	if ev := recent(t, a, 0); len(ev) != 0 {
		t.Fatalf("GetRecentEvents of a new object = %v, want none", ev)
	}
	if c := counts(t, a, time.UnixMilli(0)); c != "" {
		t.Fatalf("GetEventCounts of a new object = %q, want none", c)
	}

	first := track(t, a, "page_view", map[string]any{"path": "/", "ms": 12.5, "tags": []any{"a", "b"}, "user": map[string]any{"new": true}})
	if first.GetTimestampMs() != t0.UnixMilli() {
		t.Fatalf("TrackEvent timestamp %d, want the clock's %d", first.GetTimestampMs(), t0.UnixMilli())
	}
	clock.Advance(time.Millisecond)
	second := track(t, a, "click", map[string]any{"button": "buy"})
	clock.Advance(time.Millisecond)
	third := track(t, a, "page_view", nil) // no properties: stored as NULL
	// Same millisecond as the third: the later id comes first.
	fourth := track(t, a, "signup", map[string]any{})
	if !(first.GetId() < second.GetId() && second.GetId() < third.GetId() && third.GetId() < fourth.GetId()) {
		t.Fatalf("ids %d, %d, %d, %d; want increasing", first.GetId(), second.GetId(), third.GetId(), fourth.GetId())
	}

	events := recent(t, a, 0)
	want := []struct {
		id    int64
		name  string
		ts    time.Time
		props map[string]any // nil: none
	}{
		{fourth.GetId(), "signup", t0.Add(2 * time.Millisecond), map[string]any{}},
		{third.GetId(), "page_view", t0.Add(2 * time.Millisecond), nil},
		{second.GetId(), "click", t0.Add(time.Millisecond), map[string]any{"button": "buy"}},
		{first.GetId(), "page_view", t0, map[string]any{"path": "/", "ms": 12.5, "tags": []any{"a", "b"}, "user": map[string]any{"new": true}}},
	}
	if len(events) != len(want) {
		t.Fatalf("GetRecentEvents returned %d events, want %d: %v", len(events), len(want), events)
	}
	for i, w := range want {
		e := events[i]
		if e.GetId() != w.id || e.GetName() != w.name || e.GetTimestampMs() != w.ts.UnixMilli() {
			t.Errorf("event %d = {%d %q %d}, want {%d %q %d}", i, e.GetId(), e.GetName(), e.GetTimestampMs(), w.id, w.name, w.ts.UnixMilli())
		}
		if w.props == nil {
			if e.GetProperties() != nil {
				t.Errorf("event %d properties = %v, want none", i, e.GetProperties())
			}
			continue
		}
		wp, _ := structpb.NewStruct(w.props)
		if e.GetProperties() == nil || !proto.Equal(e.GetProperties(), wp) {
			t.Errorf("event %d properties = %v, want %v", i, e.GetProperties(), wp)
		}
	}
	if ev := recent(t, a, 2); len(ev) != 2 || ev[0].GetId() != fourth.GetId() || ev[1].GetId() != third.GetId() {
		t.Fatalf("GetRecentEvents{limit: 2} = %v, want the two newest", ev)
	}

	if c := counts(t, a, time.UnixMilli(0)); c != "click=1 page_view=2 signup=1 " {
		t.Fatalf("GetEventCounts since 0 = %q", c)
	}
	// Strictly after since_ms: the events at t0+1ms do not count.
	if c := counts(t, a, t0.Add(time.Millisecond)); c != "page_view=1 signup=1 " {
		t.Fatalf("GetEventCounts since t0+1ms = %q", c)
	}
	if c := counts(t, a, t0.Add(2*time.Millisecond)); c != "" {
		t.Fatalf("GetEventCounts since the last event = %q, want none", c)
	}

	// Each object has its own database.
	other := ns.Get(ns.IDFromName("other-site"))
	if ev := recent(t, other, 0); len(ev) != 0 {
		t.Fatalf("another object's events = %v, want none", ev)
	}
}

func TestRecentEventsDefaultLimit(t *testing.T) {
	clock := exampletest.NewClock(t0)
	_, ns := start(t, t.TempDir(), clock)
	a := ns.Get(ns.IDFromName("busy"))
	const n = analytics.DefaultLimit + 5
	for i := range n {
		track(t, a, fmt.Sprint("e", i), nil)
		clock.Advance(time.Millisecond)
	}
	events := recent(t, a, 0)
	if len(events) != analytics.DefaultLimit {
		t.Fatalf("GetRecentEvents{} returned %d events, want %d", len(events), analytics.DefaultLimit)
	}
	if events[0].GetName() != fmt.Sprint("e", n-1) || events[len(events)-1].GetName() != "e5" {
		t.Fatalf("GetRecentEvents{} runs from %q to %q, want e%d to e5", events[0].GetName(), events[len(events)-1].GetName(), n-1)
	}
}

func TestEventsSurviveRestart(t *testing.T) {
	clock := exampletest.NewClock(t0)
	dir := t.TempDir()
	srv, ns := start(t, dir, clock)
	track(t, ns.Get(ns.IDFromName("site")), "page_view", map[string]any{"path": "/a"})
	srv.Shutdown(t)

	_, ns = start(t, dir, clock)
	a := ns.Get(ns.IDFromName("site"))
	track(t, a, "page_view", nil)
	if c := counts(t, a, time.UnixMilli(0)); c != "page_view=2 " {
		t.Fatalf("GetEventCounts after restart = %q, want page_view=2", c)
	}
}

// TestInvalidRequestsAreRefused needs the server to validate requests
// against their protovalidate rules.
func TestInvalidRequestsAreRefused(t *testing.T) {
	_, ns := start(t, t.TempDir(), exampletest.NewClock(t0))
	a := ns.Get(ns.IDFromName("site"))
	_, err := a.TrackEvent(ctx, &analyticsv1.TrackEventRequest{})
	exampletest.WantError(t, "TrackEvent without a name", err, connect.CodeInvalidArgument, "name")
	_, err = a.GetRecentEvents(ctx, &analyticsv1.GetRecentEventsRequest{Limit: 1001})
	exampletest.WantError(t, "GetRecentEvents{limit: 1001}", err, connect.CodeInvalidArgument, "limit")
	_, err = a.GetRecentEvents(ctx, &analyticsv1.GetRecentEventsRequest{Limit: -1})
	exampletest.WantError(t, "GetRecentEvents{limit: -1}", err, connect.CodeInvalidArgument, "limit")
	if c := counts(t, a, time.UnixMilli(0)); c != "" {
		t.Fatalf("GetEventCounts after refused calls = %q, want none", c)
	}
}
