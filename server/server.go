// Package server hosts Durable Objects: the registry of classes, one
// mailbox per active object, activation and eviction, the Connect, gRPC and
// gRPC-Web handlers of every class, and graceful shutdown.
//
// Generated code registers classes (counterv1durable.RegisterCounter(srv,
// impl)); a program then serves srv.Handler(), or calls Serve, and calls
// Shutdown on its way out.
// ARCHITECTURE.md, at the repository's root, maps which file holds each
// step of a call.
//
// # Calls
//
// Each active object has a bounded mailbox. Calls, whether from in-process
// stubs or from the network, run one at a time in arrival order. Calls that
// queue up while one runs are run back to back and their writes committed
// together (group commit); every caller still gets only its own result, and
// only once its writes are durable (the output gate).
//
// In-process stubs clone the request and the response (proto.Clone), so the
// object never shares memory with its caller, as over the network; the
// network path decodes a fresh request and only clones the response.
//
// # HTTP on objects
//
// A class whose implementation satisfies durable.Fetcher serves HTTP at
// /objects/{segment}/{name}/{path...} and /objects-by-id/{segment}/{id}/{path...}
// (see durable.FetchByNamePrefix); its Fetch sees /{path...} and the query.
// The request body is read in full, up to WithMaxRequestBody, before the
// call is queued, and the response is buffered and sent once the call's
// writes are durable. Durable's own answers carry a Durable-Error header
// naming their durable.Kind, whose table gives the status: 404 for an
// unknown class segment (listing those that exist) or a class without
// Fetch, 400 for a malformed or foreign ID, 413 for a body over the limit,
// 503 when overloaded or shutting down, 508 for a reentrant call, 507 for
// a full disk or database, 500 for a panic or another failure of Durable,
// whose body is then a generic message with an identifier that the log
// line with the full cause also has.
//
// # Call chains
//
// An object waiting on a call to another object keeps its mailbox busy, so
// a chain A→B→A would wait forever. Durable records the chain in the
// context (and, across processes, in the Durable-Call-Chain header) and
// fails the nested call to A with durable.ErrReentrantCall
// (FailedPrecondition) instead of running it reentrantly: reentrancy would
// interleave two calls on one object's state, which the single-threaded
// model promises never happens. Chains that only meet across independent
// calls (A→B while B→A) are not detected; give such calls deadlines.
package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/proto"

	"github.com/durablego/durable"
	"github.com/durablego/durable/gen/durable/v1/durablev1connect"
	"github.com/durablego/durable/internal/alarms"
	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/objectkey"
	"github.com/durablego/durable/internal/sockets"
)

// Server hosts object classes. Create one with New, register classes with
// the generated Register functions, then serve Handler.
type Server struct {
	opts   options
	log    *slog.Logger
	db     engine.ObjectStore // where objects live: ownDB, or WithStore's
	ownDB  *engine.DB         // the node database New opened; nil with WithStore
	lock   *dirLock           // the data directory's; released by Shutdown
	secret []byte

	mu         sync.RWMutex
	classes    map[string]registeredClass // by class name
	segments   map[string]registeredClass // by URL segment, for the Fetch routes
	services   []string                   // fully qualified service names
	mux        *http.ServeMux
	handler    http.Handler              // built on first Handler call; registration ends then
	health     *grpchealth.StaticChecker // built with handler; NOT_SERVING once Shutdown starts
	httpServer *http.Server

	validator   protovalidate.Validator
	alarms      *alarms.Scheduler
	alarmsStart sync.Once

	active   atomic.Int64 // objects in memory, across classes
	actors   sync.WaitGroup
	closing  atomic.Bool
	draining atomic.Bool   // in Shutdown's drain grace (WithDrainGrace)
	shutdown chan struct{} // closed when Shutdown starts draining objects
	sockets  *sockets.Hub
	metrics  *metrics   // nil unless WithMetrics
	sqlFiles *sqlBudget // the objects' SQL databases open on disk

	conns *connLimiter // set by Serve

	router *router // with WithPlacement (route.go); nil otherwise
	fenced bool    // SetServing(false): health answers NOT_SERVING; under mu
}

