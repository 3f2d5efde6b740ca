package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
)

// Defaults of the connection limits of Serve.
const (
	// DefaultHTTPIdleTimeout is how long Serve keeps a keep-alive
	// connection (HTTP/1.1, or HTTP/2 with no stream open) that sends no
	// request. A minute is what most load balancers use; past the
	// connection cap idle connections are closed sooner, oldest first.
	DefaultHTTPIdleTimeout = time.Minute
	// DefaultHTTPReadHeaderTimeout is how long Serve waits for a request's
	// headers once it starts reading them.
	DefaultHTTPReadHeaderTimeout = 10 * time.Second
	// DefaultBodyStallTimeout is how long a request body may deliver no
	// byte before Serve cuts it. Ten seconds is far beyond a live client's
	// pause (TCP retransmits within a second or two) and short enough that
	// a stalled client releases its connection quickly.
	DefaultBodyStallTimeout = 10 * time.Second
	// DefaultMinBodyRate, in bytes per second, is the slowest average
	// rate at which Serve keeps reading a request body once the stall
	// timeout has passed since the first read: a body trickled a byte at a
	// time never stalls, but is cut. 1 KiB/s is a thousandth of a slow
	// mobile link.
	DefaultMinBodyRate = 1024
	// minDescriptorReserve is the smallest default reserve of file
	// descriptors kept from connections.
	minDescriptorReserve = 256
	// minConnections is the smallest default connection cap, whatever the
	// descriptor limit.
	minConnections = 16
)

// ErrBodyTooSlow is the cause of the error a handler gets reading a
// request body, under Serve, that stalled longer than WithBodyTimeout's
// stall timeout or arrives slower than its minimum rate. Connect answers
// it with DeadlineExceeded.
var ErrBodyTooSlow = errors.New("server: request body stalled or too slow")

// netOptions are the options of Serve's connections.
type netOptions struct {
	maxRPCMessage int
	httpServer    []func(*http.Server)
	bodyStall     time.Duration // <= 0: bodies are never cut
	minBodyRate   int64         // bytes/s; <= 0: no minimum
	maxConns      int           // <= 0: derived from the descriptor limit
	fdReserve     int           // < 0: derived from the descriptor limit
	drainGrace    time.Duration // WithDrainGrace; 0: none
}

func defaultNetOptions() netOptions {
	return netOptions{
		maxRPCMessage: DefaultMaxRPCMessageSize,
		bodyStall:     DefaultBodyStallTimeout,
		minBodyRate:   DefaultMinBodyRate,
		fdReserve:     -1,
	}
}

// fdBudget is how Serve splits the process's file descriptors between
// connections and the rest (storage: the node database and 3 descriptors
// per open SQL object; logs; the listener).
type fdBudget struct {
	limit    int // RLIMIT_NOFILE's soft limit (Go raises it to the hard limit at start)
	reserve  int // descriptors connections never take
	maxConns int // the connection cap: limit - reserve, unless set
}

// budget derives the descriptor budget from the process's limit and the
// options. The default reserve is half the limit, at least 256: with the
// limit of 20,000 it leaves 10,000 connections, and storage 10,000
// descriptors, enough for 3,312 SQL objects' files (maxSQLFiles).
func (o netOptions) budget() fdBudget {
	limit := 1 << 20
	if cur, ok := openFileLimit(); ok && cur < uint64(limit) {
		limit = int(cur)
	}
	b := fdBudget{limit: limit, reserve: o.fdReserve}
	if b.reserve < 0 {
		b.reserve = max(minDescriptorReserve, limit/2)
	}
	b.maxConns = o.maxConns
	if b.maxConns <= 0 {
		b.maxConns = max(minConnections, limit-b.reserve)
	}
	return b
}

// nodeDescriptors is what storage keeps open besides the SQL objects'
// files: the node database's writer and readers (database, WAL and index
// each), the listener and logs, with room to spare.
const nodeDescriptors = 64

// maxSQLFiles is the default budget of SQL objects' files open at once:
// what connections never take, less the node database's, three
// descriptors a file.
func (b fdBudget) maxSQLFiles() int {
	return max(1, (b.limit-b.maxConns-nodeDescriptors)/descriptorsPerSQLFile)
}

// storageDescriptors returns how many file descriptors connections can
// never take while Serve runs (before Serve: the default reserve), for
// storage to size what it keeps open.
func (s *Server) storageDescriptors() int {
	s.mu.RLock()
	l := s.conns
	s.mu.RUnlock()
	if l != nil {
		return l.budget.limit - l.budget.maxConns
	}
	b := s.opts.net.budget()
	return b.limit - b.maxConns
}

