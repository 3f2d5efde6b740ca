// Command server runs the example Durable server: every example object of
// the reference page, over Connect, gRPC and gRPC-Web on one port, with
// Prometheus metrics at /metrics.
//
//	go run ./examples/server -addr 127.0.0.1:8080 -data ./data -session-idle 30m
//
// With -trace stdout, every RPC's OpenTelemetry span is printed on
// standard output as JSON.
//
// # What it exposes
//
// Everything is on -addr unless said otherwise, with no authentication
// (see server.WithGuard to add some):
//
//   - the objects: RPCs, Fetch routes (/objects/, /objects-by-id/) and
//     their WebSockets, and the web page at /;
//   - durable.v1.IDService: mints unique IDs and tells anybody the ID of
//     any name (the server's IDFromName);
//   - gRPC reflection: the full schema of every service, for grpcurl and
//     buf curl;
//   - gRPC health checking: whether the server serves, and its service
//     names;
//   - /metrics: the class and method names, call counts by code, latencies,
//     mailbox depths, objects in memory, storage and alarm counts, and the
//     Go runtime's and the process's figures. With -metrics-addr it is
//     served on that address instead, which can stay private while -addr
//     is public.
//
// With -admin, durable.v1.AdminService is mounted too, for the durable
// command's operator subcommands (durable ls, get, kv, sql, alarm, rm,
// backup): it answers only calls carrying "Authorization: Bearer <token>"
// with the token of the environment variable DURABLE_ADMIN_TOKEN, which
// -admin requires (an environment variable, so that it is not shown by ps).
//
// Browsers: pages of other origins can neither post to the Fetch routes
// nor open WebSockets, and cannot call RPCs (no CORS), unless their origin
// is listed with -allow-origin.
package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/durablego/durable/examples/cart"
	"github.com/durablego/durable/examples/exampleserver"
	"github.com/durablego/durable/examples/session"
	"github.com/durablego/durable/examples/webui"
	"github.com/durablego/durable/server"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	data := flag.String("data", "./data", "directory for the objects' storage, the ID secret and the carts' orders.db")
	idle := flag.Duration("idle", 10*time.Second, "how long an idle object stays in memory")
	sessionIdle := flag.Duration("session-idle", session.DefaultIdle,
		"how long a Session may go without activity (Touch, SetData, GetData) before its alarm deletes its data; rounded up to a millisecond")
	trace := flag.String("trace", "", `where RPC spans go: "" (nowhere) or "stdout" (JSON on standard output)`)
	var origins originList
	flag.Var(&origins, "allow-origin", "an origin (scheme://host[:port]) whose pages may call RPCs (CORS), post to the Fetch routes and open WebSockets; repeat it or separate origins with commas")
	metricsAddr := flag.String("metrics-addr", "", `address to serve /metrics on instead of -addr ("": on -addr)`)
	admin := flag.Bool("admin", false, "mount the admin service for the durable command, for callers with the bearer token $DURABLE_ADMIN_TOKEN")
	pprofAddr := flag.String("pprof-addr", "", `address to serve Go's runtime profiles on, under /debug/pprof/ ("": not served); keep it private`)
	flag.Parse()
	adminToken := os.Getenv("DURABLE_ADMIN_TOKEN")
	if *admin && adminToken == "" {
		fmt.Fprintln(os.Stderr, "-admin needs the operator's token in DURABLE_ADMIN_TOKEN")
		os.Exit(2)
	}
	if *sessionIdle <= 0 {
		fmt.Fprintf(os.Stderr, "-session-idle must be positive, not %v\n", *sessionIdle)
		os.Exit(2)
	}
	if *trace != "" && *trace != "stdout" {
		fmt.Fprintf(os.Stderr, "-trace must be empty or stdout, not %q\n", *trace)
		os.Exit(2)
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg := config{addr: *addr, data: *data, idle: *idle, sessionIdle: *sessionIdle, trace: *trace == "stdout", origins: origins, metricsAddr: *metricsAddr, pprofAddr: *pprofAddr}
	if *admin {
		cfg.adminToken = adminToken
	}
	if err := run(cfg, log); err != nil {
		log.Error("server failed", "err", err)
		os.Exit(1)
	}
}

