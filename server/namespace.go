package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/durablego/durable"
	"github.com/durablego/durable/internal/callchain"
	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/objectkey"
)

// Class describes an object class. Generated Register functions fill it in
// from the .proto service and its (durable.v1.object) option.
type Class struct {
	// Name is the class name: the service name ("ChatRoom").
	Name string
	// Binding is the constant-case binding name ("CHAT_ROOM").
	Binding string
	// Segment is the kebab-case URL segment ("chat-room"): the class's
	// objects serve HTTP at /objects/{segment}/ and /objects-by-id/{segment}/
	// when they have a Fetch hook. Two classes cannot share one.
	Segment string
	// Service is the fully qualified protobuf service name.
	Service string
	// SQL reports whether each object has its own SQL database.
	SQL bool
}

var className = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Namespace is a registered class: it mints IDs and runs calls on the
// class's objects. Generated namespaces wrap it with typed methods.
type Namespace[S proto.Message] struct {
	srv     *Server
	class   Class
	space   *durable.IDSpace
	names   *nameCache // IDs of recent names (names.go)
	init    durable.Initializer[S]
	alarm   durable.Alarmer[S]
	fetcher durable.Fetcher[S]

	wsMessage durable.WebSocketMessager[S]
	wsClose   durable.WebSocketCloser[S]
	wsError   durable.WebSocketErrorer[S]
	newState  func() S
	m         *classMetrics // nil when metrics are off

	mu      sync.RWMutex // guards actors, resident and closing; see enqueue and evict
	actors  map[[32]byte]*actor[S]
	closing bool
	// resident holds the actors of the map in a slice, each at its slot,
	// so that eviction samples random actors in constant time: skipping
	// a random number of map entries costs time linear in their number.
	resident []*actor[S]
}

// Register adds a class to srv with impl as its implementation, which
// generated code has already checked to implement the class's methods. It
// fails if the class name is taken or invalid, after Handler was called,
// or, with an error matching ErrHookSignature that names the method and
// the expected signature, if impl has a method named like a hook (Init,
// Alarm, Fetch, WebSocketMessage, WebSocketClose, WebSocketError) that is
// not the hook.
func Register[S proto.Message](srv *Server, class Class, impl any) (*Namespace[S], error) {
	if !className.MatchString(class.Name) {
		return nil, fmt.Errorf("server: invalid class name %q", class.Name)
	}
	if err := checkHooks[S](class.Name, impl); err != nil {
		return nil, err
	}
	if class.SQL && srv.ownDB == nil {
		return nil, fmt.Errorf("%w: class %s", errSQLOnStore, class.Name)
	}
	var zero S
	proto := zero.ProtoReflect().Type()
	n := &Namespace[S]{
		srv:      srv,
		class:    class,
		space:    durable.NewIDSpace(class.Name, srv.secret),
		names:    newNameCache(),
		newState: func() S { return proto.New().Interface().(S) },
		actors:   make(map[[32]byte]*actor[S]),
	}
	n.init, _ = impl.(durable.Initializer[S])
	n.alarm, _ = impl.(durable.Alarmer[S])
	n.fetcher, _ = impl.(durable.Fetcher[S])
	n.wsMessage, _ = impl.(durable.WebSocketMessager[S])
	n.wsClose, _ = impl.(durable.WebSocketCloser[S])
	n.wsError, _ = impl.(durable.WebSocketErrorer[S])

	srv.mu.Lock()
	defer srv.mu.Unlock()
	switch {
	case srv.handler != nil:
		return nil, fmt.Errorf("server: class %s registered after Handler was called", class.Name)
	case srv.closing.Load():
		return nil, durable.ErrShutdown
	case srv.classes[class.Name] != nil:
		return nil, fmt.Errorf("server: class %s is already registered", class.Name)
	case class.Segment != "" && srv.segments[class.Segment] != nil:
		return nil, fmt.Errorf("server: class %s: URL segment %q is taken by class %s", class.Name, class.Segment, srv.segments[class.Segment].Class().Name)
	}
	// The class's series are created once it is known to be registered.
	n.m = srv.metrics.class(class.Name, n.alarm != nil)
	srv.classes[class.Name] = n
	if class.Segment != "" {
		srv.segments[class.Segment] = n
	}
	if class.Service != "" {
		srv.services = append(srv.services, class.Service)
	}
	return n, nil
}

