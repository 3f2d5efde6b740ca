package node

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/durablego/durable/cluster/etcdstore"
)

// Host is what a node asks of the server it places objects for.
// *server.Server satisfies it.
type Host interface {
	// Release drains the objects match selects (their mailboxes run and
	// commit) and stops admitting calls for them: the node hands their
	// partition off after it returns.
	Release(ctx context.Context, match func(id [32]byte) bool) error
	// Drop evicts the objects match selects without committing, failing
	// their queued calls with reason: the node lost their partition.
	Drop(match func(id [32]byte) bool, reason error)
	// RescanAlarms pages the alarm index again: the node acquired
	// partitions whose alarms may be due.
	RescanAlarms()
	// SetServing reports the node ready or not on its health endpoint:
	// not while it cannot trust its lease.
	SetServing(serving bool)
}

// Config is what a node is.
type Config struct {
	// Name is the node's stable name, the input of rendezvous hashing:
	// keep it across restarts so that a node gets its partitions back.
	// Required. It is also what the owner keys say: open the store with
	// etcdstore.WithOwner(Name).
	Name string
	// AdvertiseURL is the base URL other nodes forward calls to
	// ("http://10.0.0.2:8080"). Required.
	AdvertiseURL string
	// Secret is the server's secret (server.WithSecret): every node of a
	// deployment must share it, or object IDs are not portable. Its
	// fingerprint is recorded in the deployment's config key.
	Secret []byte
	// Classes is the set of object classes the node serves; every node of
	// a deployment must serve the same set.
	Classes []string
	// Cluster is the deployment's identity, recorded in its config key and
	// checked by every node. Default: the store's cluster name.
	Cluster string
	// DataDir, when set, is where the node records its lease ID, so that
	// its next start revokes a previous incarnation that died instead of
	// refusing its name as taken (the file is "cluster-lease").
	DataDir string
}

// Option configures New.
type Option func(*options)

type options struct {
	logger     *slog.Logger
	locateWait time.Duration
	registerer prometheus.Registerer
	inFlight   int
}

// WithLogger sets the logger of membership and ownership changes. Default
// slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithLocateWait caps how long Locate waits for a partition without an
// owner to get one, within its context. Default 10 s.
func WithLocateWait(d time.Duration) Option { return func(o *options) { o.locateWait = d } }

// WithRegisterer registers the node's metrics with r:
// durable_cluster_partitions_owned, durable_cluster_fence_rejections_total,
// durable_cluster_handoff_seconds and durable_cluster_lease_remaining_seconds.
// Default: none.
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// State is a node's membership state, as its record says.
type State string

// The states of a node: joining until its table is loaded, active while
// rendezvous hashing counts it, draining while it hands its partitions off.
const (
	Joining  State = "joining"
	Active   State = "active"
	Draining State = "draining"
)

// record is the value of nodes/{name}.
type record struct {
	URL         string `json:"url"`
	Incarnation string `json:"incarnation"`
	State       State  `json:"state"`
	Classes     string `json:"classes"`
}

// deployment is the value of the config key.
type deployment struct {
	Cluster    string `json:"cluster"`
	Partitions int    `json:"partitions"`
	Secret     string `json:"secret"`
	Format     int    `json:"format"`
}

