package probe

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/durablego/durable"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/websocket"
)

// SocketProbe is a test object for WebSockets, registered by hand with the
// ProbeState as its state. Its Fetch accepts an upgrade with the tags of
// the query's "tags" (comma-separated), sending "hello" first when the
// query has hello=1. Its WebSocketMessage runs the text commands:
//
//	echo X        send X back
//	bcast X       broadcast X to every other socket
//	tag T X       broadcast X to the sockets tagged T
//	attach X      set the socket's attachment to X, answer "ok"
//	whoami        answer "tags=a,b attach=X all=N value=V"
//	id            answer the socket's ID
//	ids [T]       answer the IDs of All() (or WithTag(T)), comma-separated
//	lastauto      answer whether the socket was ever auto-answered
//	fail X        send X, then fail
//	panic X       send X, then panic
//	auto REQ RES  set the auto-response
//	close CODE R  close the socket with CODE and reason R
//	try-close CODE R   close as close does, report Close's error on
//	                   Results, and succeed
//	close-send CODE R  close as close does, then close again and send
//	                   "after": report the second Close's and the Send's
//	                   errors on Results, and succeed
//
// Each message adds 1 to the state's value.
type SocketProbe struct {
	Closed chan SocketClose // every WebSocketClose, if not nil
	Errors chan error       // every WebSocketError, if not nil
	// HoldClose, if not nil, makes WebSocketClose wait until it is closed.
	HoldClose chan struct{}
	// Results, if not nil, receives the errors the try-close and
	// close-send commands report.
	Results chan error
	// CloseInClose makes WebSocketClose close the socket and send to it,
	// as a port of a Cloudflare webSocketClose that calls ws.close does,
	// recording both errors in its SocketClose.
	CloseInClose bool
}

// SocketClose is one WebSocketClose call.
type SocketClose struct {
	ID     string
	Code   int
	Reason string
	Clean  bool
	All    int // len(o.Sockets.All()) during the call
	// With CloseInClose: the errors of ws.Close and ws.Send in the call.
	CloseErr, SendErr error
}

type socketObject = durable.Object[*durabletestv1.ProbeState]

// Fetch accepts the upgrade.
func (p *SocketProbe) Fetch(_ context.Context, o *socketObject, w http.ResponseWriter, r *http.Request) {
	var tags []string
	if t := r.URL.Query().Get("tags"); t != "" {
		tags = strings.Split(t, ",")
	}
	ws, err := o.Sockets.Accept(w, r, tags...)
	switch {
	case errors.Is(err, websocket.ErrNotUpgrade):
		http.Error(w, err.Error(), http.StatusUpgradeRequired)
		return
	case errors.Is(err, websocket.ErrTooManySockets):
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.URL.Query().Get("hello") == "1" {
		ws.Send([]byte("hello"))
	}
}

// WebSocketMessage runs a command.
func (p *SocketProbe) WebSocketMessage(_ context.Context, o *socketObject, ws *websocket.Conn, msg websocket.Message) error {
	o.State.Value++
	cmd, arg, _ := strings.Cut(msg.Text(), " ")
	switch cmd {
	case "echo":
		return ws.Send([]byte(arg))
	case "bcast":
		o.Sockets.Broadcast([]byte(arg), websocket.Except(ws))
	case "tag":
		tag, text, _ := strings.Cut(arg, " ")
		o.Sockets.Broadcast([]byte(text), websocket.Tag(tag))
	case "attach":
		if err := ws.SetAttachment([]byte(arg)); err != nil {
			return err
		}
		return ws.Send([]byte("ok"))
	case "whoami":
		return ws.Send(fmt.Appendf(nil, "tags=%s attach=%s all=%d value=%d",
			strings.Join(ws.Tags(), ","), ws.Attachment(), len(o.Sockets.All()), o.State.Value))
	case "id":
		return ws.Send([]byte(ws.ID()))
	case "ids":
		all := o.Sockets.All()
		if arg != "" {
			all = o.Sockets.WithTag(arg)
		}
		ids := make([]string, len(all))
		for i, c := range all {
			ids[i] = c.ID()
		}
		return ws.Send([]byte(strings.Join(ids, ",")))
	case "lastauto":
		return ws.Send([]byte(strconv.FormatBool(!ws.LastAutoResponse().IsZero())))
	case "fail":
		ws.Send([]byte(arg))
		return errors.New("asked to fail")
	case "panic":
		ws.Send([]byte(arg))
		panic("asked to panic")
	case "auto":
		req, res, _ := strings.Cut(arg, " ")
		return o.Sockets.SetAutoResponse(req, res)
	case "close", "try-close", "close-send":
		code, reason, _ := strings.Cut(arg, " ")
		n, err := strconv.Atoi(code)
		if err != nil {
			return err
		}
		err = ws.Close(n, reason)
		switch cmd {
		case "try-close":
			p.report(err)
			return nil
		case "close-send":
			if err != nil {
				return err
			}
			p.report(ws.Close(n, reason))
			p.report(ws.Send([]byte("after")))
			return nil
		}
		return err
	default:
		return fmt.Errorf("unknown command %q", cmd)
	}
	return nil
}

// report hands err to Results, if set.
func (p *SocketProbe) report(err error) {
	if p.Results != nil {
		p.Results <- err
	}
}

// WebSocketClose records the close, once HoldClose lets it.
func (p *SocketProbe) WebSocketClose(_ context.Context, o *socketObject, ws *websocket.Conn, code int, reason string, clean bool) error {
	if p.HoldClose != nil {
		<-p.HoldClose
	}
	ev := SocketClose{ID: ws.ID(), Code: code, Reason: reason, Clean: clean, All: len(o.Sockets.All())}
	if p.CloseInClose {
		ev.CloseErr = ws.Close(1000, "closing too")
		ev.SendErr = ws.Send([]byte("after close"))
	}
	if p.Closed != nil {
		select {
		case p.Closed <- ev:
		default:
		}
	}
	return nil
}

// WebSocketError records the error.
func (p *SocketProbe) WebSocketError(_ context.Context, _ *socketObject, _ *websocket.Conn, err error) error {
	if p.Errors != nil {
		select {
		case p.Errors <- err:
		default:
		}
	}
	return nil
}
