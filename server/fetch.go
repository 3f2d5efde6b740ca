package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/durablego/durable"
	"github.com/durablego/durable/internal/callchain"
	"github.com/durablego/durable/internal/sockets"
)

// DefaultMaxRequestBody is the default limit on the body of a request to an
// object's Fetch hook: 32 MiB. See WithMaxRequestBody.
const DefaultMaxRequestBody = 32 << 20

// fetchRoute serves the Fetch routes under prefix (durable.FetchByNamePrefix
// or durable.FetchByIDPrefix): it finds the class by its URL segment and
// hands the rest to the class's namespace.
func (s *Server) fetchRoute(prefix string) http.Handler {
	byID := prefix == durable.FetchByIDPrefix
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ns, ref, rest, segment := s.fetchTarget(prefix, r.URL.EscapedPath())
		if ns == nil || ref == "" {
			// The guard decides before the answer lists the classes.
			class := ""
			if ns != nil {
				class = ns.Class().Name
			}
			if !s.guardFetch(w, r, class, durable.ID{}, "/"+rest) {
				return
			}
		}
		if ns == nil {
			s.notFoundClass(prefix, segment).write(w)
			return
		}
		if ref == "" {
			what := "{name}"
			if byID {
				what = "{id}"
			}
			errorResponse(http.StatusNotFound, "", fmt.Errorf("durable: address one object: %s%s/%s/{path...}", prefix, segment, what)).write(w)
			return
		}
		ns.serveFetch(w, r, ref, byID, rest)
	})
}

// fetchTarget splits the escaped path of a request of the Fetch routes
// under prefix: the class of its URL segment (nil if none is registered),
// the object's reference (a path-escaped name, or an ID) and the rest,
// which the object's Fetch sees.
func (s *Server) fetchTarget(prefix, escaped string) (ns registeredClass, ref, rest, segment string) {
	path := strings.TrimPrefix(escaped, prefix)
	segment, path, _ = strings.Cut(path, "/")
	ref, rest, _ = strings.Cut(path, "/")
	s.mu.RLock()
	ns = s.segments[segment]
	s.mu.RUnlock()
	return ns, ref, rest, segment
}

// notFoundClass is the answer to a Fetch route whose class segment is not
// registered: it lists the segments that are.
func (s *Server) notFoundClass(prefix, segment string) *response {
	s.mu.RLock()
	known := make([]string, 0, len(s.segments))
	for seg, ns := range s.segments {
		known = append(known, fmt.Sprintf("%s%s/ (%s)", prefix, seg, ns.Class().Name))
	}
	s.mu.RUnlock()
	slices.Sort(known)
	err := fmt.Errorf("%w: no class is served at %s%s/; the classes are at %s",
		durable.ErrClassNotFound, prefix, segment, strings.Join(known, ", "))
	return kindResponse(err)
}

// serveFetch serves a request of the Fetch routes for the object ref (a
// path-escaped name, or an ID when byID), whose Fetch sees the path
// "/"+rest.
func (n *Namespace[S]) serveFetch(w http.ResponseWriter, r *http.Request, ref string, byID bool, rest string) {
	id, err := n.fetchID(ref, byID)
	if err != nil {
		kindResponse(err).write(w)
		return
	}
	// Before the body is read, once the guard can see the object.
	if !n.srv.guardFetch(w, r, n.class.Name, id, "/"+rest) {
		return
	}
	if n.fetcher == nil {
		n.noFetch().write(w)
		return
	}
	ctx, err := callchain.FromHeader(r.Context(), r.Header.Get(durable.HeaderCallChain))
	if err != nil {
		kindResponse(errorOf(durable.ErrInvalidCallChain, "durable: header %s: %v", durable.HeaderCallChain, err)).write(w)
		return
	}
	inner, err := url.Parse("/" + rest)
	if err != nil {
		errorResponse(http.StatusBadRequest, "", fmt.Errorf("durable: the path after the object: %w", err)).write(w)
		return
	}
	inner.RawQuery = r.URL.RawQuery

	// The body is read in full here, on the connection's goroutine, so
	// that a slow client never holds up the object's mailbox.
	body, tooBig, err := n.readBody(http.MaxBytesReader(w, r.Body, n.srv.opts.maxRequestBody), r.ContentLength)
	switch {
	case tooBig != nil:
		tooBig.write(w)
		return
	case err != nil:
		errorResponse(http.StatusBadRequest, "", err).write(w)
		return
	}
	req := r.Clone(ctx)
	req.Pattern = ""
	setFetchURL(req, inner, body)
	res, err := n.fetch(ctx, id, req, true)
	if err != nil {
		res = failureResponse(err)
	}
	res = n.hideFailure(r.Context(), res, id)
	if res.upgrade != nil {
		// The Fetch accepted a WebSocket and its writes are durable:
		// upgrade now, and serve the socket on this goroutine until it
		// closes.
		n.srv.sockets.Serve(w, r, res.upgrade)
		return
	}
	res.write(w)
}

