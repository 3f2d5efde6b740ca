// Package exampletest runs the examples' tests against a real server in
// process (package durabletest's), and gives them a clock they control and
// helpers for errors and sockets.
package exampletest

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/durablego/durable"
	"github.com/durablego/durable/durabletest"
	"github.com/durablego/durable/server"
)

// Server is a server on a data directory, shut down when the test ends
// unless the test shut it down first: a durabletest.Server, with the
// examples' historical method names.
type Server struct {
	*server.Server
	Dir string
	ts  *durabletest.Server
}

// Start starts a server on dir (t.TempDir() for a fresh one, the Dir of a
// shut down one to restart it), logging to the test's output.
func Start(t testing.TB, dir string, opts ...server.Option) *Server {
	t.Helper()
	ts := durabletest.Open(t, dir, opts...)
	return &Server{Server: ts.Server, Dir: dir, ts: ts}
}

// Serve serves the server on a loopback port, with HTTP/1.1 and h2c, and
// returns its base URL ("http://127.0.0.1:port").
func (s *Server) Serve(t testing.TB) string {
	t.Helper()
	return s.ts.URL()
}

// Shutdown shuts the server down, failing the test if that fails; it does
// nothing the second time.
func (s *Server) Shutdown(t testing.TB) {
	t.Helper()
	s.ts.Shutdown()
}

// Code returns the Connect code of an error from a stub: the Code of a
// *durable.RPCError (a method that failed, or a request it was never given),
// otherwise the code of a *connect.Error.
func Code(err error) connect.Code {
	if rpc := (*durable.RPCError)(nil); errors.As(err, &rpc) {
		return rpc.Code
	}
	return connect.CodeOf(err)
}

// WantError fails the test unless err carries code and, when msg is not
// empty, a message containing msg.
func WantError(t testing.TB, what string, err error, code connect.Code, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want %v", what, code)
	}
	if got := Code(err); got != code {
		t.Fatalf("%s: error %q has code %v, want %v", what, err, got, code)
	}
	if msg != "" && !strings.Contains(err.Error(), msg) {
		t.Fatalf("%s: error %q, want it to contain %q", what, err, msg)
	}
}

// Clock is a clock that moves only when told to. Its Now method is what the
// examples take as their clock.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock reading start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
