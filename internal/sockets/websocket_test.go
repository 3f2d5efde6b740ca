package sockets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
)

// hubEnv is a Hub serving one object's sockets on a real HTTP server on
// 127.0.0.1, without the durable server: every request to it is accepted
// and served, and the hub's events are recorded in order.
type hubEnv struct {
	hub    *Hub
	key    Key
	url    string
	conns  chan *Conn // the server end of each accepted socket, in order
	events chan Event // every event the hub dispatched, in order
	// beforeServe, if set, runs on each accepted socket before Serve, as
	// the sends of a Fetch before its upgrade.
	beforeServe func(*Conn)
}

func newHubEnv(t *testing.T, cfg HubConfig) *hubEnv {
	t.Helper()
	e := &hubEnv{key: Key{Class: "T"}, conns: make(chan *Conn, 16), events: make(chan Event, 1024)}
	cfg.Dispatch = func(_ Key, ev Event) error {
		e.events <- ev
		return nil
	}
	e.hub = NewHub(cfg)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := e.hub.Sockets(e.key).Accept(acceptWriter{w}, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if e.beforeServe != nil {
			e.beforeServe(c)
		}
		e.conns <- c
		e.hub.Serve(w, r, c)
	}))
	e.url = "ws" + strings.TrimPrefix(srv.URL, "http")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.hub.Close(ctx); err != nil {
			t.Errorf("Hub.Close: %v", err)
		}
		srv.Close()
	})
	return e
}

// acceptWriter lets Accept upgrade: the test's handler serves the socket
// itself, right after.
type acceptWriter struct{ http.ResponseWriter }

func (acceptWriter) UpgradeWebSocket(*Conn) bool { return true }

