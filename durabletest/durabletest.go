package durabletest

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/durablego/durable/server"
)

// ShutdownTimeout bounds the graceful shutdown at the end of a test: the
// objects' queued calls drain and commit within it, or the test fails.
const ShutdownTimeout = 30 * time.Second

// Server is a Durable server for one test: its own data directory, its own
// loopback port once served, shut down when the test ends. It embeds the
// *server.Server, which the generated Register functions take:
//
//	ts := durabletest.New(t)
//	counters, err := counterv1durable.RegisterCounter(ts.Server, counter.Counter{})
//
// Its methods fail the test on error; they may be called from the test's
// goroutine only, as the methods of testing.T that fail a test.
type Server struct {
	*server.Server
	// Dir is the data directory: t.TempDir() for New, removed after the
	// test; the one given to Open.
	Dir string

	t      testing.TB
	mu     sync.Mutex // guards url, client and closed against the cleanup
	url    string
	client *http.Client
	served chan error // Serve's result, once URL started it
	closed bool
}

// New returns a server on a fresh data directory (t.TempDir()), so every
// test has isolated storage, logging to the test's output, with opts
// applied after those (a WithDataDir among them is overridden: use Open).
// It is shut down gracefully when the test ends, failing the test if that
// fails. Register classes on it, then call them in process through their
// namespaces, or remotely at URL.
func New(t testing.TB, opts ...server.Option) *Server {
	t.Helper()
	return Open(t, t.TempDir(), opts...)
}

// Open is New on a data directory of the caller's: the Dir of a server shut
// down earlier in the test, to test what survives a restart.
func Open(t testing.TB, dir string, opts ...server.Option) *Server {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
	opts = append([]server.Option{server.WithLogger(logger)}, opts...)
	srv, err := server.New(append(opts, server.WithDataDir(dir))...)
	if err != nil {
		t.Fatalf("durabletest: %v", err)
	}
	s := &Server{Server: srv, Dir: dir, t: t}
	t.Cleanup(s.Shutdown)
	return s
}

// URL returns the base URL of the server ("http://127.0.0.1:port"), for
// remote clients (counterv1durable.NewCounterClient(ts.Client(), ts.URL())),
// curl or a browser. The first call starts serving on a free loopback port,
// with HTTP/1.1 and h2c, which ends registration: register every class
// first. Inside a testing/synctest bubble, do not call it: a bubble has no
// network, and its goroutines would not count as blocked while serving.
func (s *Server) URL() string {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.url != "" || s.closed {
		return s.url
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.t.Fatalf("durabletest: %v", err)
	}
	s.served = make(chan error, 1)
	go func() { s.served <- s.Server.Serve(ln) }()
	s.url = "http://" + ln.Addr().String()
	return s.url
}

// Client returns an HTTP client for the server, for the generated remote
// clients: it speaks HTTP/2 without TLS (h2c), so Connect, gRPC and
// gRPC-Web all work through it (client.WithClientOptions(connect.WithGRPC())
// for gRPC). Its connections are closed when the server shuts down.
func (s *Server) Client() *http.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		s.client = &http.Client{Transport: tr}
	}
	return s.client
}

// Shutdown shuts the server down gracefully, as at the end of the test,
// failing the test if that fails or takes longer than ShutdownTimeout; it
// does nothing the second time. Call it to restart a server on its Dir
// (Open) within a test.
func (s *Server) Shutdown() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if err := s.Server.Shutdown(ctx); err != nil {
		s.t.Errorf("durabletest: shutdown: %v", err)
	}
	if s.served != nil {
		if err := <-s.served; !errors.Is(err, http.ErrServerClosed) {
			s.t.Errorf("durabletest: serve: %v", err)
		}
	}
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
}
