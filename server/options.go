package server

import (
	"log/slog"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/durablego/durable/storage"
	"github.com/durablego/durable/websocket"
)

// Option configures a Server.
type Option func(*options)

type options struct {
	dataDir        string
	secret         []byte
	idleTimeout    time.Duration
	maxActive      int
	mailboxSize    int
	maxBatch       int
	logger         *slog.Logger
	handlerOptions []connect.HandlerOption
	durability     storage.Durability
	maxSQLSize     int64
	alarmRetry     time.Duration
	maxRequestBody int64
	maxSockets     int
	maxMessageSize int64
	metrics        prometheus.Registerer // nil: no metrics
	tracer         trace.TracerProvider  // nil: no tracing
	traceOptions   []otelconnect.Option
	net            netOptions // Serve's connections and RPC read limits: conn.go
}

func defaultOptions() options {
	return options{
		dataDir:        "data",
		idleTimeout:    10 * time.Second,
		maxActive:      100_000,
		mailboxSize:    1024,
		maxBatch:       256,
		maxSQLSize:     storage.DefaultMaxSQLSize,
		alarmRetry:     2 * time.Second,
		maxRequestBody: DefaultMaxRequestBody,
		maxSockets:     websocket.DefaultMaxSockets,
		maxMessageSize: websocket.DefaultMaxMessage,
		logger:         slog.Default(),
		// Compressing the small messages most object calls carry costs
		// more CPU than the bytes it saves, on loopback and in a LAN.
		handlerOptions: []connect.HandlerOption{connect.WithCompressMinBytes(1024)},
		net:            defaultNetOptions(),
	}
}

// WithDataDir sets the directory holding the server's databases and its ID
// secret. It is created if missing. Default "data".
func WithDataDir(dir string) Option { return func(o *options) { o.dataDir = dir } }

// WithSecret sets the secret from which every class's ID keys derive. By
// default the server reads it from the file "secret" in the data directory,
// creating it with 32 random bytes on first start. Servers that must mint
// the same IDs (or verify each other's) share one secret.
func WithSecret(secret []byte) Option {
	return func(o *options) { o.secret = append([]byte(nil), secret...) }
}

// WithIdleTimeout sets how long an object stays in memory after its last
// call. Its state stays on disk; the next call reactivates it. Default 10s.
func WithIdleTimeout(d time.Duration) Option { return func(o *options) { o.idleTimeout = d } }

// WithMaxActiveObjects caps the number of objects in memory across all
// classes. Past it, activating an object evicts least recently used idle
// ones (sampled, as Redis does, not a strict LRU). Default 100,000.
func WithMaxActiveObjects(n int) Option { return func(o *options) { o.maxActive = max(1, n) } }

// WithMailboxSize sets how many calls may wait for one object. A call that
// finds the mailbox full fails at once with durable.ErrOverloaded
// (ResourceExhausted). Default 1024.
func WithMailboxSize(n int) Option { return func(o *options) { o.mailboxSize = max(1, n) } }

// WithMaxBatch caps how many queued calls of one object run before their
// writes are handed to storage as one group commit. Default 256.
func WithMaxBatch(n int) Option { return func(o *options) { o.maxBatch = max(1, n) } }

// WithLogger sets the logger. Default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithHandlerOptions adds Connect handler options (interceptors, codecs,
// compression, read limits) to every class's handlers. They apply after
// the default, connect.WithCompressMinBytes(1024), which they may override.
func WithHandlerOptions(opts ...connect.HandlerOption) Option {
	return func(o *options) { o.handlerOptions = append(o.handlerOptions, opts...) }
}

// WithDurability chooses what an acknowledged write survives. Default
// storage.CrashSafe; storage.PowerSafe adds an fsync per commit.
func WithDurability(d storage.Durability) Option { return func(o *options) { o.durability = d } }

// ClassOption configures one class at registration. None exist yet; the
// type keeps generated Register functions stable as they are added.
type ClassOption interface{ applyClass(*classOptions) }

type classOptions struct{}

// WithMaxSQLSize caps the SQL database of each object of a class declared
// with sql: true; a write past it fails the call with ResourceExhausted
// (storage.ErrDatabaseFull). Default 1 GiB.
func WithMaxSQLSize(bytes int64) Option { return func(o *options) { o.maxSQLSize = bytes } }

// WithAlarmRetry sets the delay before the first retry of a failed Alarm
// handler; each next retry waits twice as long, with jitter, and the alarm
// is dropped after 6 retries. Default 2 s, as Cloudflare's.
func WithAlarmRetry(first time.Duration) Option { return func(o *options) { o.alarmRetry = first } }

