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

// unknownProcedure answers RPCs that no mounted handler takes, in whichever
// protocol the caller speaks (Connect, gRPC, gRPC-Web), with Unimplemented:
// for a method that a class's service does not have (classes mount one
// handler per method), the "method-not-found" kind and the service's
// methods; for a service the server does not have, the "class-not-found"
// kind and the classes that exist, so that remote callers get
// durable.ErrClassNotFound.
func (s *Server) unknownProcedure() http.Handler {
	return s.failingProcedure(func(path string) error {
		service, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
		if sd := s.servedService(service); sd != nil {
			return methodNotFound(sd, path)
		}
		class := service[strings.LastIndex(service, ".")+1:]
		err := &durable.ClassNotFoundError{Class: class, Known: s.Classes()}
		return fmt.Errorf("%w (no service %q is served here)", err, service)
	})
}

// servedService returns the descriptor of the class service named name, or
// nil if no registered class has it.
func (s *Server) servedService(name string) protoreflect.ServiceDescriptor {
	if s.classByService(name) == nil {
		return nil
	}
	sd, _ := serviceDescriptor(protoreflect.FullName(name))
	return sd
}

// classByService returns the registered class whose fully qualified
// service name is name, or nil.
func (s *Server) classByService(name string) registeredClass {
	if name == "" {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, ns := range s.classes {
		if ns.Class().Service == name {
			return ns
		}
	}
	return nil
}

func serviceDescriptor(name protoreflect.FullName) (protoreflect.ServiceDescriptor, bool) {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
	sd, ok := d.(protoreflect.ServiceDescriptor)
	return sd, err == nil && ok
}

// methodNotFound is the error of a request for path, a method that the
// service sd does not have: it names the service's methods.
func methodNotFound(sd protoreflect.ServiceDescriptor, path string) error {
	names := make([]string, 0, sd.Methods().Len())
	for i := range sd.Methods().Len() {
		names = append(names, string(sd.Methods().Get(i).Name()))
	}
	method := path[strings.LastIndex(path, "/")+1:]
	return fmt.Errorf("%w: %s has no method %q; its methods are %s",
		durable.ErrMethodNotFound, sd.Name(), method, strings.Join(names, ", "))
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
// ("/pkg.v1.Service/", as Connect's generated code gives it: the ID service,
// health, reflection; classes mount each method, see unknownProcedure): a request for
// a method the service does not have gets Unimplemented in the caller's
// protocol, with the "method-not-found" kind and the names of the service's
// methods, instead of the generated handler's plain-text 404. Handlers of
// other patterns are returned as they are.
func (s *Server) knownMethods(pattern string, h http.Handler) http.Handler {
	name := protoreflect.FullName(strings.Trim(pattern, "/"))
	if !name.IsValid() || "/"+string(name)+"/" != pattern {
		return h
	}
	sd, ok := serviceDescriptor(name)
	if !ok {
		return h
	}
	known := make(map[string]bool, sd.Methods().Len())
	for i := range sd.Methods().Len() {
		known[pattern+string(sd.Methods().Get(i).Name())] = true
	}
	unknown := s.failingProcedure(func(path string) error { return methodNotFound(sd, path) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if known[r.URL.Path] {
			h.ServeHTTP(w, r)
			return
		}
		unknown.ServeHTTP(w, r)
	})
}
