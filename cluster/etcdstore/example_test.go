package etcdstore_test

import (
	"context"
	"log"
	"net"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/durablego/durable/cluster/etcdstore"
	"github.com/durablego/durable/examples/counter"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/server"
)

// A Durable node whose objects live in an etcd cluster: acknowledged
// calls survive the loss of the node. Every node of a deployment shares
// the ID secret.
func Example() {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"http://127.0.0.11:2379", "http://127.0.0.12:2379", "http://127.0.0.13:2379"},
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	// Open takes every partition; after a crash it waits for the old
	// process's lease to expire (5 s by default).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, err := etcdstore.Open(ctx, cli, etcdstore.WithCluster("prod"), etcdstore.WithOwner("node-1"))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close() // after Shutdown: frees the partitions at once
	srv, err := server.New(server.WithStore(store), server.WithSecret(loadSecret()))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := counterv1durable.RegisterCounter(srv, counter.Counter{}); err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", ":8080")
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(srv.Serve(ln))
}

func loadSecret() []byte { return []byte("the deployment's secret, 32 B...") }