// Class returns the class description.
func (n *Namespace[S]) Class() Class { return n.class }

// IDFromName returns the ID that name maps to.
func (n *Namespace[S]) IDFromName(name string) durable.ID { return n.names.fromName(n.space, name) }

// IDFromString parses the canonical form of an ID of this class. An ID of
// another registered class fails with a message naming that class.
func (n *Namespace[S]) IDFromString(s string) (durable.ID, error) {
	id, err := n.space.FromString(s)
	if errors.Is(err, durable.ErrIDNamespace) {
		raw, _ := durable.ParseIDBytes(s)
		if other := n.srv.classOfID(raw); other != "" {
			return durable.ID{}, fmt.Errorf("%w: it was minted for class %s, not %s", err, other, n.class.Name)
		}
	}
	return id, err
}

// NewUniqueID returns a fresh random ID.
func (n *Namespace[S]) NewUniqueID() durable.ID { return n.space.NewUnique() }

// openStore opens the storage of one object: a row in the node database,
// or, for a class with SQL, a database file of its own (storage's layout:
// DB.SQLStore), counted in the server's budget of open SQL files while
// open.
func (n *Namespace[S]) openStore(a *actor[S]) (*engine.Store, error) {
	key := a.key
	var store *engine.Store
	if !n.class.SQL {
		store = engine.NewStore(n.srv.db, key.Class, key.ID)
	} else {
		var err error
		store, err = n.srv.ownDB.SQLStore(key.Class, key.ID, engine.WithFileDurability(n.srv.opts.durability),
			engine.WithMaxSize(n.srv.opts.maxSQLSize), engine.WithFileLimiter(n.srv.sqlFiles.limiter(a)),
			engine.WithFilePool(n.srv.sqlFiles.filePool(n.srv.ownDB, n.srv.log)))
		if err != nil {
			return nil, err
		}
	}
	if n.alarm != nil {
		store.HandleAlarms(func(c engine.AlarmChange) { n.srv.alarmChanged(key, c) })
	}
	return store, nil
}

func (n *Namespace[S]) ids() *durable.IDSpace { return n.space }

// idFromName is IDFromName, for the router.
func (n *Namespace[S]) idFromName(name string) durable.ID { return n.IDFromName(name) }

// classOfID returns the registered class whose namespace minted raw, or "".
func (s *Server) classOfID(raw [32]byte) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for name, ns := range s.classes {
		if ns.ids().Verify(raw) {
			return name
		}
	}
	return ""
}

// resolve checks that id belongs to this class and derives the bytes of a
// name-only ID.
func (n *Namespace[S]) resolve(id durable.ID) (durable.ID, objectkey.Key, error) {
	switch {
	case id.IsZero():
		return id, objectkey.Key{}, fmt.Errorf("%w: the zero ID addresses no object", durable.ErrInvalidID)
	case id.Class() != n.class.Name:
		return id, objectkey.Key{}, fmt.Errorf("%w: an ID of class %q cannot address a %s object", durable.ErrIDNamespace, id.Class(), n.class.Name)
	case !id.Resolved():
		id = n.IDFromName(id.Name())
	}
	return id, objectkey.Key{Class: n.class.Name, ID: id.Bytes()}, nil
}

// Invoke calls method on the object id in process: fn is the method of the
// class's implementation. The request and the response are cloned, so the
// object and its caller never share memory. Generated stubs call it.
func Invoke[S proto.Message, Req, Res any](ctx context.Context, n *Namespace[S], id durable.ID, method string, req *Req, fn func(context.Context, *durable.Object[S], *Req) (*Res, error)) (*Res, error) {
	return invoke(ctx, n, id, method, clone(req), fn)
}

// Handle serves method for a Connect handler: it takes the object's ID or
// name from the request headers, runs the call through the object's
// mailbox, and turns failures into Connect errors whose "Durable-Error"
// metadata tells Durable's own failures apart. Generated handlers call it.
func Handle[S proto.Message, Req, Res any](ctx context.Context, n *Namespace[S], method string, req *connect.Request[Req], fn func(context.Context, *durable.Object[S], *Req) (*Res, error)) (*connect.Response[Res], error) {
	return handle(ctx, n, n.m.method(method), method, req, fn)
}