// fetchID returns the object a Fetch route's reference names: a
// path-escaped name, or an ID when byID.
func (n *Namespace[S]) fetchID(ref string, byID bool) (durable.ID, error) {
	if byID {
		id, err := n.IDFromString(ref)
		if err != nil {
			return durable.ID{}, fmt.Errorf("durable: the path's ID: %w", err)
		}
		return id, nil
	}
	name, err := url.PathUnescape(ref)
	if err != nil {
		return durable.ID{}, errorOf(durable.ErrInvalidID, "durable: the path's object name: %v", err)
	}
	return n.IDFromName(name), nil
}

// Fetch sends req to the Fetch hook of the object id in process, through
// its mailbox, without HTTP: the object sees req's path and query, and the
// response is the one the HTTP route would send, built from the buffered
// response once the call's writes are durable. Generated stubs call it.
//
// As with the route, Durable's own failures are responses too, whose
// durable.HeaderError header names the kind, whose table (durable.Kind)
// gives the status: 404 for a class without a Fetch hook, 400 for an ID of
// another class, 413 for a body over the server's limit, 503 when the
// object is overloaded or the server shutting down, 508 for a reentrant
// call, 507 for a full disk or database, 500 for a panic or a failed
// commit. In process the body has the full cause. The
// error is for a request that could not be delivered: ctx ended first, or
// reading req.Body failed. req.Body is read in full and closed.
func Fetch[S proto.Message](ctx context.Context, n *Namespace[S], id durable.ID, req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	if req.URL == nil {
		return nil, fmt.Errorf("durable: %s.Fetch: the request has no URL", n.class.Name)
	}
	if n.fetcher == nil {
		return n.noFetch().httpResponse(req), nil
	}
	// Resolved here, before the body is read, and kept, so that fetch does
	// not derive a name's ID a second time.
	id, _, err := n.resolve(id)
	if err != nil {
		return kindResponse(err).httpResponse(req), nil
	}
	body, tooBig, err := n.readBody(req.Body, req.ContentLength)
	switch {
	case tooBig != nil:
		return tooBig.httpResponse(req), nil
	case err != nil:
		return nil, fmt.Errorf("durable: %s.Fetch: %w", n.class.Name, err)
	}
	if rt := n.srv.router; rt != nil {
		loc, err := n.srv.locate(ctx, id.Bytes())
		switch {
		case err != nil:
			ce := unavailableError(err)
			return errorResponse(httpStatus(ce.Code()), "", ce).httpResponse(req), nil
		case !loc.Local:
			if n.class.Segment == "" {
				return errorResponse(http.StatusServiceUnavailable, durable.KindNotOwner, fmt.Errorf("%w: class %s has no URL segment: its objects cannot be fetched on node %q", durable.ErrNotOwner, n.class.Name, loc.Node)).httpResponse(req), nil
			}
			res, err := rt.fetchRemote(ctx, n.class.Segment, id, loc, req, body)
			if err != nil {
				return nil, fmt.Errorf("durable: %s.Fetch on node %q: %w", n.class.Name, loc.Node, err)
			}
			return res, nil
		}
	}
	inner := &url.URL{Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery}
	if inner.Path == "" {
		inner.Path, inner.RawPath = "/", ""
	}
	in := req.Clone(ctx)
	if in.Host == "" {
		in.Host = req.URL.Host
	}
	if in.Header == nil {
		in.Header = make(http.Header)
	}
	setFetchURL(in, inner, body)
	res, err := n.fetch(ctx, id, in, false)
	if err != nil {
		return nil, fmt.Errorf("durable: %s.Fetch: %w", n.class.Name, err)
	}
	return res.httpResponse(req), nil
}

// setFetchURL makes r a server-side request for u (path and query only)
// carrying body, read in full.
func setFetchURL(r *http.Request, u *url.URL, body []byte) {
	r.URL = u
	r.RequestURI = u.RequestURI()
	r.TransferEncoding = nil
	r.ContentLength = int64(len(body))
	r.Body = http.NoBody
	if len(body) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	r.GetBody = nil
}

