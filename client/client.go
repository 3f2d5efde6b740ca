// Package client calls Durable Objects over the network: remote namespaces
// and stubs over Connect, gRPC or gRPC-Web, with the object's ID or name in
// request metadata and Durable's errors restored on the caller's side.
//
// Generated code wraps it: counterv1durableclient.NewCounterClient(http.DefaultClient,
// "http://127.0.0.1:8080").Get(id).Increment(ctx, req). The stubs satisfy
// the same interface as in-process ones.
package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"connectrpc.com/connect"

	"github.com/durablego/durable"
	durablev1 "github.com/durablego/durable/gen/durable/v1"
	"github.com/durablego/durable/gen/durable/v1/durablev1connect"
	"github.com/durablego/durable/internal/callchain"
	"github.com/durablego/durable/internal/remoteerr"
)

// Option configures a remote namespace.
type Option func(*Namespace)

// WithSecret gives the client the servers' ID secret, so that it derives
// IDs from names, mints unique IDs and verifies ID strings locally, exactly
// as the server does, without asking it.
func WithSecret(secret []byte) Option {
	return func(n *Namespace) { n.secret = append([]byte(nil), secret...) }
}

// WithClientOptions adds Connect client options: connect.WithGRPC() or
// connect.WithGRPCWeb() to change protocol, interceptors, compression.
func WithClientOptions(opts ...connect.ClientOption) Option {
	return func(n *Namespace) { n.connectOptions = append(n.connectOptions, opts...) }
}

// Namespace is the untyped part of a remote namespace of one class.
// Generated clients embed it; it is safe for concurrent use.
type Namespace struct {
	class          string
	secret         []byte
	space          *durable.IDSpace // nil without a secret
	connectOptions []connect.ClientOption
	ids            durablev1connect.IDServiceClient
	httpClient     connect.HTTPClient
	baseURL        string
}

// NewNamespace returns the remote namespace of class served at baseURL.
func NewNamespace(class string, httpClient connect.HTTPClient, baseURL string, opts ...Option) *Namespace {
	n := &Namespace{class: class, httpClient: httpClient, baseURL: strings.TrimRight(baseURL, "/")}
	for _, o := range opts {
		o(n)
	}
	if n.secret != nil {
		n.space = durable.NewIDSpace(class, n.secret)
	}
	n.ids = durablev1connect.NewIDServiceClient(httpClient, baseURL, n.connectOptions...)
	return n
}

// ConnectOptions returns the Connect client options the namespace's stubs
// use.
func (n *Namespace) ConnectOptions() []connect.ClientOption { return n.connectOptions }

// Class returns the class name.
func (n *Namespace) Class() string { return n.class }

// IDFromName returns the ID name maps to. Without the secret it is a
// name-only ID: calls carry the name and the server derives the ID; use
// ResolveName for its canonical string.
func (n *Namespace) IDFromName(name string) durable.ID {
	if n.space != nil {
		return n.space.FromName(name)
	}
	return durable.NameOnlyID(n.class, name)
}

// IDFromString parses the canonical form of an ID of the class. Without the
// secret only the syntax is checked here; the server checks the MAC on the
// first call.
func (n *Namespace) IDFromString(s string) (durable.ID, error) {
	if n.space != nil {
		return n.space.FromString(s)
	}
	raw, err := durable.ParseIDBytes(s)
	if err != nil {
		return durable.ID{}, err
	}
	return durable.IDFromBytes(n.class, raw, ""), nil
}

// NewUniqueID returns a fresh random ID, minted locally with the secret or
// by the server's ID service without it.
func (n *Namespace) NewUniqueID(ctx context.Context) (durable.ID, error) {
	if n.space != nil {
		return n.space.NewUnique(), nil
	}
	res, err := n.ids.NewUniqueID(ctx, connect.NewRequest(&durablev1.NewUniqueIDRequest{Class: n.class}))
	if err != nil {
		return durable.ID{}, restore(n.class, "NewUniqueID", err)
	}
	raw, err := durable.ParseIDBytes(res.Msg.GetId())
	if err != nil {
		return durable.ID{}, fmt.Errorf("client: server minted a malformed ID: %w", err)
	}
	return durable.IDFromBytes(n.class, raw, ""), nil
}

