package etcdstore_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/durablego/durable"
	"github.com/durablego/durable/cluster/etcdstore"
	"github.com/durablego/durable/cluster/etcdtest"
	"github.com/durablego/durable/examples/counter"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/server"
)

// The figures of cluster mode beside the node database's, in one run:
// each benchmark runs on "sqlite" (the node database, as today) and on
// "etcd3" (an etcd store on three embedded members on loopback, with
// etcd's default 100 ms heartbeat and 1 s election, their data on disk),
// and "etcd3-tmpfs" (the same with their data in /dev/shm: etcd's CPU
// and round trips without the disk's fsyncs, which three members on one
// disk contend for; not durable across power loss).
// Everything shares the machine's cores: etcd members, server and callers.
//
//	cd cluster && go test -run '^$' -bench . -benchtime 2000x ./etcdstore

var benchWarm = flag.Bool("warm", false, "ManyObjects: call every object once before the timer starts, so that it measures commits, not activations")
var benchLanes = flag.Int("lanes", 0, "commit lanes of the etcd stores (0: the store's default)")

// etcdOptions are the options of the benchmarks' etcd stores.
func etcdOptions() []etcdstore.Option {
	opts := []etcdstore.Option{etcdstore.WithTTL(5 * time.Second)}
	if *benchLanes > 0 {
		opts = append(opts, etcdstore.WithLanes(*benchLanes))
	}
	return opts
}

// stores are the two stores the benchmarks compare; each returns a fresh
// store, closed at the benchmark's end (nil: the node database).
var stores = []struct {
	name string
	open func(b *testing.B) engine.ObjectStore
}{
	{"sqlite", func(*testing.B) engine.ObjectStore { return nil }},
	{"etcd3", func(b *testing.B) engine.ObjectStore {
		c := etcdtest.Start(b, 3, etcdtest.WithTicks(100*time.Millisecond, time.Second))
		return open(b, c.Client(b), etcdOptions()...)
	}},
	{"etcd3-tmpfs", func(b *testing.B) engine.ObjectStore {
		root, err := os.MkdirTemp("/dev/shm", "durable-bench-")
		if err != nil {
			b.Skip("no tmpfs at /dev/shm:", err)
		}
		b.Cleanup(func() { os.RemoveAll(root) })
		c := etcdtest.Start(b, 3, etcdtest.WithTicks(100*time.Millisecond, time.Second), etcdtest.WithDataIn(root))
		return open(b, c.Client(b), etcdOptions()...)
	}},
}

