package node_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/durablego/durable/cluster/etcdstore"
	"github.com/durablego/durable/cluster/etcdtest"
	"github.com/durablego/durable/cluster/node"
	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/storetest"
)

const ttl = 2 * time.Second

// host records what a node asks of its server.
type host struct {
	mu       sync.Mutex
	released map[int]int
	dropped  map[int]int
	rescans  int
	serving  []bool
}

func newHost() *host { return &host{released: map[int]int{}, dropped: map[int]int{}} }

// idOf returns an object ID of partition p.
func idOf(p int) [32]byte { return [32]byte{byte(p >> 8), byte(p)} }

func (h *host) record(m map[int]int, match func([32]byte) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for p := range etcdstore.Partitions {
		if match(idOf(p)) {
			m[p]++
		}
	}
}

func (h *host) Release(ctx context.Context, match func(id [32]byte) bool) error {
	h.record(h.released, match)
	return nil
}
func (h *host) Drop(match func(id [32]byte) bool, reason error) { h.record(h.dropped, match) }
func (h *host) RescanAlarms()                                   { h.mu.Lock(); h.rescans++; h.mu.Unlock() }
func (h *host) SetServing(s bool)                               { h.mu.Lock(); h.serving = append(h.serving, s); h.mu.Unlock() }

func (h *host) lastServing() (bool, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.serving) == 0 {
		return false, false
	}
	return h.serving[len(h.serving)-1], true
}

func (h *host) counts() (released, dropped int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.released), len(h.dropped)
}

// releases returns how many hand-offs the node asked of its host.
func (h *host) releases() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, c := range h.released {
		n += c
	}
	return n
}

// member is one node of a test cluster: its own client, store and node.
type member struct {
	name string
	cli  *clientv3.Client
	st   *etcdstore.Store
	n    *node.Node
	h    *host
}

type setup struct {
	cluster string
	secret  []byte
	classes []string
	dataDir string
	opts    []node.Option // more options of node.New
}