// dial opens a socket and returns its client end and its server end.
func (e *hubEnv) dial(t *testing.T) (*gorilla.Conn, *Conn) {
	t.Helper()
	client, _, err := gorilla.DefaultDialer.Dial(e.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	select {
	case c := <-e.conns:
		return client, c
	case <-time.After(10 * time.Second):
		t.Fatal("the socket was not accepted")
		return nil, nil
	}
}

// next returns the hub's next event, failing after a deadline.
func (e *hubEnv) next(t *testing.T) Event {
	t.Helper()
	select {
	case ev := <-e.events:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
		return Event{}
	}
}

func read(t *testing.T, c *gorilla.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// isSlow reports whether c was closed as a slow client.
func isSlow(c *Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slow != nil
}

// waitDrained waits until nothing waits to be written to c: melody calls
// onSent after the client may already have the message.
func waitDrained(t *testing.T, c *Conn) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.BufferedAmount() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("BufferedAmount stays %d", c.BufferedAmount())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSlowReaderBoundedInBytes: a client that never reads gets big
// messages until what waits for it would pass the bound. What the server
// holds for it (BufferedAmount, which counts melody's buffer and the
// backlog) never passes the bound; then the hub reports ErrSlowClient,
// drops the backlog, and closes the socket with 1013 once the client
// goes. Another socket of the object is unaffected.
func TestSlowReaderBoundedInBytes(t *testing.T) {
	const bound = 256 << 10
	e := newHubEnv(t, HubConfig{MaxBuffer: bound})
	slowClient, slow := e.dial(t)
	fastClient, fast := e.dial(t)

	// 32 KiB messages: the kernel's buffers for the connection fill first
	// (a few MiB on loopback), then melody's 256 messages, then the
	// backlog; 4,096 of them (128 MiB) is far past all of it.
	msg := bytes.Repeat([]byte("x"), 32<<10)
	var peak int64
	sent := 0
	for ; !isSlow(slow); sent++ {
		if sent == 4096 {
			t.Fatalf("not a slow client after %d messages; %d bytes buffered", sent, slow.BufferedAmount())
		}
		if err := slow.Send(msg); err != nil {
			t.Fatalf("send %d: %v", sent, err)
		}
		peak = max(peak, slow.BufferedAmount())
	}
	if peak > bound {
		t.Fatalf("BufferedAmount reached %d, over the bound of %d", peak, bound)
	}
	if peak < bound-cost(msg) {
		t.Fatalf("BufferedAmount peaked at %d: the bound of %d was not what stopped it", peak, bound)
	}
	slow.mu.Lock()
	backlog := len(slow.backlog)
	slow.mu.Unlock()
	if backlog > 1 { // the close frame, if melody's buffer is full
		t.Fatalf("%d messages still in the backlog of a slow client", backlog)
	}
	if got := slow.BufferedAmount(); got > 256*cost(msg) {
		t.Fatalf("after the close, %d bytes buffered: more than melody's 256 messages", got)
	}
	if ev := e.next(t); ev.Kind != EventError || ev.Conn != slow || !errors.Is(ev.Err, ErrSlowClient) {
		t.Fatalf("first event %+v, want ErrSlowClient for the slow socket", ev)
	}
	// Nothing more is queued for it.
	before := slow.BufferedAmount()
	slow.Send(msg)
	if got := slow.BufferedAmount(); got > before {
		t.Fatalf("a send after the close was queued: %d bytes, then %d", before, got)
	}

	// The other socket has all it is sent.
	for i := range 3 {
		fast.Send([]byte(fmt.Sprint(i)))
		if got := read(t, fastClient); got != fmt.Sprint(i) {
			t.Fatalf("fast socket: %q, want %d", got, i)
		}
	}

	// The slow client goes; its close event says why the server closed it.
	slowClient.Close()
	ev := e.next(t)
	if ev.Kind != EventClose || ev.Conn != slow || ev.Code != 1013 || ev.Reason != "slow client" || ev.Clean {
		t.Fatalf("close event %+v, want 1013 slow client, unclean", ev)
	}
}

// TestBurstToReadingClient: a client that reads gets a burst of 10,000
// messages, far more than melody's buffer of 256, sent faster than melody
// writes them: none is dropped, they arrive in order, and once they are
// written nothing counts as buffered.
func TestBurstToReadingClient(t *testing.T) {
	e := newHubEnv(t, HubConfig{})
	client, c := e.dial(t)
	const n = 10_000
	go func() {
		for i := range n {
			c.Send(fmt.Appendf(nil, "%d", i))
		}
	}()
	for i := range n {
		if got := read(t, client); got != fmt.Sprint(i) {
			t.Fatalf("message %d: got %q", i, got)
		}
	}
	waitDrained(t, c)
	select {
	case ev := <-e.events:
		t.Fatalf("event %+v during a burst to a client that reads", ev)
	default:
	}
}

// TestLoneMessageOverBound: a message longer than the bound is sent when
// nothing else waits for the socket.
func TestLoneMessageOverBound(t *testing.T) {
	e := newHubEnv(t, HubConfig{MaxBuffer: 1024})
	client, c := e.dial(t)
	big := strings.Repeat("b", 64<<10)
	for range 2 {
		c.Send([]byte(big))
		if got := read(t, client); got != big {
			t.Fatalf("got %d bytes, want %d", len(got), len(big))
		}
		waitDrained(t, c)
	}
	if isSlow(c) {
		t.Fatal("a lone message over the bound made a slow client")
	}
}

// TestSlowBeforeUpgrade: what is sent to a socket before its upgrade
// counts against the bound too; past it, the client's first frame is
// the close 1013, and nothing of what was sent.
func TestSlowBeforeUpgrade(t *testing.T) {
	e := newHubEnv(t, HubConfig{MaxBuffer: 1024})
	e.beforeServe = func(c *Conn) {
		for range 3 {
			c.Send(bytes.Repeat([]byte("p"), 600))
		}
	}
	client, c := e.dial(t)
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := client.ReadMessage()
	var ce *gorilla.CloseError
	if !errors.As(err, &ce) || ce.Code != 1013 || ce.Text != "slow client" {
		t.Fatalf("first frame: %q, %v; want close 1013 slow client", b, err)
	}
	if ev := e.next(t); ev.Kind != EventError || !errors.Is(ev.Err, ErrSlowClient) {
		t.Fatalf("first event %+v, want ErrSlowClient", ev)
	}
	// Clean if the client's answer to the close frame (1013, no reason)
	// arrived before the server closed the connection, unclean if not.
	if ev := e.next(t); ev.Kind != EventClose || ev.Conn != c || ev.Code != 1013 || !ev.Clean && ev.Reason != "slow client" {
		t.Fatalf("close event %+v, want 1013", ev)
	}
	if got := c.BufferedAmount(); got != 0 {
		t.Fatalf("%d bytes buffered after the pre-upgrade sends were dropped", got)
	}
}
