package counter_test

import (
	"context"
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