// Node is one server's membership in a cluster. It implements
// server.Placement. Create one with New, then Join.
type Node struct {
	cli    *clientv3.Client
	st     *etcdstore.Store
	cfg    Config
	opts   options
	prefix string
	log    *slog.Logger
	m      *metrics

	incarnation atomic.Pointer[string]
	state       atomic.Pointer[State]

	table

	host      Host
	releasing [etcdstore.Partitions]atomic.Bool
	relSem    chan struct{}
	kick      chan struct{} // wakes the reconciler
	serving   atomic.Bool
	leaving   atomic.Bool

	mu     sync.Mutex // guards joined, cancel
	joined bool
	ctx    context.Context // the loops'; cancelled by Leave or Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New checks the deployment's config (creating it if absent), checks
// that no live process holds cfg.Name, and records the node as joining
// under st's lease. st must be opened with etcdstore.WithManagedOwnership
// and etcdstore.WithOwner(cfg.Name). The node does not close cli or st.
func New(ctx context.Context, cli *clientv3.Client, st *etcdstore.Store, cfg Config, opts ...Option) (*Node, error) {
	o := options{logger: slog.Default(), locateWait: 10 * time.Second, inFlight: 16}
	for _, f := range opts {
		f(&o)
	}
	switch {
	case cfg.Name == "" || strings.ContainsAny(cfg.Name, "/\x00"):
		return nil, fmt.Errorf("node: invalid name %q", cfg.Name)
	case cfg.AdvertiseURL == "":
		return nil, errors.New("node: AdvertiseURL is required")
	case st.Owner() != cfg.Name:
		return nil, fmt.Errorf("node: the store's owner %q is not the node's name %q (open it with etcdstore.WithOwner)", st.Owner(), cfg.Name)
	}
	prefix := st.Prefix()
	if cfg.Cluster == "" {
		cfg.Cluster = strings.TrimSuffix(strings.TrimPrefix(prefix, "/durable/"), "/")
	}
	n := &Node{cli: cli, st: st, cfg: cfg, opts: o, prefix: prefix, log: o.logger.With("node", cfg.Name),
		relSem: make(chan struct{}, o.inFlight), kick: make(chan struct{}, 1)}
	n.table.init(cfg.Name)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.m = newMetrics(n, o.registerer)
	if err := n.checkDeployment(ctx); err != nil {
		return nil, err
	}
	if err := n.claimName(ctx); err != nil {
		return nil, err
	}
	st.SetLossHook(n.lost)
	return n, nil
}

func (n *Node) key(rel string) string { return n.prefix + rel }

func (n *Node) nodeKey() string { return n.key("nodes/" + n.cfg.Name) }

func (n *Node) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 2*time.Second)
}

// fingerprint is a keyed hash that identifies a secret without revealing
// it, as the server records one in its data directory: HMAC-SHA256(secret,
// "durable secret fingerprint v1"), the first 16 bytes in hexadecimal.
func fingerprint(secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("durable secret fingerprint v1"))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// classesFingerprint identifies a class set, in any order.
func classesFingerprint(classes []string) string {
	c := slices.Clone(classes)
	slices.Sort(c)
	c = slices.Compact(c)
	h := sha256.Sum256([]byte(strings.Join(c, "\n")))
	return hex.EncodeToString(h[:16])
}

// checkDeployment creates the config key if absent and compares it.
func (n *Node) checkDeployment(ctx context.Context) error {
	want := deployment{Cluster: n.cfg.Cluster, Partitions: etcdstore.Partitions, Secret: fingerprint(n.cfg.Secret), Format: 1}
	v, _ := json.Marshal(want)
	k := n.key("config")
	cctx, cancel := n.call(ctx)
	defer cancel()
	resp, err := n.cli.Txn(cctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(v))).Else(clientv3.OpGet(k)).Commit()
	if err != nil {
		return fmt.Errorf("node: read the deployment's config: %w", err)
	}
	if resp.Succeeded {
		n.log.Info("node: created the deployment's config", "cluster", want.Cluster)
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return fmt.Errorf("node: the deployment's config vanished while read")
	}
	var got deployment
	if err := json.Unmarshal(kvs[0].Value, &got); err != nil {
		return fmt.Errorf("%w: malformed config key %s: %w", ErrConfigMismatch, k, err)
	}
	switch {
	case got.Cluster != want.Cluster:
		return fmt.Errorf("%w: cluster %q, the node's is %q", ErrConfigMismatch, got.Cluster, want.Cluster)
	case got.Partitions != want.Partitions:
		return fmt.Errorf("%w: %d partitions, the node's are %d", ErrConfigMismatch, got.Partitions, want.Partitions)
	case got.Secret != want.Secret:
		return fmt.Errorf("%w: the secret's fingerprint is %s, the node's is %s (every node needs the same secret)", ErrConfigMismatch, got.Secret, want.Secret)
	case got.Format != want.Format:
		return fmt.Errorf("%w: config format %d, the node's is %d", ErrConfigMismatch, got.Format, want.Format)
	}
	// The class set: every other node recorded must serve the same.
	resp2, err := n.cli.Get(cctx, n.key("nodes/"), clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("node: read the nodes: %w", err)
	}
	mine := classesFingerprint(n.cfg.Classes)
	for _, kv := range resp2.Kvs {
		var r record
		if json.Unmarshal(kv.Value, &r) != nil || string(kv.Key) == n.nodeKey() {
			continue
		}
		if r.Classes != mine {
			return fmt.Errorf("%w: node %s serves another class set (fingerprint %s, this node's %s)", ErrConfigMismatch,
				strings.TrimPrefix(string(kv.Key), n.key("nodes/")), r.Classes, mine)
		}
	}
	return nil
}

