package server

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	"github.com/durablego/durable"
	"github.com/durablego/durable/gen/durable/v1/durablev1connect"
)

// AccessKind tells a Guard which door of the server a request came in by.
type AccessKind uint8

// The doors. Health checking (grpc.health.v1.Health) is not one: it is
// answered without asking the guard, so that load balancers and
// orchestrators can probe a server whose every other door is shut. It
// tells only whether the server serves, and which services it has.
const (
	// AccessRPC is a call to a class's method over Connect, gRPC or
	// gRPC-Web, and any RPC to a service the server does not have (Class
	// is empty then).
	AccessRPC AccessKind = iota + 1
	// AccessFetch is an HTTP request to an object's Fetch hook, by name or
	// by ID, that is not a WebSocket upgrade.
	AccessFetch
	// AccessWebSocket is a WebSocket upgrade request on a Fetch route.
	AccessWebSocket
	// AccessIDService is a call to durable.v1.IDService, which mints IDs
	// and resolves names to IDs. The class is in the request's body, which
	// is not read before the guard runs: Class is empty.
	AccessIDService
	// AccessReflection is a call to gRPC server reflection, which serves
	// the schema of every service.
	AccessReflection
	// AccessRoute is a request to a handler the program added with
	// Server.Mount (a metrics endpoint, a web page).
	AccessRoute
	// AccessAdmin is a call to durable.v1.AdminService (WithAdmin). Unlike
	// the other doors, it opens only when the guard returns AllowAdmin:
	// nil refuses it. Method is the RPC's method; Class and ID are empty
	// (they are in the body, not read before the guard runs).
	AccessAdmin
)

var accessKindNames = [...]string{
	AccessRPC:        "rpc",
	AccessFetch:      "fetch",
	AccessWebSocket:  "websocket",
	AccessIDService:  "id-service",
	AccessReflection: "reflection",
	AccessRoute:      "route",
	AccessAdmin:      "admin",
}

// String returns the kind's name: "rpc", "fetch", "websocket",
// "id-service", "reflection", "route" or "admin".
func (k AccessKind) String() string {
	if int(k) < len(accessKindNames) && accessKindNames[k] != "" {
		return accessKindNames[k]
	}
	return "unknown"
}

// Access describes a request at one of the server's doors, for a Guard to
// allow or refuse before anything else is done with it: before its body is
// read, before any object is activated.
type Access struct {
	// Kind is the door.
	Kind AccessKind
	// Class is the object class addressed ("Counter"), for AccessRPC,
	// AccessFetch and AccessWebSocket; empty for an unknown class.
	Class string
	// Method is the RPC's method ("Increment") for AccessRPC,
	// AccessIDService and AccessReflection; empty for the other kinds,
	// whose HTTP method is Request.Method.
	Method string
	// Path is, for AccessFetch and AccessWebSocket, the path the object's
	// Fetch hook sees ("/increment", still path-escaped, without the
	// query); for the other kinds the request's URL path
	// ("/examples.counter.v1.Counter/Increment").
	Path string
	// ID is the object addressed, for AccessRPC, AccessFetch and
	// AccessWebSocket: the ID of the Durable-Object-Id header or of the
	// /objects-by-id/ route, or the one derived from the name of the
	// Durable-Object-Name header or of the /objects/ route, whose Name
	// then returns the name. It is the zero ID when the request addresses
	// no valid object of the class; the request then fails after the guard
	// allows it.
	ID durable.ID
	// Request is the HTTP request: its headers (Authorization, Cookie,
	// Origin), RemoteAddr (the peer), TLS and Host. A guard must not read
	// its body or change it.
	Request *http.Request
}

