package server

import (
	"log/slog"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/sockets"
	"github.com/durablego/durable/storage"
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
	durability     engine.Durability
	maxSQLSize     int64
	alarmRetry     time.Duration
	maxRequestBody int64
	maxSockets     int
	maxMessageSize int64
	maxStateSize   int64
	maxSocketBuf   int64                 // 0: sockets.DefaultMaxBuffer
	metrics        prometheus.Registerer // nil: no metrics
	tracer         trace.TracerProvider  // nil: no tracing
	traceOptions   []otelconnect.Option
	callTimeout    time.Duration // 0: no limit
	guard          Guard         // nil: every request goes through
	admin          bool          // WithAdmin: mount the admin service
	trustedOrigins []string      // WithTrustedOrigins
	corsOrigins    []string      // WithCORS; none: CORS off
	origins        *originPolicy // built by New from the two above
	maxSQLFiles    int           // 0: from the descriptor budget (fdBudget.maxSQLFiles)
	net            netOptions    // Serve's connections and RPC read limits: conn.go

	store     engine.ObjectStore // WithStore (store.go); nil: the node database
	nodeName  string             // WithNodeName (route.go)
	placement Placement          // WithPlacement (placement.go); nil: every object is served here
}

func defaultOptions() options {
	return options{
		dataDir:        "data",
		idleTimeout:    10 * time.Second,
		maxActive:      100_000,
		mailboxSize:    1024,
		maxBatch:       256,
		maxSQLSize:     engine.DefaultMaxSQLSize,
		alarmRetry:     2 * time.Second,
		maxRequestBody: DefaultMaxRequestBody,
		maxSockets:     sockets.DefaultMaxSockets,
		maxMessageSize: sockets.DefaultMaxMessage,
		maxStateSize:   DefaultMaxStateSize,
		callTimeout:    DefaultCallTimeout,
		logger:         slog.Default(),
		// Compressing the small messages most object calls carry costs
		// more CPU than the bytes it saves, on loopback and in a LAN.
		handlerOptions: []connect.HandlerOption{connect.WithCompressMinBytes(1024)},
		net:            defaultNetOptions(),
	}
}

// WithDataDir sets the directory holding the server's databases and its ID
// secret. It is created if missing, and owned by one server at a time (see
// New). Default "data".
func WithDataDir(dir string) Option { return func(o *options) { o.dataDir = dir } }

// WithSecret sets the secret from which every class's ID keys derive. By
// default the server reads it from the file "secret" in the data directory,
// creating it with 32 random bytes on first start (only in a directory
// without data). Servers that must mint the same IDs (or verify each
// other's) share one secret. A data directory keeps working with the
// secret it was first started with only: New refuses another one.
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
func WithDurability(d storage.Durability) Option {
	return func(o *options) { o.durability = engine.Durability(d) }
}

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
// past it, o.Sockets.Accept fails with sockets.ErrTooManySockets.
// Default 32,768, as Cloudflare's.
func WithMaxSocketsPerObject(n int) Option { return func(o *options) { o.maxSockets = max(1, n) } }

// WithMaxMessageSize caps a message received on a WebSocket; a longer one
// closes the socket with 1009 (message too big), after the object's
// WebSocketError hook has been told. Default 32 MiB.
func WithMaxMessageSize(bytes int64) Option {
	return func(o *options) { o.maxMessageSize = max(1, bytes) }
}

// DefaultMaxStateSize is the default cap on the encoded state of one
// object: 2 MiB, Cloudflare's limit on one stored value of SQLite-backed
// objects.
const DefaultMaxStateSize = 2 << 20

// WithMaxStateSize caps the encoded size of an object's state message. A
// call (or Init) that would leave a larger state fails with
// ResourceExhausted (durable.ErrStateTooLarge), naming the size and the
// limit, and nothing of it is written. Keep large data in key-value or SQL
// storage, which are bounded per value and per database. Default 2 MiB
// (DefaultMaxStateSize).
func WithMaxStateSize(bytes int64) Option { return func(o *options) { o.maxStateSize = max(1, bytes) } }

