package server_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durablego/durable/examples/counter"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/internal/probe"
	"github.com/durablego/durable/server"
)

// env is a server with the Counter and Probe classes registered.
type env struct {
	srv      *server.Server
	dir      string
	probe    *probe.Probe
	probes   *durabletestv1durable.ProbeNamespace
	counters *counterv1durable.CounterNamespace
	url      string // set by serve
	closed   bool
}

func newEnv(t testing.TB, opts ...server.Option) *env {
	t.Helper()
	return newEnvIn(t, t.TempDir(), opts...)
}

func newEnvIn(t testing.TB, dir string, opts ...server.Option) *env {
	t.Helper()
	return newEnvCounterIn(t, dir, counter.Counter{}, opts...)
}

// newEnvCounterIn is newEnvIn with impl as the Counter class.
func newEnvCounterIn(t testing.TB, dir string, impl counterv1durable.Counter, opts ...server.Option) *env {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
	srv, err := server.New(append([]server.Option{server.WithDataDir(dir), server.WithLogger(logger)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{srv: srv, dir: dir, probe: &probe.Probe{Gate: make(chan struct{}), Entered: make(chan struct{}, 64)}}
	if e.counters, err = counterv1durable.RegisterCounter(srv, impl); err != nil {
		t.Fatal(err)
	}
	if e.probes, err = durabletestv1durable.RegisterProbe(srv, e.probe); err != nil {
		t.Fatal(err)
	}
	e.probe.Peer = func(name string) durabletestv1durable.ProbeStub { return e.probes.Get(e.probes.IDFromName(name)) }
	t.Cleanup(func() { e.shutdown(t) })
	return e
}

func (e *env) shutdown(t testing.TB) {
	t.Helper()
	if e.closed {
		return
	}
	e.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// serve serves the server on a loopback port with HTTP/1.1 and h2c.
func (e *env) serve(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.url = "http://" + ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(ln) }()
	t.Cleanup(func() {
		e.shutdown(t)
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
}

// h2cClient speaks HTTP/2 without TLS, as gRPC needs.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

// eventually polls cond until it holds or the deadline passes: it waits for
// a condition, it does not stand in for one.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) add() int64 { return c.n.Add(1) }