// handle is Handle with the method's metrics resolved (HandleMethod does it
// once, at Mount).
func handle[S proto.Message, Req, Res any](ctx context.Context, n *Namespace[S], mm *methodMetrics, method string, req *connect.Request[Req], fn func(context.Context, *durable.Object[S], *Req) (*Res, error)) (*connect.Response[Res], error) {
	e := newEntry(n, mm, method, req.Msg, fn)
	e.id, e.addrErr = n.idOf(ctx, req.Header())
	if e.addrErr == nil {
		ctx, e.addrErr = callchain.FromHeader(ctx, req.Header().Get(durable.HeaderCallChain))
		if e.addrErr != nil {
			e.addrErr = kindError(errorOf(durable.ErrInvalidCallChain, "header %s: %v", durable.HeaderCallChain, e.addrErr))
		}
	}
	c, err := n.call(ctx, &e)
	switch {
	case err != nil && e.addrErr != nil:
		return nil, err
	case err != nil:
		return nil, n.srv.toConnectError(ctx, err, n.class.Name, method, e.id)
	}
	return connect.NewResponse(c.res.(*Res)), nil
}

// idFromHeader reads the ID from exactly one of the two ID headers.
func (n *Namespace[S]) idFromHeader(h http.Header) (durable.ID, error) {
	names, ids := h.Values(durable.HeaderObjectName), h.Values(durable.HeaderObjectID)
	switch {
	case len(names)+len(ids) == 0:
		return durable.ID{}, kindError(errorOf(durable.ErrInvalidID, "durable: missing header %s or %s: set one to address a %s object", durable.HeaderObjectName, durable.HeaderObjectID, n.class.Name))
	case len(names)+len(ids) > 1:
		return durable.ID{}, kindError(errorOf(durable.ErrInvalidID, "durable: set exactly one %s or %s header, not %d", durable.HeaderObjectName, durable.HeaderObjectID, len(names)+len(ids)))
	case len(names) == 1:
		return n.IDFromName(names[0]), nil
	}
	id, err := n.IDFromString(ids[0])
	if err != nil {
		return durable.ID{}, kindError(fmt.Errorf("header %s: %w", durable.HeaderObjectID, err))
	}
	return id, nil
}

func invoke[S proto.Message, Req, Res any](ctx context.Context, n *Namespace[S], id durable.ID, method string, req *Req, fn func(context.Context, *durable.Object[S], *Req) (*Res, error)) (*Res, error) {
	e := newEntry(n, n.m.method(method), method, req, fn)
	e.id = id
	c, err := n.call(ctx, &e)
	if err != nil {
		return nil, err
	}
	return c.res.(*Res), nil
}

// newEntry is the entry of a call of the RPC method, implemented by fn, with
// the request req: checked before it is queued, and the response cloned.
func newEntry[S proto.Message, Req, Res any](n *Namespace[S], mm *methodMetrics, method string, req *Req, fn func(context.Context, *durable.Object[S], *Req) (*Res, error)) entry[S] {
	var remote func(context.Context, durable.ID, objectkey.Key, Location) (any, error)
	if n.srv.router != nil { // else no closure to allocate per call
		remote = func(ctx context.Context, id durable.ID, key objectkey.Key, loc Location) (any, error) {
			return callRemote[S, Req, Res](ctx, n, method, id, key, loc, req)
		}
	}
	return entry[S]{
		method: method,
		mm:     mm,
		req:    any(req).(proto.Message),
		remote: remote,
		run: func(ctx context.Context, o *durable.Object[S]) (any, error) {
			res, err := fn(ctx, o, req)
			if err != nil {
				return nil, err
			}
			if res == nil {
				return new(Res), nil
			}
			// Cloned here, on the object's goroutine, because the next
			// call may change state the response shares memory with.
			return clone(res), nil
		},
	}
}

func clone[T any](m *T) *T { return any(proto.Clone(any(m).(proto.Message))).(*T) }

