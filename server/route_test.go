package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	gorilla "github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/durablego/durable"
	"github.com/durablego/durable/client"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1connect"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/probe"
	"github.com/durablego/durable/server"
)

// table is the partition table of a test cluster: which node serves each
// object, flipped by the tests. It is the placement's real job for
// routing (the fence is not under test here).
type table struct {
	mu     sync.Mutex
	urls   []string
	owner  int // of every object not in byID; -1: none
	byID   map[[32]byte]int
	change chan struct{} // closed when owner changes
}

func (tb *table) set(owner int) {
	tb.mu.Lock()
	tb.owner = owner
	close(tb.change)
	tb.change = make(chan struct{})
	tb.mu.Unlock()
}

func (tb *table) setID(id durable.ID, owner int) {
	tb.mu.Lock()
	tb.byID[id.Bytes()] = owner
	tb.mu.Unlock()
}

// placement is one node's view of the table. stale, while above zero,
// makes its next answers name node staleTo instead (a watch that lags).
type placement struct {
	self    int
	tb      *table
	stale   atomic.Int32
	staleTo int
	asked   atomic.Int64
}

func (p *placement) Locate(ctx context.Context, id [32]byte) (server.Location, error) {
	p.asked.Add(1)
	for {
		p.tb.mu.Lock()
		owner, ok := p.tb.byID[id]
		if !ok {
			owner = p.tb.owner
		}
		change := p.tb.change
		urls := p.tb.urls
		p.tb.mu.Unlock()
		if p.stale.Add(-1) >= 0 {
			owner = p.staleTo
		}
		if owner >= 0 {
			return server.Location{Local: owner == p.self, Node: fmt.Sprint("node", owner), URL: urls[owner]}, nil
		}
		t := time.NewTimer(2 * time.Second)
		select {
		case <-change:
			t.Stop()
		case <-t.C:
			return server.Location{}, fmt.Errorf("%w: no node serves the object", engine.ErrUnavailable)
		case <-ctx.Done():
			t.Stop()
			return server.Location{}, ctx.Err()
		}
	}
}

// node is one server of a test cluster.
type node struct {
	*env
	place *placement
	socks *probe.SocketProbe
}

// newCluster starts n servers on loopback, each with its own data
// directory, all over one node database (engine.Open, WithStore) so that
// an object that moves keeps its state, with node owner serving every
// object.
func newCluster(t testing.TB, n, owner int) (*table, []*node) {
	t.Helper()
	return newClusterWith(t, n, owner, nil)
}

// newClusterWith is newCluster with more options for node i, from opts
// when it is not nil.
func newClusterWith(t testing.TB, n, owner int, opts func(i int) []server.Option) (*table, []*node) {
	t.Helper()
	db, err := engine.Open(filepath.Join(t.TempDir(), "objects.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() }) // after every server's shutdown
	secret := []byte("cluster test secret, 32 bytes..")
	tb := &table{urls: make([]string, n), owner: owner, byID: make(map[[32]byte]int), change: make(chan struct{})}
	lns := make([]net.Listener, n)
	for i := range n {
		if lns[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		tb.urls[i] = "http://" + lns[i].Addr().String()
	}
	nodes := make([]*node, n)
	for i := range n {
		p := &placement{self: i, tb: tb}
		o := []server.Option{server.WithStore(db), server.WithSecret(secret), server.WithPlacement(p), server.WithNodeName(fmt.Sprint("node", i))}
		if opts != nil {
			o = append(o, opts(i)...)
		}
		e := newEnvIn(t, t.TempDir(), o...)
		sp := &probe.SocketProbe{Closed: make(chan probe.SocketClose, 64), Errors: make(chan error, 64)}
		if _, err := server.Register[*durabletestv1.ProbeState](e.srv, server.Class{Name: "SocketProbe", Segment: "socket-probe"}, sp); err != nil {
			t.Fatal(err)
		}
		e.url = tb.urls[i]
		served := make(chan error, 1)
		ln := lns[i]
		go func() { served <- e.srv.Serve(ln) }()
		t.Cleanup(func() {
			e.shutdown(t)
			if err := <-served; !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("serve: %v", err)
			}
		})
		nodes[i] = &node{env: e, place: p, socks: sp}
	}
	return tb, nodes
}

// TestForwardedRPCsReachTheOwner calls node 1's objects through node 0
// over Connect, gRPC and gRPC-Web: the values are the owner's, and only
// the owner activates them.
func TestForwardedRPCsReachTheOwner(t *testing.T) {
	_, nodes := newCluster(t, 2, 1)
	ctx := context.Background()
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			counters := counterv1durable.NewCounterClient(h2cClient(), nodes[0].url, client.WithClientOptions(p.opts...))
			stub := counters.Get(counters.IDFromName("fwd-" + p.name))
			for i := int64(1); i <= 3; i++ {
				r, err := stub.Increment(ctx, &counterv1.IncrementRequest{Amount: 2})
				if err != nil || r.GetValue() != 2*i {
					t.Fatalf("increment %d through node 0: value %d, err %v", i, r.GetValue(), err)
				}
			}
			if q := nodes[1].srv.QueuedCalls("Counter", nodes[1].counters.IDFromName("fwd-"+p.name)); q != 0 {
				t.Fatalf("queued on the owner: %d", q)
			}
		})
	}
	if got := nodes[0].srv.ActiveObjects(); got != 0 {
		t.Fatalf("node 0 activated %d objects; it serves none", got)
	}
	if got := nodes[1].srv.ActiveObjects(); got != len(protocols) {
		t.Fatalf("node 1 has %d objects in memory, want %d", got, len(protocols))
	}
}