func (n *Node) leaseFile() string {
	if n.cfg.DataDir == "" {
		return ""
	}
	return filepath.Join(n.cfg.DataDir, "cluster-lease")
}

// previousLease returns the lease ID the data directory recorded, or 0.
func (n *Node) previousLease() clientv3.LeaseID {
	f := n.leaseFile()
	if f == "" {
		return 0
	}
	b, err := os.ReadFile(f)
	if err != nil {
		return 0
	}
	id, err := strconv.ParseInt(strings.TrimSpace(string(b)), 16, 64)
	if err != nil {
		return 0
	}
	return clientv3.LeaseID(id)
}

func (n *Node) recordLease() error {
	f := n.leaseFile()
	if f == "" {
		return nil
	}
	tmp := f + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(int64(n.st.Lease()), 16)+"\n"), 0o600); err != nil {
		return fmt.Errorf("node: record the lease: %w", err)
	}
	if err := os.Rename(tmp, f); err != nil {
		return fmt.Errorf("node: record the lease: %w", err)
	}
	return nil
}

// claimName creates nodes/{name} as joining under the store's lease. If
// the key exists under a live lease it refuses, unless that lease is the
// one the data directory recorded: the node's own previous incarnation,
// which died; it is revoked, which frees its partitions at once.
func (n *Node) claimName(ctx context.Context) error {
	k := n.nodeKey()
	cctx, cancel := n.call(ctx)
	defer cancel()
	resp, err := n.cli.Get(cctx, k)
	if err != nil {
		return fmt.Errorf("node: read %s: %w", k, err)
	}
	if len(resp.Kvs) > 0 {
		held := clientv3.LeaseID(resp.Kvs[0].Lease)
		switch {
		case held == n.st.Lease():
		case held != 0 && held == n.previousLease():
			n.log.Info("node: revoking the lease of its previous incarnation", "lease", int64(held))
			if _, err := n.cli.Revoke(cctx, held); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
				return fmt.Errorf("node: revoke the previous incarnation's lease: %w", err)
			}
		default:
			return fmt.Errorf("%w: %s is held by lease %x (another process, or a crashed one whose lease has not yet expired)", ErrNameTaken, k, int64(held))
		}
	}
	if err := n.putRecord(ctx, Joining, true); err != nil {
		return err
	}
	return n.recordLease()
}

// putRecord writes the node's record with state under the store's lease;
// with create, only if the key is absent (a race with another process
// loses with ErrNameTaken).
func (n *Node) putRecord(ctx context.Context, s State, create bool) error {
	if create {
		inc := randomIncarnation()
		n.incarnation.Store(&inc)
	}
	v, _ := json.Marshal(record{URL: n.cfg.AdvertiseURL, Incarnation: *n.incarnation.Load(), State: s, Classes: classesFingerprint(n.cfg.Classes)})
	k := n.nodeKey()
	cctx, cancel := n.call(ctx)
	defer cancel()
	cmp := clientv3.Compare(clientv3.LeaseValue(k), "=", n.st.Lease())
	if create {
		cmp = clientv3.Compare(clientv3.CreateRevision(k), "=", 0)
	}
	resp, err := n.cli.Txn(cctx).If(cmp).Then(clientv3.OpPut(k, string(v), clientv3.WithLease(n.st.Lease()))).Commit()
	if err != nil {
		return fmt.Errorf("node: write %s: %w", k, err)
	}
	if !resp.Succeeded {
		if create {
			return fmt.Errorf("%w: %s was created meanwhile", ErrNameTaken, k)
		}
		return fmt.Errorf("node: %s is no longer under this node's lease", k)
	}
	n.state.Store(&s)
	return nil
}

