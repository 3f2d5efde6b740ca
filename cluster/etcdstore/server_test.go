package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	gorilla "github.com/gorilla/websocket"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/durablego/durable"
	"github.com/durablego/durable/client"
	"github.com/durablego/durable/cluster/etcdstore"
	"github.com/durablego/durable/cluster/etcdtest"
	"github.com/durablego/durable/examples/counter"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/probe"
	"github.com/durablego/durable/server"
)

// secret is the ID secret every test server shares: servers on one store
// must.
var secret = []byte("cluster test secret, 32 bytes..")

// node is a server on an etcd store, serving on a loopback port, with the
// Counter, Probe and SocketProbe classes.
type node struct {
	srv      *server.Server
	store    *etcdstore.Store
	url      string
	probe    *probe.Probe
	probes   *durabletestv1durable.ProbeNamespace
	counters *counterv1durable.CounterNamespace
	sockets  *probe.SocketProbe
	stopped  bool
	served   chan error
}

// startNode opens a store of the deployment cluster on cli and a server
// on it.
func startNode(t *testing.T, cli *clientv3.Client, cluster string) *node {
	return startNodeWith(t, cli, cluster, &probe.Probe{Alarms: make(chan probe.AlarmRun, 16)})
}

// startNodeWith is startNode with p as the Probe class and the store
// options opts.
func startNodeWith(t *testing.T, cli *clientv3.Client, cluster string, p *probe.Probe, opts ...etcdstore.Option) *node {
	t.Helper()
	n := &node{store: open(t, cli, append([]etcdstore.Option{etcdstore.WithCluster(cluster)}, opts...)...)}
	srv, err := server.New(server.WithStore(n.store), server.WithDataDir(t.TempDir()),
		server.WithSecret(secret), server.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	n.srv = srv
	n.probe = p
	if n.probes, err = durabletestv1durable.RegisterProbe(srv, n.probe); err != nil {
		t.Fatal(err)
	}
	if n.counters, err = counterv1durable.RegisterCounter(srv, counter.Counter{}); err != nil {
		t.Fatal(err)
	}
	n.sockets = &probe.SocketProbe{}
	if _, err := server.Register[*durabletestv1.ProbeState](srv, server.Class{Name: "SocketProbe", Segment: "socket-probe"}, n.sockets); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.url = "http://" + ln.Addr().String()
	n.served = make(chan error, 1)
	go func() { n.served <- srv.Serve(ln) }()
	t.Cleanup(func() { n.stop(t) })
	return n
}

// stop shuts the server down, then closes its store (which frees the
// partitions).
func (n *node) stop(t *testing.T) {
	t.Helper()
	if n.stopped {
		return
	}
	n.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.srv.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if err := <-n.served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("serve: %v", err)
	}
	if err := n.store.Close(); err != nil {
		t.Errorf("close the store: %v", err)
	}
}

func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

