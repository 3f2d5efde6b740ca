package server

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"

	"connectrpc.com/connect"
)

// DefaultMaxRPCMessageSize is the default limit on an RPC message a client
// sends, in every protocol (Connect, gRPC, gRPC-Web), both as sent and
// after decompression: 4 MiB, as gRPC's own default. See
// WithMaxRPCMessageSize.
const DefaultMaxRPCMessageSize = 4 << 20

// ErrMessageTooLarge is the cause of the ResourceExhausted error a client
// gets for an RPC message over the limit of WithMaxRPCMessageSize once
// decompressed (connect-go words its own errors for messages over the
// limit as sent).
var ErrMessageTooLarge = errors.New("server: RPC message over the size limit")

// rpcLimitOptions returns the Connect handler options that enforce the RPC
// message limit: connect.WithReadMaxBytes bounds the message as read and
// as decompressed, and a gzip decompressor that stops at the limit keeps
// connect-go from inflating all of an oversized message only to count its
// bytes (a 4 MiB gzip bomb would otherwise cost seconds of CPU). With no
// limit (max <= 0) they are empty: connect-go's defaults.
func rpcLimitOptions(max int) []connect.HandlerOption {
	if max <= 0 {
		return nil
	}
	return []connect.HandlerOption{
		connect.WithReadMaxBytes(max),
		// Removing gzip first keeps it listed once in Accept-Encoding.
		connect.WithCompression("gzip", nil, nil),
		connect.WithCompression("gzip",
			func() connect.Decompressor { return &cappedGzip{max: int64(max)} },
			func() connect.Compressor { return gzip.NewWriter(io.Discard) }),
	}
}

// cappedGzip is a gzip decompressor that yields at most max+1 bytes (one
// more than the limit, so that connect-go sees the message is too large
// and says so) and then fails with ResourceExhausted.
type cappedGzip struct {
	gzip.Reader
	max  int64
	left int64
}

func (g *cappedGzip) Reset(r io.Reader) error {
	g.left = g.max + 1
	return g.Reader.Reset(r)
}

func (g *cappedGzip) Read(p []byte) (int, error) {
	if g.left <= 0 {
		return 0, connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("%w: it inflates to more than %d bytes", ErrMessageTooLarge, g.max))
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	n, err := g.Reader.Read(p)
	g.left -= int64(n)
	return n, err
}

// capRPCBody bounds the raw body of the unary RPCs h serves to one
// enveloped message of the limit (its 5-byte gRPC prefix included).
// connect-go already refuses a larger message, but it then reads the rest
// of the body to keep the connection: http.MaxBytesReader stops that read
// and closes the connection instead, so that an endless body is not read
// forever. The bound is on the whole body, so h must not be a streaming
// handler. With no limit (max <= 0), h is returned as is.
func capRPCBody(h http.Handler, max int) http.Handler {
	if max <= 0 {
		return h
	}
	limit := int64(max) + 5
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		h.ServeHTTP(w, r)
	})
}
