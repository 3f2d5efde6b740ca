// Command server runs the example Durable server: every example object of
// the reference page, over Connect, gRPC and gRPC-Web on one port.
//
//	go run ./examples/server -addr 127.0.0.1:8080 -data ./data
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
	"syscall"
	"time"

	"github.com/durablego/durable/examples/counter"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/server"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	data := flag.String("data", "./data", "directory for the objects' storage and the ID secret")
	idle := flag.Duration("idle", 10*time.Second, "how long an idle object stays in memory")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*addr, *data, *idle, log); err != nil {
		log.Error("server failed", "err", err)
		os.Exit(1)
	}
}

func run(addr, data string, idle time.Duration, log *slog.Logger) error {
	srv, err := server.New(server.WithDataDir(data), server.WithIdleTimeout(idle), server.WithLogger(log))
	if err != nil {
		return err
	}
	if _, err := counterv1durable.RegisterCounter(srv, counter.Counter{}); err != nil {
		return err
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
	log.Info("stopped cleanly")
	return nil
}