func client(t testing.TB, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func start(t testing.TB, endpoints []string, name string, s setup) (*member, error) {
	t.Helper()
	ctx := context.Background()
	cli := client(t, endpoints)
	st, err := etcdstore.Open(ctx, cli, etcdstore.WithCluster(s.cluster), etcdstore.WithManagedOwnership(),
		etcdstore.WithOwner(name), etcdstore.WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if s.secret == nil {
		s.secret = []byte("test secret")
	}
	n, err := node.New(ctx, cli, st, node.Config{Name: name, AdvertiseURL: "http://" + name + ".invalid", Secret: s.secret, Classes: s.classes, DataDir: s.dataDir},
		append([]node.Option{node.WithLocateWait(ttl)}, s.opts...)...)
	if err != nil {
		return nil, err
	}
	m := &member{name: name, cli: cli, st: st, n: n, h: newHost()}
	t.Cleanup(func() { n.Close() })
	if err := n.Join(ctx, m.h); err != nil {
		t.Fatal(err)
	}
	return m, nil
}

func mustStart(t testing.TB, endpoints []string, name string, s setup) *member {
	t.Helper()
	m, err := start(t, endpoints, name, s)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	return m
}

// eventually polls cond every 20 ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not after %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// converged reports whether every partition has exactly one owner among
// ms, the one rendezvous hashing desires, and every node's table agrees.
func converged(ms []*member) bool {
	for p := range etcdstore.Partitions {
		owners := 0
		for _, m := range ms {
			if m.st.Token(p) != 0 {
				owners++
			}
		}
		if owners != 1 {
			return false
		}
	}
	for _, m := range ms {
		if m.n.Owned() == 0 || len(m.n.Members()) != len(ms) {
			return false
		}
		for p := range etcdstore.Partitions {
			o := m.n.Owner(p)
			if o == "" {
				return false
			}
			for _, x := range ms {
				if x.name == o && x.st.Token(p) == 0 {
					return false
				}
			}
		}
	}
	return true
}

func ownerOf(ms []*member, p int) string {
	for _, m := range ms {
		if m.st.Token(p) != 0 {
			return m.name
		}
	}
	return ""
}

func TestThreeNodesConvergeAndFourthJoins(t *testing.T) {
	ec := etcdtest.Start(t, 1)
	s := setup{cluster: "converge"}
	var ms []*member
	for i := range 3 {
		ms = append(ms, mustStart(t, ec.Endpoints(), fmt.Sprintf("n%d", i+1), s))
	}
	d := eventually(t, 30*time.Second, "three nodes converge", func() bool { return converged(ms) })
	t.Logf("three nodes converged in %v; owned %d/%d/%d", d, ms[0].n.Owned(), ms[1].n.Owned(), ms[2].n.Owned())

	// Locate agrees with ownership on every node.
	ctx := context.Background()
	for p := range etcdstore.Partitions {
		o := ownerOf(ms, p)
		for _, m := range ms {
			loc, err := m.n.Locate(ctx, idOf(p))
			if err != nil {
				t.Fatalf("%s: Locate(%d): %v", m.name, p, err)
			}
			if loc.Local != (o == m.name) || loc.Node != o || (!loc.Local && loc.URL != "http://"+o+".invalid") {
				t.Fatalf("%s: Locate(%d) = %+v; owner %s", m.name, p, loc, o)
			}
		}
	}

	before := make([]string, etcdstore.Partitions)
	for p := range before {
		before[p] = ownerOf(ms, p)
	}
	// The hand-offs while the three converged (n1 gives to n2 and n3 as
	// they start) are not the join's.
	releasedBefore := 0
	for _, m := range ms {
		releasedBefore += m.h.releases()
	}
	ms = append(ms, mustStart(t, ec.Endpoints(), "n4", s))
	d = eventually(t, 30*time.Second, "four nodes converge", func() bool { return converged(ms) })
	moved := 0
	for p := range before {
		if o := ownerOf(ms, p); o != before[p] {
			moved++
			if o != "n4" {
				t.Errorf("partition %d moved from %s to %s, not to the new node", p, before[p], o)
			}
		}
	}
	limit := etcdstore.Partitions/4 + etcdstore.Partitions*2/100
	t.Logf("fourth node: %d partitions moved in %v (limit %d)", moved, d, limit)
	if moved > limit || moved == 0 {
		t.Fatalf("join moved %d partitions, want 1..%d", moved, limit)
	}
	released := -releasedBefore
	for _, m := range ms[:3] {
		_, dr := m.h.counts()
		released += m.h.releases()
		if dr != 0 {
			t.Errorf("%s dropped %d partitions during a graceful join", m.name, dr)
		}
	}
	if released != moved {
		t.Errorf("the old nodes drained %d partitions, %d moved", released, moved)
	}
}

func TestCrashedNodesPartitionsAreReowned(t *testing.T) {
	ec := etcdtest.Start(t, 1)
	s := setup{cluster: "crash"}
	var ms []*member
	for i := range 3 {
		ms = append(ms, mustStart(t, ec.Endpoints(), fmt.Sprintf("n%d", i+1), s))
	}
	eventually(t, 30*time.Second, "converge", func() bool { return converged(ms) })
	dead := ms[0]
	// A crash: the process stops renewing and talks to no one; its lease
	// runs out in etcd.
	dead.n.Close()
	dead.cli.Close()
	crashed := time.Now()
	rest := ms[1:]
	eventually(t, 10*ttl, "the survivors own every partition", func() bool {
		return rest[0].n.Owned()+rest[1].n.Owned() == etcdstore.Partitions
	})
	t.Logf("failover: every partition re-owned %v after the crash (TTL %v)", time.Since(crashed), ttl)
	eventually(t, 10*time.Second, "the survivors converge", func() bool { return converged(rest) })
}

func TestLeaveHandsEveryPartitionOff(t *testing.T) {
	ec := etcdtest.Start(t, 1)
	s := setup{cluster: "leave"}
	var ms []*member
	for i := range 3 {
		ms = append(ms, mustStart(t, ec.Endpoints(), fmt.Sprintf("n%d", i+1), s))
	}
	eventually(t, 30*time.Second, "converge", func() bool { return converged(ms) })
	leaving := ms[2]
	owned := leaving.n.Owned()
	// Forget the handoffs of the convergence: count Leave's alone.
	leaving.h.mu.Lock()
	leaving.h.released, leaving.h.dropped = map[int]int{}, map[int]int{}
	leaving.h.mu.Unlock()
	start := time.Now()
	if err := leaving.n.Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := leaving.n.Owned(); n != 0 {
		t.Fatalf("after Leave the node owns %d partitions", n)
	}
	r, d := leaving.h.counts()
	if r != owned || d != 0 {
		t.Fatalf("Leave drained %d and dropped %d partitions; it owned %d", r, d, owned)
	}
	rest := ms[:2]
	eventually(t, 10*time.Second, "the others converge", func() bool { return converged(rest) })
	t.Logf("leave: %d partitions handed off and re-owned in %v", owned, time.Since(start))
	// The departed node no longer answers local, and it forwards every
	// partition to its new owner: its server answers requests until it
	// shuts down, and they must not fail for want of an owner.
	for p := range etcdstore.Partitions {
		loc, err := leaving.n.Locate(context.Background(), idOf(p))
		if err != nil {
			t.Fatalf("after Leave, partition %d is not forwarded: %v", p, err)
		}
		if loc.Local || loc.Node == "n3" || loc.URL == "" {
			t.Fatalf("after Leave, the departed node locates partition %d at %+v, want another node", p, loc)
		}
	}
}

func TestNameHeldByALiveProcessIsRefused(t *testing.T) {
	ec := etcdtest.Start(t, 1)
	s := setup{cluster: "names", dataDir: t.TempDir()}
	mustStart(t, ec.Endpoints(), "n1", s)
	// Another process (another data directory) with the same name.
	s2 := s
	s2.dataDir = t.TempDir()
	if _, err := start(t, ec.Endpoints(), "n1", s2); !errors.Is(err, node.ErrNameTaken) {
		t.Fatalf("second n1 = %v, want ErrNameTaken", err)
	}
}

func TestPreviousIncarnationIsRevoked(t *testing.T) {
	ec := etcdtest.Start(t, 1)
	s := setup{cluster: "reincarnate", dataDir: t.TempDir()}
	old := mustStart(t, ec.Endpoints(), "n1", s)
	eventually(t, 10*time.Second, "n1 owns everything", func() bool { return old.n.Owned() == etcdstore.Partitions })
	// It dies without leaving; the same data directory starts again at once,
	// before the old lease's TTL.
	old.n.Close()
	old.cli.Close()
	again := mustStart(t, ec.Endpoints(), "n1", s)
	if again.n.Incarnation() == old.n.Incarnation() {
		t.Fatal("the new incarnation is the old one")
	}
	eventually(t, 10*time.Second, "the new incarnation owns everything", func() bool { return again.n.Owned() == etcdstore.Partitions })
}

func TestConfigMismatchIsRefused(t *testing.T) {
	ec := etcdtest.Start(t, 1)
	s := setup{cluster: "config", classes: []string{"Counter", "Room"}}
	mustStart(t, ec.Endpoints(), "n1", s)
	bad := s
	bad.secret = []byte("another secret")
	if _, err := start(t, ec.Endpoints(), "n2", bad); !errors.Is(err, node.ErrConfigMismatch) {
		t.Fatalf("other secret = %v, want ErrConfigMismatch", err)
	}
	bad = s
	bad.classes = []string{"Counter"}
	if _, err := start(t, ec.Endpoints(), "n3", bad); !errors.Is(err, node.ErrConfigMismatch) {
		t.Fatalf("other class set = %v, want ErrConfigMismatch", err)
	}
	same := s
	same.classes = []string{"Room", "Counter"}
	if _, err := start(t, ec.Endpoints(), "n4", same); err != nil {
		t.Fatalf("same class set in another order = %v", err)
	}
}

// TestFencedNodeCommitsNothing: another lease takes a partition behind
// the owner's back; the owner's next commit for it writes nothing, and the
// node drops the partition's objects.
func TestFencedNodeCommitsNothing(t *testing.T) {
	ec := etcdtest.Start(t, 1)
	ctx := context.Background()
	a := mustStart(t, ec.Endpoints(), "n1", setup{cluster: "fence"})
	eventually(t, 10*time.Second, "n1 owns everything", func() bool { return a.n.Owned() == etcdstore.Partitions })
	id := storetest.ID(7)
	p := etcdstore.Partition(id)
	obj := engine.NewStore(a.st, "Ledger", id)
	storetest.Call(t, obj, func(kv *engine.KV) error { return kv.Put(ctx, "k", []byte("v1")) })
	if err := storetest.Commit(obj, []byte("v1")); err != nil {
		t.Fatal(err)
	}
	// An intruder deletes the owner key and re-creates it under its lease.
	cli := ec.Client(t)
	g, err := cli.Grant(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	k := a.st.Prefix() + fmt.Sprintf("parts/%04x", p)
	// As a node acquires: create if absent. n1 may re-acquire between the
	// delete and the create (it is the partition's desired owner): try
	// again, a bounded number of times.
	took := false
	for range 50 {
		if _, err := cli.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
		r, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
			Then(clientv3.OpPut(k, "intruder", clientv3.WithLease(g.ID))).Commit()
		if err != nil {
			t.Fatal(err)
		}
		if took = r.Succeeded; took {
			break
		}
	}
	if !took {
		t.Fatal("the intruder never took the partition")
	}
	storetest.Call(t, obj, func(kv *engine.KV) error { return kv.Put(ctx, "k", []byte("v2")) })
	if err := storetest.Commit(obj, []byte("v2")); !errors.Is(err, etcdstore.ErrNotOwner) {
		t.Fatalf("commit after the partition was taken = %v, want ErrNotOwner", err)
	}
	resp, err := cli.Get(ctx, a.st.Prefix()+"o/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if string(kv.Value) == "v2" {
			t.Fatalf("the fenced commit wrote %s", kv.Key)
		}
	}
	eventually(t, 10*time.Second, "the node drops the lost partition", func() bool {
		a.h.mu.Lock()
		defer a.h.mu.Unlock()
		return a.h.dropped[p] > 0
	})
	// The intruder is no member (it has no record, so no URL): Locate
	// waits for a node to serve the partition, and says none does.
	if loc, err := a.n.Locate(ctx, id); !errors.Is(err, node.ErrNoOwner) || loc.Local {
		t.Fatalf("Locate of the taken partition = %+v, %v; want ErrNoOwner", loc, err)
	}
}

// proxy forwards TCP connections to target until it is cut.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	cut    bool
}

func newProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.cut {
				p.mu.Unlock()
				c.Close()
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

// setCut closes every connection and refuses new ones while cut.
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

// TestSelfFenceWhenRenewalsFail: a node cut off from etcd stops answering
// local and reports not serving once its lease deadline passes; another
// node takes its partitions after the lease expires; reconnected, the
// node rejoins with a new lease as a new incarnation and serves again.
func TestSelfFenceWhenRenewalsFail(t *testing.T) {
	ec := etcdtest.Start(t, 1)
	ctx := context.Background()
	px := newProxy(t, ec.Members[0].ClientURL[len("http://"):])
	s := setup{cluster: "selffence"}
	a := mustStart(t, []string{"http://" + px.ln.Addr().String()}, "n1", s)
	b := mustStart(t, ec.Endpoints(), "n2", s)
	ms := []*member{a, b}
	eventually(t, 30*time.Second, "converge", func() bool { return converged(ms) })
	var mine int
	for p := range etcdstore.Partitions {
		if a.st.Token(p) != 0 {
			mine = p
			break
		}
	}
	inc := a.n.Incarnation()
	px.setCut(true)
	cut := time.Now()
	eventually(t, 3*ttl, "n1 reports not serving", func() bool { s, ok := a.h.lastServing(); return ok && !s })
	t.Logf("self-fenced %v after the cut (TTL %v)", time.Since(cut), ttl)
	if loc, _ := a.n.Locate(ctx, idOf(mine)); loc.Local {
		t.Fatal("a fenced node answers its partition local")
	}
	eventually(t, 10*ttl, "n2 owns every partition", func() bool { return b.n.Owned() == etcdstore.Partitions })
	px.setCut(false)
	eventually(t, 10*ttl, "n1 rejoins as a new incarnation", func() bool {
		s, _ := a.h.lastServing()
		return s && a.n.Incarnation() != inc
	})
	eventually(t, 30*time.Second, "the two converge again", func() bool { return converged(ms) })
}

func TestLocateDoesNotAllocate(t *testing.T) {
	ec := etcdtest.Start(t, 1)
	s := setup{cluster: "alloc"}
	a := mustStart(t, ec.Endpoints(), "n1", s)
	b := mustStart(t, ec.Endpoints(), "n2", s)
	ms := []*member{a, b}
	eventually(t, 30*time.Second, "converge", func() bool { return converged(ms) })
	ctx := context.Background()
	var local, remote [32]byte
	for p := range etcdstore.Partitions {
		if a.st.Token(p) != 0 {
			local = idOf(p)
		} else {
			remote = idOf(p)
		}
	}
	for _, id := range [][32]byte{local, remote} {
		if n := testing.AllocsPerRun(1000, func() { a.n.Locate(ctx, id) }); n != 0 {
			t.Errorf("Locate allocates %v times per call", n)
		}
	}
}

func BenchmarkLocate(b *testing.B) {
	ec := etcdtest.Start(b, 1)
	a := mustStart(b, ec.Endpoints(), "n1", setup{cluster: "bench"})
	eventually(b, 10*time.Second, "owns", func() bool { return a.n.Owned() == etcdstore.Partitions })
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		a.n.Locate(ctx, idOf(i%etcdstore.Partitions))
		i++
	}
}
