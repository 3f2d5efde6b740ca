// Package node is a Durable server's membership in a cluster: it
// registers the node in etcd (nodes/{name}, under the same lease as the
// node's etcdstore.Store, so one failure detector decides both), checks
// that the node belongs to the deployment (cluster ID, secret and class
// set), keeps a table of which node owns each of the 1,024 partitions from
// one watch of etcd, and moves partitions as nodes come and go.
//
// The desired owner of a partition is the active node with the highest
// rendezvous hash (HRW) of its name and the partition; the actual owner is
// whoever holds the partition's owner key, whose CreateRevision is the
// fencing token the store's commits compare. A node acquires the free
// partitions it is the desired owner of, hands off (drains, then deletes
// the key, fenced) those another active node should own, and drops those
// it finds it lost. Past its lease deadline without a renewal it fences
// itself: it answers no object as local and reports not serving.
//
// A Node is the server's Placement (server.WithPlacement): Locate answers
// from the table in constant time without allocating.
//
//	st, _ := etcdstore.Open(ctx, cli, etcdstore.WithManagedOwnership(), etcdstore.WithOwner("n1"))
//	n, _ := node.New(ctx, cli, st, node.Config{Name: "n1", AdvertiseURL: "http://10.0.0.1:8080", Secret: secret})
//	srv, _ := server.New(server.WithStore(st), server.WithPlacement(n), ...)
//	n.Join(ctx, srv)
//	...
//	n.Leave(ctx) // hands every partition off
//	srv.Shutdown(ctx)
package node
