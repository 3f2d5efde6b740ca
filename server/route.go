package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/durablego/durable"
	"github.com/durablego/durable/internal/engine"
)

// Routing between nodes (cluster mode, WithPlacement).
//
// Every node accepts every request. The router, in front of the mux, reads
// the object a request addresses the way the handlers do (the class from
// the procedure path and the Durable-Object-Id or -Name header; or the
// /objects/ and /objects-by-id/ Fetch routes, WebSocket upgrades included)
// and asks the placement where it is served. A request for a local object,
// or for none (the ID service, health, reflection, admin, routes added with
// Mount, a malformed address, which the handlers then answer), is served
// here. A request for another node's object is forwarded to it as it came,
// body unread, by httputil.ReverseProxy: over h2c, which carries Connect,
// gRPC with its trailers, gRPC-Web and Fetch bodies alike, and over
// HTTP/1.1 for WebSocket upgrades, which the proxy turns into a byte pipe.
//
// A forwarded request carries HeaderForwardedBy (the forwarding node),
// HeaderHops (how many times it was forwarded) and HeaderForwardSignature.
// A node that receives a forwarded request for an object it does not
// serve (its table is newer or older than the forwarder's) does not
// forward it again: it answers Connect Unavailable (HTTP 503 on the Fetch
// routes) with Durable-Error "not-owner" (durable.KindNotOwner) and HeaderOwner
// naming the owner it knows. The forwarder then asks the placement again
// and retries once. It retries only what certainly did not run: a
// not-owner answer, or a connection the owner refused; any other failure
// of the forward is answered Unavailable. A request that arrives with
// MaxHops hops or more is refused (508, Unavailable): a forwarding loop.
//
// # Trust between nodes
//
// A node believes HeaderForwardedBy and HeaderHops only from its peers:
// they must carry HeaderForwardSignature, "<unix seconds>.<hex>": the
// time the forwarding node signed at and an HMAC-SHA256, keyed by a key
// derived from the server's ID secret (which every node of a cluster
// shares, since they must derive the same IDs), of the forwarding node's
// name, the hop count, that time, the method and the request's path. A
// request whose signature does not verify, or was signed more than
// ForwardWindow before or after this node's clock, is a client's: its
// forwarding headers are removed and it is routed as if it came from a
// client, so that a client can neither skip the routing nor forge a loop.
//
// What the headers grant is small: a request marked as forwarded is not
// forwarded again (a node that does not serve its object answers
// not-owner), and one marked MaxHops times is refused. They let nobody
// skip the guard, which runs on the owner for every request, nor address
// another object or method than the client could anyway. So the signature
// covers what a replay could change to make them grant something else
// (the method and path, the hops) and expires, so that headers seen once
// (in a log, a trace, a proxy's capture) stop working within the window;
// a replay within the window, to the same method and path, can only have
// the request refused or served where it lands, which a client can ask
// for anyway. It does not cover the body nor the other headers: to sign
// the body the forwarder would have to buffer all of it before sending
// the headers (a streaming body, a 4 MiB message, a WebSocket), and one
// who can alter a body in transit between nodes can alter anything there.
// Integrity and secrecy of node-to-node traffic are the transport's job:
// in production it must run over mTLS (or a private network); this
// package serves and forwards plaintext h2c, which is what the tests on
// loopback use. The window must exceed the skew of the nodes' clocks.
// Durable-Call-Chain and the ID headers are believed from anyone, as on
// one node (a caller can only hurt its own calls with them).

// Headers of routing between nodes.
const (
	// HeaderForwardedBy names the node that forwarded a request.
	HeaderForwardedBy = "Durable-Forwarded-By"
	// HeaderHops counts how many times a request was forwarded.
	HeaderHops = "Durable-Hops"
	// HeaderForwardSignature authenticates HeaderForwardedBy and
	// HeaderHops (see "Trust between nodes" above).
	HeaderForwardSignature = "Durable-Forward-Signature"
	// HeaderOwner is, on a not-owner answer, the base URL of the node that
	// serves the object, as far as the answering node knows.
	HeaderOwner = "Durable-Owner"
)

// MaxHops is how many times a request may be forwarded.
const MaxHops = 2

// ForwardWindow is how long a forwarding signature is believed, before and
// after its time (see "Trust between nodes"): more than the nodes' clocks
// may differ by, far less than headers seen once should be of use.
const ForwardWindow = 30 * time.Second

// DefaultRouteWait bounds how long a call waits, at the node that received
// it, while its object's partition is being handed off by this node.
const DefaultRouteWait = 10 * time.Second

