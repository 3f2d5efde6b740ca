package server

import (
	"context"
	"fmt"

	"github.com/durablego/durable"
	"github.com/durablego/durable/internal/objectkey"
	"github.com/durablego/durable/internal/sockets"
	"github.com/durablego/durable/websocket"
)

// socketEvent delivers a WebSocket event of the object key to its class;
// the hub calls it from the socket's read goroutine.
func (s *Server) socketEvent(key objectkey.Key, ev sockets.Event) error {
	ns, err := s.lookup(key.Class)
	if err != nil {
		return err
	}
	return ns.socketEvent(key, ev)
}

// socketEvent runs the hook of ev as a call on the object key, and returns
// when it is done: the socket's next event waits for it (per-socket order
// and backpressure). A full mailbox is retried, as backpressure too. The
// hook's error is logged; the call is rolled back, sends included.
func (n *Namespace[S]) socketEvent(key objectkey.Key, ev sockets.Event) error {
	var method string
	var fn func(context.Context, *durable.Object[S]) error
	switch ev.Kind {
	case sockets.EventMessage:
		if n.wsMessage == nil {
			return nil
		}
		method = "WebSocketMessage"
		fn = func(ctx context.Context, o *durable.Object[S]) error {
			return n.wsMessage.WebSocketMessage(ctx, o, (*websocket.Conn)(ev.Conn), websocket.Message(ev.Message))
		}
	case sockets.EventClose:
		if n.wsClose == nil {
			ev.Conn.Leave()
			return nil
		}
		method = "WebSocketClose"
		fn = func(ctx context.Context, o *durable.Object[S]) error {
			// The socket leaves the object's list as the call ends, in
			// the mailbox, not after the call returned: the hook's
			// broadcast may reach a client that calls at once, and that
			// call must not find the socket still listed.
			defer ev.Conn.Leave()
			return n.wsClose.WebSocketClose(ctx, o, (*websocket.Conn)(ev.Conn), ev.Code, ev.Reason, ev.Clean)
		}
	case sockets.EventError:
		if n.wsError == nil {
			return nil
		}
		method = "WebSocketError"
		fn = func(ctx context.Context, o *durable.Object[S]) error {
			return n.wsError.WebSocketError(ctx, o, (*websocket.Conn)(ev.Conn), ev.Err)
		}
	default:
		return nil
	}
	id := durable.IDFromBytes(key.Class, key.ID, ev.Name)
	c, err := n.call(context.Background(), &entry[S]{
		id:           id,
		method:       method,
		mm:           n.m.method(method),
		backpressure: true,
		run: func(ctx context.Context, o *durable.Object[S]) (any, error) {
			return nil, fn(ctx, o)
		},
	})
	switch {
	case c == nil:
		return fmt.Errorf("queueing %s: %w", method, err)
	case err != nil:
		n.srv.log.Warn("durable: WebSocket hook failed", "class", key.Class, "method", method,
			"id", id.String(), "socket", ev.Conn.ID(), "err", err)
	}
	return err
}