// readBody reads a request body of the given length (0 or -1 when
// unknown) in full, up to the server's limit. Over it, it returns the 413
// response.
func (n *Namespace[S]) readBody(body io.Reader, length int64) ([]byte, *response, error) {
	limit := n.srv.opts.maxRequestBody
	tooBig := func() *response {
		return kindResponse(errorOf(durable.ErrRequestTooLarge, "durable: the request body is over the limit of %d bytes", limit))
	}
	if body == nil || body == http.NoBody {
		return nil, nil, nil
	}
	if length > limit {
		return nil, tooBig(), nil
	}
	var b []byte
	var err error
	if length > 0 {
		b = make([]byte, length)
		_, err = io.ReadFull(body, b)
	} else {
		b, err = io.ReadAll(io.LimitReader(body, limit+1))
	}
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr) || int64(len(b)) > limit:
		return nil, tooBig(), nil
	case err != nil:
		return nil, nil, fmt.Errorf("reading the request body: %w", err)
	}
	return b, nil, nil
}

func (n *Namespace[S]) noFetch() *response {
	return kindResponse(errorOf(durable.ErrNoFetch, "durable: class %s has no Fetch hook: its objects do not serve HTTP", n.class.Name))
}

// fetchFailed is the error of a Fetch that answered with a status of 500
// or more: its writes are rolled back and its response is sent.
type fetchFailed struct{ res *response }

func (e *fetchFailed) Error() string {
	return fmt.Sprintf("Fetch answered %d %s", e.res.status, http.StatusText(e.res.status))
}

// fetch runs the Fetch hook on req as a call through the object's mailbox
// and returns its response once the call's writes are durable. The error
// is ctx's, when it ends first. Over the HTTP route (route), the hook may
// accept a WebSocket: the response's upgrade is then set.
func (n *Namespace[S]) fetch(ctx context.Context, id durable.ID, req *http.Request, route bool) (*response, error) {
	c, err := n.call(ctx, &entry[S]{
		id:     id,
		fetch:  true,
		method: "Fetch",
		mm:     n.m.method("Fetch"),
		run: func(ctx context.Context, o *durable.Object[S]) (any, error) {
			w := &response{header: make(http.Header), upgradable: route}
			n.fetcher.Fetch(ctx, o, w, req.WithContext(ctx))
			w.finish()
			if w.status >= 500 {
				return nil, &fetchFailed{res: w}
			}
			return w, nil
		},
		abandoned: func(c *call[S]) {
			// Nobody will upgrade a socket the call accepted.
			if res, ok := c.res.(*response); ok && c.err == nil && res.upgrade != nil {
				n.srv.sockets.Serve(nil, nil, res.upgrade)
			}
		},
	})
	var failed *fetchFailed
	switch {
	case err == nil:
		return c.res.(*response), nil
	case c != nil && ctx.Err() != nil:
		return nil, ctx.Err() // withdrawn, skipped or left running because ctx ended
	case c == nil && routed(err):
		// Another node serves the object (cluster mode): the router that
		// forwarded the request retries.
		var ce *connect.Error
		errors.As(err, &ce)
		res := errorResponse(http.StatusServiceUnavailable, durable.Kind(ce.Meta().Get(durable.HeaderError)), errors.New(ce.Message()))
		if owner := ce.Meta().Get(HeaderOwner); owner != "" {
			res.sent.Set(HeaderOwner, owner)
		}
		res.code = connect.CodeUnavailable
		return res, nil
	case c == nil:
		// Refused before the mailbox. An ID of another class or a reentrant
		// call is answered with its own text; overload and shutdown, as
		// the failures of a call.
		var ce *connect.Error
		if kind := durable.KindOf(err); kind != durable.KindOverloaded && kind != durable.KindShutdown && errors.As(err, &ce) {
			res := kindResponse(ce.Unwrap())
			res.code = ce.Code()
			return res, nil
		}
		return failureResponse(err), nil
	case errors.As(err, &failed):
		failed.res.upgrade = nil // undone with the call
		failed.res.code = connect.CodeUnknown
		return failed.res, nil
	}
	return failureResponse(err), nil
}

// routed reports whether err is the router's: the object is served by
// another node, or was, and nothing ran.
func routed(err error) bool {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return false
	}
	kind := durable.Kind(ce.Meta().Get(durable.HeaderError))
	return kind == durable.KindNotOwner || kind == durable.KindMoved
}

// failureResponse is the answer to a Fetch call that failed other than by
// its own 5xx response: the status of the error's kind (durable.Kind),
// with the full error; hideFailure makes it fit for a remote caller.
func failureResponse(err error) *response {
	kind := durable.KindOf(err)
	if cause := durable.CauseOf(err); kind == durable.KindMethod && cause != "" {
		kind = cause // a nested call's failure: overloaded, reentrant...
	}
	status := kind.HTTPStatus()
	if kind == durable.KindMethod || kind == "" {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			status, kind = httpStatus(connect.CodeDeadlineExceeded), ""
		case errors.Is(err, context.Canceled):
			status, kind = httpStatus(connect.CodeCanceled), "" // 499, nginx's "client closed request": nobody reads it
		case kind == "":
			status, kind = http.StatusInternalServerError, durable.KindInternal
		case codeOf(err) == connect.CodeInvalidArgument:
			status = http.StatusBadRequest // the call would have left an invalid state
		}
	}
	res := errorResponse(status, kind, err)
	res.cause = err
	if res.code = codeOf(err); res.code == 0 {
		res.code = connect.CodeUnknown
	}
	return res
}

