package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/durablego/durable"
	"github.com/durablego/durable/internal/callchain"
	"github.com/durablego/durable/internal/objectkey"
	"github.com/durablego/durable/internal/sockets"
)

// The one way a call enters an object.
//
// Every way in (an in-process stub: Invoke; a Connect, gRPC or gRPC-Web
// request: Handle; a Fetch, over the route or from a stub; a WebSocket
// event; an alarm) describes its call as an entry and hands it to
// Namespace.call, which addresses the object, checks the request and the
// call chain, queues the call in the object's mailbox, waits for its
// answer and counts it in the metrics. Nothing else queues a call or
// records one, so that what cuts across every call (metrics today; the
// routing of a call to the node that hosts its object tomorrow) has one
// place to live. Tracing is the Connect interceptor's (tracing.go): only
// RPCs get spans.

// entry is what a way in says about one call, for Namespace.call.
type entry[S proto.Message] struct {
	id     durable.ID
	method string
	// mm is the method's metrics, resolved once where the way in is set up
	// when it can be (HandleMethod); nil with metrics off.
	mm *methodMetrics
	// addrErr is why the caller addresses no object (malformed ID headers
	// or call chain): the call fails with it, counted in the metrics.
	addrErr error
	// req, when set, is checked against its protovalidate rules before the
	// call is queued.
	req proto.Message
	// run is the call's code, on the object's goroutine.
	run func(context.Context, *durable.Object[S]) (any, error)
	// backpressure has a full mailbox offered the call again, with backoff,
	// instead of failing it: a WebSocket's next event waits for this one.
	backpressure bool
	// remote, when set, runs the call on the object at loc, another node
	// (cluster mode): an RPC's entry has it (newEntry). Without it, a call
	// for an object another node serves fails with a not-owner error (the
	// Fetch route's, whose router retries) or, for the entries that only
	// this node makes (socket events, alarms), a moved one.
	remote func(ctx context.Context, id durable.ID, key objectkey.Key, loc Location) (any, error)
	// fetch: the entry of a Fetch; it waits for a hand-off as RPCs do.
	fetch bool
	// abandoned, when set, receives the call once it is done if its caller
	// stopped waiting after it left the mailbox (Fetch: a socket the call
	// accepted then has nobody to upgrade it).
	abandoned func(*call[S])
}

// call is one method call waiting in, or taken from, a mailbox.
type call[S proto.Message] struct {
	ctx    context.Context
	name   string // the object's name, if the caller addressed it by name
	method string
	run    func(context.Context, *durable.Object[S]) (any, error)

	// Set by the actor before answer, read by the caller after.
	res any
	err error
	// The caller waits for the answer on done when its context can end,
	// and else on wait, held from the call's creation to its answer: a
	// call whose context never ends (context.Background, as in process)
	// allocates no channel.
	done chan struct{}
	wait sync.Mutex

	// fx is what the call sent on its object's WebSockets, released when
	// its writes are durable (finish).
	fx *sockets.Effects

	// With metrics on: when the call arrived, and the histogram of its
	// class's mailbox wait (nil with metrics off).
	arrived time.Time
	queue   prometheus.Observer

	// lim is the context the call's code runs with, under its time limit
	// (timeout.go).
	lim callCtx
}

// finish answers the caller: the call's socket sends go out first if it
// succeeded, and are dropped if it failed.
func (c *call[S]) finish() {
	if c.err == nil {
		c.fx.Commit()
	} else {
		c.fx.Abort()
	}
	c.answer()
}

// newCall returns a call to run under ctx, not yet answered.
func newCall[S proto.Message](ctx context.Context, method string, run func(context.Context, *durable.Object[S]) (any, error)) *call[S] {
	c := &call[S]{ctx: ctx, method: method, run: run}
	if ctx.Done() != nil {
		c.done = make(chan struct{})
	} else {
		c.wait.Lock()
	}
	return c
}

// answer tells the caller that res and err are set. It is called once.
func (c *call[S]) answer() {
	if c.done != nil {
		close(c.done)
	} else {
		c.wait.Unlock()
	}
}

