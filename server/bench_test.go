package server_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/durablego/durable"
	durablev1 "github.com/durablego/durable/gen/durable/v1"
	"github.com/durablego/durable/gen/durable/v1/durablev1connect"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/server"
)

// callers is the number of concurrent callers in the throughput benchmarks.
const callers = 64

func parallelism() int { return max(1, callers/runtimeProcs()) }

func reportRate(b *testing.B, start time.Time) {
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
}

// BenchmarkHotObject: 64 callers increment one counter in process; every
// call persists a state change.
func BenchmarkHotObject(b *testing.B) {
	benchHotObject(b, newEnv(b))
}

// benchHotObject has 64 callers increment the counter "hot" of e.
func benchHotObject(b *testing.B, e *env) {
	stub := e.counters.Get(e.counters.IDFromName("hot"))
	b.SetParallelism(parallelism())
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		req := &counterv1.IncrementRequest{Amount: 1}
		for pb.Next() {
			if _, err := stub.Increment(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, start)
}

// BenchmarkManyObjects: 64 callers increment counters chosen at random
// among 10,000, in process.
func BenchmarkManyObjects(b *testing.B) {
	e := newEnv(b)
	const n = 10_000
	ids := make([]durable.ID, n)
	for i := range ids {
		ids[i] = e.counters.IDFromName(fmt.Sprint("obj-", i))
	}
	b.SetParallelism(parallelism())
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		req := &counterv1.IncrementRequest{Amount: 1}
		for pb.Next() {
			if _, err := e.counters.Get(ids[rand.IntN(n)]).Increment(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, start)
}

// connections is how many HTTP/2 connections the network benchmarks'
// callers share, as several client processes would: one connection
// serializes every frame through one reader goroutine on each side.
const connections = 4

// BenchmarkConnectUnary: 64 callers increment counters through the
// generated Connect client over h2c on loopback, on 4 connections.
func BenchmarkConnectUnary(b *testing.B) { benchConnectUnary(b) }

// benchConnectUnary is BenchmarkConnectUnary on a server with opts.
func benchConnectUnary(b *testing.B, opts ...server.Option) {
	e := newEnv(b, opts...)
	e.serve(b)
	var clients [connections]*counterv1durable.CounterClient
	for i := range clients {
		clients[i] = counterv1durable.NewCounterClient(h2cClient(), e.url)
	}
	b.SetParallelism(parallelism())
	b.ReportAllocs()
	start := time.Now()
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		// A few objects, so that the figure is the transport's, not one
		// mailbox's.
		n := next.Add(1)
		counters := clients[n%connections]
		stub := counters.Get(counters.IDFromName(fmt.Sprint("remote-", n%8)))
		req := &counterv1.IncrementRequest{Amount: 1}
		for pb.Next() {
			if _, err := stub.Increment(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, start)
}

// BenchmarkColdActivation: each call activates an object whose state is on
// disk and not in memory; it reports the latency percentiles of the call.
func BenchmarkColdActivation(b *testing.B) {
	dir := b.TempDir()
	setup := newEnvIn(b, dir)
	ctx := context.Background()
	const stored = 2000
	for i := range stored {
		if _, err := setup.counters.Get(setup.counters.IDFromName(fmt.Sprint("cold-", i))).Increment(ctx, &counterv1.IncrementRequest{Amount: 1}); err != nil {
			b.Fatal(err)
		}
	}
	setup.shutdown(b)

	e := newEnvIn(b, dir, server.WithMaxActiveObjects(stored*2))
	latencies := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		if i > 0 && i%stored == 0 {
			// Every stored object is active now: evict them all.
			b.StopTimer()
			e.shutdown(b)
			e = newEnvIn(b, dir, server.WithMaxActiveObjects(stored*2))
			b.StartTimer()
		}
		stub := e.counters.Get(e.counters.IDFromName(fmt.Sprint("cold-", i%stored)))
		t0 := time.Now()
		r, err := stub.GetValue(ctx, &counterv1.GetValueRequest{})
		latencies = append(latencies, time.Since(t0))
		if err != nil || r.GetValue() != 1 {
			b.Fatalf("value %d, err %v", r.GetValue(), err)
		}
	}
	b.StopTimer()
	reportLatencies(b, latencies)
}

// reportLatencies reports the median and 99th percentile of lat, in µs.
func reportLatencies(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkConnectUnaryBaseline: the same transport with no object behind
// it (the ID service resolving a name), to show what the transport alone
// costs on this machine.
func BenchmarkConnectUnaryBaseline(b *testing.B) {
	e := newEnv(b)
	e.serve(b)
	var clients [connections]durablev1connect.IDServiceClient
	for i := range clients {
		clients[i] = durablev1connect.NewIDServiceClient(h2cClient(), e.url)
	}
	b.SetParallelism(parallelism())
	b.ReportAllocs()
	start := time.Now()
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		ids := clients[next.Add(1)%connections]
		for pb.Next() {
			if _, err := ids.IDFromName(ctx, connect.NewRequest(&durablev1.IDFromNameRequest{Class: "Counter", Name: "x"})); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, start)
}

// BenchmarkActiveObjectMemory activates 50,000 counters and reports the
// memory each costs while in memory: live heap and goroutine stacks, after
// a garbage collection.
func BenchmarkActiveObjectMemory(b *testing.B) {
	const n = 50_000
	inUse := func() uint64 {
		m := memStats()
		return m.HeapAlloc + m.StackInuse
	}
	for range b.N {
		e := newEnv(b, server.WithIdleTimeout(time.Hour))
		before := inUse()
		inParallel(b, 32, n, func(i int) error {
			_, err := e.counters.Get(e.counters.IDFromName(fmt.Sprint("mem-", i))).GetValue(context.Background(), &counterv1.GetValueRequest{})
			return err
		})
		if e.srv.ActiveObjects() != n {
			b.Fatalf("%d objects active, want %d", e.srv.ActiveObjects(), n)
		}
		b.ReportMetric(float64(inUse()-before)/1024/n, "KiB/object")
		e.shutdown(b)
	}
}

// BenchmarkActivationAtCap: each call activates a new object while the
// active-object cap is reached, so that every activation also chooses an
// object to evict; it reports the latency percentiles of the call, which
// should not depend on the cap.
func BenchmarkActivationAtCap(b *testing.B) {
	for _, limit := range []int{10_000, 50_000, 100_000} {
		b.Run(fmt.Sprint("active=", limit), func(b *testing.B) {
			e := newEnv(b, server.WithMaxActiveObjects(limit), server.WithIdleTimeout(time.Hour))
			ctx := context.Background()
			get := func(name string) {
				if _, err := e.counters.Get(e.counters.IDFromName(name)).GetValue(ctx, &counterv1.GetValueRequest{}); err != nil {
					b.Fatal(err)
				}
			}
			for i := range limit {
				get(fmt.Sprint("fill-", i))
			}
			latencies := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				t0 := time.Now()
				get(fmt.Sprint("new-", i))
				latencies = append(latencies, time.Since(t0))
			}
			b.StopTimer()
			reportLatencies(b, latencies)
		})
	}
}
