package servertest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"

	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/internal/probe"
	"github.com/durablego/durable/server"
	"github.com/durablego/durable/websocket"
)

// sockEnv is an env serving the SocketProbe class at /objects/socket-probe/.
type sockEnv struct {
	*env
	sp *probe.SocketProbe
	ns *server.Namespace[*durabletestv1.ProbeState]
}

func newSockEnv(t testing.TB, d Deployment, opts ...server.Option) *sockEnv {
	t.Helper()
	e := newEnv(t, d, opts...)
	sp := &probe.SocketProbe{Closed: make(chan probe.SocketClose, 64), Errors: make(chan error, 64)}
	ns, err := server.Register[*durabletestv1.ProbeState](e.srv, server.Class{Name: "SocketProbe", Segment: "socket-probe"}, sp)
	if err != nil {
		t.Fatal(err)
	}
	e.serve(t)
	return &sockEnv{env: e, sp: sp, ns: ns}
}

// dial opens a socket on the SocketProbe named name with the query q.
func (e *sockEnv) dial(t testing.TB, name, q string) *gorilla.Conn {
	t.Helper()
	c, res, err := e.tryDial(name, q)
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		t.Fatalf("dial %s?%s: %v (status %d)", name, q, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (e *sockEnv) tryDial(name, q string) (*gorilla.Conn, *http.Response, error) {
	return gorilla.DefaultDialer.Dial(e.wsURL(name, q), nil)
}

// wsURL is the WebSocket URL of the SocketProbe named name, with the query q.
func (e *sockEnv) wsURL(name, q string) string {
	return "ws" + strings.TrimPrefix(e.url, "http") + "/objects/socket-probe/" + url.PathEscape(name) + "/?" + q
}

// nextClose waits for the next WebSocketClose call, failing after a
// deadline.
func (e *sockEnv) nextClose(t testing.TB) probe.SocketClose {
	t.Helper()
	select {
	case ev := <-e.sp.Closed:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no close event")
		return probe.SocketClose{}
	}
}

func send(t testing.TB, c *gorilla.Conn, text string) {
	t.Helper()
	if err := c.WriteMessage(gorilla.TextMessage, []byte(text)); err != nil {
		t.Fatalf("send %q: %v", text, err)
	}
}

func recv(t testing.TB, c *gorilla.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return string(b)
}

// quiet asserts that nothing arrived on c: the answer to an echo, which
// goes out after everything committed before it, comes first. (A read
// deadline would not do: a timed-out gorilla connection is broken.)
func quiet(t testing.TB, c *gorilla.Conn) {
	t.Helper()
	if got := ask(t, c, "echo --"); got != "--" {
		t.Fatalf("unexpected message %q", got)
	}
}

func ask(t testing.TB, c *gorilla.Conn, text string) string {
	t.Helper()
	send(t, c, text)
	return recv(t, c)
}

func testWebSocketTagsBroadcast(t *testing.T, d Deployment) {
	e := newSockEnv(t, d)
	a := e.dial(t, "room", "tags=red,all&hello=1")
	b := e.dial(t, "room", "tags=blue,all")
	c := e.dial(t, "room", "tags=red")
	if got := recv(t, a); got != "hello" {
		t.Fatalf("first message %q, want hello sent during Fetch", got)
	}
	if got := ask(t, a, "whoami"); got != "tags=red,all attach= all=3 value=1" {
		t.Fatalf("whoami = %q", got)
	}
	send(t, b, "tag red to-red")
	if recv(t, a) != "to-red" || recv(t, c) != "to-red" {
		t.Fatal("tagged broadcast not received")
	}
	quiet(t, b)
	send(t, a, "bcast from-a")
	if recv(t, b) != "from-a" || recv(t, c) != "from-a" {
		t.Fatal("broadcast not received")
	}
	quiet(t, a)

	// Not an upgrade: the Fetch answers 426.
	if status, _, _ := do(t, http.MethodGet, e.url+"/objects/socket-probe/room/", ""); status != http.StatusUpgradeRequired {
		t.Fatalf("plain GET: %d, want 426", status)
	}
	// Too many tags.
	if _, res, err := e.tryDial("room", "tags=1,2,3,4,5,6,7,8,9,10,11"); err == nil || res.StatusCode != 400 {
		t.Fatalf("11 tags: %v", err)
	}
}

// testWebSocketOrdering: a client that reads, but slower than the object
// answers it (1,000 echoes, answered by group commits of up to 256 calls
// at once), gets every answer, in order: a burst past melody's 256-message
// buffer waits for the socket instead of being dropped.
func testWebSocketOrdering(t *testing.T, d Deployment) {
	e := newSockEnv(t, d)
	c := e.dial(t, "order", "")
	const n = 1000
	go func() {
		for i := range n {
			if err := c.WriteMessage(gorilla.TextMessage, fmt.Appendf(nil, "echo %d", i)); err != nil {
				return
			}
		}
	}()
	for i := range n {
		if got := recv(t, c); got != fmt.Sprint(i) {
			t.Fatalf("message %d: got %q", i, got)
		}
	}
}

// testWebSocketAllOrder checks that All and WithTag list the open sockets
// in the order they were accepted, as sockets close and open.
func testWebSocketAllOrder(t *testing.T, d Deployment) {
	e := newSockEnv(t, d)
	var conns []*gorilla.Conn
	var ids []string
	open := func(q string) {
		c := e.dial(t, "ordered", q)
		conns = append(conns, c)
		ids = append(ids, ask(t, c, "id"))
	}
	closeAt := func(i int) {
		conns[i].WriteMessage(gorilla.CloseMessage, gorilla.FormatCloseMessage(gorilla.CloseNormalClosure, ""))
		if ev := e.nextClose(t); ev.ID != ids[i] {
			t.Fatalf("close event for %s, want %s", ev.ID, ids[i])
		}
		// The socket leaves All as its WebSocketClose call ends: the
		// next call of the object, queued behind it, finds it gone.
		if got := ask(t, conns[7], "ids"); strings.Contains(got, ids[i]) {
			t.Fatalf("All after %s's close call = %s, still listing it", ids[i], got)
		}
		ids[i] = ""
	}
	want := func(idx ...int) string {
		var out []string
		for _, i := range idx {
			out = append(out, ids[i])
		}
		return strings.Join(out, ",")
	}
	for i := range 8 {
		q := ""
		if i%2 == 0 {
			q = "tags=red"
		}
		open(q)
	}
	if got, w := ask(t, conns[7], "ids"), want(0, 1, 2, 3, 4, 5, 6, 7); got != w {
		t.Fatalf("All = %s, want %s", got, w)
	}
	closeAt(1)
	closeAt(4)
	closeAt(6)
	if got, w := ask(t, conns[7], "ids"), want(0, 2, 3, 5, 7); got != w {
		t.Fatalf("All after 3 closes = %s, want %s", got, w)
	}
	closeAt(0) // past half of the accepted ones: compacted
	closeAt(3)
	open("tags=red")
	open("")
	if got, w := ask(t, conns[9], "ids"), want(2, 5, 7, 8, 9); got != w {
		t.Fatalf("All after compaction = %s, want %s", got, w)
	}
	if got, w := ask(t, conns[9], "ids red"), want(2, 8); got != w {
		t.Fatalf("WithTag(red) = %s, want %s", got, w)
	}
}

func testWebSocketHibernation(t *testing.T, d Deployment) {
	e := newSockEnv(t, d, server.WithIdleTimeout(50*time.Millisecond))
	c := e.dial(t, "sleepy", "tags=x,y")
	if got := ask(t, c, "attach blob"); got != "ok" {
		t.Fatal(got)
	}
	eventually(t, "the object is evicted", func() bool { return e.srv.ActiveObjects() == 0 })
	if got := ask(t, c, "whoami"); got != "tags=x,y attach=blob all=1 value=2" {
		t.Fatalf("after hibernation: %q", got)
	}

	// Auto-response: answered without activating the object.
	send(t, c, "auto ping pong")
	eventually(t, "the object is evicted", func() bool { return e.srv.ActiveObjects() == 0 })
	if got := ask(t, c, "lastauto"); got != "false" {
		t.Fatal(got)
	}
	eventually(t, "the object is evicted", func() bool { return e.srv.ActiveObjects() == 0 })
	for range 3 {
		if got := ask(t, c, "ping"); got != "pong" {
			t.Fatalf("auto-response %q", got)
		}
	}
	if n := e.srv.ActiveObjects(); n != 0 {
		t.Fatalf("%d objects active after auto-responses", n)
	}
	if got := ask(t, c, "whoami"); !strings.HasSuffix(got, "value=5") {
		t.Fatalf("auto-responses reached the object: %q", got)
	}
	if got := ask(t, c, "lastauto"); got != "true" {
		t.Fatal("LastAutoResponse not set")
	}

	// A close reactivates the object too; the socket is still in All
	// during WebSocketClose, and gone after.
	eventually(t, "the object is evicted", func() bool { return e.srv.ActiveObjects() == 0 })
	c.WriteMessage(gorilla.CloseMessage, gorilla.FormatCloseMessage(gorilla.CloseNormalClosure, "done"))
	if ev := e.nextClose(t); ev.Code != 1000 || ev.Reason != "done" || !ev.Clean || ev.All != 1 {
		t.Fatalf("close event %+v", ev)
	}
	d2 := e.dial(t, "sleepy", "")
	if got := ask(t, d2, "whoami"); !strings.Contains(got, "all=1") {
		t.Fatalf("after the close: %q", got)
	}
}

func testWebSocketInProcessFetch(t *testing.T, d Deployment) {
	e := newSockEnv(t, d)
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	res, err := server.Fetch(t.Context(), e.ns, e.ns.IDFromName("x"), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("in-process upgrade: %d, want 426 (Accept fails with ErrNotUpgrade)", res.StatusCode)
	}
}

func testWebSocketLimits(t *testing.T, d Deployment) {
	e := newSockEnv(t, d, server.WithMaxSocketsPerObject(3), server.WithMaxMessageSize(1024))
	for range 3 {
		e.dial(t, "full", "")
	}
	_, res, err := e.tryDial("full", "")
	if err == nil || res == nil || res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("4th socket: %v", err)
	}
	e.dial(t, "other", "") // the limit is per object

	c := e.dial(t, "big", "")
	send(t, c, "echo "+strings.Repeat("x", 2000))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = c.ReadMessage()
	var ce *gorilla.CloseError
	if !errors.As(err, &ce) || ce.Code != gorilla.CloseMessageTooBig {
		t.Fatalf("oversized message: %v, want close 1009", err)
	}
	select {
	case err := <-e.sp.Errors:
		if !errors.Is(err, gorilla.ErrReadLimit) {
			t.Fatalf("error event %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no error event")
	}
	if ev := e.nextClose(t); ev.Code != 1009 {
		t.Fatalf("close event %+v", ev)
	}
}

func testWebSocketDisconnect(t *testing.T, d Deployment) {
	e := newSockEnv(t, d)
	a := e.dial(t, "d", "")
	b := e.dial(t, "d", "")
	if got := ask(t, b, "whoami"); !strings.Contains(got, "all=2") {
		t.Fatal(got)
	}
	a.UnderlyingConn().Close() // abrupt: no close frame
	if ev := e.nextClose(t); ev.Code != 1006 || ev.Clean {
		t.Fatalf("close event %+v, want 1006 unclean", ev)
	}
	eventually(t, "the socket leaves All", func() bool { return strings.Contains(ask(t, b, "whoami"), "all=1") })

	// A clean close from the client.
	b.WriteMessage(gorilla.CloseMessage, gorilla.FormatCloseMessage(4000, "bye"))
	if ev := e.nextClose(t); ev.Code != 4000 || ev.Reason != "bye" || !ev.Clean {
		t.Fatalf("close event %+v", ev)
	}

	// Closed by the object.
	c := e.dial(t, "d", "")
	send(t, c, "close 4001 done")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := c.ReadMessage()
	var ce *gorilla.CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 || ce.Text != "done" {
		t.Fatalf("closed by the object: %v", err)
	}
}

func testWebSocketFailingHook(t *testing.T, d Deployment) {
	e := newSockEnv(t, d)
	a := e.dial(t, "f", "")
	b := e.dial(t, "f", "")
	send(t, a, "fail never-sent")
	send(t, a, "panic never-sent")
	// The socket stays open; the failed calls' sends were dropped and
	// their changes undone (value counts only committed messages).
	if got := ask(t, a, "whoami"); got != "tags= attach= all=2 value=1" {
		t.Fatalf("after failures: %q", got)
	}
	quiet(t, b)
	if got := ask(t, b, "echo alive"); got != "alive" {
		t.Fatal(got)
	}
}

func testWebSocketShutdown(t *testing.T, d Deployment) {
	e := newSockEnv(t, d)
	c := e.dial(t, "s", "")
	ask(t, c, "echo up")
	done := make(chan struct{})
	go func() { e.shutdown(t); close(done) }()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := c.ReadMessage()
	var ce *gorilla.CloseError
	if !errors.As(err, &ce) || ce.Code != gorilla.CloseGoingAway {
		t.Fatalf("on shutdown: %v, want close 1001", err)
	}
	<-done
}

// testWebSocketOversizedInputs: tags, attachments and auto-responses over
// their limits are refused with the limit's error, and change nothing.
func testWebSocketOversizedInputs(t *testing.T, d Deployment) {
	e := newSockEnv(t, d)
	for _, q := range []string{"tags=a,,b", "tags=" + strings.Repeat("t", websocket.MaxTagLength+1)} {
		if _, res, err := e.tryDial("big", q); err == nil || res == nil || res.StatusCode != http.StatusBadRequest {
			t.Fatalf("dial with %.40s…: %v, want 400", q, err)
		}
	}
	longest := strings.Repeat("t", websocket.MaxTagLength)
	c := e.dial(t, "big", "tags="+longest)
	if got := ask(t, c, "attach kept"); got != "ok" {
		t.Fatalf("attach: %q", got)
	}
	// Over 16 KiB: SetAttachment fails, the call fails, the attachment stays.
	send(t, c, "attach "+strings.Repeat("a", websocket.MaxAttachment+1))
	if got := ask(t, c, "whoami"); !strings.HasPrefix(got, "tags="+longest+" attach=kept ") {
		t.Fatalf("after an oversized attachment: %.80q", got)
	}
	if got := ask(t, c, "attach "+strings.Repeat("a", websocket.MaxAttachment)); got != "ok" {
		t.Fatalf("a 16 KiB attachment: %q", got)
	}
	// An auto-response over 2,048 bytes is refused: "ping" then reaches the
	// object (an unknown command, answered with nothing) instead of being
	// answered by the hub.
	send(t, c, "auto ping "+strings.Repeat("p", websocket.MaxAutoResponse+1))
	send(t, c, "ping")
	if got := ask(t, c, "lastauto"); got != "false" {
		t.Fatalf("after an oversized auto-response, ping was answered: %.40q", got)
	}
}

// testWebSocketShutdownDeadline: a close hook that does not return holds
// Shutdown only until its context ends.
func testWebSocketShutdownDeadline(t *testing.T, d Deployment) {
	e := newSockEnv(t, d)
	hold := make(chan struct{})
	e.sp.HoldClose = hold
	c := e.dial(t, "held", "")
	ask(t, c, "echo up")
	e.closed = true // shut down here, not in the cleanup
	defer close(hold)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := e.srv.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "sockets still closing") {
		t.Fatalf("Shutdown: %v, want the deadline, with the sockets still closing", err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var ce *gorilla.CloseError
	if _, _, err := c.ReadMessage(); !errors.As(err, &ce) || ce.Code != gorilla.CloseGoingAway {
		t.Fatalf("client: %v, want close 1001", err)
	}
}

// testWebSocketSlowClient: a client that never reads, in a room where
// another socket broadcasts 32 KiB messages, passes the server's bound of
// 256 KiB: the object's WebSocketError hears of ErrSlowClient, and the
// socket's close event says 1013 "slow client". The socket that reads
// gets every broadcast, before and after.
func testWebSocketSlowClient(t *testing.T, d Deployment) {
	e := newSockEnv(t, d, server.WithMaxSocketBuffer(256<<10))
	stalled := e.dial(t, "room", "tags=all") // never reads
	reader := e.dial(t, "room", "tags=all")
	big := strings.Repeat("x", 32<<10)
	for i := 0; ; i++ {
		if i == 4096 { // 128 MiB: far past the kernel's buffers and the bound
			t.Fatal("no ErrSlowClient")
		}
		msg := fmt.Sprintf("%d %s", i, big)
		send(t, reader, "tag all "+msg)
		if got := recv(t, reader); got != msg {
			t.Fatalf("broadcast %d: got %.20q", i, got)
		}
		select {
		case err := <-e.sp.Errors:
			if !errors.Is(err, websocket.ErrSlowClient) {
				t.Fatalf("error event %v, want ErrSlowClient", err)
			}
		default:
			continue
		}
		break
	}
	if got := ask(t, reader, "echo alive"); got != "alive" {
		t.Fatalf("the reading socket after the slow one: %q", got)
	}
	stalled.UnderlyingConn().Close()
	if ev := e.nextClose(t); ev.Code != 1013 || ev.Reason != "slow client" || ev.Clean {
		t.Fatalf("close event %+v, want 1013 slow client, unclean", ev)
	}
	eventually(t, "the slow socket leaves All", func() bool { return strings.Contains(ask(t, reader, "whoami"), "all=1") })
}