// call runs e on its object through the object's mailbox and returns the
// call once answered, with its error; the call is nil when it never
// reached the mailbox (the error says why). When ctx ends first, the call
// is withdrawn from the mailbox if it is still there, and the error is
// ctx's as a Connect error.
func (n *Namespace[S]) call(ctx context.Context, e *entry[S]) (*call[S], error) {
	if e.mm == nil {
		return n.enter(ctx, e, time.Time{})
	}
	arrived := time.Now()
	c, err := n.enter(ctx, e, arrived)
	e.mm.done(arrived, err)
	return c, err
}

// routeCall asks the placement where the object key is served, with a
// router (cluster mode). It reports done with the call's outcome when the
// call did not run here: it ran on the node that serves the object, or it
// failed because no node does, or another one does and e cannot go there.
func (n *Namespace[S]) routeCall(ctx context.Context, e *entry[S], key objectkey.Key) (*call[S], error, bool) {
	rt := n.srv.router
	if e.remote == nil && !e.fetch {
		// A socket event or an alarm: no waiting for a hand-off.
		loc, err := rt.placement.Locate(ctx, key.ID)
		switch {
		case err != nil:
			return nil, unavailableError(err), true
		case !loc.Local || rt.holds.held(key.ID) != nil:
			return nil, movedError(errors.New("this node does not serve the object")), true
		}
		return nil, nil, false
	}
	if rt.locatedHere(ctx, key.ID) {
		return nil, nil, false // the router asked for this request
	}
	loc, err := n.srv.locate(ctx, key.ID)
	switch {
	case err != nil:
		return nil, unavailableError(err), true
	case loc.Local:
		return nil, nil, false
	case e.remote == nil:
		ce := notOwnerError(loc)
		ce.Meta().Set(HeaderOwner, loc.URL)
		return nil, ce, true
	}
	res, err := e.remote(ctx, e.id, key, loc)
	if errors.Is(err, errLocalAgain) {
		return nil, nil, false
	}
	if err != nil {
		return nil, err, true
	}
	return &call[S]{res: res}, nil, true
}

// enter is call without the metrics of the outcome.
func (n *Namespace[S]) enter(ctx context.Context, e *entry[S], arrived time.Time) (*call[S], error) {
	if e.addrErr != nil {
		return nil, e.addrErr
	}
	id, key, err := n.resolve(e.id)
	if err != nil {
		return nil, kindError(err)
	}
	if e.req != nil {
		if err := n.srv.validate(e.req); err != nil {
			return nil, rpcError(n.class.Name, e.method, connect.CodeInvalidArgument, fmt.Errorf("invalid request: %w", err))
		}
	}
	if callchain.Contains(ctx, key) {
		return nil, kindError(n.reentrant(e.method, key))
	}
	if n.srv.router != nil {
		if c, err, done := n.routeCall(ctx, e, key); done {
			return c, err
		}
	}
	c := newCall(ctx, e.method, e.run)
	c.name = id.Name()
	if e.mm != nil {
		c.arrived, c.queue = arrived, e.mm.queue
	}
	err = n.enqueue(key, c)
	// A call refused by a full mailbox was not queued: offer it again.
	for wait := time.Millisecond; e.backpressure && errors.Is(err, durable.ErrOverloaded); wait = min(2*wait, 100*time.Millisecond) {
		time.Sleep(wait)
		err = n.enqueue(key, c)
	}
	if err != nil {
		return nil, err
	}
	if c.done == nil {
		c.wait.Lock()
		return c, c.err
	}
	select {
	case <-c.done:
		return c, c.err
	case <-ctx.Done():
	}
	if abandoned := e.abandoned; !n.withdraw(key, c) && abandoned != nil {
		// e itself is not captured: it stays on its caller's stack.
		go func() {
			<-c.done
			abandoned(c)
		}()
	}
	return c, connect.NewError(codeOf(ctx.Err()), ctx.Err())
}
