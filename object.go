package durable

import (
	"context"

	"google.golang.org/protobuf/proto"

	"github.com/durablego/durable/storage"
	"github.com/durablego/durable/websocket"
)

// Object is the live handle of one object, passed to every method of its
// class. S is the class's state message.
//
// A handle is only valid during the call it was passed to: calls to one
// object run one at a time, so a method may read and change State freely
// without locks, but must not keep the handle, or anything reachable from
// State, in a goroutine that outlives the call.
type Object[S proto.Message] struct {
	// ID is the object's identity; it knows its name when it came from one.
	ID ID

	// State is the object's state, loaded when the object activates. The
	// changes a method makes are persisted when it returns nil, atomically
	// with its other writes, and undone when it returns an error or panics.
	// A method may replace State entirely.
	State S

	// Storage is the object's key-value storage, Cloudflare's ctx.storage.
	// Its writes commit atomically with the call's state change.
	Storage *storage.KV

	// SQL is the object's SQL database, Cloudflare's ctx.storage.sql, for
	// classes declared with sql: true; for other classes its methods fail
	// with storage.ErrNoSQL. Its writes commit atomically with the call's.
	SQL *storage.SQL

	// Sockets are the object's WebSockets: Accept inside Fetch, list them,
	// send and broadcast. They live in the server, not in the object, so
	// they stay open while an idle object is evicted (hibernation).
	Sockets *websocket.Sockets
}

// Initializer is the optional hook an implementation satisfies to build the
// initial state of a new object, Cloudflare's init. It runs once, when an
// object with no stored state activates, before its first call; its changes
// are persisted with that call's. An error fails the calls waiting for the
// object, and the next call tries again.
type Initializer[S proto.Message] interface {
	Init(ctx context.Context, o *Object[S]) error
}

// Well-known request headers. A remote caller addresses an object by
// setting exactly one of them on each call; generated clients do it for you.
const (
	// HeaderObjectName carries the object's name; the server derives the ID.
	HeaderObjectName = "Durable-Object-Name"
	// HeaderObjectID carries the object's ID in canonical form.
	HeaderObjectID = "Durable-Object-Id"
	// HeaderCallChain carries the objects a call is made on behalf of, so a
	// server can refuse an A→B→A chain that spans processes.
	HeaderCallChain = "Durable-Call-Chain"
	// HeaderError is set in error metadata to tell apart Durable's own
	// failures, and is a header of the HTTP responses that Durable, not an
	// object's Fetch, writes on the Fetch routes. Its value is a [Kind]:
	// see there for the kinds, their codes, statuses and sentinels.
	HeaderError = "Durable-Error"
)
