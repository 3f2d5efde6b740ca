package server_test

import (
	"testing"

	"github.com/durablego/durable/internal/servertest"
	"github.com/durablego/durable/server"
)

// TestSuite runs the tests of internal/servertest, those that hold on any
// store, on the SQLite node database of a data directory.
func TestSuite(t *testing.T) {
	servertest.Run(t, servertest.Deployment{
		Storage: func(t testing.TB) servertest.Storage {
			dir := t.TempDir()
			return func(testing.TB) ([]server.Option, func() error) {
				return []server.Option{server.WithDataDir(dir)}, nil
			}
		},
		SQL:      true,
		Catalog:  true,
		Synctest: true,
	})
}