// config is what the flags set.
type config struct {
	addr, data        string
	idle, sessionIdle time.Duration
	trace             bool
	origins           []string // -allow-origin
	metricsAddr       string   // "": /metrics on addr
	adminToken        string   // "": no admin service
	pprofAddr         string   // "": no profiles
}

// originList is the value of -allow-origin: repeated, or comma-separated.
type originList []string

func (l *originList) String() string { return strings.Join(*l, ",") }

func (l *originList) Set(v string) error {
	for o := range strings.SplitSeq(v, ",") {
		if o = strings.TrimSpace(o); o != "" {
			*l = append(*l, o)
		}
	}
	return nil
}

func run(cfg config, log *slog.Logger) (err error) {
	addr, data, idle, sessionIdle, trace := cfg.addr, cfg.data, cfg.idle, cfg.sessionIdle, cfg.trace
	// The server's metrics, and the Go runtime's and the process's, in a
	// registry of the program's own.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	opts := []server.Option{server.WithDataDir(data), server.WithIdleTimeout(idle), server.WithLogger(log), server.WithMetrics(reg)}
	if len(cfg.origins) > 0 {
		// CORS for the RPCs, and trust for the Fetch routes and WebSockets.
		opts = append(opts, server.WithCORS(cfg.origins...))
	}
	if cfg.adminToken != "" {
		opts = append(opts, server.WithAdmin(), server.WithGuard(adminGuard(cfg.adminToken)))
	}
	if trace {
		exporter, err := stdouttrace.New()
		if err != nil {
			return err
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
		// When run returns, after the server's Shutdown: the spans of the
		// last calls are written by then.
		defer func() { err = errors.Join(err, tp.Shutdown(context.Background())) }()
		opts = append(opts, server.WithTracing(tp))
	}
	srv, err := server.New(opts...)
	if err != nil {
		return err
	}
	stopMetrics, err := exampleserver.ServeMetrics(srv, reg, cfg.metricsAddr, log)
	if err != nil {
		return errors.Join(err, srv.Shutdown(context.Background()))
	}
	defer func() { err = errors.Join(err, stopMetrics()) }()
	if cfg.pprofAddr != "" {
		stop, err := exampleserver.ServeAside("-pprof-addr", cfg.pprofAddr, server.ProfilingHandler(), log, "pprof", "/debug/pprof/")
		if err != nil {
			return errors.Join(err, srv.Shutdown(context.Background()))
		}
		defer func() { err = errors.Join(err, stop()) }()
	}
	// The web page at / (its hashed assets under /assets/): a counter, a chat
	// room and the collaborative document, from the browser.
	webui.Mount(srv)
	// The carts' shared orders database, closed after Shutdown, once no
	// object runs a call any more (on every path: closing twice is a no-op).
	orders, err := cart.OpenOrders(filepath.Join(data, "orders.db"))
	if err != nil {
		return errors.Join(err, srv.Shutdown(context.Background()))
	}
	defer func() { err = errors.Join(err, orders.Close()) }()
	if err := exampleserver.RegisterAll(srv, orders, sessionIdle); err != nil {
		return errors.Join(err, srv.Shutdown(context.Background()))
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return errors.Join(err, srv.Shutdown(context.Background()))
	}
	log.Info("durable example server listening", "addr", fmt.Sprintf("http://%s", ln.Addr()), "data", data, "classes", srv.Classes())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return errors.Join(err, srv.Shutdown(context.Background()))
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	if err := orders.Close(); err != nil {
		return err
	}
	log.Info("stopped cleanly")
	return nil
}

// adminGuard opens the admin door to the callers with the bearer token
// token, and leaves the other doors as they are without a guard: open.
func adminGuard(token string) server.Guard {
	return func(_ context.Context, a *server.Access) error {
		if a.Kind != server.AccessAdmin {
			return nil
		}
		got, ok := strings.CutPrefix(a.Request.Header.Get("Authorization"), "Bearer ")
		if ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1 {
			return server.AllowAdmin
		}
		return connect.NewError(connect.CodeUnauthenticated, errors.New("the admin service wants the operator's bearer token"))
	}
}
