package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkHotObjectH1: 32 callers increment one counter by name through
// the served handler (Serve: the body watch, the body cap, Connect's
// JSON), each over an HTTP/1.1 connection of its own, as `durable bench`
// does. Callers and server share the process, so ns/op counts both;
// allocs/op is the figure to compare.
func BenchmarkHotObjectH1(b *testing.B) {
	e := newEnv(b)
	e.serve(b)
	const h1Callers = 32
	endpoint := e.url + "/examples.counter.v1.Counter/Increment"
	var clients [h1Callers]*http.Client
	for i := range clients {
		clients[i] = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
	}
	call := func(c *http.Client) error {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, endpoint, strings.NewReader(`{"amount":1}`))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Durable-Object-Name", "hot")
		res, err := c.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			return err
		}
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", res.Status, body)
		}
		return nil
	}
	for _, c := range clients { // connections made, the object activated
		if err := call(c); err != nil {
			b.Fatal(err)
		}
	}
	b.SetParallelism(max(1, h1Callers/runtimeProcs()))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		c := clients[int(next.Add(1)-1)%h1Callers]
		for pb.Next() {
			if err := call(c); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, start)
	b.StopTimer()
	for _, c := range clients {
		c.CloseIdleConnections()
	}
}