// DefaultCallTimeout is the default time limit of a call, as Cloudflare's.
const DefaultCallTimeout = 30 * time.Second

// WithCallTimeout sets the time limit of every call that runs an object's
// code: its methods, Fetch, Alarm, WebSocket hooks and Init. The call's
// context has the earlier of its caller's deadline and the limit, and its
// SQL is interrupted then; a call that overruns fails with
// DeadlineExceeded and nothing of it is kept. A method that ignores its
// context is not stopped, for Go cannot stop a goroutine: a short grace
// after the limit (a quarter of it, within 100 ms and 2 s) its object is
// reset, as Cloudflare resets an object that exceeds its limits. The call
// fails with DeadlineExceeded, the instance's storage is cut off (every
// later storage call of that goroutine fails with storage.ErrFenced, and
// nothing it wrote is committed or sent), and the next calls run on a
// fresh instance reloaded from storage; the stuck goroutine runs on until
// the call returns, is logged at Error level and counted in
// durable_evictions_total{reason="reset"}, and Shutdown does not wait for
// it. A limit of zero or less means none. Default 30 s
// (DefaultCallTimeout).
func WithCallTimeout(d time.Duration) Option { return func(o *options) { o.callTimeout = d } }

// WithMaxSocketBuffer caps the bytes that may wait to be written to one
// WebSocket (sockets.Conn.BufferedAmount: payloads, plus
// sockets.MessageOverhead per message). A send past it finds a client
// that does not read fast enough: the object's WebSocketError hears of
// sockets.ErrSlowClient, the socket is closed with 1013 (try again
// later), and what waits behind melody's 256-message buffer is dropped.
// A message longer than the cap is still sent when nothing else waits.
// Default 4 MiB (sockets.DefaultMaxBuffer).
func WithMaxSocketBuffer(bytes int64) Option {
	return func(o *options) { o.maxSocketBuf = max(1, bytes) }
}

// WithMaxOpenSQLFiles caps how many objects of classes declared with sql:
// true have their database open on disk at once; each holds three file
// descriptors (the database, its WAL and the WAL index). An object takes
// one when it activates with a database on disk, or when its first write
// creates the database (objects never written stay in memory and hold
// none), and gives it back when it leaves memory. Past the cap, the least
// recently used of those objects are asked to leave, which they do once
// idle; a call that still gets no file within 5 s fails with
// ResourceExhausted (storage.ErrTooManyOpenFiles) rather than with the
// operating system's refusal. Default: the descriptors that connections
// never take (WithDescriptorReserve: half the process's limit, RLIMIT_NOFILE,
// which Go raises to the hard limit), less a few for the node database,
// divided by three: 3,312 databases under a limit of 20,000.
func WithMaxOpenSQLFiles(n int) Option { return func(o *options) { o.maxSQLFiles = max(1, n) } }

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

// WithDrainGrace has Shutdown, under Serve, go on serving as usual for up
// to grace once its health checks answer NOT_SERVING, before it stops
// accepting connections: time for load balancers to see the health change
// and stop sending, and for clients with keep-alive connections to move.
// During the grace every HTTP/1 response closes its connection
// (Connection: close), so that a client's next request dials anew rather
// than racing the connection's close. The grace lasts its whole length
// (or until Shutdown's context ends): a server cannot tell a client gone
// for good from one about to dial again. Without it a request sent on a
// keep-alive connection just as Shutdown closes it fails, and net/http
// retries only idempotent ones. Default 0: no grace. It has no effect on
// Handler.
func WithDrainGrace(grace time.Duration) Option {
	return func(o *options) { o.net.drainGrace = grace }
}

// WithDescriptorReserve sets how many file descriptors the default
// connection cap of WithMaxConnections leaves to the rest of the process:
// the node database, three per open object of a class declared sql: true,
// logs and the listener; the default WithMaxOpenSQLFiles is derived from
// it. Default half the descriptor limit, and at least 256; n < 0 restores
// the default.
func WithDescriptorReserve(n int) Option { return func(o *options) { o.net.fdReserve = n } }