// TestForwardedGRPCErrorKeepsTrailers: a method's error through a
// forwarding node reaches a grpc-go client with its code, message and
// the Durable-Error metadata, which gRPC sends in trailers.
func TestForwardedGRPCErrorKeepsTrailers(t *testing.T) {
	_, nodes := newCluster(t, 2, 1)
	conn := grpcConn(t, nodes[0].url)
	ctx := metadata.AppendToOutgoingContext(context.Background(), durable.HeaderObjectName, "trailers")
	var trailer metadata.MD
	err := conn.Invoke(ctx, "/"+durabletestv1connect.ProbeName+"/Add", &durabletestv1.AddRequest{Amount: 1, Fail: true, Code: int32(connect.CodeAborted)}, new(durabletestv1.AddResponse), grpcTrailer(&trailer))
	st, _ := status.FromError(err)
	if st.Code() != codes.Aborted || !strings.Contains(st.Message(), "failing with code") {
		t.Fatalf("err = %v; want Aborted from the probe", err)
	}
	if got := trailer.Get(strings.ToLower(durable.HeaderError)); len(got) != 1 || got[0] != string(durable.KindMethod) {
		t.Fatalf("trailer %s = %v; want [%s]", durable.HeaderError, got, durable.KindMethod)
	}
	var ok durabletestv1.AddResponse
	if err := conn.Invoke(ctx, "/"+durabletestv1connect.ProbeName+"/Add", &durabletestv1.AddRequest{Amount: 5}, &ok); err != nil || ok.GetValue() != 5 {
		t.Fatalf("Add = %d, %v; want 5 (the failed call rolled back)", ok.GetValue(), err)
	}
}