func randomIncarnation() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Incarnation returns the node's current incarnation: random per start,
// and new after it rejoins with a new lease.
func (n *Node) Incarnation() string { return *n.incarnation.Load() }

// State returns the node's membership state.
func (n *Node) State() State { return *n.state.Load() }

// Join loads the partition table and the nodes with one read, watches
// both from the next revision, turns the node active and starts acquiring
// the partitions rendezvous hashing gives it and handing off the others.
// It returns once the node is active, not once it owns its share.
func (n *Node) Join(ctx context.Context, host Host) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.joined {
		return errors.New("node: Join called twice")
	}
	if n.ctx.Err() != nil {
		return ErrClosed
	}
	n.host = host
	rev, err := n.load(ctx)
	if err != nil {
		return err
	}
	if err := n.putRecord(ctx, Active, false); err != nil {
		return err
	}
	n.joined = true
	n.serving.Store(true)
	host.SetServing(true)
	n.wg.Add(3)
	go n.watch(rev)
	go n.reconcile()
	go n.guard()
	return nil
}

// Leave hands every partition off and leaves the cluster: the node turns
// draining (no node's rendezvous hashing counts it any more), drains and
// releases each partition it owns, 16 at a time, deletes its record and
// revokes its lease. Call it before the server's Shutdown. The node and
// its store serve nothing afterwards.
func (n *Node) Leave(ctx context.Context) error {
	n.mu.Lock()
	joined := n.joined
	n.mu.Unlock()
	if n.leaving.Swap(true) {
		return ErrClosed
	}
	var errs []error
	if joined {
		if err := n.putRecord(ctx, Draining, false); err != nil {
			errs = append(errs, err)
		}
		var wg sync.WaitGroup
		for p := range etcdstore.Partitions {
			if n.st.Token(p) == 0 {
				continue
			}
			select {
			case n.relSem <- struct{}{}:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-n.relSem }()
				if err := n.release(ctx, p); err != nil {
					n.log.Warn("node: handoff failed while leaving", "partition", p, "err", err)
				}
			}()
		}
		wg.Wait()
		n.awaitSuccessors(ctx)
	}
	cctx, cancel := n.call(ctx)
	if _, err := n.cli.Txn(cctx).If(clientv3.Compare(clientv3.LeaseValue(n.nodeKey()), "=", n.st.Lease())).
		Then(clientv3.OpDelete(n.nodeKey())).Commit(); err != nil {
		errs = append(errs, fmt.Errorf("node: delete the record: %w", err))
	}
	cancel()
	n.stop()
	if err := n.st.Revoke(ctx); err != nil {
		errs = append(errs, err)
	}
	if f := n.leaseFile(); f != "" {
		os.Remove(f)
	}
	return errors.Join(errs...)
}

// successorWait caps how long Leave waits for the table to show the new
// owners of the partitions it handed off.
const successorWait = 10 * time.Second

// awaitSuccessors waits, within ctx and successorWait, until the table
// shows another node owning every partition, when another node is active
// to take them. Leave stops the watch next, and the server goes on
// answering until it shuts down: with the table frozen before the new
// owners took their partitions, a request for one would find no owner and
// fail (ErrClosed) instead of being forwarded.
func (n *Node) awaitSuccessors(ctx context.Context) {
	others := false
	for name, m := range *n.members.Load() {
		others = others || (name != n.self && m.state == Active)
	}
	if !others {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, successorWait)
	defer cancel()
	t := time.NewTimer(waitPoll)
	defer t.Stop()
	for {
		ch := n.changes()
		done := true
		for p := range etcdstore.Partitions {
			if o := n.parts[p].Load(); o == nil || o.name == n.self {
				done = false
				break
			}
		}
		if done {
			return
		}
		select {
		case <-ch:
		case <-t.C:
			t.Reset(waitPoll)
		case <-ctx.Done():
			n.log.Warn("node: left before every partition had a new owner", "err", ctx.Err())
			return
		}
	}
}

// Close stops the node's loops without leaving: its record and
// partitions stay until its store's lease ends (Store.Close revokes it).
func (n *Node) Close() error {
	n.leaving.Store(true)
	n.stop()
	return nil
}

func (n *Node) stop() {
	n.cancel()
	n.wg.Wait()
}

// signal wakes the reconciler.
func (n *Node) signal() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}
