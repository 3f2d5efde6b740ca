package etcdstore_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durablego/durable/cluster/etcdstore"
	"github.com/durablego/durable/cluster/etcdtest"
	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/storetest"
)

// TestManagedOwnership: a store opened WithManagedOwnership owns nothing
// until it acquires; a partition another store holds is not acquired; a
// fenced Release frees it for the other store at once, with a larger
// token; a store that forgot a partition commits nothing for it.
func TestManagedOwnership(t *testing.T) {
	ctx := context.Background()
	cli := etcdtest.Start(t, 1).Client(t)
	name := etcdstore.WithCluster("managed")
	a := open(t, cli, name, etcdstore.WithManagedOwnership(), etcdstore.WithOwner("a"))
	b := open(t, cli, name, etcdstore.WithManagedOwnership(), etcdstore.WithOwner("b"))
	id := storetest.ID(7)
	p := etcdstore.Partition(id)
	for q := range etcdstore.Partitions {
		if a.Token(q) != 0 || a.Owns(q) {
			t.Fatalf("a owns partition %d without acquiring it", q)
		}
	}
	took, err := a.Acquire(ctx, []int{p, p + 1})
	if err != nil || len(took) != 2 || !a.Owns(p) {
		t.Fatalf("a.Acquire = %v, %v; want both partitions", took, err)
	}
	if took, err := b.Acquire(ctx, []int{p}); err != nil || len(took) != 0 || b.Owns(p) {
		t.Fatalf("b acquired partition %d that a holds: %v, %v", p, took, err)
	}
	tokA := a.Token(p)
	if err := a.Release(ctx, p); err != nil {
		t.Fatal(err)
	}
	if a.Owns(p) {
		t.Fatal("a still owns the partition it released")
	}
	if took, err := b.Acquire(ctx, []int{p}); err != nil || len(took) != 1 {
		t.Fatalf("b.Acquire after a's release = %v, %v", took, err)
	}
	if b.Token(p) <= tokA {
		t.Fatalf("b's token %d is not above a's %d", b.Token(p), tokA)
	}
	stA := engine.NewStore(a, "Ledger", id)
	storetest.Call(t, stA, func(kv *engine.KV) error { return kv.Put(ctx, "k", []byte("a")) })
	if err := storetest.Commit(stA, []byte("a")); !errors.Is(err, etcdstore.ErrNotOwner) {
		t.Fatalf("a's commit after releasing = %v, want ErrNotOwner", err)
	}
	// Forget: a drops p+1 without touching etcd (as a node does when its
	// watch shows the key taken); its token must match.
	tok := a.Token(p + 1)
	if a.Forget(p+1, tok+1) || !a.Forget(p+1, tok) || a.Owns(p+1) {
		t.Fatal("Forget did not drop exactly the partition with the given token")
	}
}

// TestLossHookAndRegrant: when etcd revokes the lease behind the store's
// back, the loss hook gets the partitions the store held, LeaseLost turns
// true, and Regrant gives a new lease under which Acquire works again.
func TestLossHookAndRegrant(t *testing.T) {
	ctx := context.Background()
	cli := etcdtest.Start(t, 1).Client(t)
	s := open(t, cli, etcdstore.WithCluster("regrant"), etcdstore.WithManagedOwnership())
	if _, err := s.Acquire(ctx, []int{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	var lost atomic.Int64
	s.SetLossHook(func(ps []int) { lost.Add(int64(len(ps))) })
	if s.LeaseRemaining() <= 0 {
		t.Fatalf("lease remaining %v right after open", s.LeaseRemaining())
	}
	old := s.Lease()
	if _, err := cli.Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for lost.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling a condition, bounded
	}
	if !s.LeaseLost() || lost.Load() != 3 {
		t.Fatalf("after the revocation: lost=%v, hook saw %d partitions; want true, 3", s.LeaseLost(), lost.Load())
	}
	if _, err := s.Acquire(ctx, []int{1}); !errors.Is(err, etcdstore.ErrNotOwner) {
		t.Fatalf("Acquire with a lost lease = %v, want ErrNotOwner", err)
	}
	if err := s.Regrant(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Lease() == old || s.LeaseLost() {
		t.Fatal("Regrant kept the old lease")
	}
	if took, err := s.Acquire(ctx, []int{1}); err != nil || len(took) != 1 || !s.Owns(1) {
		t.Fatalf("Acquire after Regrant = %v, %v", took, err)
	}
	if err := s.Regrant(ctx); err == nil {
		t.Fatal("Regrant of a live lease succeeded")
	}
}
