package durable_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"connectrpc.com/connect"

	"github.com/durablego/durable"
	"github.com/durablego/durable/examples/counter"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durableclient"
	"github.com/durablego/durable/server"
)

// serveCounters serves impl as the Counter class on a loopback port, as
// package server's example shows, and returns its in-process namespace, its
// URL and how to stop it.
func serveCounters(impl counterv1durable.Counter) (*counterv1durable.CounterNamespace, string, func()) {
	dir, _ := os.MkdirTemp("", "durable-example")
	srv, err := server.New(server.WithDataDir(dir))
	if err != nil {
		panic(err)
	}
	counters, err := counterv1durable.RegisterCounter(srv, impl)
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go srv.Serve(ln)
	return counters, "http://" + ln.Addr().String(), func() {
		srv.Shutdown(context.Background())
		os.RemoveAll(dir)
	}
}

// The IDs a class's namespace mints: the same name gives the same ID every
// time (and on every server sharing the secret), a unique ID is new every
// time, and an ID's string parses back to an equal ID only in the namespace
// that minted it.
func ExampleID() {
	counters, _, stop := serveCounters(counter.Counter{})
	defer stop()

	a, b := counters.IDFromName("user-123"), counters.IDFromName("user-123")
	fmt.Println(a.Equal(b), a.Name(), len(a.String()))

	u := counters.NewUniqueID()
	fmt.Println(u.Equal(counters.NewUniqueID()), u.Named())

	parsed, err := counters.IDFromString(a.String()) // as sent by a client
	fmt.Println(parsed.Equal(a), parsed.Named(), err)

	_, err = counters.IDFromString(strings.Repeat("0", durable.IDLen)) // well-formed, not minted here
	fmt.Println(errors.Is(err, durable.ErrIDNamespace))
	// Output:
	// true user-123 64
	// false false
	// true false <nil>
	// true
}

// Durable's errors match its sentinels with errors.Is, in process and, once
// the client has restored them, over the network; KindOf names the kind,
// which gives the Connect code and the HTTP status.
func ExampleKindOf() {
	counters, url, stop := serveCounters(counter.Counter{})
	defer stop()

	_, err := counters.IDFromString("user-123") // a name, not an ID
	fmt.Println(errors.Is(err, durable.ErrInvalidID), errors.Is(err, durable.ErrIDLength), durable.KindOf(err))

	// A remote client checks only an ID's syntax; the server checks its MAC.
	remote := counterv1durableclient.NewCounterClient(http.DefaultClient, url)
	forged, _ := remote.IDFromString(strings.Repeat("0", durable.IDLen))
	_, err = remote.Get(forged).GetValue(context.Background(), &counterv1.GetValueRequest{})
	kind := durable.KindOf(err)
	fmt.Println(errors.Is(err, durable.ErrIDNamespace), kind, kind.Code(), kind.HTTPStatus())
	// Output:
	// true true id-length
	// true id-namespace invalid_argument 400
}

// errCapped is the error of cappedCounter's Increment.
var errCapped = errors.New("the counter is at its cap")

// cappedCounter is a Counter whose Increment refuses to pass 10.
type cappedCounter struct{ counter.Counter }

func (c cappedCounter) Increment(ctx context.Context, o *counterv1durable.CounterObject, req *counterv1.IncrementRequest) (*counterv1.IncrementResponse, error) {
	if o.State.Value+req.GetAmount() > 10 {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errCapped)
	}
	return c.Counter.Increment(ctx, o, req)
}

// A method that fails is an *RPCError, naming the class, the method and
// the code. In process it wraps the method's own error; over the network
// the code and the message travel, not the Go error.
func ExampleRPCError() {
	counters, url, stop := serveCounters(cappedCounter{})
	defer stop()
	remote := counterv1durableclient.NewCounterClient(http.DefaultClient, url)

	for _, stub := range []counterv1durable.CounterStub{
		counters.Get(counters.IDFromName("c")),
		remote.Get(remote.IDFromName("c")),
	} {
		_, err := stub.Increment(context.Background(), &counterv1.IncrementRequest{Amount: 11})
		var rpc *durable.RPCError
		if errors.As(err, &rpc) {
			fmt.Println(rpc.Class, rpc.Method, rpc.Code, rpc.Message, durable.KindOf(err), errors.Is(err, errCapped))
		}
	}
	// Output:
	// Counter Increment failed_precondition the counter is at its cap method true
	// Counter Increment failed_precondition the counter is at its cap method false
}
