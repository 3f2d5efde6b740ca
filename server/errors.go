package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"connectrpc.com/connect"

	"github.com/durablego/durable"
)

// internalError marks a failure of Durable itself (storage, a reload, a
// panic, a state that does not decode), so that it matches
// durable.ErrInternal in process and reaches remote callers only as a
// generic message: its text may hold server paths or a panic value.
type internalError struct{ err error }

func (e *internalError) Error() string        { return e.err.Error() }
func (e *internalError) Unwrap() error        { return e.err }
func (e *internalError) Is(target error) bool { return target == durable.ErrInternal }

// kindError is err as a Connect error of its kind (durable.KindOf), with
// the table's code and the kind in its metadata.
func kindError(err error) *connect.Error {
	kind := durable.KindOf(err)
	return withKind(connect.NewError(kind.Code(), err), kind)
}

// hidden reports whether a remote caller gets a generic message instead of
// the error of that kind: the failures of Durable or of the machine, whose
// text names server paths or internals and is of use to the operator only.
func hidden(kind durable.Kind) bool {
	return kind == durable.KindInternal || kind == durable.KindDatabaseFull || kind == durable.KindOutOfMemory
}

// publicMessage is what a remote caller learns of a hidden failure: what
// happened, in general terms, and the identifier of the server's log line.
func publicMessage(kind durable.Kind, ref string) string {
	switch kind {
	case durable.KindDatabaseFull:
		return fmt.Sprintf("the disk is full or the object's database reached its size cap; nothing of the call was kept (error id %s)", ref)
	case durable.KindOutOfMemory:
		return fmt.Sprintf("the server ran out of memory committing the call; nothing of the call was kept (error id %s)", ref)
	}
	return fmt.Sprintf("internal error (error id %s)", ref)
}

// errorRef returns a fresh identifier for a hidden failure: 16 hex digits,
// unique enough to find one line in a server's log.
func errorRef() string {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// hide logs the full cause of a hidden failure of class.method on the
// object id at Error level, with a fresh identifier, and returns the
// error the remote caller gets instead: a generic message with the
// identifier.
func (s *Server) hide(ctx context.Context, kind durable.Kind, class, method string, id durable.ID, err error) error {
	ref := errorRef()
	s.log.LogAttrs(ctx, slog.LevelError, "durable: call failed inside Durable",
		slog.String("error_id", ref), slog.String("kind", string(kind)),
		slog.String("class", class), slog.String("method", method),
		slog.String("object", id.String()), slog.String("name", id.Name()),
		slog.String("err", err.Error()))
	return errors.New(publicMessage(kind, ref))
}

// toConnectError turns an error of a call of class.method on the object id
// into the Connect error a remote caller receives, with its kind in the
// durable.HeaderError metadata, and logs it:
//
//   - a failure of Durable itself or of the machine (durable.KindInternal,
//     KindDatabaseFull, KindOutOfMemory): the table's code and a generic
//     message with an identifier; the full cause is logged at Error with it;
//   - a plain Go error the method returned (CodeUnknown), or one whose code
//     says the server failed (Internal, DataLoss): its message, as Connect
//     sends any error, logged at Warn so that an operator sees it;
//   - any other code, as from a *connect.Error the method returned on
//     purpose (NotFound, InvalidArgument...), or a Durable limit: sent
//     as is, logged at Debug: it is an answer of the API, not a fault, and
//     the metrics count it by code.
//
// Durable's own refusals before the call reached the object (an invalid
// ID, overload, shutdown) are already Connect errors with their kind and
// are sent as they are, unlogged.
func (s *Server) toConnectError(ctx context.Context, err error, class, method string, id durable.ID) error {
	var rpc *durable.RPCError
	if errors.As(err, &rpc) {
		kind := durable.KindOf(rpc)
		if hidden(kind) {
			return withKind(connect.NewError(kind.Code(), s.hide(ctx, kind, class, method, id, err)), kind)
		}
		level := slog.LevelDebug
		switch rpc.Code {
		case connect.CodeUnknown, connect.CodeInternal, connect.CodeDataLoss:
			level = slog.LevelWarn
		}
		s.log.LogAttrs(ctx, level, "durable: method failed",
			slog.String("class", class), slog.String("method", method),
			slog.String("object", id.String()), slog.String("name", id.Name()),
			slog.String("code", rpc.Code.String()), slog.String("err", rpc.Message))
		out := connect.NewError(rpc.Code, errors.New(rpc.Message))
		var own *connect.Error
		if errors.As(rpc.Err, &own) {
			for _, d := range own.Details() {
				out.AddDetail(d)
			}
			for k, v := range own.Meta() {
				out.Meta()[k] = v
			}
		}
		out.Meta().Del(durable.HeaderErrorCause)
		if cause := durable.CauseOf(rpc.Err); kind == durable.KindMethod && cause != "" {
			out.Meta().Set(durable.HeaderErrorCause, string(cause))
		}
		return withKind(out, kind)
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	return withKind(connect.NewError(connect.CodeInternal, s.hide(ctx, durable.KindInternal, class, method, id, err)), durable.KindInternal)
}

// internal marks err as a failure of Durable's own when code is Internal.
func internal(code connect.Code, err error) error {
	if code == connect.CodeInternal {
		return &internalError{err}
	}
	return err
}

// sentinelError is an error of Durable's with a message of its own that
// matches sentinel, where "sentinel: detail" would say the same twice.
type sentinelError struct {
	sentinel error
	msg      string
}

func (e *sentinelError) Error() string        { return e.msg }
func (e *sentinelError) Is(target error) bool { return target == e.sentinel }

// errorOf returns an error matching sentinel with the message format makes.
func errorOf(sentinel error, format string, args ...any) error {
	return &sentinelError{sentinel: sentinel, msg: fmt.Sprintf(format, args...)}
}
