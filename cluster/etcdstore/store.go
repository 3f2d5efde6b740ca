// Package etcdstore is an object store (engine.ObjectStore) on etcd: the
// state, key-value storage and alarms of Durable objects live in an etcd
// cluster, so that an acknowledged call survives the loss of the node that
// ran it, and at most one node can commit for an object at any time.
//
// Objects map to 1,024 partitions (Partition). A store owns partitions:
// it holds the key parts/{p} of each under its lease, and the key's
// CreateRevision is the partition's fencing token. Every commit is one
// etcd transaction whose writes apply only if the owner key of each
// partition it touches still has that CreateRevision: a store whose lease
// ended, or whose partition another store took since, commits nothing,
// whatever it believes, and its callers get ErrNotOwner.
//
// Commits are batched: partition p's batches go to lane p % 2 (WithLanes);
// each lane has one transaction in flight (so an object's batches commit in order)
// and packs the batches waiting behind it, of many objects, into its next
// transaction, within etcd's limits on operations per transaction and
// request size. A call whose writes alone exceed them fails with
// storage.ErrTooLarge (ResourceExhausted) and nothing is written.
//
// Reads of an owned partition are served by the member the client reached
// when it is known to hold every write to the partition, and otherwise
// linearizably (WithStrictReads).
//
// By default Open takes every partition: one node serves the deployment.
// With WithManagedOwnership it takes none, and a cluster node (package
// github.com/durablego/durable/cluster/node) acquires and releases
// partitions as membership changes, under the store's lease.
package etcdstore

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/objectkey"
)

// Option configures Open.
type Option func(*config)

type config struct {
	cluster        string
	owner          string
	ttl            time.Duration
	requestTimeout time.Duration
	commitTimeout  time.Duration
	maxOps         int
	maxBytes       int
	lanes          int
	queue          int
	logger         *slog.Logger
	managed        bool
	strictReads    bool
}

// WithCluster names the deployment: its keys live under /durable/{name}/.
// Default "default".
func WithCluster(name string) Option { return func(c *config) { c.cluster = name } }

// WithOwner sets what the owner keys of the store's partitions say, for
// operators: typically the node's name. Default "{hostname}-{pid}".
func WithOwner(name string) Option { return func(c *config) { c.owner = name } }

// WithTTL sets the lease that holds the store's partitions: if the store
// cannot renew it for that long (the process died, or lost etcd), the
// partitions are free for another store to take. Default 5 s; etcd's
// minimum is 1.5 × its election timeout.
func WithTTL(d time.Duration) Option { return func(c *config) { c.ttl = d } }

// WithRequestTimeout bounds every etcd call the store makes. Default 2 s.
func WithRequestTimeout(d time.Duration) Option { return func(c *config) { c.requestTimeout = d } }

// WithCommitTimeout bounds how long a lane retries a transaction that
// failed for want of etcd (a leader election, a member lost) before it
// fails its batches. Default 30 s.
func WithCommitTimeout(d time.Duration) Option { return func(c *config) { c.commitTimeout = d } }

// WithLimits sets the etcd server's limits that transactions are packed
// within: operations per transaction (--max-txn-ops, default 128) and
// request bytes (--max-request-bytes, default 1.5 MiB).
func WithLimits(maxOps, maxBytes int) Option {
	return func(c *config) { c.maxOps, c.maxBytes = maxOps, maxBytes }
}

// WithLogger sets the logger of ownership changes. Default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithLanes sets the number of commit lanes: partition p commits in lane
// p % n, each lane with one transaction in flight. More lanes overlap more
// round trips; fewer pack more batches into each transaction, which costs
// etcd less per write: a transaction costs etcd about as much CPU for one
// object's writes as for thirty (a raft entry, a revision, a request).
// Measured with 64 callers over 10,000 objects on three members sharing
// two cores with the node: 6.1–8.7k calls/s with 8 lanes, 9.8–11.7k with
// 2 (BENCHMARKS.md). A lane's transaction carries everything queued in it,
// up to the limits, so with more callers each transaction grows instead.
// Default 2.
func WithLanes(n int) Option { return func(c *config) { c.lanes = min(max(1, n), Partitions) } }