// connLimiter caps the connections open at once, counting hijacked ones
// (WebSockets) until they close. At the cap, Accept makes room by closing
// the connection idle the longest (keep-alive, or never sent a request);
// with none idle, it closes the new one at once, so that a client is
// refused quickly and no descriptor is ever spent past the cap.
//
// Idle connections are kept in a list in the order they became idle:
// every operation is O(1).
type connLimiter struct {
	net.Listener
	budget fdBudget
	log    *slog.Logger

	mu         sync.Mutex
	open       int
	head, tail *trackedConn // idle, oldest first
	idle       int
	reclaimed  atomic.Int64 // idle connections closed to make room
	refused    atomic.Int64 // new connections closed at the cap
}

func newConnLimiter(ln net.Listener, b fdBudget, log *slog.Logger) *connLimiter {
	return &connLimiter{Listener: ln, budget: b, log: log}
}

// trackedConn is a connection the limiter counts until it is closed.
type trackedConn struct {
	net.Conn
	l          *connLimiter
	prev, next *trackedConn // in the idle list; guarded by l.mu
	idle       bool         // in the idle list
	closed     bool         // no longer counted
}

// Accept returns the next connection, counted and idle until it sends a
// request.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc := &trackedConn{Conn: c, l: l}
		l.mu.Lock()
		var victim *trackedConn
		if l.open >= l.budget.maxConns {
			victim = l.head
			if victim == nil {
				l.mu.Unlock()
				c.Close()
				if n := l.refused.Add(1); n&(n-1) == 0 { // 1, 2, 4, 8...: a flood does not flood the log
					l.log.Warn("server: connection refused: every connection is busy", "max_connections", l.budget.maxConns, "refused", n)
				}
				continue
			}
			l.unlink(victim)
			victim.closed = true
			l.open--
		}
		l.open++
		l.pushIdle(tc)
		l.mu.Unlock()
		if victim != nil {
			victim.Conn.Close()
			l.reclaimed.Add(1)
		}
		return tc, nil
	}
}

// connState follows the http.Server's view of each connection: active
// ones leave the idle list, idle ones join its end.
func (l *connLimiter) connState(c net.Conn, state http.ConnState) {
	tc, ok := c.(*trackedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if tc.closed {
		return
	}
	switch state {
	case http.StateIdle:
		l.unlink(tc)
		l.pushIdle(tc)
	case http.StateActive, http.StateHijacked, http.StateClosed:
		l.unlink(tc)
	}
}

// counts returns the connections open and, of those, idle.
func (l *connLimiter) counts() (open, idle int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open, l.idle
}

func (l *connLimiter) pushIdle(tc *trackedConn) {
	tc.idle = true
	tc.prev, tc.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = tc
	} else {
		l.head = tc
	}
	l.tail = tc
	l.idle++
}

func (l *connLimiter) unlink(tc *trackedConn) {
	if !tc.idle {
		return
	}
	if tc.prev != nil {
		tc.prev.next = tc.next
	} else {
		l.head = tc.next
	}
	if tc.next != nil {
		tc.next.prev = tc.prev
	} else {
		l.tail = tc.prev
	}
	tc.prev, tc.next, tc.idle = nil, nil, false
	l.idle--
}

// Close closes the connection and stops counting it.
func (c *trackedConn) Close() error {
	l := c.l
	l.mu.Lock()
	if !c.closed {
		c.closed = true
		l.unlink(c)
		l.open--
	}
	l.mu.Unlock()
	return c.Conn.Close()
}

// CloseWrite half-closes a TCP connection, as net/http does before closing
// one whose request it did not read in full, so that the client reads the
// response rather than a reset.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom keeps sendfile and splice for responses copied from files.
func (c *trackedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// watchBodies cuts request bodies that stall or trickle (see
// WithBodyTimeout). A read is cut through the connection's read deadline
// (http.ResponseController), which works for HTTP/1.1 and HTTP/2 alike;
// the deadline is armed only while a read is pending, so a handler that
// runs long after reading its body is never cut. Requests without a body
// (WebSocket upgrades among them) are passed through untouched.
func watchBodies(h http.Handler, stall time.Duration, minRate int64) http.Handler {
	if stall <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			h.ServeHTTP(w, r)
			return
		}
		b := &bodyWatch{ReadCloser: r.Body, w: w, stall: stall, minRate: minRate}
		r.Body = b
		defer b.finish()
		h.ServeHTTP(w, r)
	})
}

