package etcdstore_test

import (
	"fmt"
	"testing"

	"github.com/durablego/durable/cluster/etcdstore"
	"github.com/durablego/durable/cluster/etcdtest"
	"github.com/durablego/durable/internal/servertest"
	"github.com/durablego/durable/server"
)

// TestServerSuite runs the server's tests that hold on any store
// (internal/servertest) on the etcd store, on one embedded member. Each
// test's storage is a deployment of its own (a cluster prefix); a restart
// is a new store of that deployment, opened after the old server shut down
// and its store closed. The deployment's flags skip what a server on a
// store does not do: classes with SQL (refused at registration), the
// catalog of objects' names (in the node database only), and running in a
// testing/synctest bubble (the store talks to etcd over the network).
func TestServerSuite(t *testing.T) {
	cli := etcdtest.Start(t, 1).Client(t)
	servertest.Run(t, servertest.Deployment{
		Storage: func(t testing.TB) servertest.Storage {
			cluster := etcdstore.WithCluster(fmt.Sprint("suite", deployments.Add(1)))
			dir := t.TempDir()
			return func(t testing.TB) ([]server.Option, func() error) {
				s := open(t, cli, cluster)
				return []server.Option{server.WithStore(s), server.WithDataDir(dir), server.WithSecret(secret)}, s.Close
			}
		},
		SQL:      false, // refused at registration on a store
		Catalog:  false, // the catalog is in the node database, which a server with WithStore lacks
		Synctest: false, // the store talks to etcd over the network
	})
}