// registeredClass is what the server needs of a registered class, whatever
// its state type: a *Namespace[S] for some S.
type registeredClass interface {
	Class() Class
	ids() *durable.IDSpace
	idFromName(name string) durable.ID // ids().FromName, cached
	drain()
	queued(id durable.ID) int
	runAlarm(key objectkey.Key, due time.Time, retry int, done func(error))
	dropAlarm(key objectkey.Key, due time.Time)
	evictSample(n int) (victim func(), lastUsed int64)
	serveFetch(w http.ResponseWriter, r *http.Request, ref string, byID bool, rest string)
	socketEvent(key objectkey.Key, ev sockets.Event) error
	mailboxes() (active, depth, depthMax int)
	cutStuck()
	fetchID(ref string, byID bool) (durable.ID, error)
	evictMatching(match func(objectkey.Key) bool) int
	dropMatching(match func(objectkey.Key) bool, reason error)
	adminClass
}

// New opens the server's storage in its data directory and returns a
// server with no classes.
//
// The server owns the directory until Shutdown: New first takes an
// exclusive OS lock on the file LOCK in it, and fails at once with an
// error matching ErrDataDirLocked, naming the directory and the holder,
// when another server (in any process) has it. The lock is the OS's, so
// it goes with the process however that ends, kill -9 included. It needs
// a file system with working flock locks: a local disk, not NFS.
//
// The node database records a fingerprint of the ID secret (never the
// secret). New fails with ErrSecretMismatch, before it creates anything,
// if the secret (the file "secret" in the directory, or WithSecret) is not
// the one the data was written with, or if that file is missing from a
// directory that holds data.
func New(opts ...Option) (*Server, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	// First, so that the handler options a program adds may override them.
	o.handlerOptions = append(rpcLimitOptions(o.net.maxRPCMessage), o.handlerOptions...)
	if err := o.addTracing(); err != nil {
		return nil, err
	}
	if err := o.addOrigins(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("server: data directory: %w", err)
	}
	// The lock first: nothing else in the directory is opened or created
	// by a server that does not own it.
	lock, err := lockDataDir(o.dataDir)
	if err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			lock.release()
		}
	}()
	db, ownDB, err := openStore(&o)
	if err != nil {
		return nil, err
	}
	defer func() {
		if !started && ownDB != nil {
			ownDB.Close()
		}
	}()
	secret, err := openSecret(context.Background(), &o, db)
	switch {
	case err == nil && ownDB != nil:
		err = backfillSQLCatalog(context.Background(), ownDB)
		removeStaleBackups(o.dataDir)
	case err == nil && o.admin:
		err = fmt.Errorf("server: WithAdmin: %w", errNoNodeDB)
	}
	if err != nil {
		return nil, err
	}
	validator, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("server: protovalidate: %w", err)
	}
	s := &Server{
		validator: validator,
		opts:      o,
		log:       o.logger,
		db:        db,
		ownDB:     ownDB,
		lock:      lock,
		secret:    secret,
		classes:   make(map[string]registeredClass),
		segments:  make(map[string]registeredClass),
		mux:       http.NewServeMux(),
		shutdown:  make(chan struct{}),
		sqlFiles:  newSQLBudget(cmp.Or(o.maxSQLFiles, o.net.budget().maxSQLFiles()), sqlFileWait),
	}
	s.sockets = sockets.NewHub(sockets.HubConfig{
		MaxSockets:     o.maxSockets,
		MaxMessageSize: o.maxMessageSize,
		MaxBuffer:      o.maxSocketBuf,
		Dispatch:       s.socketEvent,
		CheckOrigin:    o.origins.allowsSocket,
	})
	if o.placement != nil {
		s.router = newRouter(s, o.placement)
	}
	if o.metrics != nil {
		if s.metrics, err = newMetrics(s, o.metrics); err != nil {
			return nil, err
		}
	}
	idPath, idHandler := durablev1connect.NewIDServiceHandler(&idService{srv: s}, o.handlerOptions...)
	s.Mount(idPath, capRPCBody(idHandler, o.net.maxRPCMessage))
	s.Mount(durable.FetchByNamePrefix, s.fetchRoute(durable.FetchByNamePrefix))
	s.Mount(durable.FetchByIDPrefix, s.fetchRoute(durable.FetchByIDPrefix))
	if o.admin {
		s.mountAdmin()
	}
	started = true
	return s, nil
}

