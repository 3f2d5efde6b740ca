package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durablego/durable"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1connect"
	"github.com/durablego/durable/server"
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkFetchHotObject: BenchmarkHotObject through the in-process
// stub's Fetch (POST /increment with a JSON body) instead of RPC.
func BenchmarkFetchHotObject(b *testing.B) {
	e := newEnv(b)
	stub := e.counters.Get(e.counters.IDFromName("hot"))
	body := []byte(`{"amount": 1}`)
	b.SetParallelism(parallelism())
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://counter/increment", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			res, err := stub.Fetch(ctx, req)
			if err != nil || res.StatusCode != http.StatusOK {
				b.Errorf("Fetch = %v, %v", res, err)
				return
			}
			res.Body.Close()
		}
	})
	reportRate(b, start)
}

// BenchmarkGzipBombs measures what 8 concurrent gzip bombs, each of 290 KB
// of Connect request inflating to 256 MiB, cost the server with the default
// limit: the process's resident set (VmRSS) before, and its peak (VmHWM,
// reset through /proc/self/clear_refs) during the bombs. Client and server
// share the process; the client's part is the 8 bodies.
func BenchmarkGzipBombs(b *testing.B) {
	e := newEnv(b)
	e.serve(b)
	bomb := gzipBomb(256)
	memStats()
	before := procStatus(b, "VmRSS")
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Skipf("cannot reset the peak RSS: %v", err)
	}
	for b.Loop() {
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				req, _ := http.NewRequest(http.MethodPost, e.url+counterv1connect.CounterIncrementProcedure, bytes.NewReader(bomb))
				req.Header.Set("Content-Type", "application/proto")
				req.Header.Set("Content-Encoding", "gzip")
				req.Header.Set(durable.HeaderObjectName, "bomb")
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusTooManyRequests {
					b.Errorf("HTTP %d, want 429 (ResourceExhausted)", res.StatusCode)
				}
			})
		}
		wg.Wait()
	}
	b.ReportMetric(before/(1<<20), "rss-before-MiB")
	b.ReportMetric(procStatus(b, "VmHWM")/(1<<20), "rss-peak-MiB")
	b.ReportMetric(procStatus(b, "VmRSS")/(1<<20), "rss-after-MiB")
}

// procStatus returns a field of /proc/self/status given in kB, in bytes.
func procStatus(b *testing.B, field string) float64 {
	v, err := statusField("/proc/self/status", field)
	if err != nil {
		b.Skip(err)
	}
	return v
}

// BenchmarkHotObjectMetrics is BenchmarkHotObject with metrics off and on:
// what the per-call metrics cost on the cheapest path, an in-process call
// to one hot object. Compare with benchstat -col /metrics.
func BenchmarkHotObjectMetrics(b *testing.B) {
	for _, metrics := range []string{"off", "on"} {
		b.Run("metrics="+metrics, func(b *testing.B) {
			var opts []server.Option
			if metrics == "on" {
				opts = append(opts, server.WithMetrics(prometheus.NewRegistry()))
			}
			benchHotObject(b, newEnv(b, opts...))
		})
	}
}

// statusField returns a field given in kB of path, a /proc/…/status file,
// in bytes.
func statusField(path, field string) (float64, error) {
	status, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			var kb float64
			fmt.Sscan(rest, &kb)
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no %s in %s", field, path)
}
