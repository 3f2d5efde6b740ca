// Package counter implements the reference page's Counter object: a named,
// persistent counter that floors at zero.
package counter

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/durablego/durable"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
)

// Counter implements counterv1durable.Counter. Its Now field is the clock,
// time.Now when nil, so tests can control LastUpdatedMs.
type Counter struct {
	Now func() time.Time
}

var (
	_ counterv1durable.Counter                 = Counter{}
	_ durable.Fetcher[*counterv1.CounterState] = Counter{}
)

func (c Counter) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c Counter) touch(o *counterv1durable.CounterObject) {
	o.State.LastUpdatedMs = c.now().UnixMilli()
}

// amount returns n, or 1 when n is zero (absent).
func amount(n int64) int64 {
	if n == 0 {
		return 1
	}
	return n
}

// Increment adds the amount (1 when absent) and returns the new value.
func (c Counter) Increment(_ context.Context, o *counterv1durable.CounterObject, req *counterv1.IncrementRequest) (*counterv1.IncrementResponse, error) {
	o.State.Value += amount(req.GetAmount())
	c.touch(o)
	return &counterv1.IncrementResponse{Value: o.State.Value}, nil
}

// Decrement subtracts the amount (1 when absent), flooring at zero.
func (c Counter) Decrement(_ context.Context, o *counterv1durable.CounterObject, req *counterv1.DecrementRequest) (*counterv1.DecrementResponse, error) {
	o.State.Value = max(0, o.State.Value-amount(req.GetAmount()))
	c.touch(o)
	return &counterv1.DecrementResponse{Value: o.State.Value}, nil
}

// GetValue returns the current value.
func (Counter) GetValue(_ context.Context, o *counterv1durable.CounterObject, _ *counterv1.GetValueRequest) (*counterv1.GetValueResponse, error) {
	return &counterv1.GetValueResponse{Value: o.State.Value}, nil
}

// Reset sets the value to zero.
func (c Counter) Reset(_ context.Context, o *counterv1durable.CounterObject, _ *counterv1.ResetRequest) (*counterv1.ResetResponse, error) {
	o.State.Value = 0
	c.touch(o)
	return &counterv1.ResetResponse{}, nil
}

// Fetch serves the counter over HTTP, as the reference page's fetch:
// GET / returns {"value": n, "timestamp": <unix ms>}; POST /increment with
// the body {"amount": n} adds n (1 when the amount or the body is absent)
// and returns {"value": n}; anything else is 404. RPC is the better path;
// this one is for curl and browsers:
//
//	curl http://127.0.0.1:8080/objects/counter/user-123/
//	curl -d '{"amount": 5}' http://127.0.0.1:8080/objects/counter/user-123/increment
func (c Counter) Fetch(_ context.Context, o *counterv1durable.CounterObject, w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/":
		writeJSON(w, struct {
			Value     int64 `json:"value"`
			Timestamp int64 `json:"timestamp"`
		}{o.State.Value, c.now().UnixMilli()})
	case r.Method == http.MethodPost && r.URL.Path == "/increment":
		var body struct {
			Amount *int64 `json:"amount"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			http.Error(w, "invalid JSON body: "+err.Error(), http.StatusBadRequest)
			return
		}
		amount := int64(1)
		if body.Amount != nil {
			amount = *body.Amount
		}
		o.State.Value += amount
		c.touch(o)
		writeJSON(w, struct {
			Value int64 `json:"value"`
		}{o.State.Value})
	default:
		http.Error(w, "Not Found", http.StatusNotFound)
	}
}

// writeJSON answers 200 with v as JSON, Response.json on the reference page.
func writeJSON(w http.ResponseWriter, v any) {
	body, _ := json.Marshal(v) // of a struct of integers: cannot fail
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}