// Start starts what the server runs in the background, once: the alarm
// scheduler, which fires the alarms of the registered classes, those
// stored by an earlier run included. Handler (and so Serve) calls it, and
// so does the first activation of an object, for a program that only calls
// its objects in process; such a program may call Start itself once its
// classes are registered, to fire stored alarms before any call. Until
// then, alarms wait in the index. Calls to objects in memory never reach
// it.
func (s *Server) Start() {
	s.alarmsStart.Do(func() {
		scheduler := alarms.New(s.db, alarms.Config{
			Dispatch:   s.dispatchAlarm,
			Drop:       s.dropAlarm,
			FirstRetry: s.opts.alarmRetry,
			Logger:     s.log,
		})
		s.mu.Lock()
		s.alarms = scheduler
		s.mu.Unlock()
	})
}

// validate checks m against the protovalidate rules of its message, if any.
func (s *Server) validate(m proto.Message) error { return s.validator.Validate(m) }

// Mount adds a handler for the path pattern; generated Register functions
// use it for their Connect handlers, and a program may add its own routes.
// It panics, as http.ServeMux does, on a conflicting pattern. A pattern
// that names a registered protobuf service ("/pkg.v1.Service/") answers a
// method the service does not have with Unimplemented in the caller's
// protocol (durable.ErrMethodNotFound), naming the service's methods. The
// handlers of a registered class (mounted by HandleMethod) get their request
// bodies bounded by WithMaxRPCMessageSize. With WithGuard, the guard
// decides on the route's requests.
func (s *Server) Mount(pattern string, h http.Handler) {
	ns := s.classOfService(pattern)
	if ns != nil {
		h = capRPCBody(h, s.opts.net.maxRPCMessage)
	}
	s.mux.Handle(pattern, s.guarded(pattern, ns, s.knownMethods(pattern, h)))
}

// HandlerOptions returns the Connect handler options every class's handlers
// are built with.
func (s *Server) HandlerOptions() []connect.HandlerOption { return s.opts.handlerOptions }

// Classes returns the names of the registered classes, sorted.
func (s *Server) Classes() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	names := make([]string, 0, len(s.classes))
	for n := range s.classes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ActiveObjects returns the number of objects in memory, across classes.
func (s *Server) ActiveObjects() int { return int(s.active.Load()) }

// PendingAlarms returns how many alarms the scheduler holds in memory: those
// due soon, at most a page of the node's alarm index.
func (s *Server) PendingAlarms() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.alarms == nil {
		return 0
	}
	return s.alarms.Pending()
}

// QueuedCalls returns how many calls wait in the mailbox of an object,
// not counting the one running; 0 when the object is not in memory.
func (s *Server) QueuedCalls(class string, id durable.ID) int {
	ns, err := s.lookup(class)
	if err != nil {
		return 0
	}
	return ns.queued(id)
}

// Class returns the description of a registered class, or an error
// matching durable.ErrClassNotFound that lists the classes that exist.
func (s *Server) Class(name string) (Class, error) {
	ns, err := s.lookup(name)
	if err != nil {
		return Class{}, err
	}
	return ns.Class(), nil
}

