package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/durablego/durable"
	"github.com/durablego/durable/internal/callchain"
	"github.com/durablego/durable/internal/objectkey"
	"github.com/durablego/durable/internal/remoteerr"
)

// In-process calls to objects another node serves (cluster mode).
//
// Namespace.call asks the placement where the object is. A call to a
// remote object goes to its owner over Connect (h2c): the request is
// serialized, so the object and its caller share no memory, as with
// proto.Clone in process; the headers are those of the remote client (the
// ID or name, the call chain, the deadline as Connect's timeout), signed
// as forwarded, so that the owner does not forward it again; and the error
// is restored as the remote client restores it (internal/remoteerr), so
// errors.Is holds for the same sentinels as in process. A not-owner answer
// or a refused connection is retried once after asking the placement
// again; anything else is returned.

// remoteKey names a cached Connect client: one per owner and procedure.
type remoteKey struct{ base, procedure string }

// callRemote runs an RPC call of method with req on the object id at loc,
// over Connect. For a call entry: see newEntry.
func callRemote[S proto.Message, Req, Res any](ctx context.Context, n *Namespace[S], method string, id durable.ID, key objectkey.Key, loc Location, req *Req) (any, error) {
	if n.class.Service == "" {
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("durable: class %s has no protobuf service: its objects cannot be called on node %q", n.class.Name, loc.Node))
	}
	procedure := "/" + n.class.Service + "/" + method
	m := n.srv.metrics
	for attempt := 0; ; attempt++ {
		r := connect.NewRequest(req)
		n.srv.router.addressRemote(ctx, r.Header(), http.MethodPost, procedure, id)
		res, err := remoteClient[Req, Res](n.srv.router, loc.URL, procedure).CallUnary(ctx, r)
		if err == nil {
			m.forwarded(forwardOK)
			return res.Msg, nil
		}
		if attempt > 0 || !retryable(err) {
			m.forwarded(remoteOutcome(ctx, err))
			return nil, remoteerr.Restore(n.class.Name, method, err)
		}
		m.forwardRetried()
		if loc, err = n.srv.relocate(ctx, key.ID, loc, refused(err)); err != nil {
			m.forwarded(failedOrCanceled(ctx))
			return nil, unavailableError(err)
		}
		if loc.Local {
			m.forwarded(forwardLocal)
			return nil, errLocalAgain
		}
	}
}

// remoteOutcome is the outcome of a call to another node that failed
// with err: the owner answered when the error carries a Durable-Error
// kind, as Durable's own answers do; one without is taken as the
// network's.
func remoteOutcome(ctx context.Context, err error) forwardOutcome {
	var ce *connect.Error
	switch {
	case errors.As(err, &ce) && ce.Meta().Get(durable.HeaderError) == string(durable.KindNotOwner):
		return forwardNotOwner
	case ce != nil && ce.Meta().Get(durable.HeaderError) != "":
		return forwardOK
	}
	return failedOrCanceled(ctx)
}

// errLocalAgain is callRemote's answer when, on its retry, the placement
// says the object is served here: the call runs here.
var errLocalAgain = errors.New("durable: the object is served here now")

// remoteClient returns the cached Connect client of procedure at base.
func remoteClient[Req, Res any](rt *router, base, procedure string) *connect.Client[Req, Res] {
	k := remoteKey{base, procedure}
	if c, ok := rt.clients.Load(k); ok {
		return c.(*connect.Client[Req, Res])
	}
	c, _ := rt.clients.LoadOrStore(k, connect.NewClient[Req, Res](rt.peer, strings.TrimSuffix(base, "/")+procedure))
	return c.(*connect.Client[Req, Res])
}

// retryable reports whether a failed call to another node certainly did
// not run: the node does not serve the object, or refused the connection.
func retryable(err error) bool {
	var ce *connect.Error
	if errors.As(err, &ce) && ce.Meta().Get(durable.HeaderError) == string(durable.KindNotOwner) {
		return true
	}
	return refused(err)
}

// addressRemote sets the headers of a request to the object id on another
// node: the ID (or the name, for an ID that only carries one), the call
// chain, and the signed forwarding headers.
func (rt *router) addressRemote(ctx context.Context, h http.Header, method, path string, id durable.ID) {
	if id.Resolved() {
		h.Set(durable.HeaderObjectID, id.String())
	} else {
		h.Set(durable.HeaderObjectName, id.Name())
	}
	if chain := callchain.Header(ctx); chain != "" {
		h.Set(durable.HeaderCallChain, chain)
	}
	rt.setForwarded(h, 1, method, path, time.Now())
}

// fetchRemote sends the Fetch request of the object id, whose body is
// read already, to the node at loc, over the Fetch route by ID.
func (rt *router) fetchRemote(ctx context.Context, segment string, id durable.ID, loc Location, req *http.Request, body []byte) (*http.Response, error) {
	var target string
	if id.Resolved() {
		target = strings.TrimSuffix(loc.URL, "/") + durable.FetchByIDPrefix + segment + "/" + id.String()
	} else {
		target = strings.TrimSuffix(loc.URL, "/") + durable.FetchByNamePrefix + segment + "/" + url.PathEscape(id.Name())
	}
	path := req.URL.EscapedPath()
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u, err := url.Parse(target + path)
	if err != nil {
		return nil, err
	}
	u.RawQuery = req.URL.RawQuery
	out, err := http.NewRequestWithContext(ctx, req.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range req.Header {
		out.Header[k] = v
	}
	out.Header.Del(durable.HeaderObjectID)
	out.Header.Del(durable.HeaderObjectName)
	out.ContentLength = int64(len(body))
	if chain := callchain.Header(ctx); chain != "" {
		out.Header.Set(durable.HeaderCallChain, chain)
	}
	rt.setForwarded(out.Header, 1, out.Method, out.URL.EscapedPath(), time.Now())
	res, err := rt.peer.Do(out)
	switch {
	case err != nil:
		rt.srv.metrics.forwarded(failedOrCanceled(ctx))
	case notOwnerResponse(res):
		rt.srv.metrics.forwarded(forwardNotOwner)
	default:
		rt.srv.metrics.forwarded(forwardOK)
	}
	return res, err
}