// benchServer is a server with the Counter class on store (nil: the node
// database of dir).
func benchServer(b *testing.B, store engine.ObjectStore, dir string) (*server.Server, *counterv1durable.CounterNamespace) {
	b.Helper()
	opts := []server.Option{server.WithDataDir(dir), server.WithSecret(secret), server.WithLogger(quiet), server.WithMaxActiveObjects(100_000)}
	if store != nil {
		opts = append(opts, server.WithStore(store))
	}
	srv, err := server.New(opts...)
	if err != nil {
		b.Fatal(err)
	}
	counters, err := counterv1durable.RegisterCounter(srv, counter.Counter{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { shutdown(b, srv) })
	return srv, counters
}

func shutdown(b *testing.B, srv *server.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv.Shutdown(ctx) // a second Shutdown errs, harmlessly
}

func forEachStore(b *testing.B, fn func(b *testing.B, store engine.ObjectStore)) {
	for _, s := range stores {
		b.Run(s.name, func(b *testing.B) {
			store := s.open(b)
			es, _ := store.(*etcdstore.Store)
			var before engine.Stats
			if es != nil {
				before = es.Stats()
			}
			fn(b, store)
			if es != nil {
				// How well the lanes pack: the batches (one object's
				// committed calls) each etcd transaction carried.
				after := es.Stats()
				if commits := after.Commits - before.Commits; commits > 0 {
					b.ReportMetric(float64(after.Batches-before.Batches)/float64(commits), "batches/txn")
				}
			}
		})
	}
}

// BenchmarkCallLatency: one caller increments one counter; every call
// persists a state change. Reports p50 and p99.
func BenchmarkCallLatency(b *testing.B) {
	forEachStore(b, func(b *testing.B, store engine.ObjectStore) {
		_, counters := benchServer(b, store, b.TempDir())
		stub := counters.Get(counters.IDFromName("latency"))
		ctx := context.Background()
		req := &counterv1.IncrementRequest{Amount: 1}
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			t0 := time.Now()
			if _, err := stub.Increment(ctx, req); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		b.StopTimer()
		reportLatencies(b, lat)
	})
}

// BenchmarkHotObject: 64 callers increment one counter in process.
func BenchmarkHotObject(b *testing.B) {
	forEachStore(b, func(b *testing.B, store engine.ObjectStore) {
		_, counters := benchServer(b, store, b.TempDir())
		stub := counters.Get(counters.IDFromName("hot"))
		parallel(b, func(ctx context.Context, req *counterv1.IncrementRequest) error {
			_, err := stub.Increment(ctx, req)
			return err
		})
	})
}

// BenchmarkManyObjects: 64 callers increment counters chosen at random
// among 10,000, in process.
func BenchmarkManyObjects(b *testing.B) {
	forEachStore(b, func(b *testing.B, store engine.ObjectStore) {
		_, counters := benchServer(b, store, b.TempDir())
		const n = 10_000
		ids := make([]durable.ID, n)
		for i := range ids {
			ids[i] = counters.IDFromName(fmt.Sprint("obj-", i))
		}
		if *benchWarm {
			inParallel(b, 64, n, func(i int) error {
				_, err := counters.Get(ids[i]).Increment(context.Background(), &counterv1.IncrementRequest{Amount: 1})
				return err
			})
		}
		parallel(b, func(ctx context.Context, req *counterv1.IncrementRequest) error {
			_, err := counters.Get(ids[rand.IntN(n)]).Increment(ctx, req)
			return err
		})
	})
}

// parallel runs call from 64 goroutines and reports calls/s.
func parallel(b *testing.B, call func(context.Context, *counterv1.IncrementRequest) error) {
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		req := &counterv1.IncrementRequest{Amount: 1}
		for pb.Next() {
			if err := call(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
}

// BenchmarkColdActivation: each call activates a stored object that is
// not in memory (a fresh server on the same store each 2,000 calls), and
// reads its state. Reports p50 and p99.
func BenchmarkColdActivation(b *testing.B) {
	forEachStore(b, func(b *testing.B, store engine.ObjectStore) {
		dir := b.TempDir()
		ctx := context.Background()
		const stored = 2000
		srv, counters := benchServer(b, store, dir)
		inParallel(b, 16, stored, func(i int) error {
			_, err := counters.Get(counters.IDFromName(fmt.Sprint("cold-", i))).Increment(ctx, &counterv1.IncrementRequest{Amount: 1})
			return err
		})
		shutdown(b, srv)
		srv, counters = benchServer(b, store, dir)
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := range b.N {
			if i > 0 && i%stored == 0 {
				b.StopTimer()
				shutdown(b, srv)
				srv, counters = benchServer(b, store, dir)
				b.StartTimer()
			}
			stub := counters.Get(counters.IDFromName(fmt.Sprint("cold-", i%stored)))
			t0 := time.Now()
			r, err := stub.GetValue(ctx, &counterv1.GetValueRequest{})
			lat = append(lat, time.Since(t0))
			if err != nil || r.GetValue() != 1 {
				b.Fatalf("value %d, err %v", r.GetValue(), err)
			}
		}
		b.StopTimer()
		reportLatencies(b, lat)
	})
}

// inParallel calls fn(i) for every i below n from workers goroutines.
func inParallel(b *testing.B, workers, n int, fn func(i int) error) {
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := w; i < n; i += workers {
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
}

// reportLatencies reports the median and 99th percentile of lat, in µs.
func reportLatencies(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
