// Package counter implements the reference page's Counter object: a named,
// persistent counter that floors at zero.
package counter

import (
	"context"
	"time"

	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
)

// Counter implements counterv1durable.Counter. Its Now field is the clock,
// time.Now when nil, so tests can control LastUpdatedMs.
type Counter struct {
	Now func() time.Time
}

var _ counterv1durable.Counter = Counter{}

func (c Counter) touch(o *counterv1durable.CounterObject) {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	o.State.LastUpdatedMs = now().UnixMilli()
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
