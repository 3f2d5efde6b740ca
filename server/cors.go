package server

import (
	"net/http"

	connectcors "connectrpc.com/cors"
	"github.com/rs/cors"

	"github.com/durablego/durable"
)

// WithCORS lets browser pages of the given origins ("https://app.example":
// scheme, host and port) call the server: RPCs over Connect and gRPC-Web,
// the ID service and the objects' Fetch routes. The server answers their
// CORS preflights and adds the Access-Control-Allow-* headers to the
// answers, so a page can send the Durable-Object-Name, Durable-Object-Id and
// Authorization headers and read the Durable-Error and gRPC-Web status
// headers. The origins are trusted by the Fetch routes and WebSocket
// upgrades too (WithTrustedOrigins). Cookies and HTTP authentication are
// not sent cross-origin (no Access-Control-Allow-Credentials): pass
// credentials in a header a Guard reads. New fails on a malformed origin.
//
// Off by default: without it, preflights are not answered and a page of
// another origin cannot call an RPC. It is github.com/rs/cors, set up for
// Connect by connectrpc.com/cors.
func WithCORS(origins ...string) Option {
	return func(o *options) { o.corsOrigins = append(o.corsOrigins, origins...) }
}

// withCORS wraps h with the CORS handling of WithCORS, if set.
func (s *Server) withCORS(h http.Handler) http.Handler {
	if len(s.opts.corsOrigins) == 0 {
		return h
	}
	return cors.New(cors.Options{
		AllowedOrigins: s.opts.corsOrigins,
		// Connect's (GET, POST) and the other methods a Fetch hook may serve.
		AllowedMethods: append(connectcors.AllowedMethods(), http.MethodHead, http.MethodPut, http.MethodPatch, http.MethodDelete),
		AllowedHeaders: append(connectcors.AllowedHeaders(),
			durable.HeaderObjectName, durable.HeaderObjectID, durable.HeaderCallChain,
			"Authorization", "Connect-Accept-Encoding", "Connect-Content-Encoding", "Grpc-Accept-Encoding"),
		ExposedHeaders: append(connectcors.ExposedHeaders(), durable.HeaderError, "Content-Encoding", "Connect-Content-Encoding", "Grpc-Encoding"),
		// How long a browser may reuse a preflight's answer, in seconds:
		// Chromium caps it at 2 hours.
		MaxAge: 7200,
	}).Handler(h)
}