// maxReplay is how much of a forwarded request's body is kept to send it
// again after a not-owner answer; past it, the forwarder keeps none. A
// node answers not-owner from its router, before anything reads the body,
// so by then the forwarder has sent at most the peer's HTTP/2 receive
// window for the stream (1 MiB, Go's default) and read at most one more
// frame buffer of it: 2 MiB keeps every body a not-owner answer can find
// read, while a forwarder of many large uploads holds at most 2 MiB for
// each (the owner holds its message limit, 4 MiB). A not-owner answer
// after more (a peer with larger windows) is passed to the client, who
// may retry: nothing ran.
const maxReplay = 2 << 20

// router is the routing state of a server with a placement.
type router struct {
	srv       *Server // for its metrics, set after the router
	placement Placement
	node      string // this node's name, for HeaderForwardedBy
	key       []byte // HMAC key of the forwarding headers
	h2c       *http.Transport
	h1        *http.Transport
	proxy     *httputil.ReverseProxy
	peer      *http.Client // h2c, for in-process calls to other nodes
	clients   sync.Map     // remoteKey → *connect.Client[Req, Res], for remote.go
	holds     holds
	buffers   bufferPool
	macs      sync.Pool // hash.Hash: HMAC-SHA256 keyed by key
}

func newRouter(s *Server, p Placement) *router {
	var h2 http.Protocols
	h2.SetUnencryptedHTTP2(true)
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	rt := &router{
		srv:       s,
		placement: p,
		node:      s.opts.nodeName,
		key:       forwardKey(s.secret),
		h2c: &http.Transport{
			Protocols:           &h2,
			DialContext:         dialer.DialContext,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
			// A proxy passes bodies as they are: the transport must not
			// ask for gzip of its own and inflate the answer here.
			DisableCompression: true,
		},
		h1: &http.Transport{
			DialContext:        dialer.DialContext,
			IdleConnTimeout:    90 * time.Second,
			DisableCompression: true,
		},
	}
	if rt.node == "" {
		rt.node, _ = os.Hostname()
	}
	rt.peer = &http.Client{Transport: rt.h2c}
	rt.proxy = &httputil.ReverseProxy{
		Rewrite:        rt.rewrite,
		Transport:      rt,
		ModifyResponse: rt.modifyResponse,
		ErrorHandler:   rt.proxyError,
		ErrorLog:       nil,
		// Zero: the proxy flushes each write of a streaming answer (gRPC,
		// server streams, text/event-stream: any without a
		// Content-Length) at once by itself, and an answer of known length
		// leaves in one write with its headers, not in three.
		FlushInterval: 0,
		BufferPool:    &rt.buffers,
	}
	return rt
}

// bufferPool is an httputil.BufferPool of 32 KiB buffers, those the proxy
// copies answers through: without it the proxy allocates one for every
// forwarded request, which was half of what a forwarding node allocated.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if buf, ok := b.p.Get().(*[32 << 10]byte); ok {
		return buf[:]
	}
	return new([32 << 10]byte)[:]
}

func (b *bufferPool) Put(buf []byte) {
	if len(buf) == 32<<10 {
		b.p.Put((*[32 << 10]byte)(buf))
	}
}

// forwardKey derives the HMAC key of the forwarding headers from the ID
// secret, so that the secret itself keys nothing but IDs.
func forwardKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("durable forwarding v1"))
	return m.Sum(nil)
}

// sign returns the value of HeaderForwardSignature for a request with
// method to path, forwarded by node for the hops-th time, signed at sec
// (Unix seconds). The value is the same for a second: HPACK then sends
// it as an index into its table, where a value new on every request
// would be sent whole and would evict the other headers from the table.
func (rt *router) sign(node string, hops int, sec int64, method, path string) string {
	m, _ := rt.macs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, rt.key)
	}
	var b [128]byte
	msg := append(b[:0], node...)
	msg = append(msg, '\n')
	msg = strconv.AppendInt(msg, int64(hops), 10)
	msg = append(msg, '\n')
	msg = strconv.AppendInt(msg, sec, 10)
	msg = append(msg, '\n')
	msg = append(msg, method...)
	msg = append(msg, '\n')
	msg = append(msg, path...)
	m.Write(msg)
	var sum [sha256.Size]byte
	out := strconv.AppendInt(b[:0], sec, 10)
	out = append(out, '.')
	out = hex.AppendEncode(out, m.Sum(sum[:0]))
	m.Reset()
	rt.macs.Put(m)
	return string(out)
}

