package server

import (
	"fmt"
	"net/http"

	"golang.org/x/net/http/httpguts"

	"github.com/durablego/durable"
)

// WithTrustedOrigins lets pages of the given origins ("https://app.example",
// "http://127.0.0.1:5173": scheme, host and port, nothing else) make
// state-changing requests (POST, PUT, PATCH, DELETE) to the objects' Fetch
// routes and open WebSockets on them. New fails on a malformed origin.
//
// By default only the server's own origin may: a browser tells the
// server where a request comes from (Sec-Fetch-Site, Origin), so that a
// page of another site cannot make a visitor's browser change an object's
// state, nor open a socket that reads what the object sends (cross-site
// request forgery, cross-site WebSocket hijacking). Such requests are
// refused with 403 Forbidden and the Durable-Error kind "cross-origin"
// before the guard, the body or the object sees them; an Origin of "null"
// (sandboxed frames, file: pages) is never trusted. Requests without those
// headers, from programs rather than browsers, are not affected; nor are
// GET and HEAD requests that are not upgrades (a Fetch hook must not change
// state on them). This is net/http's CrossOriginProtection, which the
// WebSocket upgrades (GET requests) are held to as well.
//
// RPCs need no such check: a browser sends them cross-origin only after a
// CORS preflight, which the server refuses unless WithCORS allows the
// origin. Origins given to WithCORS are trusted too.
func WithTrustedOrigins(origins ...string) Option {
	return func(o *options) { o.trustedOrigins = append(o.trustedOrigins, origins...) }
}

// originPolicy refuses browsers' cross-origin state changes.
type originPolicy struct{ cop *http.CrossOriginProtection }

// addOrigins builds the origin policy from WithTrustedOrigins and
// WithCORS.
func (o *options) addOrigins() error {
	cop := http.NewCrossOriginProtection()
	for _, origin := range append(append([]string(nil), o.trustedOrigins...), o.corsOrigins...) {
		if origin == "null" {
			return fmt.Errorf("server: trusted origin %q: a null origin is anybody's", origin)
		}
		if err := cop.AddTrustedOrigin(origin); err != nil {
			return fmt.Errorf("server: trusted origin: %w", err)
		}
	}
	o.origins = &originPolicy{cop: cop}
	return nil
}

// check refuses r if it is a browser's state-changing request, or a
// WebSocket upgrade (upgrade), from a page of an origin not trusted.
func (p *originPolicy) check(r *http.Request, upgrade bool) error {
	if upgrade && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		// CrossOriginProtection lets safe methods through; an upgrade is
		// not safe. Hold it to the POST rules on a shallow copy.
		post := *r
		post.Method = http.MethodPost
		r = &post
	}
	if err := p.cop.Check(r); err != nil {
		return fmt.Errorf("%w: %w (Origin %q)", durable.ErrCrossOrigin, err, r.Header.Get("Origin"))
	}
	return nil
}

// allowsSocket is melody's Upgrader.CheckOrigin: the route has checked
// the request already, and this holds the upgrade itself to the same rule.
func (p *originPolicy) allowsSocket(r *http.Request) bool { return p.check(r, true) == nil }

// isWebSocketUpgrade reports whether r asks for a WebSocket, as the
// upgrader will read it.
func isWebSocketUpgrade(r *http.Request) bool {
	return httpguts.HeaderValuesContainsToken(r.Header["Upgrade"], "websocket") &&
		httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade")
}

// crossOriginResponse is the answer to a request check refused.
func crossOriginResponse(err error) *response {
	return errorResponse(durable.KindCrossOrigin.HTTPStatus(), durable.KindCrossOrigin, err)
}
