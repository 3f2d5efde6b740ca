package server

import (
	"context"
)

// Placement decides, in cluster mode, which node serves each object. A
// server without one (the default) serves every object itself. The
// cluster module's node implements it from the partition table it keeps
// in etcd; its answers must be cheap, since the server asks on every call.
//
// A server with a placement routes: a Connect, gRPC, gRPC-Web, Fetch or
// WebSocket request for an object served by another node is forwarded to
// that node as it came, and an in-process call (Invoke, a generated stub's
// Get, Fetch) to such an object goes to it over Connect, with the same
// typed errors as in process.
type Placement interface {
	// Locate returns where the object with the given ID is served now.
	// It waits, within ctx, while no node serves it (its partition is
	// moving, or its owner died and its lease has not yet expired), and
	// fails with an error wrapping storage.ErrUnavailable when none does
	// in time.
	Locate(ctx context.Context, id [32]byte) (Location, error)
}

// Location is where an object is served, as a Placement answers.
type Location struct {
	// Local is true when this node serves the object.
	Local bool
	// Node names the node that serves it (its stable name), for headers,
	// logs and metrics.
	Node string
	// URL is the base URL of that node ("http://10.0.0.2:8080") when it is
	// another one.
	URL string
}

// WithPlacement has the server serve only the objects placement says are
// its own, and route the others to the nodes that serve them. Give it the
// store placement shares its view of ownership with (WithStore): the
// store's fence, not the placement, is what keeps two nodes from
// committing for one object. Default: none; the server serves every
// object.
func WithPlacement(p Placement) Option { return func(o *options) { o.placement = p } }
