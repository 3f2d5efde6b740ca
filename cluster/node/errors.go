package node

import (
	"errors"
	"fmt"

	"github.com/durablego/durable/internal/engine"
)

// ErrConfigMismatch refuses to start a node whose cluster ID, secret or
// class set differs from what the deployment's config key records: with
// another secret its IDs would map to other objects, with another class
// set it could not serve every partition's objects.
var ErrConfigMismatch = errors.New("node: this node does not match the deployment's configuration")

// ErrNameTaken refuses to start a node whose name is registered under the
// live lease of another process: two processes with one name would fight
// over the same partitions.
var ErrNameTaken = errors.New("node: the node name is held by another live process")

// ErrMoved is the reason a node gives its host for dropping a partition's
// objects: another node owns the partition now (or this node's lease
// ended). Calls failed with it wrote nothing and are safe to retry; it
// matches storage.ErrUnavailable.
var ErrMoved = fmt.Errorf("%w: node: the object's partition moved to another node", engine.ErrUnavailable)

// ErrNoOwner fails Locate when no node serves the object's partition
// within the wait (WithLocateWait); it matches storage.ErrUnavailable.
var ErrNoOwner = fmt.Errorf("%w: node: no node serves the object's partition now", engine.ErrUnavailable)

// ErrClosed is returned by a Node after Leave or Close.
var ErrClosed = errors.New("node: closed")
