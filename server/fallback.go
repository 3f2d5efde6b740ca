package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/durablego/durable"
)

type pathKey struct{}

// unknownProcedure answers RPCs to services the server does not have, in
// whichever protocol the caller speaks (Connect, gRPC, gRPC-Web), with
// Unimplemented, the classes that exist, and the "class-not-found" kind,
// so that remote callers get durable.ErrClassNotFound.
func (s *Server) unknownProcedure() http.Handler {
	return s.failingProcedure(func(path string) error {
		service, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
		class := service[strings.LastIndex(service, ".")+1:]
		err := &durable.ClassNotFoundError{Class: class, Known: s.Classes()}
		return fmt.Errorf("%w (no service %q is served here)", err, service)
	})
}

// failingProcedure is a handler of any procedure that answers, in the
// caller's protocol (Connect, gRPC, gRPC-Web), with the Connect error of
// the kind of fail(path).
func (s *Server) failingProcedure(fail func(path string) error) http.Handler {
	h := connect.NewUnaryHandler("/durable.v1.Unknown/Procedure",
		func(ctx context.Context, _ *connect.Request[emptypb.Empty]) (*connect.Response[emptypb.Empty], error) {
			path, _ := ctx.Value(pathKey{}).(string)
			return nil, kindError(fail(path))
		}, s.opts.handlerOptions...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), pathKey{}, r.URL.Path)))
	})
}

// knownMethods wraps h, the handler of a service mounted at pattern
// ("/pkg.v1.Service/", as Connect's generated code gives it): a request for
// a method the service does not have gets Unimplemented in the caller's
// protocol, with the "method-not-found" kind and the names of the service's
// methods, instead of the generated handler's plain-text 404. Handlers of
// other patterns are returned as they are.
func (s *Server) knownMethods(pattern string, h http.Handler) http.Handler {
	name := protoreflect.FullName(strings.Trim(pattern, "/"))
	if !name.IsValid() || "/"+string(name)+"/" != pattern {
		return h
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if err != nil || !ok {
		return h
	}
	known := make(map[string]bool, sd.Methods().Len())
	names := make([]string, 0, sd.Methods().Len())
	for i := range sd.Methods().Len() {
		m := string(sd.Methods().Get(i).Name())
		known[pattern+m] = true
		names = append(names, m)
	}
	list := strings.Join(names, ", ")
	unknown := s.failingProcedure(func(path string) error {
		return fmt.Errorf("%w: %s has no method %q; its methods are %s",
			durable.ErrMethodNotFound, sd.Name(), strings.TrimPrefix(path, pattern), list)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if known[r.URL.Path] {
			h.ServeHTTP(w, r)
			return
		}
		unknown.ServeHTTP(w, r)
	})
}
