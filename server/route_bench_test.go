package server_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
// over Connect, on a cluster of two servers on loopback where node 1 owns
// every object: straight to the owner (direct) and through node 0, which
// forwards every call over h2c (forwarded), in alternating rounds of the
// same run, so that the machine's load weighs on both alike. The callers
// share one client, over h2c or HTTP/1.1. It reports the calls/s of each,
// forwarded as a percentage of direct, and the p50 and p99 latencies.
func BenchmarkForwardedCall(b *testing.B) { benchForwarded(b, callers) }

// BenchmarkForwardedCallLatency is BenchmarkForwardedCall with one caller:
// what the hop adds to a call's latency when nothing queues.
func BenchmarkForwardedCallLatency(b *testing.B) { benchForwarded(b, 1) }

func benchForwarded(b *testing.B, callers int) {
	for _, c := range []struct {
		name string
		hc   func() *http.Client
	}{{"h2c", h2cClient}, {"http1", func() *http.Client {
		return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: callers}}
	}}} {
		b.Run(c.name, func(b *testing.B) {
			_, nodes := newCluster(b, 2, 1)
			hc := c.hc()
			modes := [2]*forwardMode{{name: "direct", url: nodes[1].url}, {name: "fwd", url: nodes[0].url}}
			for _, m := range modes {
				counters := counterv1durable.NewCounterClient(hc, m.url)
				for i := range callers {
					m.stubs = append(m.stubs, counters.Get(counters.IDFromName(fmt.Sprint("bench-", i))))
				}
				m.round(b, callers) // connections and objects up
				m.reset()
			}
			b.ResetTimer()
			round := max(callers, b.N/8)
			for left := b.N; left > 0; left -= round {
				for _, m := range modes {
					m.round(b, min(round, left))
				}
			}
			b.StopTimer()
			for _, m := range modes {
				m.report(b)
			}
			b.ReportMetric(100*modes[1].rate()/modes[0].rate(), "fwd-%-of-direct")
		})
	}
}

// forwardMode is one way of BenchmarkForwardedCall's callers to their
// counters, and what it measured.
type forwardMode struct {
	name    string
	url     string
	stubs   []counterv1durable.CounterStub
	calls   int
	elapsed time.Duration
	cpu     time.Duration // of the process: both nodes and the callers
	lat     []time.Duration
}

// round has callers goroutines make n calls in all, one stub each.
func (m *forwardMode) round(b *testing.B, n int) {
	var next atomic.Int64
	lats := make([][]time.Duration, len(m.stubs))
	cpu := processCPU(os.Getpid())
	start := time.Now()
	var wg sync.WaitGroup
	for i, stub := range m.stubs {
		wg.Go(func() {
			ctx := context.Background()
			req := &counterv1.IncrementRequest{Amount: 1}
			for next.Add(1) <= int64(n) {
				t := time.Now()
				if _, err := stub.Increment(ctx, req); err != nil {
					b.Error(err)
					return
				}
				lats[i] = append(lats[i], time.Since(t))
			}
		})
	}
	wg.Wait()
	m.elapsed += time.Since(start)
	m.cpu += processCPU(os.Getpid()) - cpu
	m.calls += n
	for _, l := range lats {
		m.lat = append(m.lat, l...)
	}
}

func (m *forwardMode) reset() { m.calls, m.elapsed, m.cpu, m.lat = 0, 0, 0, nil }

func (m *forwardMode) rate() float64 { return float64(m.calls) / m.elapsed.Seconds() }

func (m *forwardMode) report(b *testing.B) {
	b.ReportMetric(m.rate(), m.name+"-calls/s")
	b.ReportMetric(float64(m.cpu.Microseconds())/float64(m.calls), m.name+"-cpu-µs/call")
	if len(m.lat) == 0 {
		return
	}
	slices.Sort(m.lat)
	b.ReportMetric(float64(m.lat[len(m.lat)/2].Microseconds()), m.name+"-p50-µs")
	b.ReportMetric(float64(m.lat[len(m.lat)*99/100].Microseconds()), m.name+"-p99-µs")
}