// Guard decides whether a request from the network may go through one of
// the server's doors. It runs on the request's goroutine, before the body
// is read; it returns nil to let the request through, or an error to
// refuse it. A *connect.Error (anywhere in the chain, per errors.As) chooses
// the code and its metadata the response's headers (WWW-Authenticate, for
// one); any other error refuses with connect.CodePermissionDenied. RPCs get
// the error in their own protocol (Connect, gRPC, gRPC-Web); Fetch routes
// and WebSocket upgrades and routes get the HTTP status of the code
// (PermissionDenied 403, Unauthenticated 401, ...), with the error's
// message as a plain-text body. Both carry the Durable-Error kind "denied".
//
// In-process calls (stubs of a Namespace, server.Fetch) are the program's
// own and are not guarded.
type Guard func(ctx context.Context, a *Access) error

// WithGuard makes g decide on every request from the network: RPCs over
// Connect, gRPC and gRPC-Web, Fetch routes by name and by ID, WebSocket
// upgrades, the ID service, reflection, the procedures the server does not
// have, the routes added with Mount and, with WithAdmin, the admin
// service, which opens only when g returns AllowAdmin. Health checking is answered
// without it. Default: none, every request goes through (and costs
// nothing more).
func WithGuard(g Guard) Option { return func(o *options) { o.guard = g } }

