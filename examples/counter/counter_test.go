package counter_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/durablego/durable"
	"github.com/durablego/durable/durabletest"
	"github.com/durablego/durable/examples/counter"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
)

// TestCounterMethods calls the implementation directly with a handle built
// by hand: an object's logic is testable without a server.
func TestCounterMethods(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	c := counter.Counter{Now: func() time.Time { return now }}
	o := &durable.Object[*counterv1.CounterState]{State: &counterv1.CounterState{}}
	ctx := context.Background()

	inc, _ := c.Increment(ctx, o, &counterv1.IncrementRequest{})
	if inc.GetValue() != 1 || o.State.GetLastUpdatedMs() != now.UnixMilli() {
		t.Fatalf("Increment{} = %d, last updated %d; want 1 and the clock", inc.GetValue(), o.State.GetLastUpdatedMs())
	}
	inc, _ = c.Increment(ctx, o, &counterv1.IncrementRequest{Amount: 9})
	dec, _ := c.Decrement(ctx, o, &counterv1.DecrementRequest{Amount: 4})
	if inc.GetValue() != 10 || dec.GetValue() != 6 {
		t.Fatalf("Increment{9} = %d, Decrement{4} = %d; want 10, 6", inc.GetValue(), dec.GetValue())
	}
	dec, _ = c.Decrement(ctx, o, &counterv1.DecrementRequest{Amount: 50})
	if dec.GetValue() != 0 {
		t.Fatalf("Decrement below zero = %d, want 0", dec.GetValue())
	}
	dec, _ = c.Decrement(ctx, o, &counterv1.DecrementRequest{})
	if dec.GetValue() != 0 {
		t.Fatalf("Decrement{} at zero = %d, want 0", dec.GetValue())
	}
	c.Increment(ctx, o, &counterv1.IncrementRequest{Amount: 3})
	if got, _ := c.GetValue(ctx, o, &counterv1.GetValueRequest{}); got.GetValue() != 3 {
		t.Fatalf("GetValue = %d, want 3", got.GetValue())
	}
	if r, _ := c.Reset(ctx, o, &counterv1.ResetRequest{}); r.GetValue() != 0 || o.State.GetValue() != 0 {
		t.Fatalf("Reset = %d, state %d", r.GetValue(), o.State.GetValue())
	}
}

// TestCounterFetch serves the reference page's requests with httptest: a
// Fetch hook is an HTTP handler that also takes the handle.
func TestCounterFetch(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	c := counter.Counter{Now: func() time.Time { return now }}
	o := &durable.Object[*counterv1.CounterState]{State: &counterv1.CounterState{}}
	for _, tc := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"POST", "/increment", `{"amount": 5}`, 200, `{"value":5}`},
		{"POST", "/increment", `{}`, 200, `{"value":6}`},
		{"POST", "/increment", ``, 200, `{"value":7}`},
		{"POST", "/increment", `{"amount": 0}`, 200, `{"value":7}`},
		{"POST", "/increment", `{"amount": "x"}`, 400, "invalid JSON body"},
		{"GET", "/", ``, 200, `{"value":7,"timestamp":1700000000000}`},
		{"GET", "/increment", ``, 404, "Not Found\n"},
		{"DELETE", "/", ``, 404, "Not Found\n"},
	} {
		w := httptest.NewRecorder()
		c.Fetch(context.Background(), o, w, httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body)))
		if w.Code != tc.status || !strings.HasPrefix(w.Body.String(), tc.want) {
			t.Errorf("%s %s %s = %d %q, want %d %q", tc.method, tc.path, tc.body, w.Code, w.Body.String(), tc.status, tc.want)
		}
		if tc.status == http.StatusOK && w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: Content-Type %q", tc.method, tc.path, w.Header().Get("Content-Type"))
		}
	}
	if o.State.GetLastUpdatedMs() != now.UnixMilli() {
		t.Errorf("POST /increment did not update LastUpdatedMs")
	}
}

// TestCounterOnServer runs the counter on a real server with durabletest:
// in process, remotely over Connect, through its Fetch route, and inside
// the object to read its state; the counter that was only read does not
// exist.
func TestCounterOnServer(t *testing.T) {
	ctx := context.Background()
	now := time.UnixMilli(1_700_000_000_000)
	ts := durabletest.New(t)
	counters, err := counterv1durable.RegisterCounter(ts.Server, counter.Counter{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	id := counters.IDFromName("user-123")
	if res, err := counters.Get(id).Increment(ctx, &counterv1.IncrementRequest{Amount: 5}); err != nil || res.GetValue() != 5 {
		t.Fatalf("in process: %v %v, want 5", res, err)
	}
	remote := counterv1durable.NewCounterClient(ts.Client(), ts.URL())
	if res, err := remote.Get(remote.IDFromName("user-123")).Decrement(ctx, &counterv1.DecrementRequest{Amount: 2}); err != nil || res.GetValue() != 3 {
		t.Fatalf("remote: %v %v, want 3", res, err)
	}
	res, err := ts.Client().Post(ts.URL()+"/objects/counter/user-123/increment", "application/json", strings.NewReader(`{"amount": 4}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || string(body) != `{"value":7}` {
		t.Fatalf("POST /objects/counter/user-123/increment: %d %s", res.StatusCode, body)
	}
	durabletest.Run(t, ts, id, func(_ context.Context, o *counterv1durable.CounterObject) error {
		if o.State.GetValue() != 7 || o.State.GetLastUpdatedMs() != now.UnixMilli() {
			t.Errorf("state %v, want 7 updated at the clock's time", o.State)
		}
		return nil
	})
	if _, err := counters.Get(counters.IDFromName("never-written")).GetValue(ctx, &counterv1.GetValueRequest{}); err != nil {
		t.Fatal(err)
	}
	if ids := durabletest.ObjectIDs(t, ts, counterv1durable.CounterClassName); len(ids) != 1 || !ids[0].Equal(id) {
		t.Fatalf("objects %v, want only %v", ids, id)
	}
}