// hopsOf returns how many times r was forwarded by a peer, and strips the
// forwarding headers of a request whose signature does not verify at now.
func (rt *router) hopsOf(r *http.Request, now time.Time) int {
	sig := r.Header.Get(HeaderForwardSignature)
	if sig == "" && r.Header.Get(HeaderHops) == "" && r.Header.Get(HeaderForwardedBy) == "" {
		return 0
	}
	if n := rt.verify(r.Header.Get(HeaderForwardedBy), r.Header.Get(HeaderHops), sig, r.Method, r.URL.EscapedPath(), now); n > 0 {
		return n
	}
	r.Header.Del(HeaderForwardSignature)
	r.Header.Del(HeaderHops)
	r.Header.Del(HeaderForwardedBy)
	return 0
}

// verify returns the hop count of forwarding headers whose signature sig
// is good at now, 0 when it is not.
func (rt *router) verify(node, hops, sig, method, path string, now time.Time) int {
	n, err := strconv.Atoi(hops)
	if err != nil || n <= 0 {
		return 0
	}
	at, _, ok := strings.Cut(sig, ".")
	sec, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil {
		return 0
	}
	if d := now.Sub(time.Unix(sec, 0)); d > ForwardWindow || d < -ForwardWindow {
		return 0
	}
	if !hmac.Equal([]byte(sig), []byte(rt.sign(node, n, sec, method, path))) {
		return 0
	}
	return n
}

// setForwarded sets the forwarding headers on h, signed at now, for a
// request with method to path forwarded for the hops-th time.
func (rt *router) setForwarded(h http.Header, hops int, method, path string, now time.Time) {
	h.Set(HeaderForwardedBy, rt.node)
	h.Set(HeaderHops, strconv.Itoa(hops))
	h.Set(HeaderForwardSignature, rt.sign(rt.node, hops, now.Unix(), method, path))
}

// route wraps next, the server's mux, with the router; next itself
// without a placement.
func (s *Server) route(next http.Handler) http.Handler {
	rt := s.router
	if rt == nil {
		return next
	}
	errs := connect.NewErrorWriter(s.opts.handlerOptions...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hops := rt.hopsOf(r, time.Now())
		id, fetch, ok := s.routeID(r)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		answer := func(err *connect.Error, owner string) {
			if owner != "" {
				err.Meta().Set(HeaderOwner, owner)
			}
			if !fetch {
				// In the headers too, whatever the protocol: gRPC and
				// gRPC-Web carry error metadata in trailers, which the
				// forwarder's proxy sees only after the body.
				if kind := err.Meta().Get(durable.HeaderError); kind != "" {
					w.Header().Set(durable.HeaderError, kind)
				}
				errs.Write(w, r, err)
				return
			}
			res := errorResponse(httpStatus(err.Code()), durable.Kind(err.Meta().Get(durable.HeaderError)), errors.New(err.Message()))
			if owner != "" {
				res.sent.Set(HeaderOwner, owner)
			}
			res.write(w)
		}
		if hops >= MaxHops {
			err := connect.NewError(connect.CodeUnavailable, fmt.Errorf("durable: the request was forwarded %d times, the most is %d: the nodes disagree on who serves the object", hops, MaxHops))
			if fetch {
				res := errorResponse(http.StatusLoopDetected, "", errors.New(err.Message()))
				res.write(w)
				return
			}
			errs.Write(w, r, err)
			return
		}
		loc, err := s.locate(r.Context(), id)
		switch {
		case err != nil:
			answer(unavailableError(err), "")
		case loc.Local:
			next.ServeHTTP(w, withLocated(r, id, loc))
		case hops > 0:
			answer(notOwnerError(loc), loc.URL)
		default:
			rt.forward(w, r, s, id, loc, next)
		}
	})
}

// routeID returns the object r addresses, whether by a Fetch route, and
// false for a request that addresses none (served here).
func (s *Server) routeID(r *http.Request) (id [32]byte, fetch, ok bool) {
	path := r.URL.Path
	for _, prefix := range [...]string{durable.FetchByNamePrefix, durable.FetchByIDPrefix} {
		if !strings.HasPrefix(path, prefix) {
			continue
		}
		ns, ref, _, _ := s.fetchTarget(prefix, r.URL.EscapedPath())
		if ns == nil || ref == "" {
			return id, true, false
		}
		oid, err := ns.fetchID(ref, prefix == durable.FetchByIDPrefix)
		if err != nil {
			return id, true, false
		}
		return oid.Bytes(), true, true
	}
	ns := s.classOfService(path)
	if ns == nil {
		return id, false, false
	}
	oid := idOfHeaders(ns, r.Header)
	if oid.IsZero() {
		return id, false, false
	}
	return oid.Bytes(), false, true
}