// ResolveName returns the resolved ID name maps to, asking the server when
// the client does not hold the secret.
func (n *Namespace) ResolveName(ctx context.Context, name string) (durable.ID, error) {
	if n.space != nil {
		return n.space.FromName(name), nil
	}
	res, err := n.ids.IDFromName(ctx, connect.NewRequest(&durablev1.IDFromNameRequest{Class: n.class, Name: name}))
	if err != nil {
		return durable.ID{}, restore(n.class, "IDFromName", err)
	}
	raw, err := durable.ParseIDBytes(res.Msg.GetId())
	if err != nil {
		return durable.ID{}, fmt.Errorf("client: server returned a malformed ID: %w", err)
	}
	return durable.IDFromBytes(n.class, raw, name), nil
}

// Invoke calls method on the object id through call, a method of the
// class's generated Connect client. Generated stubs call it.
func Invoke[Req, Res any](ctx context.Context, n *Namespace, id durable.ID, method string, req *Req, call func(context.Context, *connect.Request[Req]) (*connect.Response[Res], error)) (*Res, error) {
	r := connect.NewRequest(req)
	if err := n.address(ctx, r.Header(), id); err != nil {
		return nil, err
	}
	res, err := call(ctx, r)
	if err != nil {
		return nil, restore(n.class, method, err)
	}
	return res.Msg, nil
}

// address sets the ID and call-chain headers of a request.
func (n *Namespace) address(ctx context.Context, h interface{ Set(string, string) }, id durable.ID) error {
	if err := n.check(id); err != nil {
		return err
	}
	if id.Resolved() {
		h.Set(durable.HeaderObjectID, id.String())
	} else {
		h.Set(durable.HeaderObjectName, id.Name())
	}
	setChain(ctx, h)
	return nil
}

// check fails for an ID that cannot address an object of the class, before
// anything is sent.
func (n *Namespace) check(id durable.ID) error {
	switch {
	case id.IsZero():
		return fmt.Errorf("%w: the zero ID addresses no object", durable.ErrInvalidID)
	case id.Class() != n.class:
		return fmt.Errorf("%w: an ID of class %q cannot address a %s object", durable.ErrIDNamespace, id.Class(), n.class)
	}
	return nil
}

// setChain sets the call-chain header of a request made inside a call.
func setChain(ctx context.Context, h interface{ Set(string, string) }) {
	if chain := callchain.Header(ctx); chain != "" {
		h.Set(durable.HeaderCallChain, chain)
	}
}

// restore turns a Connect error from a server into the error an in-process
// caller would have seen (see remoteerr.Restore).
func restore(class, method string, err error) error { return remoteerr.Restore(class, method, err) }

// Fetch sends req to the Fetch hook of the object id over HTTP, at
// baseURL/objects/{segment}/{name}/{path} for an ID that only carries a
// name and baseURL/objects-by-id/{segment}/{id}/{path} for a resolved one,
// where {path} is req.URL's path; the query string, method, header and
// body are req's. Generated stubs call it with their class's URL segment.
//
// Like http.Client.Do, it returns the response whatever its status:
// Durable's own failures are responses whose durable.HeaderError header
// names the kind, as from an in-process stub. The error is for a request
// that could not be sent or answered. The caller closes the response body.
func Fetch(ctx context.Context, n *Namespace, id durable.ID, segment string, req *http.Request) (*http.Response, error) {
	if err := n.check(id); err != nil {
		return nil, err
	}
	if req.URL == nil {
		return nil, fmt.Errorf("client: %s.Fetch: the request has no URL", n.class)
	}
	if !id.Resolved() && id.Name() == "" {
		// The empty name makes no path segment: the request goes by the
		// ID the server derives from it.
		var err error
		if id, err = n.ResolveName(ctx, ""); err != nil {
			return nil, err
		}
	}
	var target string
	switch name := id.Name(); {
	case id.Resolved():
		target = n.baseURL + durable.FetchByIDPrefix + segment + "/" + id.String()
	case name == "." || name == "..":
		// Escaped, or the server's router would resolve them as a path.
		target = n.baseURL + durable.FetchByNamePrefix + segment + "/" + strings.ReplaceAll(name, ".", "%2E")
	default:
		target = n.baseURL + durable.FetchByNamePrefix + segment + "/" + url.PathEscape(name)
	}
	path := req.URL.EscapedPath()
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	target += path
	if req.URL.RawQuery != "" {
		target += "?" + req.URL.RawQuery
	}
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("client: %s.Fetch: %w", n.class, err)
	}
	out := req.Clone(ctx)
	out.URL, out.Host, out.RequestURI = u, "", ""
	if out.Header == nil {
		out.Header = make(http.Header)
	}
	setChain(ctx, out.Header)
	res, err := n.httpClient.Do(out)
	if err != nil {
		return nil, fmt.Errorf("client: %s.Fetch: %w", n.class, err)
	}
	return res, nil
}
