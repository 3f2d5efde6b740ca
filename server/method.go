package server

import (
	"context"
	"sync/atomic"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/durablego/durable"
	"github.com/durablego/durable/internal/procedure"
)

// HandleMethod mounts the Connect, gRPC and gRPC-Web handler of one method
// of n's class, described by schema (from the generated .pb.go), at its
// procedure path, with the server's handler options: each request is
// addressed to one object by its ID headers and runs fn through that
// object's mailbox, as Handle describes. Generated Register functions call
// it once per RPC, so the glue needs none of the code protoc-gen-connect-go
// generates and works whatever options that plugin was given.
func HandleMethod[S proto.Message, Req, Res any](n *Namespace[S], schema protoreflect.MethodDescriptor, fn func(context.Context, *durable.Object[S], *Req) (*Res, error)) {
	path, method := procedure.Path(schema), string(schema.Name())
	opts := []connect.HandlerOption{connect.WithSchema(schema)}
	if level := procedure.Idempotency(schema); level != connect.IdempotencyUnknown {
		opts = append(opts, connect.WithIdempotency(level))
	}
	opts = append(opts, connect.WithHandlerOptions(n.srv.HandlerOptions()...))
	// The method's metrics, looked up by name on its first call rather than
	// on every one; not at Mount, where it would create the method's series
	// before any call.
	var metrics atomic.Pointer[methodMetrics]
	n.srv.Mount(path, connect.NewUnaryHandler(path, func(ctx context.Context, req *connect.Request[Req]) (*connect.Response[Res], error) {
		mm := metrics.Load()
		if mm == nil && n.m != nil {
			mm = n.m.method(method)
			metrics.Store(mm)
		}
		return handle(ctx, n, mm, method, req, fn)
	}, opts...))
}
