package durable

import (
	"errors"
	"net/http"

	"connectrpc.com/connect"

	"github.com/durablego/durable/storage"
)

// Kind names one kind of failure of Durable's own: it is the value of the
// [HeaderError] error metadata of an RPC, and of the [HeaderError] header
// of the HTTP responses Durable writes on the Fetch routes. Each kind has
// one Connect code, one HTTP status and the sentinel errors an error of the
// kind matches with [errors.Is], in process and, once the client package or
// the TypeScript runtime has restored it, remotely.
//
// The kinds, with their Connect code and HTTP status:
//
//	kind                 sentinels                                 code                 status
//	method               (the method's own error)                  the method's         500
//	internal             ErrInternal                               Internal             500
//	state-too-large      ErrStateTooLarge                          ResourceExhausted    507
//	database-full        storage.ErrDatabaseFull                   ResourceExhausted    507
//	write-too-large      storage.ErrTooLarge                       ResourceExhausted    507
//	unavailable          storage.ErrUnavailable                    Unavailable          503
//	out-of-memory        storage.ErrOutOfMemory                    ResourceExhausted    503
//	invalid-id           ErrInvalidID                              InvalidArgument      400
//	id-length            ErrIDLength, ErrInvalidID                 InvalidArgument      400
//	id-not-hex           ErrIDNotHex, ErrInvalidID                 InvalidArgument      400
//	id-namespace         ErrIDNamespace, ErrInvalidID              InvalidArgument      400
//	invalid-chain        ErrInvalidCallChain                       InvalidArgument      400
//	class-not-found      ErrClassNotFound                          Unimplemented        404
//	method-not-found     ErrMethodNotFound                         Unimplemented        404
//	no-fetch             ErrNoFetch                                Unimplemented        404
//	too-large            ErrRequestTooLarge                        ResourceExhausted    413
//	overloaded           ErrOverloaded                             ResourceExhausted    503
//	reentrant            ErrReentrantCall                          FailedPrecondition   508
//	shutdown             ErrShutdown                               Unavailable          503
//	not-owner            ErrNotOwner                               Unavailable          503
//	moved                ErrMoved                                  Unavailable          503
//	denied               ErrDenied                                 the guard's          the code's
//	cross-origin         ErrCrossOrigin                            PermissionDenied     403
//
// "not-owner" and "moved" are routing's, in cluster mode: the node that
// answered does not serve the object (its view of the partition table
// differs from the forwarder's, for good), or the object's partition was
// lost while the call waited; nothing ran, and the call can be retried
// through any node.
//
// "denied" is a request the server's guard (server.WithGuard) refused: its
// code is the guard's (PermissionDenied unless the guard returned a
// *connect.Error), and on the Fetch routes its status is that code's, as
// the Connect protocol maps them (401 for Unauthenticated, 403 for
// PermissionDenied). "cross-origin" is a browser's state-changing Fetch
// request or WebSocket upgrade from an origin the server does not trust.
//
// The first five are failures of a call that reached the object: in Go
// they are an *[RPCError], in process and remotely. A method's own error
// (kind "method") travels as Connect sends any error: its code (Unknown
// for an error that is not a *connect.Error), message and details; when it
// wraps one of Durable's other kinds, as the error of a nested call that
// was reentrant or overloaded does, [HeaderErrorCause] names that kind, so
// that the restored *RPCError matches its sentinels too. Other sentinels
// the method's error wraps do not travel. "internal", "database-full"
// and "out-of-memory" are failures of Durable or of the machine: a remote
// caller gets a generic message with an identifier, which the server logs
// with the full cause; an in-process caller gets the full cause.
//
// A class that does not exist is Unimplemented everywhere, the ID service
// included: to a Connect or gRPC client it is a service the server does not
// implement, and gRPC answers an unknown service with Unimplemented.
// The HTTP status is that of the Fetch routes' answers (an in-process Fetch
// returns the same response); an RPC's HTTP status is the one its protocol
// gives the code (Connect's connectCodeToHTTP: 501 for Unimplemented, 429
// for ResourceExhausted), or 200 with the code in trailers for gRPC.
type Kind string

