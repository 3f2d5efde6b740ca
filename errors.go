package durable

import (
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"
)

// Errors callers can test for with [errors.Is]. The errors Durable returns
// wrap these with detail; over the network, the client package restores
// them from the error's "Durable-Error" metadata: see [Kind] for the table
// of kinds, with each sentinel's Connect code and HTTP status.
var (
	// ErrInvalidID matches every malformed or foreign ID: see ErrIDLength,
	// ErrIDNotHex and ErrIDNamespace for the precise cause.
	ErrInvalidID = errors.New("durable: invalid object ID")
	// ErrIDLength: the string is not 64 characters long. It matches
	// ErrInvalidID too.
	ErrIDLength error = &invalidIDError{"durable: object ID has the wrong length"}
	// ErrIDNotHex: the string has a character other than 0-9 and a-f. It
	// matches ErrInvalidID too.
	ErrIDNotHex error = &invalidIDError{"durable: object ID is not lowercase hexadecimal"}
	// ErrIDNamespace: the ID's MAC does not verify for the class, so it was
	// minted for another class or by another server secret, or mistyped; or
	// an ID of one class addresses an object of another. It matches
	// ErrInvalidID too.
	ErrIDNamespace error = &invalidIDError{"durable: object ID belongs to another namespace"}
	// ErrInvalidCallChain: the Durable-Call-Chain header of a remote call
	// does not parse. Its Connect code is InvalidArgument.
	ErrInvalidCallChain = errors.New("durable: invalid call-chain header")

	// ErrClassNotFound: no object class of that name is registered. The
	// concrete error is a *ClassNotFoundError listing the classes that exist.
	// Its Connect code is Unimplemented, over RPC and from the ID service.
	ErrClassNotFound = errors.New("durable: object class not found")
	// ErrMethodNotFound: a remote call names a method the object class does
	// not have. Its Connect code is Unimplemented; the message lists the
	// class's methods.
	ErrMethodNotFound = errors.New("durable: method not found")
	// ErrNoFetch: a Fetch to an object whose class has no Fetch hook (HTTP
	// 404).
	ErrNoFetch = errors.New("durable: object class has no Fetch hook")
	// ErrRequestTooLarge: a Fetch request body is over the server's limit
	// (server.WithMaxRequestBody; HTTP 413).
	ErrRequestTooLarge = errors.New("durable: request body too large")
	// ErrInternal: a failure of Durable itself, not of the method: the
	// object's storage could not be opened, read or committed, its stored
	// state does not decode, or the method panicked. Its Connect code is
	// Internal. In process the error carries the full cause; a remote caller
	// gets a generic message with an identifier, which the server logs at
	// Error level with the full cause, so that no server path or panic
	// value reaches it.
	ErrInternal = errors.New("durable: internal error")
	// ErrOverloaded: the object's mailbox is full; the call was not queued
	// and can be retried later. Its Connect code is ResourceExhausted.
	ErrOverloaded = errors.New("durable: object is overloaded")
	// ErrReentrantCall: the call would wait on an object that is itself
	// waiting for this call chain (A→B→A, or A→A), which could never finish.
	// Durable fails such a call instead of deadlocking; its Connect code is
	// FailedPrecondition.
	ErrReentrantCall = errors.New("durable: reentrant call would deadlock")
	// ErrShutdown: the server is shutting down and takes no new calls.
	ErrShutdown = errors.New("durable: server is shutting down")
	// ErrNotOwner: in cluster mode, the node the call reached does not
	// serve the object, and the nodes' views of who does disagree; nothing
	// ran, and the call can be retried. Its Connect code is Unavailable.
	ErrNotOwner = errors.New("durable: this node does not serve the object")
	// ErrMoved: in cluster mode, the object's partition was lost by the
	// node that had it while the call waited; nothing was written, and the
	// call can be retried. Its Connect code is Unavailable.
	ErrMoved = errors.New("durable: the object moved to another node")
	// ErrDenied: the server's guard (server.WithGuard) refused the request.
	// Its Connect code is the guard's, PermissionDenied by default.
	ErrDenied = errors.New("durable: request denied by the server's guard")
	// ErrCrossOrigin: a browser's state-changing request or WebSocket
	// upgrade came from an origin the server does not trust
	// (server.WithTrustedOrigins, server.WithCORS). PermissionDenied.
	ErrCrossOrigin = errors.New("durable: cross-origin request refused")
	// ErrStateTooLarge: the call would leave the object's state larger than
	// the server's cap (server.WithMaxStateSize); it failed and nothing of
	// it was written. Its Connect code is ResourceExhausted.
	ErrStateTooLarge = errors.New("durable: object state too large")
)

// invalidIDError is a precise cause of ErrInvalidID.
type invalidIDError struct{ msg string }

func (e *invalidIDError) Error() string        { return e.msg }
func (e *invalidIDError) Is(target error) bool { return target == ErrInvalidID }

type idError struct {
	kind error
	msg  string
}

func (e *idError) Error() string { return e.msg }

func (e *idError) Is(target error) bool { return target == e.kind || target == ErrInvalidID }

// ClassNotFoundError reports a call to a class that is not registered.
type ClassNotFoundError struct {
	// Class is the name that was asked for.
	Class string
	// Known lists the registered classes, sorted.
	Known []string
}

// Error names the class asked for and the classes that exist.
func (e *ClassNotFoundError) Error() string {
	return fmt.Sprintf("durable: object class %q not found; registered classes: %s", e.Class, strings.Join(e.Known, ", "))
}

// Is makes errors.Is(err, ErrClassNotFound) hold.
func (e *ClassNotFoundError) Is(target error) bool { return target == ErrClassNotFound }

// RPCError reports a method of an object that failed: it returned an
// error, panicked, or its changes could not be committed. Nothing the method
// changed was kept.
//
// In process, Unwrap returns the method's own error, so errors.Is and
// errors.As see through to it; for a failure of Durable itself
// (ErrInternal) it carries the full cause. Over the network only the code,
// message, details and metadata travel: Unwrap returns the *connect.Error
// received, wrapped, for Durable's own failures of the call
// ([KindInternal], [KindStateTooLarge], [KindDatabaseFull],
// [KindOutOfMemory]), in an error that matches their sentinels; for
// ErrInternal, storage.ErrDatabaseFull and storage.ErrOutOfMemory the
// message is a generic one with an identifier that the server's log line
// with the full cause also has.
type RPCError struct {
	// Class and Method name the object class and the method, as in the
	// .proto file ("Counter", "Increment").
	Class, Method string
	// Code is the Connect code: the one of a *connect.Error the method
	// returned, CodeInternal for a panic or another failure of Durable
	// (ErrInternal), CodeResourceExhausted for a full disk or database or
	// a state over the cap, CodeUnknown for any other error.
	Code connect.Code
	// Message is the method's error message, without the prefix Error adds.
	Message string
	// Err is the underlying error: the method's own in process, the
	// *connect.Error received over the network.
	Err error
}

// Error names the class, the method, the code and the message.
func (e *RPCError) Error() string {
	return fmt.Sprintf("durable: %s.%s failed: %s: %s", e.Class, e.Method, e.Code, e.Message)
}

// Unwrap returns the method's own error.
func (e *RPCError) Unwrap() error { return e.Err }
