package servertest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"

	"connectrpc.com/grpchealth"

	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
)

// From the moment Shutdown starts, health checks answer NOT_SERVING, for
// the server and for each service, while calls in flight still finish.
func testHealthNotServingFromShutdown(t *testing.T, d Deployment) {
	e := newEnv(t, d)
	// The handler on an http.Server of the test's own, which Shutdown does
	// not close: the health checks reach the server while it drains.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	hs := &http.Server{Handler: e.srv.Handler(), Protocols: &p}
	go hs.Serve(ln)
	defer hs.Close()
	health := grpchealth.NewClient(h2cClient(), "http://"+ln.Addr().String())
	status := func(service string) grpchealth.Status {
		t.Helper()
		res, err := health.Check(context.Background(), &grpchealth.CheckRequest{Service: service})
		if err != nil {
			t.Fatal(err)
		}
		return res.Status
	}
	const service = "durabletest.v1.Probe"
	if s := status(""); s != grpchealth.StatusServing {
		t.Fatalf("before Shutdown: %v", s)
	}

	// A call that blocks keeps Shutdown draining.
	blocked := make(chan error, 1)
	go func() {
		_, err := e.probes.Get(e.probes.IDFromName("b")).Block(context.Background(), &durabletestv1.BlockRequest{})
		blocked <- err
	}()
	<-e.probe.Entered
	e.closed = true
	shut := make(chan error, 1)
	go func() { shut <- e.srv.Shutdown(context.Background()) }()
	eventually(t, "health says NOT_SERVING", func() bool { return status("") == grpchealth.StatusNotServing })
	if s := status(service); s != grpchealth.StatusNotServing {
		t.Errorf("service %s while draining: %v", service, s)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned while a call was running: %v", err)
	default:
	}
	close(e.probe.Gate)
	if err := <-blocked; err != nil {
		t.Errorf("the call in flight: %v", err)
	}
	if err := <-shut; err != nil && !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Shutdown: %v", err)
	}
}