// WithStrictReads makes every read linearizable: a round through etcd's
// leader (ReadIndex) before each Get or Range. By default a read is first
// served by the member the client reached (serializable, no round) and
// accepted only when that member's revision is at least the partition's
// floor: the revision at which the store took the partition and that of
// its last acknowledged commit to it. Every write to an owned partition is
// at or under the floor (a previous owner's before the store took it, the
// store's own acknowledged ones; the fence refuses anyone else's), so such
// a read sees them all; a member behind the floor is asked again
// linearizably.
func WithStrictReads() Option { return func(c *config) { c.strictReads = true } }

// WithManagedOwnership has Open take no partition: the store serves only
// those acquired since with Acquire, which a cluster node does for the
// partitions membership gives it. Default: Open takes every partition.
func WithManagedOwnership() Option { return func(c *config) { c.managed = true } }

// Store is an object store on etcd. Create one with Open; it is safe for
// concurrent use.
type Store struct {
	cli  *clientv3.Client
	cfg  config
	keys keys

	lease atomic.Int64 // the clientv3.LeaseID; a new one after Regrant
	// tokens[p] is the CreateRevision of partition p's owner key while the
	// store owns p, 0 otherwise.
	tokens [Partitions]atomic.Int64
	// committed[p] is the revision of the store's last acknowledged commit
	// to partition p: with tokens[p], the floor of a serializable read.
	committed [Partitions]atomic.Int64
	// base and deadline: the lease is known to hold until base+deadline
	// (the monotonic clock), the time the last renewal was sent plus the
	// TTL, minus a margin.
	base     time.Time
	deadline atomic.Int64
	lost     atomic.Bool // etcd said the lease is gone

	mu     sync.RWMutex // guards closed against Commit
	closed bool
	lanes  []*lane
	laneWG sync.WaitGroup // the lanes' goroutines
	wg     sync.WaitGroup // the keep-alive loop
	stop   chan struct{}  // closed by Close: ends the keep-alive loop
	once   sync.Once      // closes stop

	onLose atomic.Pointer[func(ps []int)] // SetLossHook's

	commits, batches, written atomic.Uint64

	reads localReads // the serializable reads of single keys, gathered
}

var _ engine.ObjectStore = (*Store)(nil)

// Open grants the store's lease on cli's cluster and takes ownership of
// every partition, waiting (until ctx ends) for those another store holds
// to be free: a store of a process that died holds its partitions until
// its lease expires. With WithManagedOwnership it takes none. The store
// does not close cli.
func Open(ctx context.Context, cli *clientv3.Client, opts ...Option) (*Store, error) {
	host, _ := os.Hostname()
	cfg := config{
		cluster:        "default",
		owner:          fmt.Sprintf("%s-%d", cmp.Or(host, "node"), os.Getpid()),
		ttl:            5 * time.Second,
		requestTimeout: 2 * time.Second,
		commitTimeout:  30 * time.Second,
		maxOps:         128,
		maxBytes:       3 << 19, // 1.5 MiB
		lanes:          2,
		queue:          4096,
		logger:         slog.Default(),
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.ttl < time.Second {
		return nil, fmt.Errorf("etcdstore: TTL %v is under etcd's minimum of 1 s", cfg.ttl)
	}
	s := &Store{cli: cli, cfg: cfg, keys: keys{prefix: "/durable/" + cfg.cluster + "/"}, base: time.Now(), stop: make(chan struct{})}
	sent := time.Since(s.base)
	gctx, cancel := s.call(ctx)
	g, err := cli.Grant(gctx, int64(cfg.ttl/time.Second))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("etcdstore: grant a lease: %w", err)
	}
	s.lease.Store(int64(g.ID))
	s.renewed(sent)
	s.wg.Add(1)
	go s.keepAlive()
	if !cfg.managed {
		if err := s.acquireAll(ctx); err != nil {
			s.shutdownLease(ctx)
			return nil, err
		}
	}
	s.lanes = make([]*lane, cfg.lanes)
	for i := range s.lanes {
		s.lanes[i] = &lane{s: s, in: make(chan *engine.Batch, cfg.queue)}
		s.laneWG.Add(1)
		go s.lanes[i].run()
	}
	return s, nil
}