// HeaderErrorCause is set in the error metadata of a method's failure
// (kind [KindMethod]) whose error wraps one of Durable's own failures: its
// value is that failure's [Kind].
const HeaderErrorCause = "Durable-Error-Cause"

// The kinds of failure. See [Kind] for their codes, statuses and sentinels.
const (
	KindMethod         Kind = "method"
	KindInternal       Kind = "internal"
	KindStateTooLarge  Kind = "state-too-large"
	KindDatabaseFull   Kind = "database-full"
	KindWriteTooLarge  Kind = "write-too-large"
	KindUnavailable    Kind = "unavailable"
	KindOutOfMemory    Kind = "out-of-memory"
	KindInvalidID      Kind = "invalid-id"
	KindIDLength       Kind = "id-length"
	KindIDNotHex       Kind = "id-not-hex"
	KindIDNamespace    Kind = "id-namespace"
	KindInvalidChain   Kind = "invalid-chain"
	KindClassNotFound  Kind = "class-not-found"
	KindMethodNotFound Kind = "method-not-found"
	KindNoFetch        Kind = "no-fetch"
	KindTooLarge       Kind = "too-large"
	KindOverloaded     Kind = "overloaded"
	KindReentrant      Kind = "reentrant"
	KindShutdown       Kind = "shutdown"
	KindNotOwner       Kind = "not-owner"
	KindMoved          Kind = "moved"
	KindDenied         Kind = "denied"
	KindCrossOrigin    Kind = "cross-origin"
)

// kindInfo is one row of the table of kinds.
type kindInfo struct {
	kind      Kind
	sentinels []error // the most specific first
	code      connect.Code
	status    int
	method    bool // a failure of a call that reached the object: an *RPCError
}

// kinds is the table of kinds, read-only. KindOf tries the rows in order,
// so a more specific kind comes before the kind its sentinels also match.
var kinds = [...]kindInfo{
	{KindMethod, nil, connect.CodeUnknown, http.StatusInternalServerError, true},
	{KindInternal, []error{ErrInternal}, connect.CodeInternal, http.StatusInternalServerError, true},
	{KindStateTooLarge, []error{ErrStateTooLarge}, connect.CodeResourceExhausted, http.StatusInsufficientStorage, true},
	{KindDatabaseFull, []error{storage.ErrDatabaseFull}, connect.CodeResourceExhausted, http.StatusInsufficientStorage, true},
	{KindWriteTooLarge, []error{storage.ErrTooLarge}, connect.CodeResourceExhausted, http.StatusInsufficientStorage, true},
	{KindUnavailable, []error{storage.ErrUnavailable}, connect.CodeUnavailable, http.StatusServiceUnavailable, true},
	{KindOutOfMemory, []error{storage.ErrOutOfMemory}, connect.CodeResourceExhausted, http.StatusServiceUnavailable, true},
	{KindIDLength, []error{ErrIDLength, ErrInvalidID}, connect.CodeInvalidArgument, http.StatusBadRequest, false},
	{KindIDNotHex, []error{ErrIDNotHex, ErrInvalidID}, connect.CodeInvalidArgument, http.StatusBadRequest, false},
	{KindIDNamespace, []error{ErrIDNamespace, ErrInvalidID}, connect.CodeInvalidArgument, http.StatusBadRequest, false},
	{KindInvalidID, []error{ErrInvalidID}, connect.CodeInvalidArgument, http.StatusBadRequest, false},
	{KindInvalidChain, []error{ErrInvalidCallChain}, connect.CodeInvalidArgument, http.StatusBadRequest, false},
	{KindClassNotFound, []error{ErrClassNotFound}, connect.CodeUnimplemented, http.StatusNotFound, false},
	{KindMethodNotFound, []error{ErrMethodNotFound}, connect.CodeUnimplemented, http.StatusNotFound, false},
	{KindNoFetch, []error{ErrNoFetch}, connect.CodeUnimplemented, http.StatusNotFound, false},
	{KindTooLarge, []error{ErrRequestTooLarge}, connect.CodeResourceExhausted, http.StatusRequestEntityTooLarge, false},
	{KindOverloaded, []error{ErrOverloaded}, connect.CodeResourceExhausted, http.StatusServiceUnavailable, false},
	{KindReentrant, []error{ErrReentrantCall}, connect.CodeFailedPrecondition, http.StatusLoopDetected, false},
	{KindShutdown, []error{ErrShutdown}, connect.CodeUnavailable, http.StatusServiceUnavailable, false},
	{KindNotOwner, []error{ErrNotOwner}, connect.CodeUnavailable, http.StatusServiceUnavailable, false},
	{KindMoved, []error{ErrMoved}, connect.CodeUnavailable, http.StatusServiceUnavailable, false},
	{KindDenied, []error{ErrDenied}, connect.CodePermissionDenied, http.StatusForbidden, false},
	{KindCrossOrigin, []error{ErrCrossOrigin}, connect.CodePermissionDenied, http.StatusForbidden, false},
}