// bodyWatch is a request body whose reads are cut when they stall. One
// timer per request, armed by the first read and re-armed only when it
// fires: no per-read allocation, no timer work on most reads, and no
// message to the HTTP/2 connection's goroutine unless a read is cut.
//
// The deadlines of successive reads never decrease (each is the earlier of
// the read's start plus the stall timeout and the time the bytes read so
// far allow at the minimum rate, and both grow), so a timer armed for an
// earlier read fires no later than the pending read's deadline: check then
// sets it again for what is left, or leaves it unarmed when no read is
// pending, and the next read arms it.
type bodyWatch struct {
	io.ReadCloser
	w       http.ResponseWriter
	stall   time.Duration
	minRate int64

	mu       sync.Mutex
	start    time.Time // first read
	n        int64     // bytes read
	deadline time.Time // of the read pending; zero when none is
	timer    *time.Timer
	armed    bool // the timer is set (or its check is running)
	eof      bool // the body returned io.EOF: so does every next read
	cut      bool // a read was cut: every next one fails
	done     bool // the handler returned: w must not be used
}

func (b *bodyWatch) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.cut {
		b.mu.Unlock()
		return 0, b.err()
	}
	if b.eof {
		// Connect reads a body to its end, then once more to discard what
		// is left: nothing can stall.
		b.mu.Unlock()
		return 0, io.EOF
	}
	now := time.Now()
	if b.start.IsZero() {
		b.start = now
	}
	deadline := now.Add(b.stall)
	if b.minRate > 0 {
		// After a grace of one stall timeout, the body must average the
		// minimum rate: the next byte is due when the bytes read so far
		// (and it) would have taken at that rate.
		due := b.start.Add(b.stall + time.Duration(float64(b.n+1)/float64(b.minRate)*float64(time.Second)))
		if due.Before(deadline) {
			deadline = due
		}
	}
	b.deadline = deadline
	switch {
	case b.armed: // for an earlier read: it fires no later than deadline
	case b.timer == nil:
		b.armed = true
		b.timer = time.AfterFunc(deadline.Sub(now), b.check)
	default:
		b.armed = true
		b.timer.Reset(deadline.Sub(now))
	}
	b.mu.Unlock()

	n, err := b.ReadCloser.Read(p)

	b.mu.Lock()
	b.n += int64(n)
	b.deadline = time.Time{}
	b.eof = err == io.EOF
	cut := b.cut
	b.mu.Unlock()
	if cut {
		return n, b.err()
	}
	return n, err
}

// check runs when the timer fires: if the read it was set for is still
// pending past its deadline, it cuts it.
func (b *bodyWatch) check() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done || b.cut || b.deadline.IsZero() {
		b.armed = false // no read pending: the next one arms the timer
		return
	}
	if wait := time.Until(b.deadline); wait > 0 {
		b.timer.Reset(wait) // a later read moved the deadline; still armed
		return
	}
	b.armed = false
	b.cut = true
	// A deadline in the past fails the pending read at once (HTTP/1.1:
	// the connection's; HTTP/2: the stream's). The error is ignored: a
	// writer that cannot set deadlines leaves the read to its own fate.
	_ = http.NewResponseController(b.w).SetReadDeadline(time.Unix(1, 0))
}

// err is what every read returns once the body is cut: a Connect error,
// so that Connect, gRPC and gRPC-Web handlers answer DeadlineExceeded
// rather than Unknown, wrapping ErrBodyTooSlow.
func (b *bodyWatch) err() error {
	return connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf(
		"%w: no byte for %v, or fewer than %d bytes a second on average", ErrBodyTooSlow, b.stall, b.minRate))
}

// finish stops the watch once the handler has returned.
func (b *bodyWatch) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done = true
	if b.timer != nil {
		b.timer.Stop()
	}
}

// closeWhenDraining has every HTTP/1 response written during Shutdown's
// drain grace close its connection (Connection: close), so that clients
// holding keep-alive connections to a draining server learn of it from
// their next response and dial again (through their load balancer, which
// sees NOT_SERVING) instead of finding the connection closed under a new
// request that cannot be retried. WebSocket upgrades are left alone:
// their response must say Connection: Upgrade. HTTP/2 has no such header;
// its clients hear of the end from the GOAWAY http.Server.Shutdown sends.
func (s *Server) closeWhenDraining(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() && r.ProtoMajor == 1 && r.Header.Get("Upgrade") == "" {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

// drainGrace keeps Serve serving, as usual, for WithDrainGrace's grace
// after health turned NOT_SERVING, or until ctx ends.
func (s *Server) drainGrace(ctx context.Context) {
	s.mu.RLock()
	serving := s.conns != nil
	s.mu.RUnlock()
	if s.opts.net.drainGrace <= 0 || !serving {
		return
	}
	timer := time.NewTimer(s.opts.net.drainGrace)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}
