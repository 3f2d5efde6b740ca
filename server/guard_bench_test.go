package server_test

import (
	"context"
	"errors"
	"testing"

	"connectrpc.com/connect"

	"github.com/durablego/durable/server"
)

// BenchmarkConnectUnaryGuarded is BenchmarkConnectUnary with a guard that
// reads a header and the object's name, and lets the call through: the
// cost of the guard on the hot path.
func BenchmarkConnectUnaryGuarded(b *testing.B) {
	refused := connect.NewError(connect.CodeUnauthenticated, errors.New("no"))
	benchConnectUnary(b, server.WithGuard(func(_ context.Context, a *server.Access) error {
		if a.Request.Header.Get("Authorization") != "" || a.ID.Name() == "" {
			return refused
		}
		return nil
	}))
}