// locate asks the placement where the object id is served. While this
// node hands the object's partition off (Release), it waits, at most
// DefaultRouteWait and within ctx, for the placement to name the new
// owner.
func (s *Server) locate(ctx context.Context, id [32]byte) (Location, error) {
	rt := s.router
	var deadline time.Time
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		loc, err := rt.placement.Locate(ctx, id)
		if err != nil {
			return loc, err
		}
		if !loc.Local {
			rt.holds.retire(id)
			return loc, nil
		}
		changed := rt.holds.held(id)
		if changed == nil {
			return loc, nil
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(DefaultRouteWait)
		} else if time.Now().After(deadline) {
			return Location{}, fmt.Errorf("%w: the object's partition is being handed off, and no node took it within %v", engine.ErrUnavailable, DefaultRouteWait)
		}
		t := time.NewTimer(wait)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return Location{}, ctx.Err()
		}
		t.Stop()
	}
}

// located is the router's answer for the object a request addresses, which
// the handler's call (routeCall) reads from the request's context instead
// of asking the placement a second time.
type located struct {
	id  [32]byte
	loc Location
}

type locatedKey struct{}

// withLocated returns r with the router's answer loc for the object id in
// its context.
func withLocated(r *http.Request, id [32]byte, loc Location) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), locatedKey{}, located{id, loc}))
}

// locatedHere reports whether the router found the object id served here,
// for the request of ctx, and no hand-off of it has begun since. The
// answer is of this request's object only: a call the object makes with
// its caller's context, to another object, asks the placement.
func (rt *router) locatedHere(ctx context.Context, id [32]byte) bool {
	l, ok := ctx.Value(locatedKey{}).(located)
	return ok && l.id == id && l.loc.Local && rt.holds.held(id) == nil
}

// unavailableError is the Connect error of a call whose object no node
// serves in time.
func unavailableError(err error) *connect.Error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return connect.NewError(codeOf(err), err)
	}
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("durable: no node serves the object now: %w", err))
}

// notOwnerError is the answer of a node that does not serve the object,
// to a request forwarded to it.
func notOwnerError(loc Location) *connect.Error {
	err := connect.NewError(connect.CodeUnavailable, fmt.Errorf("%w; node %q does (%s): retry", durable.ErrNotOwner, loc.Node, loc.URL))
	return withKind(err, durable.KindNotOwner)
}

// forwardState is the state of one forwarded request, shared by the
// proxy's hooks through the request's context.
type forwardState struct {
	target *url.URL
	hops   int
	body   *replayBody
	// retry: the attempt certainly did not run (not-owner, refused); set
	// by the hooks, read by forward.
	retry   bool
	outcome forwardOutcome // when it is not retried
	owner   string         // the not-owner answer's hint
	refused bool           // the retry is for a refused connection
	last    bool           // the second attempt: its failures are answered
}

type forwardKeyType struct{}

// forward sends r to the node at loc and copies its answer to w; after a
// not-owner answer or a refused connection it asks the placement again and
// retries once, here if the object is now local.
func (rt *router) forward(w http.ResponseWriter, r *http.Request, s *Server, id [32]byte, loc Location, local http.Handler) {
	s.metrics.forwarded(rt.forwardOnce(w, r, s, id, loc, local))
}

