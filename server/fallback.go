package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/durablego/durable"
)

type pathKey struct{}

// unknownProcedure answers RPCs to services the server does not have, in
// whichever protocol the caller speaks (Connect, gRPC, gRPC-Web), with
// Unimplemented, the classes that exist, and the "class-not-found" kind,
// so that remote callers get durable.ErrClassNotFound.
func (s *Server) unknownProcedure() http.Handler {
	h := connect.NewUnaryHandler("/durable.v1.Unknown/Procedure",
		func(ctx context.Context, _ *connect.Request[emptypb.Empty]) (*connect.Response[emptypb.Empty], error) {
			path, _ := ctx.Value(pathKey{}).(string)
			service, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
			class := service[strings.LastIndex(service, ".")+1:]
			err := &durable.ClassNotFoundError{Class: class, Known: s.Classes()}
			return nil, withKind(connect.NewError(connect.CodeUnimplemented,
				fmt.Errorf("%w (no service %q is served here)", err, service)), "class-not-found")
		}, s.opts.handlerOptions...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), pathKey{}, r.URL.Path)))
	})
}
