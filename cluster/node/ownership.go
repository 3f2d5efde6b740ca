package node

import (
	"context"
	"fmt"
	"time"

	"github.com/durablego/durable/cluster/etcdstore"
)

// acquireBatch is how many partitions one acquisition (one etcd
// transaction) takes at most: etcd's default limit of operations per
// transaction. Acquisitions run one at a time, each a raft commit with its
// fsync, so a smaller batch adds a round trip per batch to a failover:
// 16 at a time took 2.4-2.9 s to take a killed node's 347 partitions
// after its lease expired (three etcd processes on one disk).
const acquireBatch = 128

// matchPartition selects the objects of partition p.
func matchPartition(p int) func(id [32]byte) bool {
	return func(id [32]byte) bool { return etcdstore.Partition(id) == p }
}

// matchPartitions selects the objects of the partitions ps.
func matchPartitions(ps []int) func(id [32]byte) bool {
	var set [etcdstore.Partitions]bool
	for _, p := range ps {
		set[p] = true
	}
	return func(id [32]byte) bool { return set[etcdstore.Partition(id)] }
}

// reconcile moves the node's ownership toward what rendezvous hashing
// desires, on every change of the table and every TTL/4 (the liveness
// guard counts time, which no watch event reports).
func (n *Node) reconcile() {
	defer n.wg.Done()
	t := time.NewTicker(n.st.TTL() / 4)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.kick:
		case <-t.C:
		}
		n.pass()
	}
}

// pass releases the owned partitions whose desired owner is another
// active node (up to 16 handoffs in flight) and acquires the free ones
// whose desired owner is this node, or that have been free for more than
// 2 × TTL (the liveness guard: a partition whose desired owner cannot take
// it is served anyway, and handed to it later).
func (n *Node) pass() {
	if n.leaving.Load() || !n.trusted() || n.State() != Active {
		return
	}
	active := n.active()
	guard := time.Now().Add(-2 * n.st.TTL()).UnixNano()
	var want []int
	for p := range etcdstore.Partitions {
		d := desired(active, p)
		if n.st.Token(p) != 0 {
			if d != "" && d != n.self && !n.releasing[p].Load() {
				n.startRelease(p)
			}
			continue
		}
		if n.parts[p].Load() != nil {
			continue
		}
		if since := n.freeSince[p].Load(); d == n.self || (since != 0 && since < guard) {
			want = append(want, p)
		}
	}
	for len(want) > 0 && n.ctx.Err() == nil && !n.leaving.Load() {
		k := min(len(want), acquireBatch)
		took, err := n.st.Acquire(n.ctx, want[:k])
		want = want[k:]
		if len(took) > 0 {
			n.log.Debug("node: acquired partitions", "count", len(took))
			n.broadcast()
			n.host.RescanAlarms()
		}
		if err != nil {
			n.log.Warn("node: acquiring partitions failed", "err", err)
			return
		}
	}
}

// startRelease hands p off in the background, unless 16 handoffs are in
// flight already: the next pass tries again.
func (n *Node) startRelease(p int) {
	select {
	case n.relSem <- struct{}{}:
	default:
		return
	}
	n.releasing[p].Store(true)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer func() { <-n.relSem }()
		if err := n.release(n.ctx, p); err != nil {
			n.log.Warn("node: handoff failed", "partition", p, "err", err)
		}
		n.signal()
	}()
}

// release hands partition p off: Locate stops answering local for it
// (new calls wait), the host drains its objects and commits, then the
// owner key is deleted, fenced by the token, so that the desired owner
// can acquire it at once.
func (n *Node) release(ctx context.Context, p int) error {
	n.releasing[p].Store(true)
	defer n.releasing[p].Store(false)
	n.broadcast()
	start := time.Now()
	err := n.host.Release(ctx, matchPartition(p))
	if err != nil {
		// Hand it off anyway: a commit still in flight fails its fence
		// and its caller is told; keeping the partition would keep it
		// from its desired owner.
		n.log.Warn("node: draining a partition failed", "partition", p, "err", err)
	}
	if rerr := n.st.Release(ctx, p); rerr != nil {
		err = rerr
	}
	n.m.handoff.Observe(time.Since(start).Seconds())
	n.broadcast()
	return err
}

// forget drops p, held with tok, after the watch showed it taken.
func (n *Node) forget(p int, tok int64, why string) {
	if n.st.Forget(p, tok) {
		n.log.Warn("node: lost a partition", "partition", p, "reason", why)
		n.drop([]int{p}, fmt.Errorf("%w: partition %d: %s", ErrMoved, p, why))
	}
}

// lost is the store's loss hook: a commit's fence failed, or the lease is
// gone. It runs on the store's goroutines, so the host's Drop runs on
// another.
func (n *Node) lost(ps []int) {
	if !n.st.LeaseLost() {
		n.m.fence.Add(float64(len(ps)))
	}
	n.drop(ps, fmt.Errorf("%w: %d partitions lost", ErrMoved, len(ps)))
}

func (n *Node) drop(ps []int, reason error) {
	n.broadcast()
	n.signal()
	if h := n.host; h != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			h.Drop(matchPartitions(ps), reason)
		}()
	}
}

// Owned returns how many partitions the node owns now.
func (n *Node) Owned() int {
	c := 0
	for p := range etcdstore.Partitions {
		if n.st.Token(p) != 0 {
			c++
		}
	}
	return c
}
