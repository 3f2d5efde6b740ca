package sockets

import (
	"errors"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
)

// TestValidCloseCode: the codes an endpoint may send, every other refused.
func TestValidCloseCode(t *testing.T) {
	valid := func(code int) bool {
		switch {
		case code == 1000, code >= 1001 && code <= 1003, code >= 1007 && code <= 1014, code >= 3000 && code <= 4999:
			return true
		}
		return false
	}
	for code := -1; code <= 70000; code++ {
		if got := validCloseCode(code); got != valid(code) {
			t.Fatalf("validCloseCode(%d) = %v", code, got)
		}
	}
}

// TestCloseUndoneWithItsCall: a Close inside a call that fails is undone
// with it: nothing was sent, and Send works again. In a call that
// commits, Send fails from the Close on, and the close frame goes out.
func TestCloseUndoneWithItsCall(t *testing.T) {
	e := newHubEnv(t, HubConfig{})
	client, c := e.dial(t)
	s := e.hub.Sockets(e.key)

	e.hub.Begin(s, "")
	if err := c.Close(4000, "bye"); err != nil {
		t.Fatal(err)
	}
	if err := c.Send([]byte("after")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close in the call = %v, want ErrClosed", err)
	}
	e.hub.End(s, false)
	if err := c.Send([]byte("open")); err != nil {
		t.Fatalf("Send after the failed call's Close = %v", err)
	}
	if got := read(t, client); got != "open" {
		t.Fatalf("got %q, want the message sent after the failed call", got)
	}

	e.hub.Begin(s, "")
	if err := c.Close(4001, "bye"); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(4002, "again"); err != nil {
		t.Fatalf("a second Close = %v, want nil", err)
	}
	e.hub.End(s, true).Commit()
	if err := c.Send([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after a committed Close = %v, want ErrClosed", err)
	}
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := client.ReadMessage()
	var ce *gorilla.CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 || ce.Text != "bye" {
		t.Fatalf("read %q, %v; want the first close frame, 4001 bye", b, err)
	}
}
