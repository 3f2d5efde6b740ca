package server_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durablego/durable/examples/counter"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/internal/probe"
	"github.com/durablego/durable/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestMain lets the test binary act as a server process for the tests that
// kill one, fill its disk, lock its data directory or flood it with
// connections (see childCommand).
func TestMain(m *testing.M) {
	if dir := os.Getenv("DURABLE_ALARM_CHILD"); dir != "" {
		os.Exit(alarmChild(dir, os.Getenv("DURABLE_ALARM_BLOCK") != ""))
	}
	if dir := os.Getenv("DURABLE_DISKFULL_CHILD"); dir != "" {
		os.Exit(diskFullChild(dir, 4<<20))
	}
	if dir := os.Getenv("DURABLE_LOCK_CHILD"); dir != "" {
		os.Exit(lockChild(dir, os.Getenv("DURABLE_LOCK_MODE")))
	}
	if dir := os.Getenv("DURABLE_FLOOD_CHILD"); dir != "" {
		os.Exit(floodChild(dir))
	}
	os.Exit(m.Run())
}

// childCommand runs this test binary again, running no test, with env added
// to its environment for TestMain to act on; its standard error is ours.
func childCommand(env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	return cmd
}

// childProbes is the server of a child process: one on dir with impl as its
// Probe class. On an error it says so and exits with status 2.
func childProbes(dir string, impl durabletestv1durable.Probe) (*server.Server, *durabletestv1durable.ProbeNamespace) {
	srv, err := server.New(server.WithDataDir(dir))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	probes, err := durabletestv1durable.RegisterProbe(srv, impl)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	return srv, probes
}

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
	srv.Start() // the alarms of in-process calls fire without Handler
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

// inParallel calls fn(i) for every i below n from workers goroutines, each
// taking every workers-th i. A worker stops at its first error, which fails
// t.
func inParallel(t testing.TB, workers, n int, fn func(i int) error) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if err := fn(i); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// memStats returns the runtime's memory statistics after a garbage
// collection.
func memStats() runtime.MemStats {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) add() int64 { return c.n.Add(1) }

// grpcConn is a google.golang.org/grpc client of the server at url,
// closed when the test ends.
func grpcConn(t testing.TB, url string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(strings.TrimPrefix(url, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
