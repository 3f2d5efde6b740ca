package counter_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/durablego/durable"
	"github.com/durablego/durable/examples/counter"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
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