// call returns ctx bounded by the request timeout: no etcd call of the
// store waits forever (a member in a bad state may accept a request and
// never answer it).
func (s *Store) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.requestTimeout)
}

// Lease returns the ID of the lease that holds the store's partitions.
func (s *Store) Lease() clientv3.LeaseID { return clientv3.LeaseID(s.lease.Load()) }

// Token returns partition p's fencing token, the CreateRevision of its
// owner key, or 0 when the store does not own p.
func (s *Store) Token(p int) int64 { return s.tokens[p].Load() }

// margin is how long before the lease's TTL runs out, counted from when
// its last renewal was sent, the store stops trusting it:
// max(250 ms, TTL/10).
func (s *Store) margin() time.Duration { return max(250*time.Millisecond, s.cfg.ttl/10) }

func (s *Store) renewed(sent time.Duration) {
	s.deadline.Store(int64(sent + s.cfg.ttl - s.margin()))
}

// owns returns the token of p if the store owns it and its lease holds.
func (s *Store) owns(p int) (int64, error) {
	tok := s.tokens[p].Load()
	switch {
	case tok == 0 || s.lost.Load():
		return 0, fmt.Errorf("%w: partition %d", ErrNotOwner, p)
	case time.Since(s.base) >= time.Duration(s.deadline.Load()):
		return 0, fmt.Errorf("%w: partition %d: the lease could not be renewed in time", ErrNotOwner, p)
	}
	return tok, nil
}

// keepAlive renews the lease every TTL/3 with KeepAliveOnce, keeping its
// own deadline from when each renewal was sent (clientv3's counts from
// when the answer arrives, late by a round trip).
func (s *Store) keepAlive() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		sent := time.Since(s.base)
		ctx, cancel := context.WithTimeout(context.Background(), min(s.cfg.requestTimeout, s.cfg.ttl/3))
		_, err := s.cli.KeepAliveOnce(ctx, s.Lease())
		cancel()
		switch {
		case err == nil:
			s.renewed(sent)
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			s.loseAll("the lease expired or was revoked")
			return
		default:
			s.cfg.logger.Warn("etcdstore: lease renewal failed", "lease", s.lease.Load(), "err", err)
		}
	}
}

// loseAll drops every partition: the lease is gone, and with it the owner
// keys. The store commits nothing from now on.
func (s *Store) loseAll(why string) {
	if s.lost.Swap(true) {
		return
	}
	var ps []int
	for p := range s.tokens {
		if s.tokens[p].Swap(0) != 0 {
			ps = append(ps, p)
		}
	}
	s.cfg.logger.Error("etcdstore: lost every partition", "reason", why, "lease", s.lease.Load(), "partitions", len(ps))
	if fn := s.onLose.Load(); fn != nil && len(ps) > 0 {
		(*fn)(ps)
	}
}

// lose drops partition p if its token is still tok: a commit's fence
// failed.
func (s *Store) lose(p int, tok int64) {
	if s.tokens[p].CompareAndSwap(tok, 0) {
		s.cfg.logger.Error("etcdstore: lost a partition", "partition", p, "token", tok)
		if fn := s.onLose.Load(); fn != nil {
			(*fn)([]int{p})
		}
	}
}

// SetLossHook has the store call fn with the partitions it finds it lost
// by itself: a commit's fence failed (another store took the partition),
// or etcd said the lease is gone. A cluster node evicts their objects.
// fn runs on the store's goroutines: it must not block. Losses the caller
// makes (Forget, Release) do not call it.
func (s *Store) SetLossHook(fn func(ps []int)) { s.onLose.Store(&fn) }

// Owns reports whether the store owns partition p and its lease holds, as
// every read and commit checks: a cluster node's placement answers from it.
func (s *Store) Owns(p int) bool { _, err := s.owns(p); return err == nil }

