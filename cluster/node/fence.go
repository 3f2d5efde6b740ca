package node

import (
	"time"
)

// guard fences the node while its lease cannot be trusted: past the time
// its last renewal was sent plus the TTL, minus a margin, Locate answers
// not-local for every partition (the store refuses reads and commits by
// the same deadline) and the host reports not serving; a renewal that
// succeeds later resumes both. When etcd says the lease is gone the store
// drops every partition, and the guard rejoins with a new lease as a new
// incarnation.
func (n *Node) guard() {
	defer n.wg.Done()
	t := time.NewTicker(min(n.st.TTL()/20, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		if n.leaving.Load() {
			continue
		}
		if n.st.LeaseLost() {
			n.setServing(false)
			n.rejoin()
			continue
		}
		n.setServing(n.trusted())
	}
}

func (n *Node) setServing(ok bool) {
	if n.serving.Swap(ok) == ok {
		return
	}
	if ok {
		n.log.Info("node: the lease is trusted again; serving")
	} else {
		n.log.Error("node: the lease could not be renewed in time; fenced, serving nothing", "lease_remaining", n.st.LeaseRemaining())
	}
	n.host.SetServing(ok)
	n.broadcast()
	n.signal()
}

// rejoin grants a new lease and records the node again under it, as a new
// incarnation; the reconciler then acquires its partitions again.
func (n *Node) rejoin() {
	if err := n.st.Regrant(n.ctx); err != nil {
		n.log.Warn("node: granting a new lease failed", "err", err)
		return
	}
	if err := n.putRecord(n.ctx, Active, true); err != nil {
		n.log.Warn("node: recording the node under its new lease failed", "err", err)
		return
	}
	if err := n.recordLease(); err != nil {
		n.log.Warn("node: recording the new lease failed", "err", err)
	}
	n.log.Info("node: rejoined with a new lease", "incarnation", n.Incarnation(), "lease", int64(n.st.Lease()))
	n.setServing(n.trusted())
}
