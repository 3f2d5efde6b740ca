package servertest

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/durablego/durable/examples/counter"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/internal/probe"
	"github.com/durablego/durable/server"
)

// env is a server with the Counter and Probe classes registered, on one
// storage of the deployment.
type env struct {
	srv      *server.Server
	storage  Storage      // what the server runs on; open it again for a restart
	release  func() error // frees what the server's storage holds, after Shutdown
	probe    *probe.Probe
	probes   *durabletestv1durable.ProbeNamespace
	counters *counterv1durable.CounterNamespace
	url      string // set by serve
	closed   bool
}

// newEnv is a server on a fresh storage of d.
func newEnv(t testing.TB, d Deployment, opts ...server.Option) *env {
	t.Helper()
	return newEnvOn(t, d.Storage(t), opts...)
}

// newEnvOn is a server on st: a restart when a server on st ran before
// (and was shut down).
func newEnvOn(t testing.TB, st Storage, opts ...server.Option) *env {
	t.Helper()
	return newEnvCounterOn(t, st, counter.Counter{}, opts...)
}

// newEnvCounterOn is newEnvOn with impl as the Counter class.
func newEnvCounterOn(t testing.TB, st Storage, impl counterv1durable.Counter, opts ...server.Option) *env {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
	stOpts, release := open(t, st)
	srv, err := server.New(append(append(stOpts, server.WithLogger(logger)), opts...)...)
	if err != nil {
		release()
		t.Fatal(err)
	}
	e := &env{srv: srv, storage: st, release: release, probe: &probe.Probe{Gate: make(chan struct{}), Entered: make(chan struct{}, 64)}}
	// Registered first, so run last: after the shutdown of the cleanup
	// below, or of a test that shut the server down itself.
	t.Cleanup(func() {
		if err := release(); err != nil {
			t.Errorf("release the storage: %v", err)
		}
	})
	t.Cleanup(func() { e.shutdown(t) })
	if e.counters, err = counterv1durable.RegisterCounter(srv, impl); err != nil {
		t.Fatal(err)
	}
	if e.probes, err = durabletestv1durable.RegisterProbe(srv, e.probe); err != nil {
		t.Fatal(err)
	}
	e.probe.Peer = func(name string) durabletestv1durable.ProbeStub { return e.probes.Get(e.probes.IDFromName(name)) }
	srv.Start() // the alarms of in-process calls fire without Handler
	return e
}

// open opens st, returning its options and a release that is safe to
// call more than once.
func open(t testing.TB, st Storage) ([]server.Option, func() error) {
	t.Helper()
	opts, release := st(t)
	var once sync.Once
	var err error
	return opts, func() error {
		once.Do(func() {
			if release != nil {
				err = release()
			}
		})
		return err
	}
}

// newServer is server.New on a fresh storage of d with opts, without
// classes. The storage is released when the test ends, after the cleanups
// the test registers later (which shut the server down) have run.
func newServer(t testing.TB, d Deployment, opts ...server.Option) (*server.Server, error) {
	t.Helper()
	stOpts, release := open(t, d.Storage(t))
	t.Cleanup(func() {
		if err := release(); err != nil {
			t.Errorf("release the storage: %v", err)
		}
	})
	srv, err := server.New(append(stOpts, opts...)...)
	if err != nil {
		release()
	}
	return srv, err
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
	if e.release == nil { // an env of newServer's server: released by newServer
		return
	}
	if err := e.release(); err != nil {
		t.Errorf("release the storage: %v", err)
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

// requireSQL skips the test unless d runs classes with SQL.
func requireSQL(t testing.TB, d Deployment) {
	t.Helper()
	if !d.SQL {
		t.Skip("the deployment does not run classes with SQL (Deployment.SQL is false)")
	}
}

// requireCatalog skips the test unless servers on d keep the catalog of
// objects' names.
func requireCatalog(t testing.TB, d Deployment) {
	t.Helper()
	if !d.Catalog {
		t.Skip("servers on the deployment keep no catalog of objects' names (Deployment.Catalog is false): an object activated by its ID after a restart does not know its name")
	}
}

// requireSynctest skips the test unless servers on d run in a
// testing/synctest bubble.
func requireSynctest(t testing.TB, d Deployment) {
	t.Helper()
	if !d.Synctest {
		t.Skip("servers on the deployment cannot run in a testing/synctest bubble (Deployment.Synctest is false)")
	}
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