func (k Kind) info() *kindInfo {
	for i := range kinds {
		if kinds[i].kind == k {
			return &kinds[i]
		}
	}
	return nil
}

// Kinds returns every kind, in the order of the table in [Kind]'s
// documentation.
func Kinds() []Kind {
	out := make([]Kind, len(kinds))
	for i := range kinds {
		out[i] = kinds[i].kind
	}
	return out
}

// Known reports whether k is one of the kinds: a client ignores a kind it
// does not know, as from a newer server.
func (k Kind) Known() bool { return k.info() != nil }

// Code returns the Connect code of k's errors. For [KindMethod] it is
// CodeUnknown, the code of a method's error that carries none; the error
// of a method that returned a *connect.Error has that error's code.
// Unknown kinds have CodeUnknown.
func (k Kind) Code() connect.Code {
	if i := k.info(); i != nil {
		return i.code
	}
	return connect.CodeUnknown
}

// HTTPStatus returns the status of the HTTP responses of kind k on the
// Fetch routes, 500 for an unknown kind.
func (k Kind) HTTPStatus() int {
	if i := k.info(); i != nil {
		return i.status
	}
	return http.StatusInternalServerError
}

// Sentinels returns the errors that an error of kind k matches with
// [errors.Is], the most specific first; none for [KindMethod] and unknown
// kinds.
func (k Kind) Sentinels() []error {
	if i := k.info(); i != nil {
		return append([]error(nil), i.sentinels...)
	}
	return nil
}

// Method reports whether k is the failure of a call that reached the
// object, which the client package restores as an *[RPCError].
func (k Kind) Method() bool {
	i := k.info()
	return i != nil && i.method
}

// Matches reports whether target is one of k's sentinels: an error of kind
// k restored from the network is errors.Is target exactly then.
func (k Kind) Matches(target error) bool {
	if i := k.info(); i != nil {
		for _, s := range i.sentinels {
			if s == target {
				return true
			}
		}
	}
	return false
}

// CauseOf returns the first kind, of those for which [Kind.Method] does not
// hold, whose first sentinel err matches, or "": the failure of Durable's
// that a method's error wraps, as sent in [HeaderErrorCause].
func CauseOf(err error) Kind {
	for i := range kinds {
		row := &kinds[i]
		if !row.method && errors.Is(err, row.sentinels[0]) {
			return row.kind
		}
	}
	return ""
}

// KindOf returns the kind of an error Durable returned: for an *[RPCError]
// (a call that reached the object failed) one of the kinds for which
// [Kind.Method] holds, [KindMethod] when the method's own error is none of
// the others; for any other error, the first kind of the table whose first
// sentinel err matches, or "" when it is none of Durable's.
func KindOf(err error) Kind {
	if err == nil {
		return ""
	}
	var rpc *RPCError
	if !errors.As(err, &rpc) {
		return CauseOf(err)
	}
	for i := range kinds {
		row := &kinds[i]
		if row.method && len(row.sentinels) > 0 && errors.Is(err, row.sentinels[0]) {
			return row.kind
		}
	}
	return KindMethod
}
