// Package exampleserver holds what the example server (examples/server)
// and the cluster's node command (cluster/cmd/durable-node) share: the
// reference page's classes they register, and how they serve /metrics.
package exampleserver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/durablego/durable/examples/analytics"
	"github.com/durablego/durable/examples/cart"
	"github.com/durablego/durable/examples/chat"
	"github.com/durablego/durable/examples/counter"
	"github.com/durablego/durable/examples/document"
	"github.com/durablego/durable/examples/preferences"
	"github.com/durablego/durable/examples/ratelimiter"
	"github.com/durablego/durable/examples/session"
	"github.com/durablego/durable/examples/usersession"
	"github.com/durablego/durable/examples/wallet"
	"github.com/durablego/durable/gen/examples/analytics/v1/analyticsv1durable"
	"github.com/durablego/durable/gen/examples/cart/v1/cartv1durable"
	"github.com/durablego/durable/gen/examples/chat/v1/chatv1durable"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/gen/examples/document/v1/documentv1durable"
	"github.com/durablego/durable/gen/examples/preferences/v1/preferencesv1durable"
	"github.com/durablego/durable/gen/examples/ratelimiter/v1/ratelimiterv1durable"
	"github.com/durablego/durable/gen/examples/session/v1/sessionv1durable"
	"github.com/durablego/durable/gen/examples/usersession/v1/usersessionv1durable"
	"github.com/durablego/durable/gen/examples/wallet/v1/walletv1durable"
	"github.com/durablego/durable/server"
)

// WithoutSQL are the names of the classes RegisterWithoutSQL registers, in
// the order Server.Classes gives them: what a cluster node serves (cluster
// mode refuses classes with SQL), and every node of a cluster must serve
// the same.
var WithoutSQL = []string{"ChatRoom", "Counter", "Preferences", "RateLimiter", "Session", "UserSession", "Wallet"}

// RegisterWithoutSQL registers the example classes that keep no SQL
// database. Sessions expire after sessionIdle without activity.
func RegisterWithoutSQL(srv *server.Server, sessionIdle time.Duration) error {
	return errors.Join(
		registered(counterv1durable.RegisterCounter(srv, counter.Counter{})),
		registered(preferencesv1durable.RegisterPreferences(srv, preferences.Preferences{})),
		registered(walletv1durable.RegisterWallet(srv, wallet.Wallet{})),
		registered(usersessionv1durable.RegisterUserSession(srv, usersession.UserSession{})),
		registered(ratelimiterv1durable.RegisterRateLimiter(srv, ratelimiter.RateLimiter{})),
		registered(sessionv1durable.RegisterSession(srv, session.Session{Idle: sessionIdle})),
		registered(chatv1durable.RegisterChatRoom(srv, chat.ChatRoom{})),
	)
}

// RegisterAll registers every example class of the reference page: those
// of RegisterWithoutSQL, and Analytics, Cart and Document, which keep SQL
// databases. The carts record their orders in orders.
func RegisterAll(srv *server.Server, orders *sql.DB, sessionIdle time.Duration) error {
	return errors.Join(
		RegisterWithoutSQL(srv, sessionIdle),
		registered(analyticsv1durable.RegisterAnalytics(srv, analytics.Analytics{})),
		registered(cartv1durable.RegisterCart(srv, cart.Cart{Orders: orders})),
		registered(documentv1durable.RegisterDocument(srv, document.Document{})),
	)
}

// registered keeps the error of a generated Register function.
func registered[T any](_ T, err error) error { return err }

// ServeMetrics serves reg at GET /metrics: on srv's own address when addr
// is "", or else on addr (the -metrics-addr flag), apart from the objects.
// It returns the function that stops what it started.
func ServeMetrics(srv *server.Server, reg *prometheus.Registry, addr string, log *slog.Logger) (stop func() error, err error) {
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)})
	if addr == "" {
		srv.Mount("GET /metrics", metrics)
		return func() error { return nil }, nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	return ServeAside("-metrics-addr", addr, mux, log, "metrics", "/metrics")
}

// ServeAside serves h on an address of its own (that of the flag named
// flagName), apart from the objects, logs its URL (path on it) under key,
// and returns the function that stops it.
func ServeAside(flagName, addr string, h http.Handler, log *slog.Logger, key, path string) (stop func() error, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flagName, err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	log.Info("serving "+key, key, fmt.Sprintf("http://%s%s", ln.Addr(), path))
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := hs.Shutdown(ctx)
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		return err
	}, nil
}