// kindResponse is the answer of Durable's own to a Fetch that failed with
// err, of the status of err's kind (durable.KindOf).
func kindResponse(err error) *response {
	kind := durable.KindOf(err)
	return errorResponse(kind.HTTPStatus(), kind, err)
}

// hideFailure returns res, or, for the failure of Durable or of the
// machine it reports, a response of the same status and kind whose body
// is a generic message with an identifier, which the server logs with the
// full cause: a remote caller never sees server paths or panic values.
func (n *Namespace[S]) hideFailure(ctx context.Context, res *response, id durable.ID) *response {
	if res.cause == nil {
		return res
	}
	kind := durable.Kind(res.sent.Get(durable.HeaderError))
	if !hidden(kind) {
		return res
	}
	out := errorResponse(res.status, kind, n.srv.hide(ctx, kind, n.class.Name, "Fetch", id, res.cause))
	out.code = res.code
	return out
}

// response is a buffered HTTP response: the http.ResponseWriter a Fetch
// hook writes to, or an answer of Durable's own.
type response struct {
	header http.Header // what the handler changes
	sent   http.Header // header as of WriteHeader
	status int         // 0 until WriteHeader
	body   bytes.Buffer

	upgradable bool          // served over the HTTP route: Accept may upgrade
	upgrade    *sockets.Conn // the socket Fetch accepted

	// code is the outcome of the call that produced the response, for the
	// metrics: 0 when the Fetch hook answered with a status below 500.
	code connect.Code
	// cause is the error of a failed call that the response reports, for
	// hideFailure.
	cause error
}

// UpgradeWebSocket records that Fetch accepted c: the route upgrades the
// connection once the call's writes are durable. It is sockets.Upgrader.
func (r *response) UpgradeWebSocket(c *sockets.Conn) bool {
	if !r.upgradable || r.upgrade != nil {
		return false
	}
	r.upgrade = c
	return true
}

// errorResponse is a plain-text answer of Durable's, its kind in the
// durable.HeaderError header unless empty.
func errorResponse(status int, kind durable.Kind, err error) *response {
	r := &response{header: make(http.Header)}
	r.header.Set("Content-Type", "text/plain; charset=utf-8")
	r.header.Set("X-Content-Type-Options", "nosniff")
	if kind != "" {
		r.header.Set(durable.HeaderError, string(kind))
	}
	r.WriteHeader(status)
	r.body.WriteString(err.Error() + "\n")
	return r
}

// Header returns the header map that WriteHeader sends.
func (r *response) Header() http.Header { return r.header }

// WriteHeader sets the status, as net/http's: a second call is ignored,
// informational (1xx) statuses are dropped, and an invalid code panics.
func (r *response) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if r.status != 0 || code < 200 {
		return
	}
	r.status = code
	r.sent = r.header.Clone()
}

// Write buffers p, setting the status to 200 first if not set.
func (r *response) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(r.status) {
		return 0, http.ErrBodyNotAllowed
	}
	return r.body.Write(p)
}

// finish completes the response as net/http does when a handler returns:
// status 200 if none was written, and a sniffed Content-Type for a body
// without one.
func (r *response) finish() {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	if _, ok := r.sent["Content-Type"]; !ok && r.body.Len() > 0 {
		r.sent.Set("Content-Type", http.DetectContentType(r.body.Bytes()))
	}
}

// write sends the response on w.
func (r *response) write(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range r.sent {
		h[k] = v
	}
	if _, ok := h["Content-Length"]; !ok && bodyAllowed(r.status) {
		h.Set("Content-Length", strconv.Itoa(r.body.Len()))
	}
	w.WriteHeader(r.status)
	if r.body.Len() > 0 {
		w.Write(r.body.Bytes()) // the client may be gone; nothing to do then
	}
}

// httpResponse is the response as an HTTP client returns it, for req.
func (r *response) httpResponse(req *http.Request) *http.Response {
	header := r.sent // the response's own: the handler's map was cloned
	res := &http.Response{
		Status:        strconv.Itoa(r.status) + " " + http.StatusText(r.status),
		StatusCode:    r.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        header,
		ContentLength: int64(r.body.Len()),
		Body:          http.NoBody,
		Request:       req,
	}
	if r.body.Len() > 0 && req.Method != http.MethodHead {
		res.Body = io.NopCloser(bytes.NewReader(r.body.Bytes()))
	}
	return res
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}
