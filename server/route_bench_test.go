package server_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/durablego/durable/client"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/server"
)

// localPlacement places every object here: the cost of asking.
type localPlacement struct{}

func (localPlacement) Locate(context.Context, [32]byte) (server.Location, error) {
	return server.Location{Local: true, Node: "self"}, nil
}

// BenchmarkHotObjectPlaced is BenchmarkHotObject on a server whose
// placement answers local: what Locate costs on the hot path.
func BenchmarkHotObjectPlaced(b *testing.B) {
	benchHotObject(b, newEnv(b, server.WithPlacement(localPlacement{})))
}

// BenchmarkForwardedCall: 64 callers increment counters (one per caller)
// over Connect, straight to their owner (direct) or through a node that
// forwards every call (forwarded). It reports calls/s and the p50 latency.
func BenchmarkForwardedCall(b *testing.B) {
	_, nodes := newCluster(b, 2, 1)
	for _, c := range []struct {
		name string
		url  string
	}{{"direct", nodes[1].url}, {"forwarded", nodes[0].url}} {
		b.Run(c.name, func(b *testing.B) {
			counters := counterv1durable.NewCounterClient(h2cClient(), c.url, client.WithClientOptions())
			var mu sync.Mutex
			var lat []time.Duration
			b.SetParallelism(parallelism())
			start := time.Now()
			var worker int
			b.RunParallel(func(pb *testing.PB) {
				mu.Lock()
				worker++
				stub := counters.Get(counters.IDFromName("bench-" + string(rune('a'+worker%26)) + string(rune('a'+worker/26))))
				mu.Unlock()
				ctx := context.Background()
				req := &counterv1.IncrementRequest{Amount: 1}
				var mine []time.Duration
				for pb.Next() {
					t := time.Now()
					if _, err := stub.Increment(ctx, req); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(t))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			reportRate(b, start)
			if len(lat) > 0 {
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			}
		})
	}
}
