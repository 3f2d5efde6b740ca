package servertest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	durablev1 "github.com/durablego/durable/gen/durable/v1"
	"github.com/durablego/durable/gen/durable/v1/durablev1connect"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	"github.com/durablego/durable/server"
)

// testStalledBodyCut: a body that stops arriving is cut after the stall
// timeout, over HTTP/1.1 (Connect) and HTTP/2 (gRPC): the call fails with
// DeadlineExceeded, naming server.ErrBodyTooSlow.
func testStalledBodyCut(t *testing.T, d Deployment) {
	e := newEnv(t, d, server.WithBodyTimeout(200*time.Millisecond, 0))
	e.serve(t)
	code, msg := stalledCall(t, http.DefaultClient, e.url, "application/json", []byte(`{"class":"Cou`))
	if code != connect.CodeDeadlineExceeded || !strings.Contains(msg, server.ErrBodyTooSlow.Error()) {
		t.Errorf("Connect over HTTP/1.1: %v %q, want DeadlineExceeded for a stalled body", code, msg)
	}
	code, msg = stalledCall(t, h2cClient(), e.url, "application/grpc", []byte{0, 0, 0, 0, 100, 10, 3})
	if code != connect.CodeDeadlineExceeded || !strings.Contains(msg, "stalled") {
		t.Errorf("gRPC over h2c: %v %q, want DeadlineExceeded for a stalled body", code, msg)
	}
}

// testTrickledBodyCut: a body trickled a byte every 20 ms never stalls for
// the stall timeout of 300 ms, but is cut for its rate, far under the
// minimum of 1 KiB/s, long before it is complete.
func testTrickledBodyCut(t *testing.T, d Deployment) {
	e := newEnv(t, d, server.WithBodyTimeout(300*time.Millisecond, 1024))
	e.serve(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	const length = 10_000 // 200 s at this rate
	sent := make(chan int, 1)
	go func() {
		n := 0
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for ; n < length; n++ {
			if _, err := pw.Write([]byte{' '}); err != nil {
				break
			}
			<-tick.C
		}
		sent <- n
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url+durablev1connect.IDServiceIDFromNameProcedure, pr)
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = length
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("the trickled call got no answer: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if code, msg := connectCode(t, res.StatusCode, b); code != connect.CodeDeadlineExceeded {
		t.Errorf("%v %q, want DeadlineExceeded for a trickled body", code, msg)
	}
	pw.CloseWithError(errors.New("done"))
	if n := <-sent; n >= length {
		t.Errorf("the whole body was read: %d bytes", n)
	}
}

// testConnectionCapRefusesWhenBusy: with every connection running a call,
// a new connection is closed at once rather than left waiting; once the
// calls end, new clients are served.
func testConnectionCapRefusesWhenBusy(t *testing.T, d Deployment) {
	const limit = 4
	e := newEnv(t, d, server.WithMaxConnections(limit))
	e.serve(t)
	probes := durabletestv1durable.NewProbeClient(&http.Client{Transport: &http.Transport{}}, e.url)
	var wg sync.WaitGroup
	for i := range limit {
		wg.Go(func() {
			if _, err := probes.Get(probes.IDFromName(fmt.Sprint("busy-", i))).Block(context.Background(), &durabletestv1.BlockRequest{}); err != nil {
				t.Errorf("a blocked call: %v", err)
			}
		})
	}
	for range limit {
		<-e.probe.Entered
	}
	if c := dialRaw(t, e.url); !c.closedByServer() {
		t.Error("a connection past the cap, with none idle, was not closed")
	}
	close(e.probe.Gate)
	wg.Wait()
	ids := durablev1connect.NewIDServiceClient(&http.Client{Transport: &http.Transport{}}, e.url)
	if _, err := ids.IDFromName(context.Background(), connect.NewRequest(&durablev1.IDFromNameRequest{Class: "Counter", Name: "after"})); err != nil {
		t.Fatalf("a new client once the calls ended: %v", err)
	}
}

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

// closedByServer reports whether the server closed c, waiting up to 10 s
// for it to: a read then fails with EOF or a reset rather than a timeout.
func (c *rawConn) closedByServer() bool {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.r.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
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
