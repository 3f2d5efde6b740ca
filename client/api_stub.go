package client

import (
	"context"

	"connectrpc.com/connect"

	"github.com/durablego/durable"
)

type Namespace struct{}
type Option interface{ apply(*Namespace) }

func NewNamespace(class string, httpClient connect.HTTPClient, baseURL string, opts ...Option) *Namespace {
	panic("unimplemented")
}
func (n *Namespace) ConnectOptions() []connect.ClientOption { panic("unimplemented") }
func (n *Namespace) IDFromName(name string) durable.ID     { panic("unimplemented") }
func (n *Namespace) IDFromString(s string) (durable.ID, error) {
	panic("unimplemented")
}
func (n *Namespace) NewUniqueID(ctx context.Context) (durable.ID, error) { panic("unimplemented") }
func Invoke[Req, Res any](ctx context.Context, n *Namespace, id durable.ID, method string, req *Req, call func(context.Context, *connect.Request[Req]) (*connect.Response[Res], error)) (*Res, error) {
	panic("unimplemented")
}
