package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	durablev1 "github.com/durablego/durable/gen/durable/v1"
	"github.com/durablego/durable/gen/durable/v1/durablev1connect"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	"github.com/durablego/durable/server"
)

// idRequest is a Connect unary request over HTTP/1.1, keep-alive, to the ID
// service.
var idRequest = func() string {
	body := `{"class":"Probe","name":"x"}`
	return "POST " + durablev1connect.IDServiceIDFromNameProcedure + " HTTP/1.1\r\n" +
		"Host: test\r\nContent-Type: application/json\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
}()

// rawConn is a client connection spoken to by hand.
type rawConn struct {
	net.Conn
	r *bufio.Reader
}

func dialRaw(t testing.TB, url string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{Conn: c, r: bufio.NewReader(c)}
}

// roundTrip sends idRequest and reads its answer, which must be 200.
func (c *rawConn) roundTrip(t testing.TB) {
	t.Helper()
	if _, err := io.WriteString(c, idRequest); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(c.r, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d %s", res.StatusCode, body)
	}
}

// closedByServer reports whether the server closed c, waiting up to 10 s
// for it to: a read then fails with EOF or a reset rather than a timeout.
func (c *rawConn) closedByServer() bool {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.r.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestIdleKeepAliveClosed: a keep-alive connection that sends nothing after
// its first request is closed once the idle timeout passes, over HTTP/1.1
// and h2c.
func TestIdleKeepAliveClosed(t *testing.T) {
	e := newEnv(t, server.WithHTTPServer(func(hs *http.Server) { hs.IdleTimeout = 100 * time.Millisecond }))
	e.serve(t)
	c := dialRaw(t, e.url)
	c.roundTrip(t)
	if !c.closedByServer() {
		t.Fatal("the idle keep-alive connection is still open 10 s after its idle timeout of 100 ms")
	}
	eventually(t, "the server no longer counts it", func() bool { open, _ := server.Connections(e.srv); return open == 0 })
	// HTTP/2: the h2c connection, with no stream open, is closed too.
	ids := durablev1connect.NewIDServiceClient(h2cClient(), e.url, connect.WithGRPC())
	if _, err := ids.IDFromName(context.Background(), connect.NewRequest(&durablev1.IDFromNameRequest{Class: "Probe", Name: "x"})); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the idle h2c connection is closed", func() bool { open, _ := server.Connections(e.srv); return open == 0 })
}

// stalledCall posts the first bytes of a body and then nothing, over
// client; it returns the answer's Connect or gRPC code and message.
func stalledCall(t *testing.T, client *http.Client, url, contentType string, first []byte) (connect.Code, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+durablev1connect.IDServiceIDFromNameProcedure, &stallingBody{ctx: ctx, first: first})
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Te", "trailers")
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("the stalled call got no answer: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if st := res.Trailer.Get("Grpc-Status") + res.Header.Get("Grpc-Status"); st != "" {
		var code int
		fmt.Sscan(st, &code)
		return connect.Code(code), res.Trailer.Get("Grpc-Message") + res.Header.Get("Grpc-Message")
	}
	return connectCode(t, res.StatusCode, b)
}

// stallingBody yields first, then blocks until ctx ends.
type stallingBody struct {
	ctx   context.Context
	first []byte
}

func (b *stallingBody) Read(p []byte) (int, error) {
	if len(b.first) > 0 {
		n := copy(p, b.first)
		b.first = b.first[n:]
		return n, nil
	}
	<-b.ctx.Done()
	return 0, b.ctx.Err()
}

// connectCode decodes a Connect unary error answer.
func connectCode(t testing.TB, status int, body []byte) (connect.Code, string) {
	t.Helper()
	if status == http.StatusOK {
		return 0, ""
	}
	var wire struct{ Code, Message string }
	if err := json.Unmarshal(body, &wire); err != nil {
		t.Fatalf("HTTP %d %q: %v", status, body, err)
	}
	var c connect.Code
	if err := c.UnmarshalText([]byte(wire.Code)); err != nil {
		t.Fatalf("HTTP %d %q: %v", status, body, err)
	}
	return c, wire.Message
}

// shortTimeouts are body and idle timeouts of 100 ms.
func shortTimeouts() []server.Option {
	return []server.Option{
		server.WithBodyTimeout(100*time.Millisecond, 1024),
		server.WithHTTPServer(func(hs *http.Server) { hs.IdleTimeout = 100 * time.Millisecond }),
	}
}

