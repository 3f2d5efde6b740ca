package servertest

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"

	"github.com/durablego/durable/websocket"
)

// The WebSocket semantics a user ported from Cloudflare relies on (issue
// 13, items 13 and 14), over a real server and real clients.

// nextResult waits for the next error the probe reports on Results.
func (e *sockEnv) nextResult(t testing.TB) error {
	t.Helper()
	select {
	case err := <-e.sp.Results:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no result from the probe")
		return nil
	}
}

// readClose reads from c until its close frame, failing on a message.
func readClose(t testing.TB, c *gorilla.Conn) *gorilla.CloseError {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := c.ReadMessage()
	var ce *gorilla.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("read %q, %v; want a close frame", b, err)
	}
	return ce
}

// A code a close frame may not carry is refused, and nothing is sent: the
// socket stays open. A valid one goes out as given.
func testWebSocketCloseCodes(t *testing.T, d Deployment) {
	e := newSockEnv(t, d)
	e.sp.Results = make(chan error, 16)
	c := e.dial(t, "codes", "")
	for _, code := range []int{-1, 0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535} {
		send(t, c, fmt.Sprintf("try-close %d bye", code))
		if err := e.nextResult(t); !errors.Is(err, websocket.ErrInvalidCloseCode) {
			t.Fatalf("Close(%d) = %v, want ErrInvalidCloseCode", code, err)
		}
		quiet(t, c) // nothing was sent, the socket is open
	}
	// 1014 is valid too (websocket's own tests check it), but gorilla's
	// client, as of v1.5, fails a close frame that carries it.
	for _, code := range []int{1000, 1001, 1002, 1003, 1007, 1011, 1013, 3000, 4999} {
		c := e.dial(t, "codes", "")
		send(t, c, fmt.Sprintf("try-close %d bye", code))
		if err := e.nextResult(t); err != nil {
			t.Fatalf("Close(%d) = %v", code, err)
		}
		if ce := readClose(t, c); ce.Code != code || ce.Text != "bye" {
			t.Fatalf("Close(%d, bye) sent %d %q", code, ce.Code, ce.Text)
		}
	}
}

// After Close, in the same call, Send fails with ErrClosed and a second
// Close does nothing; only the close frame goes out.
func testWebSocketSendAfterClose(t *testing.T, d Deployment) {
	e := newSockEnv(t, d)
	e.sp.Results = make(chan error, 16)
	c := e.dial(t, "after", "")
	send(t, c, "close-send 4000 bye")
	if err := e.nextResult(t); err != nil {
		t.Fatalf("a second Close = %v, want nil", err)
	}
	if err := e.nextResult(t); !errors.Is(err, websocket.ErrClosed) {
		t.Fatalf("Send after Close = %v, want ErrClosed", err)
	}
	if ce := readClose(t, c); ce.Code != 4000 || ce.Text != "bye" {
		t.Fatalf("close frame %d %q, want 4000 bye", ce.Code, ce.Text)
	}
}

// Inside WebSocketClose, ws.Close is allowed (the handshake is complete:
// the client got the server's close frame) and ws.Send fails.
func testWebSocketCloseInsideCloseHook(t *testing.T, d Deployment) {
	e := newSockEnv(t, d)
	e.sp.CloseInClose = true
	c := e.dial(t, "hook", "")
	if err := c.WriteMessage(gorilla.CloseMessage, gorilla.FormatCloseMessage(4000, "bye")); err != nil {
		t.Fatal(err)
	}
	ev := e.nextClose(t)
	if ev.Code != 4000 || ev.Reason != "bye" || !ev.Clean {
		t.Fatalf("close event %+v, want 4000 bye clean", ev)
	}
	if ev.CloseErr != nil {
		t.Fatalf("ws.Close inside WebSocketClose = %v, want nil", ev.CloseErr)
	}
	if !errors.Is(ev.SendErr, websocket.ErrClosed) {
		t.Fatalf("ws.Send inside WebSocketClose = %v, want ErrClosed", ev.SendErr)
	}
	if ce := readClose(t, c); ce.Code != 4000 {
		t.Fatalf("the server answered the close with %d, want 4000", ce.Code)
	}
}

// A connection that ends without a close frame is 1006, unclean, with
// Cloudflare's reason; a close frame without a code is 1005, clean.
func testWebSocketDroppedAndCodelessClose(t *testing.T, d Deployment) {
	e := newSockEnv(t, d)
	c := e.dial(t, "dropped", "")
	quiet(t, c)
	c.UnderlyingConn().Close()
	ev := e.nextClose(t)
	if ev.Code != 1006 || ev.Reason != "WebSocket disconnected without sending Close frame." || ev.Clean {
		t.Fatalf("close event %+v, want 1006 with Cloudflare's reason, unclean", ev)
	}
	c = e.dial(t, "dropped", "")
	if err := c.WriteMessage(gorilla.CloseMessage, nil); err != nil {
		t.Fatal(err)
	}
	if ev := e.nextClose(t); ev.Code != 1005 || ev.Reason != "" || !ev.Clean {
		t.Fatalf("close event %+v, want 1005, no reason, clean", ev)
	}
}

// A close reason over the 123 bytes of a frame is cut at a character
// boundary, and invalid UTF-8 replaced: the client gets a valid frame.
func testWebSocketCloseReasonCut(t *testing.T, d Deployment) {
	e := newSockEnv(t, d)
	for _, tc := range []struct{ reason, want string }{
		{strings.Repeat("é", 100), strings.Repeat("é", 61)},
		{strings.Repeat("x", 122) + "é", strings.Repeat("x", 122)},
		{strings.Repeat("x", 200), strings.Repeat("x", 123)},
		{"a\xffb", "a\uFFFDb"},
	} {
		c := e.dial(t, "reason", "")
		send(t, c, "close 4000 "+tc.reason)
		if ce := readClose(t, c); ce.Code != 4000 || ce.Text != tc.want {
			t.Fatalf("close with %q: got %d %q, want 4000 %q", tc.reason, ce.Code, ce.Text, tc.want)
		}
	}
}

// Tags: a repeated one counts once and is listed once, in the order of
// first appearance; the length is counted in bytes.
func testWebSocketTagsDistinctAndInBytes(t *testing.T, d Deployment) {
	e := newSockEnv(t, d)
	tags := func(ts ...string) string { return "tags=" + url.QueryEscape(strings.Join(ts, ",")) }
	c := e.dial(t, "tags", tags("y", "x", "y", "x", "z"))
	if got := ask(t, c, "whoami"); !strings.HasPrefix(got, "tags=y,x,z ") {
		t.Fatalf("whoami = %q, want the tags y,x,z", got)
	}
	if got := ask(t, c, "ids y"); got == "" || strings.Contains(got, ",") {
		t.Fatalf("WithTag(y) = %q, want the one socket once", got)
	}
	ten := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	// Ten distinct tags, repeated: accepted.
	e.dial(t, "tags", tags(append(ten, ten...)...))
	// A 256-byte tag of 2-byte characters: accepted.
	e.dial(t, "tags", tags(strings.Repeat("é", 128)))
	for what, q := range map[string]string{
		"eleven distinct tags":    tags(append(ten, "k")...),
		"a 258-byte tag":          tags(strings.Repeat("é", 129)),
		"a 257-byte tag":          tags(strings.Repeat("x", 257)),
		"an empty tag (repeated)": tags("a", "", "a"),
	} {
		_, res, err := e.tryDial("tags", q)
		if err == nil || res == nil || res.StatusCode != http.StatusBadRequest {
			t.Fatalf("%s: %v, want 400", what, err)
		}
	}
}
