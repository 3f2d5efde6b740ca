package server_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/grpchealth"

	"github.com/durablego/durable/examples/counter"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/server"
)

// closeRecorder remembers whether a response asked to close its
// connection.
type closeRecorder struct {
	http.RoundTripper
	closed atomic.Bool
}

func (c *closeRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := c.RoundTripper.RoundTrip(r)
	if err == nil && res.Close {
		c.closed.Store(true)
	}
	return res, err
}

// During WithDrainGrace's grace the server answers NOT_SERVING and still
// serves calls, each HTTP/1 response closing its keep-alive connection.
func TestDrainGraceServesAndClosesKeepAlive(t *testing.T) {
	// Long enough for the few calls below, on a loaded machine.
	const grace = 5 * time.Second
	srv, err := server.New(server.WithDataDir(t.TempDir()), server.WithDrainGrace(grace),
		server.WithLogger(slog.New(slog.NewTextHandler(t.Output(), nil))))
	if err != nil {
		t.Fatal(err)
	}
	_, err = counterv1durable.RegisterCounter(srv, counter.Counter{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	// One HTTP/1.1 keep-alive connection, for the calls and the health
	// checks alike.
	rec := &closeRecorder{RoundTripper: &http.Transport{MaxConnsPerHost: 1}}
	hc := &http.Client{Transport: rec}
	stub := counterv1durable.NewCounterClient(hc, url)
	obj := stub.Get(stub.IDFromName("drain"))
	if _, err := obj.Increment(t.Context(), &counterv1.IncrementRequest{Amount: 1}); err != nil {
		t.Fatal(err)
	}
	if open, _ := server.Connections(srv); open != 1 {
		t.Fatalf("%d connections open before Shutdown, want the client's one", open)
	}
	if rec.closed.Load() {
		t.Fatal("a response closed the connection before Shutdown")
	}

	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	health := grpchealth.NewClient(hc, url)
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := health.Check(t.Context(), &grpchealth.CheckRequest{})
		if err != nil {
			t.Fatalf("health check in the grace: %v", err)
		}
		if res.Status == grpchealth.StatusNotServing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("health never said NOT_SERVING")
		}
	}
	// The health check that saw NOT_SERVING closed its connection; so
	// does a call in the grace, which is served as usual.
	if !rec.closed.Load() {
		t.Error("a response in the grace did not close its connection")
	}
	rec.closed.Store(false)
	res, err := obj.Increment(t.Context(), &counterv1.IncrementRequest{Amount: 1})
	if err != nil {
		t.Fatalf("a call in the grace: %v", err)
	}
	if res.GetValue() != 2 {
		t.Errorf("the call in the grace returned %d, want 2", res.GetValue())
	}
	if !rec.closed.Load() {
		t.Error("the call's response in the grace did not close its connection")
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
}