// TestLongCallNotCut: a call that runs five times as long as the body and
// idle timeouts, over HTTP/1.1 and HTTP/2, is answered, and its connection
// is not counted idle meanwhile.
func TestLongCallNotCut(t *testing.T) {
	e := newEnv(t, shortTimeouts()...)
	e.serve(t)
	clients := []*durabletestv1durable.ProbeClient{
		durabletestv1durable.NewProbeClient(&http.Client{Transport: &http.Transport{}}, e.url),
		durabletestv1durable.NewProbeClient(h2cClient(), e.url),
	}
	errs := make(chan error, len(clients))
	for i, c := range clients {
		go func() {
			_, err := c.Get(c.IDFromName(fmt.Sprint("long-", i))).Block(context.Background(), &durabletestv1.BlockRequest{})
			errs <- err
		}()
	}
	for range clients {
		<-e.probe.Entered
	}
	// Both connections, HTTP/1.1 and h2c, count as busy: neither would be
	// closed to make room for another.
	eventually(t, "both connections are counted busy", func() bool {
		open, idle := server.Connections(e.srv)
		return open == 2 && idle == 0
	})
	time.Sleep(500 * time.Millisecond) // the calls run past every timeout
	close(e.probe.Gate)
	for range clients {
		if err := <-errs; err != nil {
			t.Errorf("a long call: %v", err)
		}
	}
}

// TestWebSocketOutlivesTimeouts: a WebSocket idle for five times the body,
// idle and header timeouts stays open and answers; it counts as a
// connection until it closes.
func TestWebSocketOutlivesTimeouts(t *testing.T) {
	e := newSockEnv(t, append(shortTimeouts(), server.WithHTTPServer(func(hs *http.Server) {
		hs.ReadHeaderTimeout = 100 * time.Millisecond
	}))...)
	c := e.dial(t, "idle", "")
	if got := ask(t, c, "echo first"); got != "first" {
		t.Fatalf("echo: %q", got)
	}
	time.Sleep(500 * time.Millisecond) // the socket idles past every timeout
	if got := ask(t, c, "echo later"); got != "later" {
		t.Fatalf("echo after idling: %q", got)
	}
	// The socket, hijacked from the http.Server, still counts against the
	// connection cap until it closes.
	if open, _ := server.Connections(e.srv); open != 1 {
		t.Fatalf("%d connections counted with one WebSocket open", open)
	}
	c.Close()
	eventually(t, "the closed WebSocket is no longer counted", func() bool { open, _ := server.Connections(e.srv); return open == 0 })
}

// TestConnectionCapClosesIdle: with the cap reached by idle connections
// (some keep-alive, the oldest never sent a request), a new client is
// served, and the connections closed to make room are the oldest idle.
func TestConnectionCapClosesIdle(t *testing.T) {
	const limit = 50
	e := newEnv(t, server.WithMaxConnections(limit))
	e.serve(t)
	conns := make([]*rawConn, limit)
	for i := range conns {
		conns[i] = dialRaw(t, e.url)
		if i >= 10 { // 0 to 9 never send a request
			conns[i].roundTrip(t)
		}
	}
	eventually(t, "every connection is counted idle", func() bool {
		open, idle := server.Connections(e.srv)
		return open == limit && idle == limit
	})
	for i := range 2 {
		ids := durablev1connect.NewIDServiceClient(&http.Client{Transport: &http.Transport{}}, e.url)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := ids.IDFromName(ctx, connect.NewRequest(&durablev1.IDFromNameRequest{Class: "Counter", Name: "new"}))
		cancel()
		if err != nil {
			t.Fatalf("a new client at the cap: %v", err)
		}
		if !conns[i].closedByServer() {
			t.Fatalf("connection %d, the oldest idle, is still open", i)
		}
	}
	if open, _ := server.Connections(e.srv); open > limit {
		t.Fatalf("%d connections open, over the cap of %d", open, limit)
	}
	// The others are open and served.
	conns[limit-1].roundTrip(t)
}

// TestConnectionCapDefault: the default cap leaves half the descriptor
// limit (at least 256) to storage, and the default budget of SQL files
// fits in what it leaves.
func TestConnectionCapDefault(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Skip(err)
	}
	e := newEnv(t)
	if got, want := server.StorageDescriptors(e.srv), max(256, int(min(rl.Cur, 1<<20))/2); got != want {
		t.Errorf("descriptors left to storage: %d, want %d of the limit %d", got, want, rl.Cur)
	}
	if files := e.srv.MaxOpenSQLFiles(); files < 1 || server.DescriptorsPerSQLFile*files > server.StorageDescriptors(e.srv) {
		t.Errorf("the default budget of %d SQL files (%d descriptors each) does not fit in the %d descriptors left to storage", files, server.DescriptorsPerSQLFile, server.StorageDescriptors(e.srv))
	}
	e2 := newEnv(t, server.WithDescriptorReserve(1000))
	if got := server.StorageDescriptors(e2.srv); got != 1000 && int(rl.Cur) >= 1016 {
		t.Errorf("descriptors left to storage with a reserve of 1000: %d", got)
	}
}
