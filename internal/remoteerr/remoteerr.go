// Package remoteerr restores, on the caller's side of a network call, the
// error an in-process caller of the same object would have seen. The remote
// client (package client) and the server's calls to objects served by
// another node (cluster mode) both use it, so that errors.Is holds for the
// same sentinels whichever way a call went.
package remoteerr

import (
	"errors"

	"connectrpc.com/connect"

	"github.com/durablego/durable"
)

// Restore turns a Connect error from a server into the error an in-process
// caller would have seen, from its durable.HeaderError kind (see
// durable.Kind): an *RPCError for a call that reached the object, and an
// error matching the kind's sentinels for Durable's own failures. The
// *connect.Error stays reachable through errors.As. An error without a
// kind this package knows is returned as it is.
func Restore(class, method string, err error) error {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return err
	}
	kind := durable.Kind(ce.Meta().Get(durable.HeaderError))
	switch {
	case !kind.Known():
		return err
	case kind == durable.KindMethod:
		var own error = ce
		if cause := durable.Kind(ce.Meta().Get(durable.HeaderErrorCause)); cause.Known() && !cause.Method() {
			own = &remoteError{kind: cause, err: ce}
		}
		return &durable.RPCError{Class: class, Method: method, Code: ce.Code(), Message: ce.Message(), Err: own}
	case kind.Method():
		return &durable.RPCError{Class: class, Method: method, Code: ce.Code(), Message: ce.Message(), Err: &remoteError{kind: kind, err: ce}}
	}
	return &remoteError{kind: kind, err: ce}
}

// remoteError is one of Durable's own failures, received over the network:
// it matches the sentinels of its kind.
type remoteError struct {
	kind durable.Kind
	err  *connect.Error
}

func (e *remoteError) Error() string        { return e.err.Error() }
func (e *remoteError) Unwrap() error        { return e.err }
func (e *remoteError) Is(target error) bool { return e.kind.Matches(target) }
