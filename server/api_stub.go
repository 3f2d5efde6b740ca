package server

import (
	"context"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/durablego/durable"
)

// Server hosts object classes.
type Server struct{}

// ClassOption configures one class at registration.
type ClassOption interface{ applyClass(*classConfig) }

type classConfig struct{}

// Class describes an object class; generated code fills it in.
type Class struct {
	Name, Binding, Segment, Service string
	SQL                             bool
}

// Namespace is a registered class.
type Namespace[S proto.Message] struct{}

func Register[S proto.Message](srv *Server, class Class, impl any, opts ...ClassOption) (*Namespace[S], error) {
	panic("unimplemented")
}
func (s *Server) Mount(path string, h http.Handler)        { panic("unimplemented") }
func (s *Server) HandlerOptions() []connect.HandlerOption { panic("unimplemented") }
func (n *Namespace[S]) IDFromName(name string) durable.ID { panic("unimplemented") }
func (n *Namespace[S]) IDFromString(s string) (durable.ID, error) {
	panic("unimplemented")
}
func (n *Namespace[S]) NewUniqueID() durable.ID { panic("unimplemented") }
func Invoke[S proto.Message, Req, Res any](ctx context.Context, n *Namespace[S], id durable.ID, method string, req *Req, fn func(context.Context, *durable.Object[S], *Req) (*Res, error)) (*Res, error) {
	panic("unimplemented")
}
func Handle[S proto.Message, Req, Res any](ctx context.Context, n *Namespace[S], method string, req *connect.Request[Req], fn func(context.Context, *durable.Object[S], *Req) (*Res, error)) (*connect.Response[Res], error) {
	panic("unimplemented")
}