// LeaseRemaining returns how long the store still trusts its lease: the
// time its last successful renewal was sent plus the TTL, minus a margin,
// less now. At or under zero the store commits and reads nothing.
func (s *Store) LeaseRemaining() time.Duration {
	return time.Duration(s.deadline.Load()) - time.Since(s.base)
}

// LeaseLost reports whether etcd said the lease is gone (it expired or was
// revoked): the store owns nothing until Regrant.
func (s *Store) LeaseLost() bool { return s.lost.Load() }

// TTL returns the lease's time to live (WithTTL).
func (s *Store) TTL() time.Duration { return s.cfg.ttl }

// Prefix returns the deployment's key prefix, "/durable/{cluster}/".
func (s *Store) Prefix() string { return s.keys.prefix }

// Owner returns what the store writes in the owner keys (WithOwner).
func (s *Store) Owner() string { return s.cfg.owner }

// Regrant grants a new lease after the old one was lost (LeaseLost) and
// renews it from now on: the node rejoins as a new incarnation, owning
// nothing until it acquires partitions again.
func (s *Store) Regrant(ctx context.Context) error {
	if !s.lost.Load() {
		return errors.New("etcdstore: Regrant: the lease is not lost")
	}
	select {
	case <-s.stop:
		return ErrClosed
	default:
	}
	s.wg.Wait() // the keep-alive loop ends once it saw the lease gone
	sent := time.Since(s.base)
	gctx, cancel := s.call(ctx)
	g, err := s.cli.Grant(gctx, int64(s.cfg.ttl/time.Second))
	cancel()
	if err != nil {
		return fmt.Errorf("etcdstore: grant a new lease: %w", err)
	}
	s.lease.Store(int64(g.ID))
	s.renewed(sent)
	s.lost.Store(false)
	s.wg.Add(1)
	go s.keepAlive()
	return nil
}

// Acquire takes those of the partitions ps that are free (their owner key
// absent), each with a create-if-absent transaction under the store's
// lease, and returns the ones it took. A partition another store holds is
// left alone.
func (s *Store) Acquire(ctx context.Context, ps []int) ([]int, error) {
	if s.lost.Load() {
		return nil, fmt.Errorf("%w: the lease is lost", ErrNotOwner)
	}
	var took []int
	for len(ps) > 0 {
		n := min(len(ps), s.cfg.maxOps)
		if err := s.acquire(ctx, ps[:n]); err != nil {
			return took, err
		}
		for _, p := range ps[:n] {
			if s.tokens[p].Load() != 0 {
				took = append(took, p)
			}
		}
		ps = ps[n:]
	}
	return took, nil
}

// Release gives partition p up: the store stops committing for it, then
// deletes its owner key if it is still the one the store created (fenced
// by its CreateRevision), so that another store can acquire it at once.
// The caller drains the partition's objects first.
func (s *Store) Release(ctx context.Context, p int) error {
	tok := s.tokens[p].Swap(0)
	if tok == 0 {
		return nil
	}
	k := s.keys.part(p)
	tctx, cancel := s.call(ctx)
	defer cancel()
	if _, err := s.cli.Txn(tctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", tok)).Then(clientv3.OpDelete(k)).Commit(); err != nil {
		// The key stays until the lease ends; the store commits nothing
		// for p either way.
		return fmt.Errorf("etcdstore: release partition %d: %w", p, err)
	}
	return nil
}

// Forget drops partition p if its token is still tok, without touching
// etcd: the caller saw the owner key deleted or re-created by another
// store. It reports whether the store held p with tok.
func (s *Store) Forget(p int, tok int64) bool { return s.tokens[p].CompareAndSwap(tok, 0) }