// WithMaxRequestBody caps the body of a request to an object's Fetch hook,
// over HTTP or from an in-process stub. The body is read in full before
// the call is queued, so that a slow client never holds up the object's
// mailbox; a longer one is refused with 413 Request Entity Too Large.
// Default 32 MiB (DefaultMaxRequestBody); the body and the buffered
// response are held in memory for the duration of the call.
func WithMaxRequestBody(bytes int64) Option {
	return func(o *options) { o.maxRequestBody = max(0, bytes) }
}

// WithMaxSocketsPerObject caps the WebSockets one object may hold open;
// past it, o.Sockets.Accept fails with websocket.ErrTooManySockets.
// Default 32,768, as Cloudflare's.
func WithMaxSocketsPerObject(n int) Option { return func(o *options) { o.maxSockets = max(1, n) } }

// WithMaxMessageSize caps a message received on a WebSocket; a longer one
// closes the socket with 1009 (message too big), after the object's
// WebSocketError hook has been told. Default 32 MiB.
func WithMaxMessageSize(bytes int64) Option {
	return func(o *options) { o.maxMessageSize = max(1, bytes) }
}

// WithMaxRPCMessageSize caps an RPC message a client sends, in every
// protocol (Connect, gRPC, gRPC-Web) and for every handler the server
// builds (the classes', the ID service, health, reflection): both the
// message as sent and, when compressed, what it inflates to. Over it the
// call fails with ResourceExhausted before any of it reaches an object,
// and a request holds at most the limit in memory (plus its compressed
// form). 0 or less: no limit, which lets one request take the server's
// memory. Default 4 MiB (DefaultMaxRPCMessageSize), as gRPC's.
//
// Prefer it to connect.WithReadMaxBytes in WithHandlerOptions, which
// would change connect-go's check but not the server's bound on
// decompression, nor on the raw request body.
func WithMaxRPCMessageSize(bytes int) Option {
	return func(o *options) { o.net.maxRPCMessage = max(0, bytes) }
}

// WithHTTPServer lets configure change the http.Server that Serve builds,
// after Serve has set its defaults and before it serves: IdleTimeout
// (keep-alive connections, default DefaultHTTPIdleTimeout, 1 minute),
// ReadHeaderTimeout (default DefaultHTTPReadHeaderTimeout, 10 s),
// MaxHeaderBytes, HTTP2, ErrorLog, and so on. Handler must stay as Serve
// set it; a ConnState set here is called after Serve's own, with the
// connection as Serve's listener wraps it (to count it). Several
// WithHTTPServer apply in order. It has no effect on Handler, whose users
// build their own http.Server: they should set at least IdleTimeout,
// ReadHeaderTimeout and a cap on connections themselves.
func WithHTTPServer(configure func(*http.Server)) Option {
	return func(o *options) { o.net.httpServer = append(o.net.httpServer, configure) }
}

// WithBodyTimeout sets how Serve cuts request bodies that clients send
// too slowly, so that a client cannot hold a connection and a handler
// forever: a read that gets no byte for stall is cut, and so is a body
// that, once stall has passed since its first byte was asked for, arrives
// slower on average than minRate bytes a second (a byte trickled every
// few seconds never stalls). A cut read fails with ErrBodyTooSlow
// (DeadlineExceeded for RPCs, 400 for Fetch routes) and the connection is
// closed. Only pending reads are cut: a handler may run as long as it
// likes after reading its body, and WebSockets, which have no request
// body, are never affected. stall <= 0 turns both off; minRate <= 0 turns
// off the rate. Defaults 10 s (DefaultBodyStallTimeout) and 1 KiB/s
// (DefaultMinBodyRate). It has no effect on Handler.
func WithBodyTimeout(stall time.Duration, minRate int) Option {
	return func(o *options) { o.net.bodyStall, o.net.minBodyRate = stall, int64(minRate) }
}

// WithMaxConnections caps the connections Serve keeps open at once,
// WebSockets included, so that connections never take the file
// descriptors storage needs. At the cap, a new connection makes room by
// closing the connection idle the longest (a keep-alive connection
// between requests, or one that has not sent its first request); when
// none is idle it is closed at once. The default, and n <= 0, is the
// process's descriptor limit (RLIMIT_NOFILE, which Go raises to the hard
// limit at start) less WithDescriptorReserve's reserve, and at least 16.
// It has no effect on Handler.
func WithMaxConnections(n int) Option { return func(o *options) { o.net.maxConns = n } }

// WithDescriptorReserve sets how many file descriptors the default
// connection cap of WithMaxConnections leaves to the rest of the process:
// the node database, three per open object of a class declared sql: true,
// logs and the listener. Default a quarter of the descriptor limit, and
// at least 256; n < 0 restores the default.
func WithDescriptorReserve(n int) Option { return func(o *options) { o.net.fdReserve = n } }
