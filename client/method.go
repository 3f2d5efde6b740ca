package client

import (
	"connectrpc.com/connect"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/durablego/durable/internal/procedure"
)

// NewMethod returns the Connect client of one method of n's class,
// described by schema (from the generated .pb.go), with the namespace's
// client options; stubs pass its CallUnary to Invoke. Generated clients
// build one per RPC, so they need none of the code protoc-gen-connect-go
// generates.
func NewMethod[Req, Res any](n *Namespace, schema protoreflect.MethodDescriptor) *connect.Client[Req, Res] {
	opts := []connect.ClientOption{connect.WithSchema(schema)}
	if level := procedure.Idempotency(schema); level != connect.IdempotencyUnknown {
		opts = append(opts, connect.WithIdempotency(level))
	}
	opts = append(opts, connect.WithClientOptions(n.connectOptions...))
	return connect.NewClient[Req, Res](n.httpClient, n.baseURL+procedure.Path(schema), opts...)
}
