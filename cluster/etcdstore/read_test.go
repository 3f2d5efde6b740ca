package etcdstore_test

import (
	"context"
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

// laggingMember sits in a client's gRPC chain and counts its reads; while
// on, it answers every serializable Range as a member that has applied
// none of the store's writes would: revision 1, no keys. A linearizable
// Range always goes through untouched.
type laggingMember struct {
	on             atomic.Bool
	serial, strict atomic.Int64
}

func (l *laggingMember) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	r, ok := req.(*etcdserverpb.RangeRequest)
	if !ok {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	if r.Serializable {
		l.serial.Add(1)
	} else {
		l.strict.Add(1)
	}
	err := invoker(ctx, method, req, reply, cc, opts...)
	if resp, ok := reply.(*etcdserverpb.RangeResponse); ok && err == nil && r.Serializable && l.on.Load() {
		resp.Header.Revision, resp.Kvs, resp.Count, resp.More = 1, nil, 0, false
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