func (s *Server) lookup(name string) (registeredClass, error) {
	s.mu.RLock()
	ns, ok := s.classes[name]
	s.mu.RUnlock()
	if !ok {
		return nil, &durable.ClassNotFoundError{Class: name, Known: s.Classes()}
	}
	return ns, nil
}

// Handler returns the server's HTTP handler: every class's Connect, gRPC
// and gRPC-Web handlers, the ID service, gRPC health checking, server
// reflection (so grpcurl and buf curl work without the .proto files) and
// the routes to the objects' Fetch hooks. Registration ends with the first
// call, which also starts the alarm scheduler (Start).
//
// Health checking (grpc.health.v1) answers SERVING for the server and each
// of its services until Shutdown starts, and NOT_SERVING from that moment,
// so that a load balancer stops sending while the server drains.
//
// With WithGuard, every request but health checks is the guard's to allow
// (see Guard); browsers' cross-origin state changes and WebSocket upgrades
// are refused unless WithTrustedOrigins or WithCORS lists their origin
// (403, kind "cross-origin"); with WithCORS, the handler answers CORS
// preflights.
//
// HTTP/2 without TLS (h2c), which gRPC clients need, must be enabled on the
// http.Server that serves it (Protocols.SetUnencryptedHTTP2); Serve does.
// The RPC message limit (WithMaxRPCMessageSize) is part of the handler;
// the connection limits of Serve are not: a program serving Handler from
// its own http.Server should set IdleTimeout and ReadHeaderTimeout, cut
// slow bodies (ReadTimeout, or per-read deadlines through
// http.ResponseController) and cap its connections below the descriptor
// limit (golang.org/x/net/netutil.LimitListener).
func (s *Server) Handler() http.Handler {
	s.Start()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.handler == nil {
		services := append([]string{durablev1connect.IDServiceName}, s.services...)
		// Health is the one door no guard shuts (see AccessKind).
		s.health = grpchealth.NewStaticChecker(services...)
		if s.closing.Load() || s.fenced {
			s.notServing(services)
		}
		healthPath, health := grpchealth.NewHandler(s.health, s.opts.handlerOptions...)
		s.mux.Handle(healthPath, capRPCBody(health, s.opts.net.maxRPCMessage))
		reflector := grpcreflect.NewStaticReflector(services...)
		s.mux.Handle(s.guardReflection(grpcreflect.NewHandlerV1(reflector, s.opts.handlerOptions...)))
		s.mux.Handle(s.guardReflection(grpcreflect.NewHandlerV1Alpha(reflector, s.opts.handlerOptions...)))
		s.mux.Handle("/", s.guardUnknown(s.unknownProcedure()))
		// The router first: the owner of a forwarded request answers its
		// CORS headers.
		s.handler = s.route(s.withCORS(s.mux))
	}
	return s.handler
}

