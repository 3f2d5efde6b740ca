package etcdstore_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/durablego/durable/cluster/etcdstore"
	"github.com/durablego/durable/cluster/etcdtest"
	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/storetest"
)

// laggingMember sits in a client's gRPC chain and counts its reads (a
// Range, or a read-only Txn of Ranges, by the store's gathering of reads);
// while on, it answers every serializable one as a member that has
// applied none of the store's writes would: revision 1, no keys. A
// linearizable read always goes through untouched.
type laggingMember struct {
	on             atomic.Bool
	serial, strict atomic.Int64
	requests       atomic.Int64  // serializable read requests
	gate           chan struct{} // when not nil, the first such request waits for it
}

func (l *laggingMember) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	var ranges []*etcdserverpb.RangeRequest
	switch r := req.(type) {
	case *etcdserverpb.RangeRequest:
		ranges = append(ranges, r)
	case *etcdserverpb.TxnRequest:
		if len(r.Compare) > 0 || len(r.Failure) > 0 {
			break
		}
		for _, op := range r.Success {
			if op.GetRequestRange() == nil {
				ranges = nil // writes: not a read
				break
			}
			ranges = append(ranges, op.GetRequestRange())
		}
	}
	if len(ranges) == 0 {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	serializable := ranges[0].Serializable
	if serializable {
		l.serial.Add(int64(len(ranges)))
		if l.requests.Add(1) == 1 && l.gate != nil {
			<-l.gate
		}
	} else {
		l.strict.Add(int64(len(ranges)))
	}
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err != nil || !serializable || !l.on.Load() {
		return err
	}
	switch resp := reply.(type) {
	case *etcdserverpb.RangeResponse:
		resp.Header.Revision, resp.Kvs, resp.Count, resp.More = 1, nil, 0, false
	case *etcdserverpb.TxnResponse:
		resp.Header.Revision = 1
		for _, op := range resp.Responses {
			if rr := op.GetResponseRange(); rr != nil {
				rr.Kvs, rr.Count, rr.More = nil, 0, false
			}
		}
	}
	return err
}

func laggingClient(t *testing.T, c *etcdtest.Cluster) (*clientv3.Client, *laggingMember) {
	t.Helper()
	l := &laggingMember{}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.Endpoints(),
		DialTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(l.intercept)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli, l
}

// TestReadBehindTheFloorIsAskedAgain: a read served by a member that has
// not applied the previous owner's writes, or the store's own acknowledged
// ones, is not believed: the store asks again linearizably and sees them.
// A member that is not behind serves reads without a round to the leader.
func TestReadBehindTheFloorIsAskedAgain(t *testing.T) {
	ctx := context.Background()
	c := etcdtest.Start(t, 1)
	name := etcdstore.WithCluster("floor")
	id := storetest.ID(7)

	// The previous owner commits, then leaves.
	a := open(t, c.Client(t), name)
	stA := engine.NewStore(a, "Ledger", id)
	storetest.Call(t, stA, func(kv *engine.KV) error { return kv.Put(ctx, "k", []byte("a1")) })
	if err := storetest.Commit(stA, []byte("a1")); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	cli, lag := laggingClient(t, c)
	b := open(t, cli, name)
	lag.on.Store(true)
	want := func(state, key string) {
		t.Helper()
		if v, found, err := b.LoadState(ctx, "Ledger", id); err != nil || !found || string(v) != state {
			t.Fatalf("state = %q, %v, %v; want %q", v, found, err, state)
		}
		if v, found, err := b.Get(ctx, "Ledger", id, "k"); err != nil || !found || string(v) != key {
			t.Fatalf("key k = %q, %v, %v; want %q", v, found, err, key)
		}
		var keys []string
		if err := b.Scan(ctx, "Ledger", id, engine.KeyRange{}, -1, func(k string, v []byte) bool {
			keys = append(keys, k+"="+string(v))
			return true
		}); err != nil || len(keys) != 1 || keys[0] != "k="+key {
			t.Fatalf("scan = %q, %v; want [k=%s]", keys, err, key)
		}
	}

	// Behind the revision at which b took the partition: asked again.
	before := lag.strict.Load()
	want("a1", "a1")
	if n := lag.strict.Load() - before; n != 3 {
		t.Fatalf("%d linearizable reads after a lagging member's answers, want 3", n)
	}

	// Behind b's own acknowledged commit: asked again.
	stB := engine.NewStore(b, "Ledger", id)
	storetest.Call(t, stB, func(kv *engine.KV) error { return kv.Put(ctx, "k", []byte("b1")) })
	if err := storetest.Commit(stB, []byte("b1")); err != nil {
		t.Fatal(err)
	}
	want("b1", "b1")

	// A member that has everything: served where it is, no linearizable read.
	lag.on.Store(false)
	before, serial := lag.strict.Load(), lag.serial.Load()
	want("b1", "b1")
	if n := lag.strict.Load() - before; n != 0 {
		t.Fatalf("%d linearizable reads from a member that is not behind, want 0", n)
	}
	if n := lag.serial.Load() - serial; n != 3 {
		t.Fatalf("%d serializable reads, want 3", n)
	}
}

// TestStrictReadsAreLinearizable: WithStrictReads sends no serializable
// read at all.
func TestStrictReadsAreLinearizable(t *testing.T) {
	ctx := context.Background()
	cli, lag := laggingClient(t, etcdtest.Start(t, 1))
	s := fresh(t, cli, etcdstore.WithStrictReads())
	st := engine.NewStore(s, "Ledger", storetest.ID(8))
	if err := storetest.Commit(st, []byte("s1")); err != nil {
		t.Fatal(err)
	}
	if v, _, err := s.LoadState(ctx, "Ledger", storetest.ID(8)); err != nil || string(v) != "s1" {
		t.Fatalf("state = %q, %v; want s1", v, err)
	}
	if n := lag.serial.Load(); n != 0 {
		t.Fatalf("%d serializable reads under WithStrictReads, want 0", n)
	}
}

// TestReadsAreGathered: the single-key reads that arrive while one is in
// flight go to etcd in one request, and each gets its own answer.
func TestReadsAreGathered(t *testing.T) {
	ctx := context.Background()
	c := etcdtest.Start(t, 1)
	name := etcdstore.WithCluster("gather")
	s := open(t, c.Client(t), name)
	const n = 64
	for i := range n {
		st := engine.NewStore(s, "Ledger", storetest.ID(i))
		if err := storetest.Commit(st, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	cli, lag := laggingClient(t, c)
	lag.gate = make(chan struct{})
	r := open(t, cli, name)
	errs := make(chan error, n)
	read := func(i int) {
		v, found, err := r.LoadState(ctx, "Ledger", storetest.ID(i))
		if err == nil && (!found || len(v) != 1 || v[0] != byte(i)) {
			err = fmt.Errorf("object %d: state %v, found %v", i, v, found)
		}
		errs <- err
	}
	go read(0) // held at the gate
	spinUntil(t, "the first read is in flight", func() bool { return lag.requests.Load() == 1 })
	for i := 1; i < n; i++ {
		go read(i)
	}
	spinUntil(t, "the other reads queue", func() bool { return etcdstore.QueuedReads(r) == n-1 })
	close(lag.gate)
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := lag.requests.Load(); got != 2 {
		t.Fatalf("%d read requests for %d reads, want 2 (the first alone, then the %d that queued behind it)", got, n, n-1)
	}
}

// spinUntil yields until cond holds, failing the test after 10 s.
func spinUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		runtime.Gosched()
	}
}