// TestServerOnEtcd runs a server on the etcd store through the paths a
// program uses: in-process calls, remote calls over each protocol, key-value
// storage, a failed call, the Fetch route, a WebSocket, an alarm, and a
// restart on a new server and store that reads everything back.
func TestServerOnEtcd(t *testing.T) {
	ctx := context.Background()
	cli := etcdtest.Start(t, 1).Client(t)
	n := startNode(t, cli, "srv")

	// In process.
	c := n.counters.Get(n.counters.IDFromName("c1"))
	for i := int64(1); i <= 3; i++ {
		r, err := c.Increment(ctx, &counterv1.IncrementRequest{Amount: 1})
		if err != nil || r.GetValue() != i {
			t.Fatalf("Increment %d = %v, %v", i, r.GetValue(), err)
		}
	}
	// Remote, over Connect, gRPC and gRPC-Web.
	for _, opts := range [][]connect.ClientOption{nil, {connect.WithGRPC()}, {connect.WithGRPCWeb()}} {
		rc := counterv1durable.NewCounterClient(h2cClient(), n.url, client.WithClientOptions(opts...))
		if _, err := rc.Get(rc.IDFromName("c1")).Increment(ctx, &counterv1.IncrementRequest{Amount: 10}); err != nil {
			t.Fatal(err)
		}
	}
	// Key-value storage: a call that fails leaves nothing.
	p := n.probes.Get(n.probes.IDFromName("p1"))
	for _, k := range []string{"b", "a", "c"} {
		if _, err := p.Put(ctx, &durabletestv1.PutRequest{Key: k, Value: []byte(k)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Put(ctx, &durabletestv1.PutRequest{Key: "failed", Fail: true}); err == nil {
		t.Fatal("the failing Put succeeded")
	}
	// Fetch.
	res, err := http.Post(n.url+"/objects/counter/c1/increment", "application/json", strings.NewReader(`{"amount": 100}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"value":133`) {
		t.Fatalf("Fetch increment: %d %s", res.StatusCode, body)
	}
	// A WebSocket: each message is a call that commits.
	ws, _, err := gorilla.DefaultDialer.Dial(strings.Replace(n.url, "http", "ws", 1)+"/objects/socket-probe/s1/", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"echo one", "whoami"} {
		if err := ws.WriteMessage(gorilla.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := ws.ReadMessage(); err != nil {
			t.Fatal(err)
		} else if m == "echo one" && string(got) != "one" {
			t.Fatalf("echo = %q", got)
		} else if m == "whoami" && !strings.Contains(string(got), "value=2") {
			t.Fatalf("whoami = %q, want the value of two committed messages", got)
		}
	}
	ws.Close()
	// An alarm, set in a call and fired by the scheduler from the store's
	// index.
	if _, err := p.Schedule(ctx, &durabletestv1.ScheduleRequest{AtMs: time.Now().Add(50 * time.Millisecond).UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	select {
	case run := <-n.probe.Alarms:
		if run.ID.Name() != "p1" {
			t.Fatalf("alarm ran on %v", run.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the alarm did not run")
	}

	// A new server on a new store of the same deployment reads it all.
	n.stop(t)
	n2 := startNode(t, cli, "srv")
	if r, err := n2.counters.Get(n2.counters.IDFromName("c1")).GetValue(ctx, &counterv1.GetValueRequest{}); err != nil || r.GetValue() != 133 {
		t.Fatalf("counter after restart = %d, %v; want 133", r.GetValue(), err)
	}
	p2 := n2.probes.Get(n2.probes.IDFromName("p1"))
	l, err := p2.List(ctx, &durabletestv1.ListRequest{})
	if err != nil || strings.Join(l.GetKeys(), ",") != "a,b,c" {
		t.Fatalf("keys after restart = %q, %v; want a,b,c", l.GetKeys(), err)
	}
	g, err := p2.Get(ctx, &durabletestv1.GetRequest{})
	if err != nil || g.GetState().GetValue() != 3 {
		t.Fatalf("probe value after restart = %d, %v; want 3 (the failed Put left nothing)", g.GetState().GetValue(), err)
	}
}

// TestServerTooLargeCall: a call whose writes exceed one etcd transaction
// fails with ResourceExhausted, kind write-too-large, in process and
// remotely, and leaves nothing; the object keeps working.
func TestServerTooLargeCall(t *testing.T) {
	ctx := context.Background()
	cli := etcdtest.Start(t, 1).Client(t)
	n := startNode(t, cli, "big")
	big := make([]byte, engine.MaxValueSize)
	n.probe.OnPut = func(ctx context.Context, o *durabletestv1durable.ProbeObject) error {
		if o.ID.Name() != "big" {
			return nil
		}
		for i := range 15 { // 16 values of 128 KiB with Put's own: 2 MiB
			if err := o.Storage.Put(ctx, fmt.Sprint("more", i), big); err != nil {
				return err
			}
		}
		return nil
	}
	_, err := n.probes.Get(n.probes.IDFromName("big")).Put(ctx, &durabletestv1.PutRequest{Key: "k", Value: big})
	if !errors.Is(err, engine.ErrTooLarge) || connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("too large call in process = %v (code %v), want ErrTooLarge, ResourceExhausted", err, connect.CodeOf(err))
	}
	rc := durabletestv1durable.NewProbeClient(h2cClient(), n.url)
	_, err = rc.Get(rc.IDFromName("big")).Put(ctx, &durabletestv1.PutRequest{Key: "k", Value: big})
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !errors.Is(err, engine.ErrTooLarge) {
		t.Fatalf("too large call remotely = %v, want ResourceExhausted matching ErrTooLarge", err)
	}
	if kind := durable.KindOf(err); kind != durable.KindWriteTooLarge {
		t.Fatalf("kind %q, want %q", kind, durable.KindWriteTooLarge)
	}
	resp, err := cli.Get(ctx, "/durable/big/o/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Fatalf("%d keys written by refused calls (%v)", resp.Count, err)
	}
	n.probe.OnPut = nil
	if _, err := n.probes.Get(n.probes.IDFromName("big")).Put(ctx, &durabletestv1.PutRequest{Key: "k", Value: []byte("small")}); err != nil {
		t.Fatalf("a small call after the refused ones: %v", err)
	}
}

// TestServerRefusesSQLClassAndOtherSecret: classes with SQL are refused at
// registration on an etcd store, with an error that says why; a server
// with another ID secret than the deployment's is refused by New.
func TestServerRefusesSQLClassAndOtherSecret(t *testing.T) {
	cli := etcdtest.Start(t, 1).Client(t)
	n := startNode(t, cli, "sql")
	_, err := durabletestv1durable.RegisterLedger(n.srv, probe.Ledger{})
	if err == nil || !strings.Contains(err.Error(), "SQL") || !strings.Contains(err.Error(), "Ledger") {
		t.Fatalf("RegisterLedger on an etcd store = %v, want a refusal naming SQL and the class", err)
	}
	other := open(t, cli, etcdstore.WithCluster("sql2"))
	// The deployment "sql2" records this secret first...
	if s, err := server.New(server.WithStore(other), server.WithDataDir(t.TempDir()), server.WithSecret(secret), server.WithLogger(quiet)); err != nil {
		t.Fatal(err)
	} else if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// ...so another is refused.
	_, err = server.New(server.WithStore(other), server.WithDataDir(t.TempDir()), server.WithSecret([]byte("another secret entirely, 32 b..")), server.WithLogger(quiet))
	if !errors.Is(err, server.ErrSecretMismatch) {
		t.Fatalf("New with another secret = %v, want ErrSecretMismatch", err)
	}
}