// guarded wraps h, mounted at pattern (a handler of the class ns, or of
// no class when ns is nil), so that the guard decides on its requests; h
// itself when there is no guard. The Fetch routes guard themselves once
// they know the object.
func (s *Server) guarded(pattern string, ns registeredClass, h http.Handler) http.Handler {
	if s.opts.guard == nil {
		return h
	}
	switch pattern {
	case durable.FetchByNamePrefix, durable.FetchByIDPrefix:
		return h
	case "/" + durablev1connect.IDServiceName + "/":
		return s.guardRPC(AccessIDService, nil, h)
	}
	if ns != nil {
		return s.guardRPC(AccessRPC, ns, h)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := &Access{Kind: AccessRoute, Path: r.URL.Path, Request: r}
		if err := adminAllows(a.Kind, s.opts.guard(r.Context(), a)); err != nil {
			deniedResponse(err).write(w)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// classOfService returns the class whose handler is mounted at pattern,
// "/{service}/" or "/{service}/{method}" (HandleMethod mounts each method),
// or nil.
func (s *Server) classOfService(pattern string) registeredClass {
	rest, ok := strings.CutPrefix(pattern, "/")
	service, _, found := strings.Cut(rest, "/")
	if !ok || !found {
		return nil
	}
	return s.classByService(service)
}

// guardRPC wraps the Connect handler h so that
// the guard decides on each call before its body is read, and a refusal is
// an error in the caller's protocol. ns is the class, or nil.
func (s *Server) guardRPC(kind AccessKind, ns registeredClass, h http.Handler) http.Handler {
	class := ""
	if ns != nil {
		class = ns.Class().Name
	}
	errs := connect.NewErrorWriter(s.opts.handlerOptions...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The method is the last segment, as for the procedure's handler.
		method := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		a := &Access{Kind: kind, Class: class, Method: method, Path: r.URL.Path, Request: r}
		if ns != nil {
			a.ID = idOfHeaders(ns, r.Header)
		}
		if err := adminAllows(kind, s.opts.guard(r.Context(), a)); err != nil {
			errs.Write(w, r, deniedError(err)) // the client may be gone; nothing to do then
			return
		}
		if !a.ID.IsZero() {
			// The handler takes the ID derived here rather than deriving
			// it again (an HMAC per name): see Namespace.idOf.
			r = r.WithContext(context.WithValue(r.Context(), guardedIDKey{}, a.ID))
		}
		h.ServeHTTP(w, r)
	})
}

// guardedIDKey is the context key of the ID guardRPC derived from the ID
// headers of the request.
type guardedIDKey struct{}

// idOf is the object an RPC's headers h address: the ID the guard was
// shown, or else the one idFromHeader reads.
func (n *Namespace[S]) idOf(ctx context.Context, h http.Header) (durable.ID, error) {
	if id, ok := ctx.Value(guardedIDKey{}).(durable.ID); ok && id.Class() == n.class.Name {
		return id, nil
	}
	return n.idFromHeader(h)
}

// idOfHeaders is the object an RPC addresses, as the class's handler will
// read it, or the zero ID if the headers address none.
func idOfHeaders(ns registeredClass, h http.Header) durable.ID {
	names, ids := h.Values(durable.HeaderObjectName), h.Values(durable.HeaderObjectID)
	switch {
	case len(names) == 1 && len(ids) == 0:
		return ns.idFromName(names[0])
	case len(ids) == 1 && len(names) == 0:
		if id, err := ns.ids().FromString(ids[0]); err == nil {
			return id
		}
	}
	return durable.ID{}
}

// guardFetch asks the guard about a request of the Fetch routes, and
// answers it if refused. The origin check comes first: a browser's
// cross-origin state change is refused whatever the guard says.
func (s *Server) guardFetch(w http.ResponseWriter, r *http.Request, class string, id durable.ID, path string) bool {
	upgrade := isWebSocketUpgrade(r)
	if err := s.opts.origins.check(r, upgrade); err != nil {
		crossOriginResponse(err).write(w)
		return false
	}
	if s.opts.guard == nil {
		return true
	}
	kind := AccessFetch
	if upgrade {
		kind = AccessWebSocket
	}
	a := &Access{Kind: kind, Class: class, Path: path, ID: id, Request: r}
	if err := adminAllows(kind, s.opts.guard(r.Context(), a)); err != nil {
		deniedResponse(err).write(w)
		return false
	}
	return true
}

// deniedError is the Connect error a guard's refusal err becomes: a copy,
// since a guard may return one shared error to many requests.
func deniedError(err error) *connect.Error {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return withKind(connect.NewError(connect.CodePermissionDenied, err), durable.KindDenied)
	}
	out := connect.NewError(ce.Code(), errors.New(ce.Message()))
	for k, v := range ce.Meta() {
		out.Meta()[k] = append([]string(nil), v...)
	}
	for _, d := range ce.Details() {
		out.AddDetail(d)
	}
	return withKind(out, durable.KindDenied)
}

// deniedResponse is the HTTP answer to a request a guard refused with err.
func deniedResponse(err error) *response {
	ce := deniedError(err)
	res := errorResponse(httpStatus(ce.Code()), durable.KindDenied, ce)
	for k, v := range ce.Meta() {
		if k != http.CanonicalHeaderKey(durable.HeaderError) {
			res.sent[k] = v
		}
	}
	return res
}

// httpStatus is the HTTP status of a Connect code, as the Connect protocol
// maps them (connect-go keeps its table unexported).
func httpStatus(code connect.Code) int {
	switch code {
	case connect.CodeCanceled:
		return 499
	case connect.CodeInvalidArgument, connect.CodeFailedPrecondition, connect.CodeOutOfRange:
		return http.StatusBadRequest
	case connect.CodeDeadlineExceeded:
		return http.StatusGatewayTimeout
	case connect.CodeNotFound:
		return http.StatusNotFound
	case connect.CodeAlreadyExists, connect.CodeAborted:
		return http.StatusConflict
	case connect.CodePermissionDenied:
		return http.StatusForbidden
	case connect.CodeResourceExhausted:
		return http.StatusTooManyRequests
	case connect.CodeUnimplemented:
		return http.StatusNotImplemented
	case connect.CodeUnavailable:
		return http.StatusServiceUnavailable
	case connect.CodeUnauthenticated:
		return http.StatusUnauthorized
	default: // Unknown, Internal, DataLoss
		return http.StatusInternalServerError
	}
}

// guardReflection wraps a reflection handler so that the guard decides on
// its calls.
func (s *Server) guardReflection(pattern string, h http.Handler) (string, http.Handler) {
	if s.opts.guard == nil {
		return pattern, h
	}
	return pattern, s.guardRPC(AccessReflection, nil, h)
}

// guardUnknown wraps the answer to procedures the server does not have,
// which lists the classes that exist, so that the guard decides on it.
func (s *Server) guardUnknown(h http.Handler) http.Handler {
	if s.opts.guard == nil {
		return h
	}
	return s.guardRPC(AccessRPC, nil, h)
}