// Serve serves Handler on ln with HTTP/1.1 and h2c until Shutdown, and
// returns http.ErrServerClosed then.
//
// Its http.Server closes keep-alive connections idle for a minute
// (DefaultHTTPIdleTimeout) and waits 10 s at most for a request's headers;
// WithHTTPServer changes these and any other field. Request bodies that
// stall or trickle are cut (WithBodyTimeout), and connections are capped
// below the process's file descriptor limit, closing the oldest idle ones
// to make room (WithMaxConnections, WithDescriptorReserve), so that a flood
// of idle connections neither starves storage of descriptors nor keeps new
// clients out.
func (s *Server) Serve(ln net.Listener) error {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	limiter := newConnLimiter(ln, s.opts.net.budget(), s.log)
	hs := &http.Server{
		Handler:           s.closeWhenDraining(watchBodies(s.Handler(), s.opts.net.bodyStall, s.opts.net.minBodyRate)),
		Protocols:         &protocols,
		ReadHeaderTimeout: DefaultHTTPReadHeaderTimeout,
		IdleTimeout:       DefaultHTTPIdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	for _, configure := range s.opts.net.httpServer {
		configure(hs)
	}
	if user := hs.ConnState; user != nil {
		hs.ConnState = func(c net.Conn, state http.ConnState) {
			limiter.connState(c, state)
			user(c, state)
		}
	} else {
		hs.ConnState = limiter.connState
	}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.httpServer = hs
	s.conns = limiter
	s.mu.Unlock()
	return hs.Serve(limiter)
}

// Shutdown stops the server gracefully: health checks answer NOT_SERVING
// from its first instant; it stops accepting connections and
// lets in-flight requests finish (if Serve is running), refuses new calls
// with durable.ErrShutdown, lets every object run the calls already in its
// mailbox and commit them, and closes storage. It returns early with ctx's
// error if ctx ends first; storage is then closed anyway, and calls not yet
// committed fail rather than being acknowledged.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.closing.Swap(true) {
		return errors.New("server: Shutdown called twice")
	}
	// Before health flips: a client that sees NOT_SERVING and calls again
	// is answered with Connection: close.
	s.draining.Store(s.opts.net.drainGrace > 0)
	// Draining is visible first: a load balancer's health checks see
	// NOT_SERVING from now on, and stop sending.
	s.mu.RLock()
	if s.health != nil {
		s.notServing(append([]string{durablev1connect.IDServiceName}, s.services...))
	}
	s.mu.RUnlock()
	// Then, with WithDrainGrace, serving on as usual while clients and
	// load balancers move away.
	s.drainGrace(ctx)
	var errs []error
	// Alarms first: a run dispatched now would find the mailboxes closed.
	// Those not fired stay in the index for the next start.
	s.alarmsStart.Do(func() {}) // none start from now on
	s.mu.RLock()
	scheduler := s.alarms
	s.mu.RUnlock()
	if scheduler != nil {
		scheduler.Close()
	}
	// WebSockets are hijacked connections, which the http.Server does not
	// track: close them (1001) first, while the objects can still hear of
	// it.
	if err := s.sockets.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("server: sockets still closing: %w", err))
	}
	s.mu.RLock()
	hs := s.httpServer
	s.mu.RUnlock()
	if hs != nil {
		if err := hs.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("server: http shutdown: %w", err))
		}
	}
	s.mu.RLock()
	for _, ns := range s.classes {
		ns.drain()
	}
	s.mu.RUnlock()
	close(s.shutdown)
	drained := make(chan struct{})
	go func() { s.actors.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("server: objects still draining: %w", ctx.Err()))
		// Objects stuck in their code are cut off from storage before it
		// closes: nothing they do later is committed (see WithCallTimeout).
		s.mu.RLock()
		for _, ns := range s.classes {
			ns.cutStuck()
		}
		s.mu.RUnlock()
	}
	if err := s.closeStore(); err != nil {
		errs = append(errs, err)
	}
	// The directory is another server's to take only once no object of
	// this one can write to it: at once if every object has left, else
	// when the last does (or the process ends).
	select {
	case <-drained:
		if err := s.lock.release(); err != nil {
			errs = append(errs, fmt.Errorf("server: release the data directory: %w", err))
		}
	default:
		go func() { <-drained; s.lock.release() }()
	}
	return errors.Join(errs...)
}

// notServing has health checking answer NOT_SERVING for the server and
// each of services. The caller holds s.mu.
func (s *Server) notServing(services []string) {
	s.health.SetStatus("", grpchealth.StatusNotServing)
	for _, name := range services {
		s.health.SetStatus(name, grpchealth.StatusNotServing)
	}
}

// shed evicts sampled least recently used objects while more than the cap
// are in memory. Victims leave when their mailboxes are empty.
func (s *Server) shed() {
	if s.active.Load() <= int64(s.opts.maxActive) {
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var victim func()
	oldest := int64(1<<63 - 1)
	for _, ns := range s.classes {
		if v, used := ns.evictSample(8); v != nil && used < oldest {
			victim, oldest = v, used
		}
	}
	if victim != nil {
		victim()
	}
}
