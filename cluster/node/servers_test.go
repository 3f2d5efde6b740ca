package node_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durablego/durable"
	durableclient "github.com/durablego/durable/client"
	"github.com/durablego/durable/cluster/etcdstore"
	"github.com/durablego/durable/cluster/etcdtest"
	"github.com/durablego/durable/cluster/node"
	"github.com/durablego/durable/examples/counter"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/server"
)

// The node's Host is the server.
var _ node.Host = (*server.Server)(nil)

// durableNode is a real Durable server in cluster mode: an etcd store with
// managed ownership, a node, and the server they place objects for,
// serving on a loopback port.
type durableNode struct {
	name     string
	url      string
	st       *etcdstore.Store
	n        *node.Node
	srv      *server.Server
	counters *counterv1durable.CounterNamespace
	served   chan error
	stopped  bool
}

var clusterSecret = []byte("cluster test secret, 32 bytes..")

func startDurable(t testing.TB, endpoints []string, name string) *durableNode {
	t.Helper()
	ctx := context.Background()
	cli := client(t, endpoints)
	st, err := etcdstore.Open(ctx, cli, etcdstore.WithCluster("servers"), etcdstore.WithManagedOwnership(),
		etcdstore.WithOwner(name), etcdstore.WithTTL(ttl), etcdstore.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &durableNode{name: name, url: "http://" + ln.Addr().String(), st: st, served: make(chan error, 1)}
	d.n, err = node.New(ctx, cli, st, node.Config{Name: name, AdvertiseURL: d.url, Secret: clusterSecret,
		Classes: []string{"Counter"}, DataDir: t.TempDir()}, node.WithLocateWait(3*ttl), node.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	d.srv, err = server.New(server.WithStore(st), server.WithPlacement(d.n), server.WithDataDir(t.TempDir()),
		server.WithSecret(clusterSecret), server.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if d.counters, err = counterv1durable.RegisterCounter(d.srv, counter.Counter{}); err != nil {
		t.Fatal(err)
	}
	go func() { d.served <- d.srv.Serve(ln) }()
	if err := d.n.Join(ctx, d.srv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.leave(t) })
	return d
}

// leave hands the node's partitions off, then shuts its server down.
func (d *durableNode) leave(t testing.TB) {
	t.Helper()
	if d.stopped {
		return
	}
	d.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.n.Leave(ctx); err != nil {
		t.Errorf("%s: leave: %v", d.name, err)
	}
	if err := d.srv.Shutdown(ctx); err != nil {
		t.Errorf("%s: shutdown: %v", d.name, err)
	}
	if err := <-d.served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("%s: serve: %v", d.name, err)
	}
	d.n.Close()
	d.st.Close()
}

// crash stops the node as a dead process would: its lease is not revoked
// and nothing is handed off; the others take its partitions once the lease
// expires.
func (d *durableNode) crash(t testing.TB) {
	t.Helper()
	d.stopped = true
	d.n.Close()
	d.st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d.srv.Shutdown(ctx) // its store is gone: what it had not committed fails
	<-d.served
}

func h2c() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

// TestThreeServersServeEveryObjectThroughAnyNode runs three real servers
// in cluster mode over one etcd: a counter called through any node, in
// process or over Connect, reaches the one node that owns it, so the
// values of 60 counters called round-robin through all three are exact;
// when a node leaves gracefully and another crashes, every acknowledged
// increment is still there, served by the survivor.
func TestThreeServersServeEveryObjectThroughAnyNode(t *testing.T) {
	ctx := context.Background()
	nodes := startThree(t, etcdtest.Start(t, 1).Endpoints(), "n")
	const objects, rounds = 60, 3
	ids := make([]durable.ID, objects)
	for i := range ids {
		ids[i] = nodes[0].counters.IDFromName(string(rune('a'+i%26)) + string(rune('A'+i/26)))
	}
	acked := make([]int64, objects)
	var mu sync.Mutex
	call := func(via int, i int) error {
		var err error
		if via%2 == 0 { // in process, through the node's own stub
			_, err = nodes[via%len(nodes)].counters.Get(ids[i]).Increment(ctx, &counterv1.IncrementRequest{Amount: 1})
		} else { // over Connect, to the node's port
			rc := counterv1durable.NewCounterClient(h2c(), nodes[via%len(nodes)].url, durableclient.WithClientOptions())
			_, err = rc.Get(ids[i]).Increment(ctx, &counterv1.IncrementRequest{Amount: 1})
		}
		if err == nil {
			mu.Lock()
			acked[i]++
			mu.Unlock()
		}
		return err
	}
	for r := range rounds {
		var wg sync.WaitGroup
		for i := range objects {
			wg.Go(func() {
				if err := call(r*objects+i, i); err != nil {
					t.Errorf("round %d, counter %d: %v", r, i, err)
				}
			})
		}
		wg.Wait()
	}
	for i := range objects {
		v, err := nodes[i%3].counters.Get(ids[i]).GetValue(ctx, &counterv1.GetValueRequest{})
		if err != nil || v.GetValue() != acked[i] {
			t.Fatalf("counter %d through %s = %v, %v; want %d", i, nodes[i%3].name, v.GetValue(), err, acked[i])
		}
	}

	nodes[1].leave(t)
	nodes[2].crash(t)
	start := time.Now()
	for i := range objects {
		v, err := nodes[0].counters.Get(ids[i]).GetValue(ctx, &counterv1.GetValueRequest{})
		if err != nil || v.GetValue() != acked[i] {
			t.Fatalf("after the leave and the crash, counter %d = %v, %v; want %d", i, v.GetValue(), err, acked[i])
		}
	}
	t.Logf("every counter read back through the survivor %v after the crash (TTL %v)", time.Since(start), ttl)
	eventually(t, 10*ttl, "the survivor owns every partition", func() bool { return nodes[0].n.Owned() == etcdstore.Partitions })
}

// BenchmarkThreeNodesConnect measures calls over Connect (h2c) to 1,000
// counters spread over three nodes in process, on one 3-member etcd,
// 64 callers each sending every call to the next node in turn (so two
// calls in three are forwarded to the owner): the cluster's throughput
// over the network, as a client sees it (calls/s), with p50 and p99.
func BenchmarkThreeNodesConnect(b *testing.B) {
	nodes := startThree(b, etcdtest.Start(b, 3).Endpoints(), "b")
	const objects, callers = 1000, 64
	ids := make([]durable.ID, objects)
	for i := range ids {
		ids[i] = nodes[0].counters.IDFromName(fmt.Sprint("bench-", i))
	}
	hc := h2c()
	stubs := make([]*counterv1durable.CounterClient, len(nodes))
	for i, d := range nodes {
		stubs[i] = counterv1durable.NewCounterClient(hc, d.url)
	}
	var next atomic.Int64
	lat := make([][]time.Duration, callers)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := range callers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				_, err := stubs[i%int64(len(nodes))].Get(ids[(i*7919)%objects]).Increment(context.Background(), &counterv1.IncrementRequest{Amount: 1})
				if err != nil {
					b.Error(err)
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(len(all))/elapsed.Seconds(), "calls/s")
		b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// startThree starts the nodes {prefix}1 to {prefix}3 on endpoints and
// waits until they own every partition between them.
func startThree(tb testing.TB, endpoints []string, prefix string) []*durableNode {
	tb.Helper()
	nodes := []*durableNode{startDurable(tb, endpoints, prefix+"1"), startDurable(tb, endpoints, prefix+"2"), startDurable(tb, endpoints, prefix+"3")}
	eventually(tb, 10*ttl, "every partition owned", func() bool {
		owned := 0
		for _, d := range nodes {
			owned += d.n.Owned()
		}
		return owned == etcdstore.Partitions
	})
	return nodes
}