// acquireAll takes every partition, 128 per transaction, waiting for the
// partitions held by another lease to be deleted.
func (s *Store) acquireAll(ctx context.Context) error {
	for {
		gctx, cancel := s.call(ctx)
		resp, err := s.cli.Get(gctx, s.keys.prefix+"parts/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
		cancel()
		if err != nil {
			return fmt.Errorf("etcdstore: read the partitions' owners: %w", err)
		}
		held := map[string]bool{}
		for _, kv := range resp.Kvs {
			held[string(kv.Key)] = true
		}
		var free []int
		waiting := 0
		for p := range Partitions {
			switch {
			case s.tokens[p].Load() != 0:
			case held[s.keys.part(p)]:
				waiting++
			default:
				free = append(free, p)
			}
		}
		for len(free) > 0 {
			n := min(len(free), s.cfg.maxOps)
			if err := s.acquire(ctx, free[:n]); err != nil {
				return err
			}
			free = free[n:]
		}
		if waiting == 0 && s.ownsAll() {
			return nil
		}
		// Wait for a change of the owner keys after what was read.
		s.cfg.logger.Info("etcdstore: waiting for partitions held by another lease", "partitions", waiting)
		wctx, wcancel := context.WithCancel(ctx)
		wch := s.cli.Watch(clientv3.WithRequireLeader(wctx), s.keys.prefix+"parts/", clientv3.WithPrefix(),
			clientv3.WithRev(resp.Header.Revision+1), clientv3.WithFilterPut())
		select {
		case <-wch:
		case <-ctx.Done():
		}
		wcancel()
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("etcdstore: %d partitions still held by another lease: %w", waiting, err)
		}
	}
}

func (s *Store) ownsAll() bool {
	for p := range s.tokens {
		if s.tokens[p].Load() == 0 {
			return false
		}
	}
	return true
}

// acquire takes the free partitions ps in one transaction (create if
// absent, under the store's lease), or one by one if one was taken
// meanwhile. The response's revision is each created key's CreateRevision.
func (s *Store) acquire(ctx context.Context, ps []int) error {
	var cmps []clientv3.Cmp
	var puts []clientv3.Op
	for _, p := range ps {
		k := s.keys.part(p)
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
		puts = append(puts, clientv3.OpPut(k, s.cfg.owner, clientv3.WithLease(s.Lease())))
	}
	tctx, cancel := s.call(ctx)
	resp, err := s.cli.Txn(tctx).If(cmps...).Then(puts...).Commit()
	cancel()
	if err != nil {
		return fmt.Errorf("etcdstore: acquire partitions: %w", err)
	}
	if resp.Succeeded {
		for _, p := range ps {
			s.tokens[p].Store(resp.Header.Revision)
		}
		return nil
	}
	if len(ps) == 1 {
		return nil // taken meanwhile: acquireAll waits for it
	}
	for _, p := range ps {
		if err := s.acquire(ctx, []int{p}); err != nil {
			return err
		}
	}
	return nil
}

// LoadState returns the object's state.
func (s *Store) LoadState(ctx context.Context, class string, id [32]byte) ([]byte, bool, error) {
	return s.get(ctx, id, s.keys.state(class, id))
}

// Get returns the value of one key of the object.
func (s *Store) Get(ctx context.Context, class string, id [32]byte, key string) ([]byte, bool, error) {
	return s.get(ctx, id, s.keys.kvPrefix(class, id)+key)
}

// Alarm returns the object's alarm, in Unix milliseconds.
func (s *Store) Alarm(ctx context.Context, class string, id [32]byte) (int64, bool, error) {
	v, ok, err := s.get(ctx, id, s.keys.alarm(class, id))
	if err != nil || !ok {
		return 0, false, err
	}
	at, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("etcdstore: malformed alarm of %s object: %w", class, err)
	}
	return at, true, nil
}

// get reads one key of an object of an owned partition.
func (s *Store) get(ctx context.Context, id [32]byte, key string) ([]byte, bool, error) {
	if _, err := s.owns(Partition(id)); err != nil {
		return nil, false, err
	}
	resp, err := s.read(ctx, Partition(id), key)
	if err != nil {
		return nil, false, err
	}
	if len(resp.Kvs) == 0 {
		return nil, false, nil
	}
	return resp.Kvs[0].Value, true, nil
}

