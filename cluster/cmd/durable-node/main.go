// Command durable-node runs one node of a Durable cluster: the example
// classes that keep no SQL database (cluster mode refuses SQL classes),
// over Connect, gRPC and gRPC-Web on -addr, their objects stored in etcd.
//
//	durable-node -etcd http://127.0.0.11:2379,http://127.0.0.12:2379 \
//	    -cluster demo -node n1 -addr 127.0.0.21:8080 -secret-file ./secret
//
// Every node of a cluster must share the ID secret (-secret-file, or the
// file named by $DURABLE_SECRET_FILE): the store records its fingerprint,
// and a node with another secret is refused.
//
// Nodes share the 1,024 partitions of the objects' IDs by rendezvous
// hashing over the active nodes (cluster/node); any node accepts any
// request and forwards it to the node that owns the object. SIGTERM hands
// every partition off before the node leaves; a node that dies holds its
// partitions until its lease (-ttl) expires, then the others take them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/durablego/durable/cluster/etcdstore"
	"github.com/durablego/durable/cluster/node"
	"github.com/durablego/durable/examples/exampleserver"
	"github.com/durablego/durable/examples/session"
	"github.com/durablego/durable/server"
)

// config is what the flags set.
type config struct {
	etcd             []string
	cluster, node    string
	advertise, addr  string
	data, secretFile string
	metricsAddr      string
	ttl, idle        time.Duration
	sessionIdle      time.Duration
	openTimeout      time.Duration
	drainGrace       time.Duration
}