// enqueue delivers c to the object's mailbox, activating the object if it
// is not in memory. The read lock orders enqueue before an eviction, which
// takes the write lock and leaves only when the mailbox is empty.
func (n *Namespace[S]) enqueue(key objectkey.Key, c *call[S]) error {
	n.mu.RLock()
	a := n.actors[key.ID]
	if a != nil && !n.closing {
		err := a.deliver(c)
		n.mu.RUnlock()
		return err
	}
	closing := n.closing
	n.mu.RUnlock()
	if closing {
		return shutdownError()
	}

	n.mu.Lock()
	if n.closing {
		n.mu.Unlock()
		return shutdownError()
	}
	a = n.actors[key.ID]
	activated := a == nil
	if activated {
		a = newActor(n, key)
		n.add(a)
		n.srv.active.Add(1)
		n.m.activated()
		n.srv.actors.Add(1)
		go a.loop()
	}
	err := a.deliver(c)
	n.mu.Unlock()
	if activated {
		// A program that calls its objects only in process never calls
		// Handler: the first activation starts the alarm scheduler for it
		// (Start), once; calls to objects in memory never reach it.
		n.srv.Start()
		n.srv.shed()
	}
	return err
}

// withdraw takes c out of its object's mailbox, if it is still there, when
// its caller gives up, so that it neither runs nor holds a slot. It
// reports whether it did.
func (n *Namespace[S]) withdraw(key objectkey.Key, c *call[S]) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	a := n.actors[key.ID]
	return a != nil && a.mailbox.withdraw(c)
}

// remove takes a out of memory if its mailbox is empty, atomically with
// respect to enqueue. It reports whether it did.
func (n *Namespace[S]) remove(a *actor[S]) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.actors[a.key.ID] != a {
		return true // Drop took it out already
	}
	if a.mailbox.len() > 0 {
		return false
	}
	n.drop(a)
	n.srv.active.Add(-1)
	return true
}

// add puts a in memory. The caller holds the write lock.
func (n *Namespace[S]) add(a *actor[S]) {
	n.actors[a.key.ID] = a
	a.slot = len(n.resident)
	n.resident = append(n.resident, a)
}

// drop takes a out of memory, moving the last resident actor into its
// slot. The caller holds the write lock.
func (n *Namespace[S]) drop(a *actor[S]) {
	delete(n.actors, a.key.ID)
	last := len(n.resident) - 1
	moved := n.resident[last]
	n.resident[a.slot], moved.slot = moved, a.slot
	n.resident[last] = nil
	n.resident = n.resident[:last]
}

func (n *Namespace[S]) queued(id durable.ID) int {
	_, key, err := n.resolve(id)
	if err != nil {
		return 0
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	if a := n.actors[key.ID]; a != nil {
		return a.mailbox.len()
	}
	return 0
}

// drain stops new calls; every actor then runs what it has and leaves.
func (n *Namespace[S]) drain() {
	n.mu.Lock()
	n.closing = true
	n.mu.Unlock()
}

// evictSample looks at up to k objects and returns a function that asks the
// least recently used of them to leave, with its last use time.
func (n *Namespace[S]) evictSample(k int) (func(), int64) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	var victim *actor[S]
	oldest := int64(1<<63 - 1)
	if len(n.resident) == 0 {
		return nil, 0
	}
	for range k {
		a := n.resident[rand.IntN(len(n.resident))]
		if a.evicting.Load() {
			continue
		}
		if used := a.lastUsed.Load(); used < oldest {
			victim, oldest = a, used
		}
	}
	if victim == nil {
		return nil, 0
	}
	return victim.requestEviction, oldest
}

// reentrant is the error of a call to method on the object key from a call
// chain that already waits for that object: it would wait for itself.
func (n *Namespace[S]) reentrant(method string, key objectkey.Key) error {
	return fmt.Errorf("%w: %s.%s called on %s while that object waits for this call chain", durable.ErrReentrantCall, n.class.Name, method, key)
}

func shutdownError() error {
	return kindError(durable.ErrShutdown)
}

func overloadedError(key objectkey.Key, size int) error {
	return kindError(fmt.Errorf("%w: %d calls already wait for %s", durable.ErrOverloaded, size, key))
}

// withKind sets err's durable.HeaderError metadata to kind, unless empty.
func withKind(err *connect.Error, kind durable.Kind) *connect.Error {
	if kind != "" {
		err.Meta().Set(durable.HeaderError, string(kind))
	}
	return err
}