// read gets key (with opts) of owned partition p: from the member the
// client reached when its revision is at least the partition's floor (see
// WithStrictReads), else linearizably. A read at a given revision
// (WithRev, the later pages of Scan) is served locally once the member has
// it, and otherwise asked again too.
func (s *Store) read(ctx context.Context, p int, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if !s.cfg.strictReads {
		// Load the floor before reading: a commit acknowledged after it
		// was loaded is one the caller did not wait for.
		floor := max(s.tokens[p].Load(), s.committed[p].Load())
		if len(opts) == 0 {
			// One key: gathered with the other reads in flight.
			kv, rev, err := s.getLocal(ctx, key)
			if err == nil && rev >= floor {
				resp := &clientv3.GetResponse{Header: &etcdserverpb.ResponseHeader{Revision: rev}}
				if kv != nil {
					resp.Kvs, resp.Count = []*mvccpb.KeyValue{kv}, 1
				}
				return resp, nil
			}
		} else {
			cctx, cancel := s.call(ctx)
			resp, err := s.cli.Get(cctx, key, append(opts, clientv3.WithSerializable())...)
			cancel()
			if err == nil && resp.Header.Revision >= floor {
				return resp, nil
			}
		}
		if ctx.Err() != nil {
			return nil, storeError(ctx.Err())
		}
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.cli.Get(cctx, key, opts...)
	if err != nil {
		return nil, storeError(err)
	}
	return resp, nil
}

// scanPage is how many entries one Range of Scan returns at most: values
// are up to 128 KiB, so a page holds at most 8 MiB.
const scanPage = 64

// Scan calls fn for the object's entries in r: Ranges of the object's
// keys in the byte order of the KV API, sorted and limited by etcd, a page
// at a time, every page at the revision of the first.
func (s *Store) Scan(ctx context.Context, class string, id [32]byte, r engine.KeyRange, limit int, fn func(key string, value []byte) bool) error {
	if _, err := s.owns(Partition(id)); err != nil {
		return err
	}
	pre := s.keys.kvPrefix(class, id)
	lo, hi := pre+r.Lo, successor(pre)
	if r.HasHi {
		hi = pre + r.Hi
	}
	var rev int64
	for limit != 0 && lo < hi {
		n := scanPage
		if limit > 0 {
			n = min(n, limit)
		}
		order := clientv3.SortAscend
		if r.Reverse {
			order = clientv3.SortDescend
		}
		opts := []clientv3.OpOption{clientv3.WithRange(hi), clientv3.WithLimit(int64(n)), clientv3.WithSort(clientv3.SortByKey, order)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.read(ctx, Partition(id), lo, opts...)
		if err != nil {
			return err
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			if !fn(string(kv.Key[len(pre):]), kv.Value) {
				return nil
			}
		}
		if limit > 0 {
			limit -= len(resp.Kvs)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		last := string(resp.Kvs[len(resp.Kvs)-1].Key)
		if r.Reverse {
			hi = last
		} else {
			lo = last + "\x00"
		}
	}
	return nil
}

// dueChunk is how many partitions' index ranges one DueAlarms transaction
// reads: with the scheduler's pages of 10,000, at most 160,000 entries
// (about 16 MB) in one response.
const dueChunk = 16

// DueAlarms returns the first limit alarms due by until after the entry
// after, over the owned partitions' indexes: one limited Range per
// partition, dueChunk to a transaction, merged. Memory is bounded by
// (dueChunk+1) × limit entries: after each transaction only the first
// limit are kept, and the due time of the last of them bounds the ranges
// of the partitions still to read.
func (s *Store) DueAlarms(ctx context.Context, after engine.DueAlarm, until int64, limit int) ([]engine.DueAlarm, error) {
	if limit <= 0 || until < after.At {
		return nil, nil
	}
	var out []engine.DueAlarm
	var ops []clientv3.Op
	var parts []int
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		cctx, cancel := s.call(ctx)
		resp, err := s.cli.Txn(cctx).Then(ops...).Commit()
		cancel()
		if err != nil {
			return storeError(err)
		}
		for i, r := range resp.Responses {
			for _, kv := range r.GetResponseRange().Kvs {
				class, id, at, err := s.keys.parseIndex(parts[i], string(kv.Key))
				if err != nil {
					return err
				}
				if a := (engine.DueAlarm{Key: objectkey.Key{Class: class, ID: id}, At: at}); after.Less(a) {
					out = append(out, a)
				}
			}
		}
		ops, parts = ops[:0], parts[:0]
		sortAlarms(out)
		if len(out) >= limit {
			out = out[:limit]
			until = out[limit-1].At
		}
		return nil
	}
	for p := range Partitions {
		if _, err := s.owns(p); err != nil {
			continue
		}
		pre := s.keys.indexPrefix(p)
		// Index keys sort as DueAlarm.Less orders: start just after after's.
		lo := fmt.Sprintf("%s%016x/%s/%s\x00", pre, uint64(after.At), hex.EncodeToString([]byte(after.Class)), hex.EncodeToString(after.ID[:]))
		hi := fmt.Sprintf("%s%016x", pre, uint64(until)+1)
		ops = append(ops, clientv3.OpGet(lo, clientv3.WithRange(hi), clientv3.WithLimit(int64(limit))))
		parts = append(parts, p)
		if len(ops) == dueChunk {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// Meta returns the value SetMeta recorded under key.
func (s *Store) Meta(ctx context.Context, key string) (string, bool, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.keys.meta(key))
	if err != nil {
		return "", false, storeError(err)
	}
	if len(resp.Kvs) == 0 {
		return "", false, nil
	}
	return string(resp.Kvs[0].Value), true, nil
}

// SetMeta records value under key.
func (s *Store) SetMeta(ctx context.Context, key, value string) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	_, err := s.cli.Put(ctx, s.keys.meta(key), value)
	return storeError(err)
}

// Empty reports whether the deployment holds no object's data.
func (s *Store) Empty(ctx context.Context) (bool, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.keys.objects(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return false, storeError(err)
	}
	return resp.Count == 0, nil
}

// Stats returns what the store has committed: Commits counts etcd
// transactions, Batches the batches they carried, Bytes their states,
// keys and values.
func (s *Store) Stats() engine.Stats {
	return engine.Stats{Commits: s.commits.Load(), Batches: s.batches.Load(), Bytes: s.written.Load()}
}

// Commit queues b in its partition's lane. It blocks while the lane's
// queue (4,096 batches) is full. After Close, b is acknowledged with
// ErrClosed at once.
//
// A batch is acknowledged once the transaction carrying it is committed,
// on a quorum of etcd members. If etcd does not answer, the lane sends the
// same transaction again, under the same fence, until it is answered or
// the commit timeout passes; when the fence changed meanwhile, or the
// timeout passed, the batch fails although it may be durable: an
// ambiguous failure, never a lost acknowledged write.
func (s *Store) Commit(b *engine.Batch) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		b.Done(ErrClosed)
		return
	}
	s.lanes[Partition(b.ID())%len(s.lanes)].in <- b
}

// Close commits what the lanes hold, then revokes the lease, which frees
// the store's partitions at once. Commits after Close fail with ErrClosed.
// It does not close the client.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, l := range s.lanes {
		close(l.in)
	}
	s.mu.Unlock()
	s.laneWG.Wait()
	return s.shutdownLease(context.Background())
}

// Revoke stops renewing the lease and revokes it, which frees the store's
// partitions at once (a node leaving, after handing them off); the store
// commits nothing from now on. Close after it only drains the lanes.
func (s *Store) Revoke(ctx context.Context) error { return s.shutdownLease(ctx) }

// shutdownLease stops the keep-alive loop and revokes the
// lease unless it is lost already.
func (s *Store) shutdownLease(ctx context.Context) error {
	s.once.Do(func() { close(s.stop) })
	s.wg.Wait()
	if s.lost.Swap(true) {
		return nil
	}
	for p := range s.tokens {
		s.tokens[p].Store(0)
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	if _, err := s.cli.Revoke(ctx, s.Lease()); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("etcdstore: revoke the lease (its partitions stay held until it expires): %w", err)
	}
	return nil
}

// sortAlarms sorts by DueAlarm.Less.
func sortAlarms(a []engine.DueAlarm) {
	slices.SortFunc(a, func(x, y engine.DueAlarm) int {
		switch {
		case x.Less(y):
			return -1
		case y.Less(x):
			return 1
		}
		return 0
	})
}
