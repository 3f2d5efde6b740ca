package node

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/durablego/durable/cluster/etcdstore"
	"github.com/durablego/durable/server"
)

// owner is what the table knows of a partition's owner key.
type owner struct {
	name  string
	token int64 // the key's CreateRevision
}

// member is what the table knows of a node's record.
type member struct {
	url         string
	incarnation string
	state       State
}

// table is the node's view of etcd's nodes/ and parts/, written only by
// the watch goroutine and read lock-free by Locate and the reconciler.
type table struct {
	self      string
	parts     [etcdstore.Partitions]atomic.Pointer[owner]
	freeSince [etcdstore.Partitions]atomic.Int64 // Unix ns the key was seen absent; 0 while owned
	members   atomic.Pointer[map[string]member]

	chMu    sync.Mutex
	changed chan struct{} // closed and replaced on every change Locate may wait for
}

func (t *table) init(self string) {
	t.self = self
	m := map[string]member{}
	t.members.Store(&m)
	t.changed = make(chan struct{})
}

// changes returns a channel closed at the next broadcast.
func (t *table) changes() <-chan struct{} {
	t.chMu.Lock()
	defer t.chMu.Unlock()
	return t.changed
}

// broadcast wakes every Locate waiting for a change.
func (t *table) broadcast() {
	t.chMu.Lock()
	close(t.changed)
	t.changed = make(chan struct{})
	t.chMu.Unlock()
}

// active returns the names of the active nodes, sorted.
func (t *table) active() []string {
	var out []string
	for name, m := range *t.members.Load() {
		if m.state == Active {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Members returns the nodes the table knows and their states.
func (n *Node) Members() map[string]State {
	out := map[string]State{}
	for name, m := range *n.members.Load() {
		out[name] = m.state
	}
	return out
}

// Owner returns the name of partition p's owner as the watch last showed
// it, or "" when p is free.
func (n *Node) Owner(p int) string {
	if o := n.parts[p].Load(); o != nil {
		return o.name
	}
	return ""
}

// Locate answers the server's placement: the object is local when this
// node holds its partition's fence token, its lease holds and it is not
// handing the partition off; remote when the table names another node
// that owns it. Otherwise it waits, within ctx and the WithLocateWait cap,
// for the table or the ownership to change, and fails with ErrNoOwner
// (storage.ErrUnavailable) if nothing serves the object in time. Its
// answer, when it does not wait, costs a few atomic loads and no
// allocation.
func (n *Node) Locate(ctx context.Context, id [32]byte) (server.Location, error) {
	p := etcdstore.Partition(id)
	if loc, ok := n.locate(p); ok {
		return loc, nil
	}
	return n.wait(ctx, p)
}

func (n *Node) locate(p int) (server.Location, bool) {
	if n.st.Token(p) != 0 && !n.releasing[p].Load() && n.trusted() {
		return server.Location{Local: true, Node: n.self}, true
	}
	if o := n.parts[p].Load(); o != nil && o.name != n.self {
		if m, ok := (*n.members.Load())[o.name]; ok && m.url != "" {
			return server.Location{Node: o.name, URL: m.url}, true
		}
	}
	return server.Location{}, false
}

// trusted reports what the store's owns checks, without its error: the
// lease is not lost and its deadline, counted from when the last renewal
// was sent, has not passed.
func (n *Node) trusted() bool { return !n.st.LeaseLost() && n.st.LeaseRemaining() > 0 }

// waitPoll bounds how long a waiting Locate goes without looking again:
// a lease deadline passing or a renewal succeeding is not broadcast.
const waitPoll = 50 * time.Millisecond

func (n *Node) wait(ctx context.Context, p int) (server.Location, error) {
	ctx, cancel := context.WithTimeout(ctx, n.opts.locateWait)
	defer cancel()
	t := time.NewTimer(waitPoll)
	defer t.Stop()
	for {
		ch := n.changes()
		if loc, ok := n.locate(p); ok {
			return loc, nil
		}
		if n.ctx.Err() != nil {
			// Left or closed: the table is no longer followed.
			return server.Location{}, fmt.Errorf("%w: partition %d: %w", ErrNoOwner, p, ErrClosed)
		}
		select {
		case <-ch:
		case <-t.C:
			t.Reset(waitPoll)
		case <-ctx.Done():
			return server.Location{}, fmt.Errorf("%w: partition %d: %w", ErrNoOwner, p, ctx.Err())
		}
	}
}

// load reads nodes/ and parts/ in one transaction (one revision) and
// replaces the table with what it read. It returns the revision, for the
// watch to start after.
func (n *Node) load(ctx context.Context) (int64, error) {
	cctx, cancel := n.call(ctx)
	defer cancel()
	resp, err := n.cli.Txn(cctx).Then(
		clientv3.OpGet(n.key("nodes/"), clientv3.WithPrefix()),
		clientv3.OpGet(n.key("parts/"), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return 0, fmt.Errorf("node: load the nodes and partitions: %w", err)
	}
	rev := resp.Header.Revision
	members := map[string]member{}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		if name, m, ok := n.parseMember(kv); ok {
			members[name] = m
		}
	}
	n.members.Store(&members)
	seen := make([]*mvccpb.KeyValue, etcdstore.Partitions)
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		if p, ok := n.parsePart(kv.Key); ok {
			seen[p] = kv
		}
	}
	for p, kv := range seen {
		if kv == nil {
			n.partGone(p, rev)
		} else {
			n.partSet(p, kv)
		}
	}
	n.broadcast()
	n.signal()
	return rev, nil
}

// watch follows nodes/ and parts/ from the revision after rev, and loads
// again (then follows from there) when a watch ends: etcd compacted past
// it, or lost its leader.
func (n *Node) watch(rev int64) {
	defer n.wg.Done()
	for {
		err := n.follow(rev + 1)
		if n.ctx.Err() != nil {
			return
		}
		n.log.Warn("node: the watch ended; loading the table again", "err", err)
		for {
			rev, err = n.load(n.ctx)
			if err == nil {
				break
			}
			select {
			case <-n.ctx.Done():
				return
			case <-time.After(200 * time.Millisecond): // etcd is unavailable: retry, without spinning
			}
		}
	}
}

func (n *Node) follow(from int64) error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(n.ctx))
	defer cancel()
	nw := n.cli.Watch(ctx, n.key("nodes/"), clientv3.WithPrefix(), clientv3.WithRev(from))
	pw := n.cli.Watch(ctx, n.key("parts/"), clientv3.WithPrefix(), clientv3.WithRev(from))
	for {
		select {
		case r, ok := <-nw:
			if !ok {
				return fmt.Errorf("the watch of the nodes closed")
			}
			if err := r.Err(); err != nil {
				return err
			}
			if len(r.Events) == 0 {
				continue
			}
			m := map[string]member{}
			for k, v := range *n.members.Load() {
				m[k] = v
			}
			for _, ev := range r.Events {
				name := strings.TrimPrefix(string(ev.Kv.Key), n.key("nodes/"))
				if ev.Type == clientv3.EventTypeDelete {
					delete(m, name)
				} else if name, mem, ok := n.parseMember(ev.Kv); ok {
					m[name] = mem
				}
			}
			n.members.Store(&m)
		case r, ok := <-pw:
			if !ok {
				return fmt.Errorf("the watch of the partitions closed")
			}
			if err := r.Err(); err != nil {
				return err
			}
			for _, ev := range r.Events {
				p, ok := n.parsePart(ev.Kv.Key)
				if !ok {
					continue
				}
				if ev.Type == clientv3.EventTypeDelete {
					n.partGone(p, ev.Kv.ModRevision)
				} else {
					n.partSet(p, ev.Kv)
				}
			}
		case <-n.ctx.Done():
			return n.ctx.Err()
		}
		n.broadcast()
		n.signal()
	}
}

