package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/durablego/durable/cluster/etcdstore"
	"github.com/durablego/durable/cluster/etcdtest"
	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/storetest"
)

var quiet = slog.New(slog.DiscardHandler)

// deployments numbers the deployments of a test process: each store of a
// test gets its own key prefix on the shared etcd.
var deployments atomic.Int64

func open(t testing.TB, cli *clientv3.Client, opts ...etcdstore.Option) *etcdstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := etcdstore.Open(ctx, cli, append([]etcdstore.Option{etcdstore.WithLogger(quiet), etcdstore.WithTTL(time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func fresh(t testing.TB, cli *clientv3.Client, opts ...etcdstore.Option) *etcdstore.Store {
	return open(t, cli, append([]etcdstore.Option{etcdstore.WithCluster(fmt.Sprint("t", deployments.Add(1)))}, opts...)...)
}

// TestObjectStoreContract holds the etcd store to the tests the node
// database passes (storage/storagetest), on one embedded member.
func TestObjectStoreContract(t *testing.T) {
	cli := etcdtest.Start(t, 1).Client(t)
	storetest.Run(t, func(t *testing.T) engine.ObjectStore { return fresh(t, cli) })
}

// TestOpenOwnsEveryPartition: every owner key exists under the store's
// lease, and its CreateRevision is the store's token.
func TestOpenOwnsEveryPartition(t *testing.T) {
	cli := etcdtest.Start(t, 1).Client(t)
	s := open(t, cli, etcdstore.WithCluster("owns"))
	resp, err := cli.Get(context.Background(), "/durable/owns/parts/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != etcdstore.Partitions {
		t.Fatalf("%d owner keys, want %d", len(resp.Kvs), etcdstore.Partitions)
	}
	for _, kv := range resp.Kvs {
		var p int
		fmt.Sscanf(string(kv.Key), "/durable/owns/parts/%x", &p)
		if clientv3.LeaseID(kv.Lease) != s.Lease() || kv.CreateRevision != s.Token(p) {
			t.Fatalf("%s: lease %x token %d, want %x and the store's %d", kv.Key, kv.Lease, kv.CreateRevision, s.Lease(), s.Token(p))
		}
	}
}

// TestTooLargeWritesNothing: a call whose writes cannot fit one etcd
// transaction fails with storage.ErrTooLarge, and nothing of it is
// written, while a call beside it in the same lane commits.
func TestTooLargeWritesNothing(t *testing.T) {
	ctx := context.Background()
	cli := etcdtest.Start(t, 1).Client(t)
	s := fresh(t, cli)
	for _, tc := range []struct {
		name  string
		write func(kv *engine.KV) error
	}{
		{"bytes", func(kv *engine.KV) error { // 16 × 128 KiB = 2 MiB
			for i := range 16 {
				if err := kv.Put(ctx, fmt.Sprint("big", i), make([]byte, engine.MaxValueSize)); err != nil {
					return err
				}
			}
			return nil
		}},
		{"operations", func(kv *engine.KV) error { // 200 keys
			m := map[string][]byte{}
			for i := range 200 {
				m[fmt.Sprint("k", i)] = []byte{1}
				if len(m) == engine.MaxKeysPerCall {
					if err := kv.PutMany(ctx, m); err != nil {
						return err
					}
					clear(m)
				}
			}
			return kv.PutMany(ctx, m)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := engine.NewStore(s, "Big", storetest.ID(8))
			storetest.Call(t, st, tc.write)
			err := storetest.Commit(st, []byte("state"))
			if !errors.Is(err, engine.ErrTooLarge) {
				t.Fatalf("commit of a too large call = %v, want ErrTooLarge", err)
			}
			if !strings.Contains(err.Error(), "nothing was written") {
				t.Fatalf("the error does not say nothing was written: %v", err)
			}
			if _, ok, err := s.LoadState(ctx, "Big", storetest.ID(8)); ok || err != nil {
				t.Fatalf("the state of the refused call was written: %v, %v", ok, err)
			}
			if _, ok, err := s.Get(ctx, "Big", storetest.ID(8), "k0"); ok || err != nil {
				t.Fatalf("a key of the refused call was written: %v, %v", ok, err)
			}
			// The store still commits, in the same lane (same partition).
			st = engine.NewStore(s, "Big", storetest.ID(8+etcdstore.Partitions))
			storetest.Call(t, st, func(kv *engine.KV) error { return kv.Put(ctx, "small", []byte("ok")) })
			if err := storetest.Commit(st, []byte("s")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestFenceRefusesLateCommit: once the store's lease is revoked under it
// and a second store owns the partitions, a commit of the first store
// writes nothing and its caller is told, with ErrNotOwner; the second
// store's writes stand.
func TestFenceRefusesLateCommit(t *testing.T) {
	ctx := context.Background()
	cli := etcdtest.Start(t, 1).Client(t)
	name := etcdstore.WithCluster("fence")
	a := open(t, cli, name)
	stA := engine.NewStore(a, "Ledger", storetest.ID(3))
	storetest.Call(t, stA, func(kv *engine.KV) error { return kv.Put(ctx, "k", []byte("a1")) })
	if err := storetest.Commit(stA, []byte("a1")); err != nil {
		t.Fatal(err)
	}

	// Revoke a's lease behind its back, as its expiry would: the owner
	// keys vanish, and b takes every partition.
	if _, err := cli.Revoke(ctx, a.Lease()); err != nil {
		t.Fatal(err)
	}
	b := open(t, cli, name)
	p := etcdstore.Partition(storetest.ID(3))
	if b.Token(p) <= a.Token(p) && a.Token(p) != 0 {
		t.Fatalf("b's token %d is not above a's %d", b.Token(p), a.Token(p))
	}
	stB := engine.NewStore(b, "Ledger", storetest.ID(3))
	storetest.Call(t, stB, func(kv *engine.KV) error { return kv.Put(ctx, "k", []byte("b1")) })
	if err := storetest.Commit(stB, []byte("b1")); err != nil {
		t.Fatal(err)
	}

	// a's late commit: refused by the fence, or by a's own knowledge that
	// its lease is gone; either way its caller is told and nothing lands.
	storetest.Call(t, stA, func(kv *engine.KV) error { return kv.Put(ctx, "k", []byte("a2")) })
	err := storetest.Commit(stA, []byte("a2"))
	if !errors.Is(err, etcdstore.ErrNotOwner) {
		t.Fatalf("late commit of the fenced store = %v, want ErrNotOwner", err)
	}
	if v, _, err := b.LoadState(ctx, "Ledger", storetest.ID(3)); err != nil || string(v) != "b1" {
		t.Fatalf("state after the late commit = %q, %v; want b1", v, err)
	}
	if v, _, err := b.Get(ctx, "Ledger", storetest.ID(3), "k"); err != nil || string(v) != "b1" {
		t.Fatalf("key after the late commit = %q, %v; want b1", v, err)
	}
	if _, _, err := a.LoadState(ctx, "Ledger", storetest.ID(3)); !errors.Is(err, etcdstore.ErrNotOwner) {
		t.Fatalf("read of the fenced store = %v, want ErrNotOwner", err)
	}
}

// TestFenceInTheTransaction: the compare inside the commit transaction is
// what refuses a store that still believes it owns the partition (its
// lease renewal has not yet told it): a second store deletes and
// re-creates the owner key under its own lease, and the first store's
// next commit fails the fence.
func TestFenceInTheTransaction(t *testing.T) {
	ctx := context.Background()
	cli := etcdtest.Start(t, 1).Client(t)
	a := open(t, cli, etcdstore.WithCluster("fence2"), etcdstore.WithTTL(30*time.Second))
	id := storetest.ID(5)
	p := etcdstore.Partition(id)
	key := fmt.Sprintf("/durable/fence2/parts/%04x", p)
	// A usurper takes p: delete a's key and create its own.
	l, err := cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, key, "usurper", clientv3.WithLease(l.ID)); err != nil {
		t.Fatal(err)
	}
	if a.Token(p) == 0 {
		t.Fatal("a already knows it lost the partition; the test needs it to believe it owns it")
	}
	st := engine.NewStore(a, "Ledger", id)
	storetest.Call(t, st, func(kv *engine.KV) error { return kv.Put(ctx, "k", []byte("late")) })
	err = storetest.Commit(st, []byte("late"))
	if !errors.Is(err, etcdstore.ErrNotOwner) {
		t.Fatalf("commit after the partition was taken = %v, want ErrNotOwner", err)
	}
	resp, err := cli.Get(ctx, "/durable/fence2/o/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Fatalf("%d keys written by the fenced store (%v)", resp.Count, err)
	}
	if a.Token(p) != 0 {
		t.Fatal("the store still believes it owns the partition after the fence failed")
	}
	// Another partition of the same lane is still a's.
	other := storetest.ID(5 + 8)
	st2 := engine.NewStore(a, "Ledger", other)
	storetest.Call(t, st2, func(kv *engine.KV) error { return kv.Put(ctx, "k", []byte("ok")) })
	if err := storetest.Commit(st2, []byte("ok")); err != nil {
		t.Fatalf("commit to a partition still owned: %v", err)
	}
}

// TestLanePacksAndSplits queues 400 batches of objects of one lane at
// once, 4 operations each: the lane packs them into transactions of at
// most 128 operations (so several), far fewer than one per batch, and
// every batch commits.
func TestLanePacksAndSplits(t *testing.T) {
	ctx := context.Background()
	cli := etcdtest.Start(t, 1).Client(t)
	s := fresh(t, cli)
	const n = 400
	done := make(chan error, n)
	for i := range n {
		id := storetest.ID(i * 8) // partitions ≡ 0 mod 8: lane 0
		st := engine.NewStore(s, "Pack", id)
		storetest.Call(t, st, func(kv *engine.KV) error {
			return kv.PutMany(ctx, map[string][]byte{"a": {1}, "b": {2}, "c": {3}})
		})
		st.Commit([]byte("s"), true, nil, func(err error) { done <- err })
	}
	for range n {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if st.Batches != n || st.Commits < n*4/128 || st.Commits >= n/2 {
		t.Fatalf("Stats = %+v: want %d batches in at least %d and far fewer than %d transactions", st, n, n*4/128, n)
	}
	for i := range n {
		if v, ok, err := s.Get(ctx, "Pack", storetest.ID(i*8), "c"); !ok || err != nil || v[0] != 3 {
			t.Fatalf("object %d: c = %v, %v, %v", i, v, ok, err)
		}
	}
}