// TestForwardedFetch: the Fetch route through node 0, body and status.
func TestForwardedFetch(t *testing.T) {
	_, nodes := newCluster(t, 2, 1)
	hc := &http.Client{}
	post := func(path, body string) (int, string) {
		t.Helper()
		res, err := hc.Post(nodes[0].url+"/objects/counter/fetched"+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := post("/increment", `{"amount":7}`); code != 200 || !strings.Contains(body, `"value":7`) {
		t.Fatalf("POST /increment through node 0: %d %q", code, body)
	}
	if code, body := post("/increment", `{"amount":3}`); code != 200 || !strings.Contains(body, `"value":10`) {
		t.Fatalf("second POST: %d %q", code, body)
	}
	if code, _ := post("/nowhere", ""); code != http.StatusNotFound {
		t.Fatalf("POST /nowhere: %d; want the object's 404", code)
	}
	if nodes[0].srv.ActiveObjects() != 0 || nodes[1].srv.ActiveObjects() != 1 {
		t.Fatalf("active: node 0 %d, node 1 %d; want 0 and 1", nodes[0].srv.ActiveObjects(), nodes[1].srv.ActiveObjects())
	}
}

// TestForwardedWebSocketEchoes: a socket opened through node 0 lives on
// node 1 and echoes.
func TestForwardedWebSocketEchoes(t *testing.T) {
	_, nodes := newCluster(t, 2, 1)
	c := dialVia(t, nodes[0].url, "ws-fwd")
	if err := c.WriteMessage(gorilla.TextMessage, []byte("echo hello")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, msg, err := c.ReadMessage()
	if err != nil || string(msg) != "hello" {
		t.Fatalf("echo = %q, %v", msg, err)
	}
	if nodes[0].srv.ActiveObjects() != 0 {
		t.Fatalf("node 0 activated the socket's object")
	}
}

// TestCrossOriginThroughAForwarder: browsers' doors hold the same through
// a node that does not own the object as on its owner. A CORS preflight
// (which names no object) is answered by the node it reaches, by the same
// policy; a cross-site state change on a Fetch route and a cross-site
// socket are refused with 403 before any node runs the object.
func TestCrossOriginThroughAForwarder(t *testing.T) {
	const app, evil = "https://app.example", "https://evil.example"
	_, nodes := newClusterWith(t, 2, 1, func(int) []server.Option { return []server.Option{server.WithCORS(app)} })
	hc := &http.Client{}
	do := func(method, path, origin string, h http.Header) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, nodes[0].url+path, strings.NewReader(`{"amount":1}`))
		if err != nil {
			t.Fatal(err)
		}
		maps.Copy(req.Header, h)
		req.Header.Set("Origin", origin)
		return doDiscard(t, hc, req)
	}
	preflight := http.Header{"Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"content-type,durable-object-name"}}
	if res := do(http.MethodOptions, "/durabletest.v1.Probe/Add", app, preflight); res.StatusCode/100 != 2 || res.Header.Get("Access-Control-Allow-Origin") != app {
		t.Fatalf("preflight from %s through node 0: %d, allow-origin %q", app, res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"))
	}
	if res := do(http.MethodOptions, "/durabletest.v1.Probe/Add", evil, preflight); res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from %s through node 0 allowed: %d, allow-origin %q", evil, res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"))
	}
	crossSite := http.Header{"Sec-Fetch-Site": {"cross-site"}, "Content-Type": {"application/json"}}
	if res := do(http.MethodPost, "/objects/counter/csrf-evil/increment", evil, crossSite); res.StatusCode != http.StatusForbidden || res.Header.Get(durable.HeaderError) != string(durable.KindCrossOrigin) {
		t.Fatalf("cross-site POST through node 0: %d, kind %q; want 403 cross-origin", res.StatusCode, res.Header.Get(durable.HeaderError))
	}
	if res := do(http.MethodPost, "/objects/counter/csrf-app/increment", app, crossSite); res.StatusCode != http.StatusOK {
		t.Fatalf("POST from the trusted %s through node 0: %d", app, res.StatusCode)
	}
	ws := http.Header{"Origin": {evil}}
	_, res, err := gorilla.DefaultDialer.Dial("ws"+strings.TrimPrefix(nodes[0].url, "http")+"/objects/socket-probe/csws/", ws)
	if err == nil || res == nil || res.StatusCode != http.StatusForbidden {
		code := 0
		if res != nil {
			code = res.StatusCode
		}
		t.Fatalf("cross-site socket through node 0: %v (status %d); want 403", err, code)
	}
	if n0, n1 := nodes[0].srv.ActiveObjects(), nodes[1].srv.ActiveObjects(); n0 != 0 || n1 != 1 {
		t.Fatalf("active: node 0 %d, node 1 %d; want 0 and 1 (the trusted POST's object only)", n0, n1)
	}
}

// doDiscard sends req and returns its response, its body read and closed.
func doDiscard(t testing.TB, hc *http.Client, req *http.Request) *http.Response {
	t.Helper()
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}