// partGone records p free as of revision rev; if this node held p with a
// token from before rev, its key was deleted behind its back (its lease
// ended): it loses p.
func (n *Node) partGone(p int, rev int64) {
	if n.parts[p].Swap(nil) != nil || n.freeSince[p].Load() == 0 {
		n.freeSince[p].Store(time.Now().UnixNano())
	}
	if tok := n.st.Token(p); tok != 0 && tok < rev {
		n.forget(p, tok, "its owner key was deleted")
	}
}

// partSet records p owned by the key kv; if this node held p with an
// older token, another node took it: it loses p.
func (n *Node) partSet(p int, kv *mvccpb.KeyValue) {
	n.parts[p].Store(&owner{name: string(kv.Value), token: kv.CreateRevision})
	n.freeSince[p].Store(0)
	if tok := n.st.Token(p); tok != 0 && kv.CreateRevision > tok {
		n.forget(p, tok, "another node owns it")
	}
}

func (n *Node) parsePart(key []byte) (int, bool) {
	s, ok := strings.CutPrefix(string(key), n.key("parts/"))
	if !ok {
		return 0, false
	}
	p, err := strconv.ParseUint(s, 16, 16)
	if err != nil || p >= etcdstore.Partitions {
		return 0, false
	}
	return int(p), true
}

func (n *Node) parseMember(kv *mvccpb.KeyValue) (string, member, bool) {
	name, ok := strings.CutPrefix(string(kv.Key), n.key("nodes/"))
	var r record
	if !ok || json.Unmarshal(kv.Value, &r) != nil {
		return "", member{}, false
	}
	return name, member{url: r.URL, incarnation: r.Incarnation, state: r.State}, true
}