// forwardOnce is forward, returning its outcome for the metrics.
func (rt *router) forwardOnce(w http.ResponseWriter, r *http.Request, s *Server, id [32]byte, loc Location, local http.Handler) forwardOutcome {
	target, err := url.Parse(loc.URL)
	if err != nil || target.Host == "" {
		rt.fail(w, r, connect.NewError(connect.CodeUnavailable, fmt.Errorf("durable: the placement gave node %q the URL %q: %v", loc.Node, loc.URL, err)))
		return forwardFailed
	}
	st := &forwardState{target: target, hops: 1}
	if r.Body != nil && r.Body != http.NoBody {
		st.body = newReplayBody(r.Body)
	}
	rt.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), forwardKeyType{}, st)))
	if !st.retry {
		return st.outcome
	}
	s.metrics.forwardRetried()
	if st.body != nil {
		// The first attempt's body must be done with before it is read
		// again.
		select {
		case <-st.body.closed:
		case <-r.Context().Done():
			rt.fail(w, r, connect.NewError(codeOf(r.Context().Err()), r.Context().Err()))
			return forwardCanceled
		}
		if st.body.over {
			rt.fail(w, r, withKind(connect.NewError(connect.CodeUnavailable, fmt.Errorf("%w that the request went to, and the body is too large to send again: retry", durable.ErrNotOwner)), durable.KindNotOwner))
			return forwardNotOwner
		}
	}
	again := r.Clone(r.Context())
	if st.body != nil {
		again.Body = st.body.replay()
	}
	loc, err = s.relocate(r.Context(), id, loc, st.refused)
	switch {
	case err != nil:
		rt.fail(w, r, unavailableError(err))
		return failedOrCanceled(r.Context())
	case loc.Local:
		local.ServeHTTP(w, withLocated(again, id, loc))
		return forwardLocal
	}
	if target, err = url.Parse(loc.URL); err != nil || target.Host == "" {
		rt.fail(w, r, connect.NewError(connect.CodeUnavailable, fmt.Errorf("durable: the placement gave node %q the URL %q: %v", loc.Node, loc.URL, err)))
		return forwardFailed
	}
	st2 := &forwardState{target: target, hops: 1, last: true}
	rt.proxy.ServeHTTP(w, again.WithContext(context.WithValue(r.Context(), forwardKeyType{}, st2)))
	return st2.outcome
}

// forwardOutcome is how a forwarded call ended, for the outcome label of
// durable_forwarded_calls_total.
type forwardOutcome int

const (
	forwardOK       forwardOutcome = iota // a peer answered, whatever it said
	forwardLocal                          // retried here: the object came back
	forwardNotOwner                       // the nodes disagreed on its owner
	forwardFailed                         // no peer answered: Unavailable
	forwardCanceled                       // the caller left first
	forwardOutcomes
)

var forwardOutcomeNames = [forwardOutcomes]string{"ok", "local", "not_owner", "failed", "canceled"}

// failedOrCanceled is the outcome of a forward that got no answer.
func failedOrCanceled(ctx context.Context) forwardOutcome {
	if ctx.Err() != nil {
		return forwardCanceled
	}
	return forwardFailed
}

// forwardMetrics are the collectors of forwarding, part of the server's
// metrics when it has a placement.
type forwardMetrics struct {
	outcomes [forwardOutcomes]prometheus.Counter
	retries  prometheus.Counter
}

// newForwardMetrics returns the metrics of forwarding and the collectors
// to register.
func newForwardMetrics() (*forwardMetrics, []prometheus.Collector) {
	calls := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "durable_forwarded_calls_total",
		Help: "Calls this node sent to the node that serves their object (forwarded requests and in-process calls), by outcome: ok (the owner answered), local (retried here), not_owner, failed, canceled.",
	}, []string{"outcome"})
	m := &forwardMetrics{retries: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "durable_forward_retries_total",
		Help: "Forwarded calls sent again after a not-owner answer or a refused connection: nothing had run.",
	})}
	for o, name := range forwardOutcomeNames {
		m.outcomes[o] = calls.WithLabelValues(name)
	}
	return m, []prometheus.Collector{calls, m.retries}
}

// forwarded counts a forwarded call's outcome; nothing without metrics.
func (m *metrics) forwarded(o forwardOutcome) {
	if m != nil && m.forward != nil {
		m.forward.outcomes[o].Inc()
	}
}

// forwardRetried counts a retry of a forwarded call.
func (m *metrics) forwardRetried() {
	if m != nil && m.forward != nil {
		m.forward.retries.Inc()
	}
}

// relocate asks the placement again where the object id is served, after
// an attempt at the node at prev certainly did not run. When that node
// refused the connection it is down, but it holds its partitions until
// its lease expires, and the placement names it until then: relocate
// waits, within ctx and DefaultRouteWait, for the placement to name
// another node, so that callers of a crashed node's objects see the
// failover as latency rather than errors.
func (s *Server) relocate(ctx context.Context, id [32]byte, prev Location, wasRefused bool) (Location, error) {
	deadline := time.Now().Add(DefaultRouteWait)
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		loc, err := s.locate(ctx, id)
		if err != nil || loc.Local || !wasRefused || loc.URL != prev.URL || time.Now().After(deadline) {
			return loc, err
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return Location{}, ctx.Err()
		}
	}
}

