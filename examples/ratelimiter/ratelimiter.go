// Package ratelimiter implements the reference page's rate limiter: a
// sliding window over the timestamps of the requests it allowed, with the
// reference's algorithm.
package ratelimiter

import (
	"context"
	"time"

	ratelimiterv1 "github.com/durablego/durable/gen/examples/ratelimiter/v1"
	"github.com/durablego/durable/gen/examples/ratelimiter/v1/ratelimiterv1durable"
)

// RateLimiter implements ratelimiterv1durable.RateLimiter. Its Now field is
// the clock, time.Now when nil, so tests can move through windows.
type RateLimiter struct {
	Now func() time.Time
}

var _ ratelimiterv1durable.RateLimiter = RateLimiter{}

func (r RateLimiter) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Check keeps the requests after now - window_ms; at limit it denies the
// request, otherwise it records it. reset_at_ms is when the oldest request
// in the window leaves it.
func (r RateLimiter) Check(_ context.Context, o *ratelimiterv1durable.RateLimiterObject, req *ratelimiterv1.CheckRequest) (*ratelimiterv1.CheckResponse, error) {
	now := r.now().UnixMilli()
	windowStart := now - req.GetWindowMs()

	kept := o.State.Requests[:0]
	for _, t := range o.State.Requests {
		if t > windowStart {
			kept = append(kept, t)
		}
	}
	o.State.Requests = kept

	if int64(len(kept)) >= req.GetLimit() {
		// The request's rules make limit positive, so kept is not empty;
		// without them a limit of 0 would find it so.
		resetAt := now + req.GetWindowMs()
		if len(kept) > 0 {
			resetAt = kept[0] + req.GetWindowMs()
		}
		return &ratelimiterv1.CheckResponse{Allowed: false, Remaining: 0, ResetAtMs: resetAt}, nil
	}
	o.State.Requests = append(o.State.Requests, now)
	return &ratelimiterv1.CheckResponse{
		Allowed:   true,
		Remaining: req.GetLimit() - int64(len(o.State.Requests)),
		ResetAtMs: o.State.Requests[0] + req.GetWindowMs(),
	}, nil
}

// Reset forgets every request.
func (RateLimiter) Reset(_ context.Context, o *ratelimiterv1durable.RateLimiterObject, _ *ratelimiterv1.ResetRequest) (*ratelimiterv1.ResetResponse, error) {
	o.State.Requests = nil
	return &ratelimiterv1.ResetResponse{}, nil
}