func main() {
	var cfg config
	etcd := flag.String("etcd", "http://127.0.0.1:2379", "etcd endpoints, comma-separated")
	flag.StringVar(&cfg.cluster, "cluster", "default", "the cluster's name: its keys' prefix in etcd")
	flag.StringVar(&cfg.node, "node", "", "this node's name, unique in the cluster (default: the host name and -addr)")
	flag.StringVar(&cfg.advertise, "advertise", "", "the URL other nodes reach this one at (default: http://-addr)")
	flag.StringVar(&cfg.addr, "addr", "127.0.0.1:8080", "address to listen on")
	flag.StringVar(&cfg.data, "data", "", `directory for the node's local files: its lock, and the lease of its last run (default "data-" and the node's name)`)
	flag.StringVar(&cfg.secretFile, "secret-file", os.Getenv("DURABLE_SECRET_FILE"), "file holding the ID secret shared by every node (default $DURABLE_SECRET_FILE)")
	flag.StringVar(&cfg.metricsAddr, "metrics-addr", "", `address to serve /metrics on instead of -addr ("": on -addr)`)
	flag.DurationVar(&cfg.ttl, "ttl", 5*time.Second, "the node's lease: how long after a crash its partitions stay fenced")
	flag.DurationVar(&cfg.idle, "idle", 10*time.Second, "how long an idle object stays in memory")
	flag.DurationVar(&cfg.drainGrace, "drain-grace", 2*time.Second, "on SIGTERM, once the partitions are handed off: how long to go on serving with health NOT_SERVING, for load balancers to move away")
	flag.DurationVar(&cfg.sessionIdle, "session-idle", session.DefaultIdle, "how long a Session may stay inactive before its alarm deletes its data")
	flag.DurationVar(&cfg.openTimeout, "open-timeout", 2*time.Minute, "how long to wait for the partitions (an old lease must expire first)")
	flag.Parse()
	for e := range strings.SplitSeq(*etcd, ",") {
		if e = strings.TrimSpace(e); e != "" {
			cfg.etcd = append(cfg.etcd, e)
		}
	}
	if len(cfg.etcd) == 0 || cfg.secretFile == "" || cfg.ttl <= 0 || cfg.sessionIdle <= 0 {
		fmt.Fprintln(os.Stderr, "durable-node needs -etcd, -secret-file (or $DURABLE_SECRET_FILE), and positive -ttl and -session-idle")
		os.Exit(2)
	}
	if cfg.node == "" {
		host, _ := os.Hostname()
		cfg.node = host + "-" + cfg.addr
	}
	if cfg.data == "" {
		cfg.data = "data-" + strings.NewReplacer("/", "_", ":", "_").Replace(cfg.node)
	}
	if cfg.advertise == "" {
		cfg.advertise = "http://" + cfg.addr
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", cfg.node)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("node failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, log *slog.Logger) (err error) {
	secret, err := os.ReadFile(cfg.secretFile)
	if err != nil {
		return fmt.Errorf("-secret-file: %w", err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.etcd, DialTimeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer func() { err = errors.Join(err, cli.Close()) }()

	// The store holds the partitions the node owns; the node decides which
	// (membership, rendezvous hashing, hand-offs) and tells the server
	// where every other object is served.
	store, err := etcdstore.Open(ctx, cli, etcdstore.WithCluster(cfg.cluster), etcdstore.WithOwner(cfg.node),
		etcdstore.WithTTL(cfg.ttl), etcdstore.WithLogger(log), etcdstore.WithManagedOwnership())
	if err != nil {
		return fmt.Errorf("etcd store: %w", err)
	}
	defer func() { err = errors.Join(err, store.Close()) }()
	if err := os.MkdirAll(cfg.data, 0o750); err != nil {
		return fmt.Errorf("-data: %w", err)
	}
	reg := prometheus.NewRegistry()
	openCtx, cancel := context.WithTimeout(ctx, cfg.openTimeout)
	defer cancel()
	n, err := node.New(openCtx, cli, store, node.Config{Name: cfg.node, AdvertiseURL: cfg.advertise, Secret: secret,
		Classes: exampleserver.WithoutSQL, DataDir: cfg.data}, node.WithLogger(log), node.WithRegisterer(reg))
	if err != nil {
		return err // a secret or class set other than the cluster's is refused here
	}
	defer n.Close()

	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := server.New(server.WithStore(store), server.WithPlacement(n), server.WithNodeName(cfg.node),
		server.WithDataDir(cfg.data), server.WithSecret(secret), server.WithIdleTimeout(cfg.idle),
		server.WithLogger(log), server.WithMetrics(reg), server.WithDrainGrace(cfg.drainGrace))
	if err != nil {
		return err // a secret other than the cluster's is refused here
	}
	if err := exampleserver.RegisterWithoutSQL(srv, cfg.sessionIdle); err != nil {
		return errors.Join(err, srv.Shutdown(context.Background()))
	}
	if got := srv.Classes(); !slices.Equal(got, exampleserver.WithoutSQL) {
		return errors.Join(fmt.Errorf("registered classes %v, but the node announces %v", got, exampleserver.WithoutSQL), srv.Shutdown(context.Background()))
	}
	stopMetrics, err := exampleserver.ServeMetrics(srv, reg, cfg.metricsAddr, log)
	if err != nil {
		return errors.Join(err, srv.Shutdown(context.Background()))
	}
	defer func() { err = errors.Join(err, stopMetrics()) }()
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return errors.Join(err, srv.Shutdown(context.Background()))
	}
	log.Info("durable node listening", "addr", "http://"+ln.Addr().String(), "advertise", cfg.advertise, "classes", srv.Classes())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if err := n.Join(openCtx, srv); err != nil {
		return errors.Join(fmt.Errorf("join the cluster: %w", err), srv.Shutdown(context.Background()))
	}
	log.Info("joined the cluster", "cluster", cfg.cluster, "members", len(n.Members()))
	select {
	case err := <-served:
		return errors.Join(err, srv.Shutdown(context.Background()))
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	// Every partition is handed off first (its objects drain and commit),
	// so that callers see latency, not errors.
	if err := n.Leave(sctx); err != nil {
		log.Warn("leave", "err", err)
	}
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped cleanly")
	return nil
}
