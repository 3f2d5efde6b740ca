package server_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/durablego/durable/examples/counter"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durableclient"
	"github.com/durablego/durable/server"
)

// A server hosting one class on a loopback port. Its objects are called in
// process through the namespace Register returns, and over the network
// through the generated client, which needs none of the server's packages:
// both reach the same object.
func Example() {
	dir, _ := os.MkdirTemp("", "durable-example")
	defer os.RemoveAll(dir)
	srv, err := server.New(server.WithDataDir(dir))
	if err != nil {
		panic(err)
	}
	counters, err := counterv1durable.RegisterCounter(srv, counter.Counter{})
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())

	ctx := context.Background()
	local := counters.Get(counters.IDFromName("user-123"))
	res, err := local.Increment(ctx, &counterv1.IncrementRequest{Amount: 5})
	fmt.Println("in process:", res.GetValue(), err)

	remote := counterv1durableclient.NewCounterClient(http.DefaultClient, "http://"+ln.Addr().String())
	res, err = remote.Get(remote.IDFromName("user-123")).Increment(ctx, &counterv1.IncrementRequest{Amount: 2})
	fmt.Println("over Connect:", res.GetValue(), err)
	// Output:
	// in process: 5 <nil>
	// over Connect: 7 <nil>
}

// An object whose class has a Fetch hook answers plain HTTP, from curl or
// a browser, at /objects/{class}/{name}/ followed by its own path: here
// POST /increment of examples/counter.
func Example_fetch() {
	dir, _ := os.MkdirTemp("", "durable-example")
	defer os.RemoveAll(dir)
	srv, err := server.New(server.WithDataDir(dir))
	if err != nil {
		panic(err)
	}
	if _, err := counterv1durable.RegisterCounter(srv, counter.Counter{}); err != nil {
		panic(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())

	url := "http://" + ln.Addr().String() + "/objects/" + counterv1durable.CounterURLSegment + "/user-123/increment"
	res, err := http.Post(url, "application/json", strings.NewReader(`{"amount": 3}`))
	if err != nil {
		panic(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	fmt.Println(res.Status, string(body))
	// Output:
	// 200 OK {"value":3}
}

// A program that serves Durable from its own http.Server, beside its own
// routes, sets the timeouts Serve would set, and enables h2c for gRPC
// clients.
func ExampleServer_Handler() {
	dir, _ := os.MkdirTemp("", "durable-example")
	defer os.RemoveAll(dir)
	srv, err := server.New(server.WithDataDir(dir))
	if err != nil {
		panic(err)
	}
	defer srv.Shutdown(context.Background()) // runs after hs.Shutdown: the objects outlive the requests
	if _, err := counterv1durable.RegisterCounter(srv, counter.Counter{}); err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", srv.Handler())
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "v1.2.3") })
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute, Protocols: new(http.Protocols)}
	hs.Protocols.SetHTTP1(true)
	hs.Protocols.SetUnencryptedHTTP2(true)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go hs.Serve(ln)
	defer hs.Shutdown(context.Background())
	url := "http://" + ln.Addr().String()

	remote := counterv1durableclient.NewCounterClient(http.DefaultClient, url)
	res, err := remote.Get(remote.IDFromName("user-123")).Increment(context.Background(), &counterv1.IncrementRequest{})
	fmt.Println(res.GetValue(), err)
	version, err := http.Get(url + "/version")
	if err != nil {
		panic(err)
	}
	defer version.Body.Close()
	body, _ := io.ReadAll(version.Body)
	fmt.Println(string(body))
	// Output:
	// 1 <nil>
	// v1.2.3
}