// dialVia opens a socket on the SocketProbe name through the node at base.
func dialVia(t testing.TB, base, name string) *gorilla.Conn {
	t.Helper()
	c, res, err := gorilla.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/objects/socket-probe/"+name+"/", nil)
	if err != nil {
		code := 0
		if res != nil {
			code = res.StatusCode
		}
		t.Fatalf("dial %s through %s: %v (status %d)", name, base, err, code)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestHopLimit: a request already forwarded MaxHops times is refused,
// in the RPC's protocol and with 508 on the Fetch route; forged
// forwarding headers (a bad signature) are ignored and the request routed.
func TestHopLimit(t *testing.T) {
	_, nodes := newCluster(t, 2, 1)
	hc := h2cClient()
	path := "/" + durabletestv1connect.ProbeName + "/Add"
	send := func(h map[string][]string, p, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, nodes[0].url+p, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(durable.HeaderObjectName, "hops")
		maps.Copy(req.Header, h)
		return doDiscard(t, hc, req)
	}
	res := send(server.ForwardedHeader(nodes[0].srv, server.MaxHops, http.MethodPost, path), path, `{"amount":1}`)
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("RPC at %d hops: status %d; want 503 (Unavailable)", server.MaxHops, res.StatusCode)
	}
	fetch := "/objects/counter/hops/increment"
	if res := send(server.ForwardedHeader(nodes[0].srv, server.MaxHops, http.MethodPost, fetch), fetch, `{}`); res.StatusCode != http.StatusLoopDetected {
		t.Fatalf("Fetch at %d hops: status %d; want 508", server.MaxHops, res.StatusCode)
	}
	forged := map[string][]string{server.HeaderHops: {"9"}, server.HeaderForwardedBy: {"node1"}, server.HeaderForwardSignature: {"00"}}
	if res := send(forged, path, `{"amount":1}`); res.StatusCode != 200 {
		t.Fatalf("forged headers: status %d; want 200 (routed as a client's)", res.StatusCode)
	}
	if nodes[1].srv.ActiveObjects() != 1 || nodes[0].srv.ActiveObjects() != 0 {
		t.Fatalf("the forged request was not forwarded to the owner")
	}
}

// TestNotOwnerRetry: node 0's view lags (it names node 1), node 1 knows
// node 2 serves the object: node 1 answers not-owner, node 0 asks again
// and retries at node 2, over every protocol and the Fetch route. When
// the views disagree for good, the caller gets Unavailable "not-owner"
// rather than a loop.
func TestNotOwnerRetry(t *testing.T) {
	_, nodes := newCluster(t, 3, 2)
	ctx := context.Background()
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			nodes[0].place.staleTo = 1
			nodes[0].place.stale.Store(1)
			counters := counterv1durable.NewCounterClient(h2cClient(), nodes[0].url, client.WithClientOptions(p.opts...))
			r, err := counters.Get(counters.IDFromName("moved-"+p.name)).Increment(ctx, &counterv1.IncrementRequest{Amount: 4})
			if err != nil || r.GetValue() != 4 {
				t.Fatalf("through a stale node: value %d, err %v", r.GetValue(), err)
			}
		})
	}
	nodes[0].place.staleTo = 1
	nodes[0].place.stale.Store(1)
	res, err := http.Post(nodes[0].url+"/objects/counter/moved-fetch/increment", "application/json", strings.NewReader(`{"amount":2}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(b), `"value":2`) {
		t.Fatalf("Fetch through a stale node: %d %q", res.StatusCode, b)
	}
	if nodes[1].srv.ActiveObjects() != 0 {
		t.Fatalf("node 1 activated %d objects it does not serve", nodes[1].srv.ActiveObjects())
	}
	// For good: node 0 always names node 1.
	nodes[0].place.stale.Store(1 << 30)
	counters := counterv1durable.NewCounterClient(h2cClient(), nodes[0].url)
	_, err = counters.Get(counters.IDFromName("never")).Increment(ctx, &counterv1.IncrementRequest{})
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeUnavailable || ce.Meta().Get(durable.HeaderError) != string(durable.KindNotOwner) || !errors.Is(err, durable.ErrNotOwner) {
		t.Fatalf("views that disagree: %v; want Unavailable not-owner, matching ErrNotOwner", err)
	}
	if ce.Meta().Get(server.HeaderOwner) != nodes[2].url {
		t.Fatalf("owner hint %q; want %q", ce.Meta().Get(server.HeaderOwner), nodes[2].url)
	}
}

// TestInProcessCallsToRemoteObjects: node 0's in-process stubs (and
// server.Fetch) reach node 1's objects with the same values and typed
// errors as in process, across a call chain that spans both nodes.
func TestInProcessCallsToRemoteObjects(t *testing.T) {
	tb, nodes := newCluster(t, 2, 1)
	ctx := context.Background()
	stub := nodes[0].counters.Get(nodes[0].counters.IDFromName("inproc"))
	for i := int64(1); i <= 3; i++ {
		r, err := stub.Increment(ctx, &counterv1.IncrementRequest{Amount: 3})
		if err != nil || r.GetValue() != 3*i {
			t.Fatalf("increment %d: %d, %v", i, r.GetValue(), err)
		}
	}
	if nodes[0].srv.ActiveObjects() != 0 || nodes[1].srv.ActiveObjects() != 1 {
		t.Fatalf("active: node 0 %d, node 1 %d", nodes[0].srv.ActiveObjects(), nodes[1].srv.ActiveObjects())
	}
	// A method's own error: the same *RPCError code as in process.
	probes := nodes[0].probes
	_, err := probes.Get(probes.IDFromName("p")).Add(ctx, &durabletestv1.AddRequest{Fail: true, Code: int32(connect.CodeAborted)})
	var rpc *durable.RPCError
	if !errors.As(err, &rpc) || rpc.Code != connect.CodeAborted || rpc.Class != "Probe" || rpc.Method != "Add" {
		t.Fatalf("remote Add failure: %#v; want *RPCError Aborted", err)
	}
	// A chain x (node 1) → y (node 0) → x: reentrant, as in process.
	y := probes.IDFromName("y")
	tb.setID(y, 0)
	_, err = probes.Get(probes.IDFromName("x")).Hop(ctx, &durabletestv1.HopRequest{Path: []string{"y", "x"}})
	if !errors.Is(err, durable.ErrReentrantCall) {
		t.Fatalf("chain across nodes: %v; want ErrReentrantCall", err)
	}
	local := newEnv(t)
	_, lerr := local.probes.Get(local.probes.IDFromName("x")).Hop(ctx, &durabletestv1.HopRequest{Path: []string{"y", "x"}})
	if !errors.Is(lerr, durable.ErrReentrantCall) || durable.KindOf(lerr) != durable.KindOf(err) {
		t.Fatalf("kinds differ: in process %v (%s), remote %v (%s)", lerr, durable.KindOf(lerr), err, durable.KindOf(err))
	}
	// Fetch in process.
	req, _ := http.NewRequest(http.MethodPost, "/increment", strings.NewReader(`{"amount":5}`))
	res, err := stub.Fetch(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(b), `"value":14`) {
		t.Fatalf("server.Fetch of a remote object: %d %q", res.StatusCode, b)
	}
}

// TestReleaseDrainsUnderLoad: callers keep calling one object through
// node 0 while node 1, its owner, releases it with a call blocked in its
// mailbox and more queued; then the table names node 0. No call fails,
// every increment is counted once, and later calls run on node 0.
func TestReleaseDrainsUnderLoad(t *testing.T) {
	tb, nodes := newCluster(t, 2, 1)
	ctx := context.Background()
	p := nodes[1].probes
	id := p.IDFromName("busy")
	blocked := make(chan error, 1)
	go func() {
		_, err := p.Get(id).Block(ctx, &durabletestv1.BlockRequest{})
		blocked <- err
	}()
	<-nodes[1].probe.Entered
	var calls, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			via := nodes[w%2].probes
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				_, err := via.Get(id).Add(cctx, &durabletestv1.AddRequest{Amount: 1})
				cancel()
				calls.Add(1)
				if err != nil {
					failed.Add(1)
					t.Errorf("call during the hand-off: %v", err)
					return
				}
			}
		})
	}
	eventually(t, "calls queue behind the blocked one", func() bool { return nodes[1].srv.QueuedCalls("Probe", id) > 0 })
	released := make(chan error, 1)
	go func() { released <- nodes[1].srv.Release(ctx, func([32]byte) bool { return true }) }()
	close(nodes[1].probe.Gate) // the blocked call returns; the mailbox drains
	if err := <-released; err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := <-blocked; err != nil {
		t.Fatalf("the blocked call: %v", err)
	}
	if nodes[1].srv.ActiveObjects() != 0 {
		t.Fatalf("node 1 holds %d objects after Release", nodes[1].srv.ActiveObjects())
	}
	tb.set(0)
	eventually(t, "calls run on node 0", func() bool { return nodes[0].srv.ActiveObjects() == 1 })
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d calls failed", failed.Load(), calls.Load())
	}
	r, err := nodes[0].probes.Get(id).Get(ctx, &durabletestv1.GetRequest{})
	if err != nil || r.GetState().GetValue() != calls.Load() {
		t.Fatalf("value %d, err %v; want %d (one per call)", r.GetState().GetValue(), err, calls.Load())
	}
	if nodes[1].srv.ActiveObjects() != 0 {
		t.Fatalf("node 1 activated the object again")
	}
}

// TestReleaseOfAStuckObject: a hand-off does not wait on a method that
// ignores its context: at the call's time limit the object is reset, and
// Release returns while the stuck goroutine still runs. The new owner
// reads what was committed before, nothing of the stuck call.
func TestReleaseOfAStuckObject(t *testing.T) {
	tb, nodes := newClusterWith(t, 2, 1, func(int) []server.Option {
		return []server.Option{server.WithCallTimeout(300 * time.Millisecond)}
	})
	ctx := context.Background()
	p := nodes[1].probes
	id := p.IDFromName("stuck")
	if _, err := p.Get(id).Add(ctx, &durabletestv1.AddRequest{Amount: 5}); err != nil {
		t.Fatal(err)
	}
	entered, unstick := make(chan struct{}), make(chan struct{})
	nodes[1].probe.OnPut = func(context.Context, *durabletestv1durable.ProbeObject) error {
		close(entered)
		<-unstick // ignores its context
		return nil
	}
	defer close(unstick)
	stuck := make(chan error, 1)
	go func() {
		_, err := p.Get(id).Put(ctx, &durabletestv1.PutRequest{Key: "k", Value: []byte("v")})
		stuck <- err
	}()
	<-entered
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := nodes[1].srv.Release(rctx, func([32]byte) bool { return true }); err != nil {
		t.Fatalf("Release with a stuck object: %v", err)
	}
	if err := <-stuck; connect.CodeOf(err) != connect.CodeDeadlineExceeded {
		t.Fatalf("the stuck call: %v, want DeadlineExceeded", err)
	}
	if n := nodes[1].srv.ActiveObjects(); n != 0 {
		t.Fatalf("node 1 holds %d objects after Release", n)
	}
	tb.set(0)
	r, err := nodes[0].probes.Get(id).Get(ctx, &durabletestv1.GetRequest{})
	if err != nil || r.GetState().GetValue() != 5 {
		t.Fatalf("on the new owner: state %v, %v; want value 5", r.GetState(), err)
	}
	list, err := nodes[0].probes.Get(id).List(ctx, &durabletestv1.ListRequest{})
	if err != nil || len(list.GetKeys()) != 0 {
		t.Fatalf("on the new owner: keys %v, %v; want none (nothing of the stuck Put)", list.GetKeys(), err)
	}
}

// TestDropFailsQueuedCallsMoved: calls queued behind a blocked one on the
// owner fail with Unavailable "moved" when it drops the partition.
func TestDropFailsQueuedCallsMoved(t *testing.T) {
	tb, nodes := newCluster(t, 2, 1)
	ctx := context.Background()
	p := nodes[1].probes
	id := p.IDFromName("lost")
	blocked := make(chan error, 1)
	go func() {
		_, err := p.Get(id).Block(ctx, &durabletestv1.BlockRequest{})
		blocked <- err
	}()
	<-nodes[1].probe.Entered
	queued := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := p.Get(id).Add(ctx, &durabletestv1.AddRequest{Amount: 1})
			queued <- err
		}()
	}
	eventually(t, "three calls queue", func() bool { return nodes[1].srv.QueuedCalls("Probe", id) == 3 })
	nodes[1].srv.Drop(func([32]byte) bool { return true }, errors.New("lease gone"))
	for range 3 {
		err := <-queued
		var ce *connect.Error
		if !errors.As(err, &ce) || ce.Code() != connect.CodeUnavailable || ce.Meta().Get(durable.HeaderError) != string(durable.KindMoved) || !strings.Contains(err.Error(), "lease gone") || !errors.Is(err, durable.ErrMoved) {
			t.Fatalf("queued call: %v; want Unavailable moved, matching ErrMoved", err)
		}
	}
	close(nodes[1].probe.Gate)
	<-blocked
	if nodes[1].srv.ActiveObjects() != 0 {
		t.Fatalf("node 1 holds %d objects after Drop", nodes[1].srv.ActiveObjects())
	}
	tb.set(0)
	r, err := nodes[0].probes.Get(id).Get(ctx, &durabletestv1.GetRequest{})
	if err != nil || r.GetState().GetValue() != 0 {
		t.Fatalf("after the move: value %d, %v; want 0 (nothing of the dropped calls written)", r.GetState().GetValue(), err)
	}
}

// TestReleaseClosesSocketsWithServiceRestart: a socket opened through
// node 0 on node 1's object gets 1012 when node 1 releases it, and a
// reconnection through node 0 reaches the new owner.
func TestReleaseClosesSocketsWithServiceRestart(t *testing.T) {
	tb, nodes := newCluster(t, 2, 1)
	c := dialVia(t, nodes[0].url, "restart")
	if err := c.WriteMessage(gorilla.TextMessage, []byte("echo hi")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := c.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	released := make(chan error, 1)
	go func() { released <- nodes[1].srv.Release(context.Background(), func([32]byte) bool { return true }) }()
	_, _, err := c.ReadMessage()
	var ce *gorilla.CloseError
	if !errors.As(err, &ce) || ce.Code != 1012 {
		t.Fatalf("read after Release: %v; want close 1012", err)
	}
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	tb.set(0)
	c2 := dialVia(t, nodes[0].url, "restart")
	if err := c2.WriteMessage(gorilla.TextMessage, []byte("echo again")); err != nil {
		t.Fatal(err)
	}
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, msg, err := c2.ReadMessage(); err != nil || string(msg) != "again" {
		t.Fatalf("after reconnecting: %q, %v", msg, err)
	}
}

// TestSetServing: health follows SetServing.
func TestSetServing(t *testing.T) {
	_, nodes := newCluster(t, 1, 0)
	health := grpchealth.NewClient(h2cClient(), nodes[0].url)
	check := func() grpchealth.Status {
		t.Helper()
		res, err := health.Check(context.Background(), &grpchealth.CheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return res.Status
	}
	if got := check(); got != grpchealth.StatusServing {
		t.Fatalf("health = %v", got)
	}
	nodes[0].srv.SetServing(false)
	if got := check(); got != grpchealth.StatusNotServing {
		t.Fatalf("after SetServing(false): %v", got)
	}
	nodes[0].srv.SetServing(true)
	if got := check(); got != grpchealth.StatusServing {
		t.Fatalf("after SetServing(true): %v", got)
	}
}

func grpcTrailer(md *metadata.MD) grpc.CallOption { return grpc.Trailer(md) }

// TestPlacementAskedOncePerCall: the router's answer is the call's, so
// that each node a routed call passes asks its placement once: an RPC and
// a Fetch request straight to the owner, and through a forwarding node.
func TestPlacementAskedOncePerCall(t *testing.T) {
	_, nodes := newCluster(t, 2, 1)
	ctx := context.Background()
	for _, via := range []int{1, 0} {
		counters := counterv1durable.NewCounterClient(h2cClient(), nodes[via].url)
		stub := counters.Get(counters.IDFromName(fmt.Sprint("once-", via)))
		before0, before1 := nodes[0].place.asked.Load(), nodes[1].place.asked.Load()
		if _, err := stub.Increment(ctx, &counterv1.IncrementRequest{Amount: 1}); err != nil {
			t.Fatal(err)
		}
		res, err := http.Post(nodes[via].url+fmt.Sprintf("/objects/counter/once-fetch-%d/increment", via), "application/json", strings.NewReader(`{"amount":1}`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("Fetch through node %d: status %d", via, res.StatusCode)
		}
		asked0, asked1 := nodes[0].place.asked.Load()-before0, nodes[1].place.asked.Load()-before1
		want0 := int64(0)
		if via == 0 {
			want0 = 2
		}
		if asked0 != want0 || asked1 != 2 {
			t.Errorf("an RPC and a Fetch through node %d: node 0 asked %d times, node 1 %d; want %d and 2", via, asked0, asked1, want0)
		}
	}
}

// TestForwardingSignatureRefused: forwarding headers at MaxHops that a
// node signed now are believed (the request is refused as a loop); the
// same headers expired, signed too far ahead, replayed to another path
// or method, with another hop count or node name, or with a bad MAC are
// not: they are removed and the request is routed as a client's, to the
// owner, which runs it.
func TestForwardingSignatureRefused(t *testing.T) {
	_, nodes := newCluster(t, 2, 1)
	hc := h2cClient()
	rpc := "/" + durabletestv1connect.ProbeName + "/Add"
	fetch := "/objects/counter/sig/increment"
	send := func(h map[string][]string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, nodes[0].url+rpc, strings.NewReader(`{"amount":1}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(durable.HeaderObjectName, "sig")
		for k, v := range h {
			req.Header[k] = v
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	sign := func(at time.Time, hops int, method, path string) map[string][]string {
		return server.ForwardedHeaderAt(nodes[0].srv, at, hops, method, path)
	}
	now := time.Now()
	if code := send(sign(now, server.MaxHops, http.MethodPost, rpc)); code != http.StatusServiceUnavailable {
		t.Fatalf("signed now: status %d; want 503 (the hop limit)", code)
	}
	withHeader := func(h map[string][]string, k, v string) map[string][]string {
		h[k] = []string{v}
		return h
	}
	sig := sign(now, server.MaxHops, http.MethodPost, rpc)[server.HeaderForwardSignature][0]
	_, mac, _ := strings.Cut(sig, ".")
	for _, c := range []struct {
		name string
		h    map[string][]string
	}{
		{"expired", sign(now.Add(-server.ForwardWindow-time.Second), server.MaxHops, http.MethodPost, rpc)},
		{"ahead", sign(now.Add(server.ForwardWindow+time.Second), server.MaxHops, http.MethodPost, rpc)},
		{"replayed to another path", sign(now, server.MaxHops, http.MethodPost, fetch)},
		{"replayed with another method", sign(now, server.MaxHops, http.MethodGet, rpc)},
		{"hops changed", withHeader(sign(now, 1, http.MethodPost, rpc), server.HeaderHops, fmt.Sprint(server.MaxHops))},
		{"node changed", withHeader(sign(now, server.MaxHops, http.MethodPost, rpc), server.HeaderForwardedBy, "node9")},
		{"time changed", withHeader(sign(now, server.MaxHops, http.MethodPost, rpc), server.HeaderForwardSignature, fmt.Sprint(now.Unix()+1, ".", mac))},
		{"no time", withHeader(sign(now, server.MaxHops, http.MethodPost, rpc), server.HeaderForwardSignature, mac)},
		{"bad MAC", withHeader(sign(now, server.MaxHops, http.MethodPost, rpc), server.HeaderForwardSignature, fmt.Sprint(now.Unix(), ".00"))},
	} {
		if code := send(c.h); code != http.StatusOK {
			t.Errorf("%s: status %d; want 200 (routed as a client's)", c.name, code)
		}
	}
	if nodes[1].srv.ActiveObjects() != 1 || nodes[0].srv.ActiveObjects() != 0 {
		t.Fatalf("active: node 0 %d, node 1 %d; the refused headers' requests were not routed to the owner", nodes[0].srv.ActiveObjects(), nodes[1].srv.ActiveObjects())
	}
}

// TestForwardedCallMetrics reads durable_forwarded_calls_total and
// durable_forward_retries_total from the forwarding node's registry:
// calls forwarded to the owner over each protocol and the Fetch route,
// and in process, are "ok"; one retried after a stale view is "ok" with
// a retry; views that disagree for good give "not_owner"; an owner that
// refuses connections past the caller's deadline gives "canceled", and
// one without a usable URL "failed". The owner forwarded nothing.
func TestForwardedCallMetrics(t *testing.T) {
	regs := make([]*metricsOf, 3)
	tb, nodes := newClusterWith(t, 3, 1, func(i int) []server.Option {
		m, opt := withMetrics()
		regs[i] = m
		return []server.Option{opt}
	})
	ctx := context.Background()
	get := func(i int, name string, labels ...string) float64 {
		return regs[i].gather(t).get(name, labels...)
	}
	counters := counterv1durable.NewCounterClient(h2cClient(), nodes[0].url)
	if _, err := counters.Get(counters.IDFromName("metrics")).Increment(ctx, &counterv1.IncrementRequest{Amount: 1}); err != nil {
		t.Fatal(err)
	}
	res, err := http.Post(nodes[0].url+"/objects/counter/metrics/increment", "application/json", strings.NewReader(`{"amount":1}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if _, err := nodes[0].counters.Get(nodes[0].counters.IDFromName("metrics")).Increment(ctx, &counterv1.IncrementRequest{Amount: 1}); err != nil {
		t.Fatal(err)
	}
	if got := get(0, "durable_forwarded_calls_total", "outcome", "ok"); got != 3 {
		t.Fatalf("node 0 forwarded %v calls ok; want 3 (Connect, Fetch, in process)", got)
	}
	// A stale view once: retried at the owner.
	nodes[0].place.staleTo = 2
	nodes[0].place.stale.Store(1)
	if _, err := counters.Get(counters.IDFromName("metrics")).Increment(ctx, &counterv1.IncrementRequest{Amount: 1}); err != nil {
		t.Fatal(err)
	}
	if ok, retries := get(0, "durable_forwarded_calls_total", "outcome", "ok"), get(0, "durable_forward_retries_total"); ok != 4 || retries != 1 {
		t.Fatalf("after a stale view: %v ok, %v retries; want 4 and 1", ok, retries)
	}
	// For good: every answer names the other node.
	nodes[0].place.stale.Store(1 << 30)
	if _, err := counters.Get(counters.IDFromName("metrics")).Increment(ctx, &counterv1.IncrementRequest{}); !errors.Is(err, durable.ErrNotOwner) {
		t.Fatalf("views that disagree: %v; want ErrNotOwner", err)
	}
	if got := get(0, "durable_forwarded_calls_total", "outcome", "not_owner"); got != 1 {
		t.Fatalf("not_owner: %v; want 1", got)
	}
	nodes[0].place.stale.Store(0)
	// An owner that refuses connections while the placement names it,
	// past the caller's deadline: canceled.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	setURL := func(u string) {
		tb.mu.Lock()
		tb.urls = append([]string(nil), tb.urls...)
		tb.urls[1] = u
		tb.mu.Unlock()
	}
	setURL(dead)
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := counters.Get(counters.IDFromName("metrics")).Increment(short, &counterv1.IncrementRequest{}); err == nil {
		t.Fatal("a call to an owner that refuses connections succeeded")
	}
	eventually(t, "the refused call is counted canceled", func() bool {
		return get(0, "durable_forwarded_calls_total", "outcome", "canceled") == 1
	})
	// An owner the placement gives no usable URL: failed.
	setURL("http://")
	if _, err := counters.Get(counters.IDFromName("metrics")).Increment(ctx, &counterv1.IncrementRequest{}); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("a call to an owner without a URL: %v; want Unavailable", err)
	}
	if got := get(0, "durable_forwarded_calls_total", "outcome", "failed"); got != 1 {
		t.Fatalf("failed: %v; want 1", got)
	}
	if got := get(1, "durable_forwarded_calls_total"); got != 0 {
		t.Fatalf("the owner forwarded %v calls", got)
	}
}
