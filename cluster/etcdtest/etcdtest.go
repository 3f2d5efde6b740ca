// Package etcdtest starts real etcd members inside a test process, with
// go.etcd.io/etcd/server/v3/embed: one or three members on loopback ports,
// with short ticks (10 ms heartbeat, 100 ms election, so leases of 1 s
// work), their data in the test's temporary directory. Tests of the
// cluster module run against them instead of a mock: the etcd store talks
// to a member over gRPC exactly as to a production cluster.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// startTimeout bounds how long a member may take to start (or restart)
// and join its cluster.
const startTimeout = 20 * time.Second

// Cluster is a set of embedded etcd members, stopped by the test's
// cleanup.
type Cluster struct {
	t       testing.TB
	Members []*Member
}

// Member is one embedded etcd member.
type Member struct {
	Name      string
	ClientURL string // http://127.0.0.1:port
	PeerURL   string
	cfg       *embed.Config
	etcd      *embed.Etcd // nil while stopped
}

// Option configures Start.
type Option func(*embed.Config)

// WithTicks sets the members' heartbeat interval and election timeout.
// Default 10 ms and 100 ms, for fast elections in tests; benchmarks use
// etcd's production defaults, 100 ms and 1 s.
func WithTicks(heartbeat, election time.Duration) Option {
	return func(c *embed.Config) {
		c.TickMs, c.ElectionMs = uint(heartbeat.Milliseconds()), uint(election.Milliseconds())
	}
}

// WithDataIn keeps the members' data under root (one directory each, by
// name) instead of the test's temporary directory: a tmpfs such as
// /dev/shm takes the disk's fsyncs out of a benchmark. The caller removes
// root.
func WithDataIn(root string) Option {
	return func(c *embed.Config) { c.Dir = filepath.Join(root, c.Name) }
}

// Start starts n members (1 or 3, typically) as one new cluster and waits
// until it has a leader. It fails the test if they cannot start.
func Start(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	dir := t.TempDir()
	var initial []string
	for i := range n {
		m := &Member{Name: fmt.Sprintf("m%d", i+1)}
		m.ClientURL = "http://" + freePort(t)
		m.PeerURL = "http://" + freePort(t)
		cfg := embed.NewConfig()
		cfg.Name = m.Name
		cfg.Dir = filepath.Join(dir, m.Name)
		cfg.TickMs, cfg.ElectionMs = 10, 100
		cfg.LogLevel = "error"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.InitialClusterToken = "durable-test"
		cu, pu := mustURL(t, m.ClientURL), mustURL(t, m.PeerURL)
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
		cfg.ListenMetricsUrls = nil
		for _, o := range opts {
			o(cfg)
		}
		m.cfg = cfg
		initial = append(initial, m.Name+"="+m.PeerURL)
		c.Members = append(c.Members, m)
	}
	for _, m := range c.Members {
		m.cfg.InitialCluster = strings.Join(initial, ",")
	}
	t.Cleanup(c.Close)
	// Members of a new cluster wait for each other: start them together.
	errs := make(chan error, n)
	for _, m := range c.Members {
		go func() { errs <- m.start() }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("etcdtest: %v", err)
		}
	}
	c.WaitLeader()
	return c
}

func (m *Member) start() error {
	e, err := embed.StartEtcd(m.cfg)
	if err != nil {
		return fmt.Errorf("start %s: %w", m.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(startTimeout):
		e.Close()
		return fmt.Errorf("%s not ready after %v", m.Name, startTimeout)
	}
	m.etcd = e
	return nil
}

// Endpoints returns the client URLs of the members.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

// Client returns a client of every member, closed by the test's cleanup.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.Endpoints(),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Leader returns the index of the member that is leader, waiting for an
// election if there is none.
func (c *Cluster) Leader() int { return c.WaitLeader() }

// WaitLeader waits until the running members agree on a leader among them
// and returns its index. It fails the test after startTimeout.
func (c *Cluster) WaitLeader() int {
	c.t.Helper()
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		if i := c.leader(); i >= 0 {
			return i
		}
		// Polling the members' view; an election takes ~100 ms here.
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("etcdtest: no leader after %v", startTimeout)
	return -1
}

func (c *Cluster) leader() int {
	lead := -1
	for _, m := range c.Members {
		if m.etcd == nil {
			continue
		}
		l := m.etcd.Server.Leader()
		if l == 0 {
			return -1
		}
		for j, o := range c.Members {
			if o.etcd != nil && o.etcd.Server.MemberID() == l {
				if lead >= 0 && lead != j {
					return -1
				}
				lead = j
			}
		}
	}
	return lead
}

// Kill stops member i at once, without handing its leadership over (as
// kill -9 would, minus the process).
func (c *Cluster) Kill(i int) {
	m := c.Members[i]
	if m.etcd == nil {
		return
	}
	m.etcd.Server.HardStop()
	m.etcd.Close()
	m.etcd = nil
}

// Restart starts a killed member again on its data and ports.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	m := c.Members[i]
	m.cfg.ClusterState = embed.ClusterStateFlagExisting
	if err := m.start(); err != nil {
		c.t.Fatalf("etcdtest: %v", err)
	}
}

// Close stops every member.
func (c *Cluster) Close() {
	for i := range c.Members {
		c.Kill(i)
	}
}

// WaitHealthy waits until a linearizable read through cli succeeds.
func WaitHealthy(t testing.TB, cli *clientv3.Client) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "health")
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcdtest: not healthy after %v: %v", startTimeout, err)
		}
	}
}

// freePort returns a loopback address with a port free right now.
func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

func mustURL(t testing.TB, s string) url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	return *u
}
