package client_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"

	"connectrpc.com/connect"

	"github.com/durablego/durable/client"
	"github.com/durablego/durable/examples/counter"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durableclient"
	"github.com/durablego/durable/server"
)

// startCounters serves the Counter class on a loopback port, as another
// process would, and returns its URL and how to stop it.
func startCounters(opts ...server.Option) (url string, stop func()) {
	dir, _ := os.MkdirTemp("", "durable-example")
	srv, err := server.New(append([]server.Option{server.WithDataDir(dir)}, opts...)...)
	if err != nil {
		panic(err)
	}
	if _, err := counterv1durable.RegisterCounter(srv, counter.Counter{}); err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() {
		srv.Shutdown(context.Background())
		os.RemoveAll(dir)
	}
}

// A program that only calls objects imports the generated client package,
// which links none of the server. An object is addressed by name, or by a
// unique ID the server mints: its string can be kept (in a database, a URL)
// and parsed back later.
func Example() {
	url, stop := startCounters()
	defer stop()
	ctx := context.Background()
	counters := counterv1durableclient.NewCounterClient(http.DefaultClient, url)

	byName := counters.Get(counters.IDFromName("user-123"))
	res, err := byName.Increment(ctx, &counterv1.IncrementRequest{Amount: 2})
	fmt.Println(res.GetValue(), err)

	id, err := counters.NewUniqueID(ctx) // asks the server
	if err != nil {
		panic(err)
	}
	kept := id.String()
	again, _ := counters.IDFromString(kept)
	counters.Get(id).Increment(ctx, &counterv1.IncrementRequest{Amount: 40})
	got, err := counters.Get(again).GetValue(ctx, &counterv1.GetValueRequest{})
	fmt.Println(got.GetValue(), err)
	// Output:
	// 2 <nil>
	// 40 <nil>
}

// Without the servers' secret, a client's IDs from names carry only the
// name, which the server resolves on each call (or once, with
// ResolveName). With it, the client derives the same IDs as the servers
// itself, and mints and verifies IDs without asking them.
func ExampleWithSecret() {
	secret := []byte("32 random bytes, shared privately") // from a secret store, in production
	url, stop := startCounters(server.WithSecret(secret))
	defer stop()

	plain := counterv1durableclient.NewCounterClient(http.DefaultClient, url)
	keyed := counterv1durableclient.NewCounterClient(http.DefaultClient, url, client.WithSecret(secret))
	byName := plain.IDFromName("user-123")
	derived := keyed.IDFromName("user-123")
	fmt.Println(byName.Resolved(), derived.Resolved(), byName.Equal(derived))

	resolved, err := plain.ResolveName(context.Background(), "user-123") // asks the server
	fmt.Println(resolved.String() == derived.String(), err)

	_, err = keyed.IDFromString(strings.Repeat("0", 64)) // refused before any request
	fmt.Println(err != nil)
	// Output:
	// false true true
	// true <nil>
	// true
}

// The client speaks Connect by default; connect's own options choose gRPC
// (over HTTP/2, here without TLS) or gRPC-Web, and add interceptors.
func ExampleWithClientOptions() {
	url, stop := startCounters()
	defer stop()
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	h2c := &http.Client{Transport: &http.Transport{Protocols: &protocols}}
	defer h2c.CloseIdleConnections() // before stop, whose graceful shutdown would wait for this HTTP/2 connection

	counters := counterv1durableclient.NewCounterClient(h2c, url, client.WithClientOptions(connect.WithGRPC()))
	res, err := counters.Get(counters.IDFromName("user-123")).Increment(context.Background(), &counterv1.IncrementRequest{Amount: 3})
	fmt.Println(res.GetValue(), err)
	// Output:
	// 3 <nil>
}

// A stub's Fetch sends a plain HTTP request to the object's Fetch hook, at
// the path and query of the request's URL.
func ExampleFetch() {
	url, stop := startCounters()
	defer stop()
	counters := counterv1durableclient.NewCounterClient(http.DefaultClient, url)
	stub := counters.Get(counters.IDFromName("user-123"))

	req, _ := http.NewRequest(http.MethodPost, "/increment", strings.NewReader(`{"amount": 4}`))
	res, err := stub.Fetch(context.Background(), req)
	if err != nil {
		panic(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	fmt.Println(res.StatusCode, string(body))
	// Output:
	// 200 {"value":4}
}
