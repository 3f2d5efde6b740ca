package etcdstore

import (
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/durablego/durable/internal/engine"
)

// ErrNotOwner fails a read or a commit of an object whose partition this
// store does not own (any more): another store took it after this one's
// lease ended, or the lease could not be renewed in time. A commit failed
// with it wrote nothing, except after a timeout (see Store.Commit).
// It matches storage.ErrUnavailable.
var ErrNotOwner = fmt.Errorf("%w: etcdstore: this store does not own the object's partition", engine.ErrUnavailable)

// ErrClosed is returned by a Store after Close.
var ErrClosed = errors.New("etcdstore: store is closed")

// storeError maps an etcd error to the storage error a server reports:
// etcd's quota (NOSPACE) to storage.ErrDatabaseFull, a request over its
// limits to storage.ErrTooLarge.
func storeError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, rpctypes.ErrNoSpace):
		return fmt.Errorf("%w: the etcd cluster's quota is used up (compact, defragment and disarm the alarm): %w", engine.ErrDatabaseFull, err)
	case errors.Is(err, rpctypes.ErrRequestTooLarge), errors.Is(err, rpctypes.ErrTooManyOps):
		return fmt.Errorf("%w: %w", engine.ErrTooLarge, err)
	}
	return fmt.Errorf("%w: etcd: %w", engine.ErrUnavailable, err)
}

// permanent reports whether retrying the same request cannot succeed.
func permanent(err error) bool {
	return errors.Is(err, rpctypes.ErrNoSpace) || errors.Is(err, rpctypes.ErrRequestTooLarge) ||
		errors.Is(err, rpctypes.ErrTooManyOps) || errors.Is(err, rpctypes.ErrDuplicateKey)
}