// fail answers a request the router could not forward, in its protocol.
func (rt *router) fail(w http.ResponseWriter, r *http.Request, err *connect.Error) {
	if strings.HasPrefix(r.URL.Path, durable.FetchByNamePrefix) || strings.HasPrefix(r.URL.Path, durable.FetchByIDPrefix) {
		errorResponse(httpStatus(err.Code()), durable.Kind(err.Meta().Get(durable.HeaderError)), errors.New(err.Message())).write(w)
		return
	}
	connect.NewErrorWriter().Write(w, r, err)
}

func (rt *router) rewrite(pr *httputil.ProxyRequest) {
	st := pr.In.Context().Value(forwardKeyType{}).(*forwardState)
	pr.SetURL(st.target)
	pr.Out.Host = pr.In.Host
	pr.SetXForwarded()
	if st.body != nil && !st.last {
		pr.Out.Body = st.body
	}
	rt.setForwarded(pr.Out.Header, st.hops, pr.Out.Method, pr.Out.URL.EscapedPath(), time.Now())
}

// RoundTrip sends WebSocket upgrades over HTTP/1.1 and the rest over h2c.
func (rt *router) RoundTrip(r *http.Request) (*http.Response, error) {
	if isWebSocketUpgrade(r) {
		return rt.h1.RoundTrip(r)
	}
	return rt.h2c.RoundTrip(r)
}

// modifyResponse turns a not-owner answer into a retry, unless it is the
// second attempt's.
func (rt *router) modifyResponse(res *http.Response) error {
	st := res.Request.Context().Value(forwardKeyType{}).(*forwardState)
	if !notOwnerResponse(res) {
		return nil
	}
	if st.last {
		st.outcome = forwardNotOwner
		return nil
	}
	st.retry = true
	st.owner = res.Header.Get(HeaderOwner)
	return errNotOwner
}

var errNotOwner = errors.New("durable: not owner")

// notOwnerResponse reports whether res is a not-owner answer: the router
// that answers one sets its Durable-Error header in every protocol.
func notOwnerResponse(res *http.Response) bool {
	return res.Header.Get(durable.HeaderError) == string(durable.KindNotOwner)
}

func (rt *router) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	st := r.Context().Value(forwardKeyType{}).(*forwardState)
	if errors.Is(err, errNotOwner) {
		return // forward retries
	}
	if !st.last && refused(err) {
		st.retry, st.refused = true, true
		return
	}
	if r.Context().Err() != nil {
		st.outcome = forwardCanceled
		return // the client left
	}
	st.outcome = forwardFailed
	rt.fail(w, r, connect.NewError(connect.CodeUnavailable, fmt.Errorf("durable: forwarding to %s: %w", st.target.Host, err)))
}

// refused reports whether err is a connection the peer refused: the
// request certainly did not reach it.
func refused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// replayBody is a forwarded request's body that keeps what it read, up to
// maxReplay, so that the request can be sent again after an answer that
// says nothing ran. Close does not close the client's body: the second
// attempt reads the rest of it. closed is closed once the first attempt's
// transport is done with it (no Read in progress, none to come).
type replayBody struct {
	src    io.ReadCloser
	mu     sync.Mutex // held by Read: Close waits for a Read in progress
	buf    bytes.Buffer
	over   bool
	done   bool
	once   sync.Once
	closed chan struct{}
}

func newReplayBody(src io.ReadCloser) *replayBody {
	return &replayBody{src: src, closed: make(chan struct{})}
}

func (b *replayBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.src.Read(p)
	if !b.over {
		if b.buf.Len()+n > maxReplay {
			b.over = true
			b.buf = bytes.Buffer{}
		} else {
			b.buf.Write(p[:n])
		}
	}
	return n, err
}

// Close may be called while a Read blocks (HTTP/2 closes a reset stream's
// body from another goroutine): it does not wait for it.
func (b *replayBody) Close() error {
	b.once.Do(func() {
		finish := func() {
			b.done = true
			b.mu.Unlock()
			close(b.closed)
		}
		if b.mu.TryLock() { // no Read in progress: the common case
			finish()
			return
		}
		go func() {
			b.mu.Lock()
			finish()
		}()
	})
	return nil
}

// replay returns the body again, once closed is: what was read, then the
// rest.
func (b *replayBody) replay() io.ReadCloser {
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b.buf.Bytes()), b.src), b.src}
}

// WithNodeName names this node in the HeaderForwardedBy header of the
// requests it forwards (cluster mode). Default: the host name.
func WithNodeName(name string) Option { return func(o *options) { o.nodeName = name } }
