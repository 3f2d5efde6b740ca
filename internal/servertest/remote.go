package servertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/durablego/durable"
	"github.com/durablego/durable/client"
	"github.com/durablego/durable/examples/counter"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1connect"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1connect"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/server"
)

// protocols are the three wire protocols every remote test runs over.
var protocols = []struct {
	name string
	opts []connect.ClientOption
}{
	{"connect", nil},
	{"grpc", []connect.ClientOption{connect.WithGRPC()}},
	{"grpc-web", []connect.ClientOption{connect.WithGRPCWeb()}},
}

func testRemoteStubsOverEveryProtocol(t *testing.T, d Deployment) {
	e := newEnv(t, d)
	e.serve(t)
	ctx := context.Background()
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			counters := counterv1durable.NewCounterClient(h2cClient(), e.url, client.WithClientOptions(p.opts...))
			name := "remote-" + p.name
			var stub counterv1durable.CounterStub = counters.Get(counters.IDFromName(name))
			for i := int64(1); i <= 3; i++ {
				r, err := stub.Increment(ctx, &counterv1.IncrementRequest{Amount: 2})
				if err != nil || r.GetValue() != 2*i {
					t.Fatalf("increment %d: value %d, err %v", i, r.GetValue(), err)
				}
			}
			// The name-only remote ID and the in-process ID address the
			// same object.
			local, err := e.counters.Get(e.counters.IDFromName(name)).GetValue(ctx, &counterv1.GetValueRequest{})
			if err != nil || local.GetValue() != 6 {
				t.Fatalf("in process: value %d, err %v; want 6", local.GetValue(), err)
			}
			resolved, err := counters.ResolveName(ctx, name)
			if err != nil || resolved.String() != e.counters.IDFromName(name).String() {
				t.Fatalf("ResolveName = %v, %v; want %v", resolved, err, e.counters.IDFromName(name))
			}
			// Unique IDs minted by the server through the ID service.
			unique, err := counters.NewUniqueID(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.counters.IDFromString(unique.String()); err != nil {
				t.Fatalf("server does not accept the ID it minted remotely: %v", err)
			}
			r, err := counters.Get(unique).Decrement(ctx, &counterv1.DecrementRequest{})
			if err != nil || r.GetValue() != 0 {
				t.Fatalf("decrement of a fresh object: value %d, err %v", r.GetValue(), err)
			}
		})
	}
}

func testRemoteErrors(t *testing.T, d Deployment) {
	e := newEnv(t, d)
	e.serve(t)
	ctx := context.Background()
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			probes := durabletestv1durable.NewProbeClient(h2cClient(), e.url, client.WithClientOptions(p.opts...))
			stub := probes.Get(probes.IDFromName("err-" + p.name))

			_, err := stub.Add(ctx, &durabletestv1.AddRequest{Amount: 1, Fail: true, Code: int32(connect.CodeAborted)})
			var rpc *durable.RPCError
			if !errors.As(err, &rpc) || rpc.Class != "Probe" || rpc.Method != "Add" || rpc.Code != connect.CodeAborted || !strings.Contains(rpc.Message, "failing with code") {
				t.Fatalf("method error = %v (%+v), want RPCError Probe.Add Aborted", err, rpc)
			}
			_, err = stub.Add(ctx, &durabletestv1.AddRequest{Panic: true})
			if !errors.As(err, &rpc) || rpc.Code != connect.CodeInternal {
				t.Fatalf("panic = %v, want RPCError Internal", err)
			}

			bad, err := probes.IDFromString(strings.Repeat("ab", 32))
			if err != nil {
				t.Fatal(err) // syntax is fine; only the server can check the MAC
			}
			_, err = probes.Get(bad).Get(ctx, &durabletestv1.GetRequest{})
			if !errors.Is(err, durable.ErrInvalidID) || connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), durable.HeaderObjectID) {
				t.Fatalf("forged ID = %v, want InvalidArgument naming %s", err, durable.HeaderObjectID)
			}
			if _, err := probes.IDFromString("nothex"); !errors.Is(err, durable.ErrIDLength) {
				t.Fatalf("malformed ID accepted locally: %v", err)
			}

			counters := counterv1durable.NewCounterClient(h2cClient(), e.url, client.WithClientOptions(p.opts...))
			_, err = counters.Get(counters.IDFromName("x")).GetValue(ctx, &counterv1.GetValueRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := durabletestv1durable.NewProbeClient(h2cClient(), e.url+"/nowhere", client.WithClientOptions(p.opts...)).NewUniqueID(ctx); err == nil {
				t.Fatal("NewUniqueID against a wrong URL succeeded")
			}
		})
	}
}

func testRemoteIDHeaders(t *testing.T, d Deployment) {
	e := newEnv(t, d)
	e.serve(t)
	id := e.counters.NewUniqueID().String()
	cases := []struct {
		name    string
		headers map[string][]string
		want    string
	}{
		{"no header", nil, "missing header"},
		{"both headers", map[string][]string{durable.HeaderObjectName: {"a"}, durable.HeaderObjectID: {id}}, "exactly one"},
		{"two names", map[string][]string{durable.HeaderObjectName: {"a", "b"}}, "exactly one"},
		{"short ID", map[string][]string{durable.HeaderObjectID: {"abc"}}, "Durable-Object-Id"},
		{"uppercase ID", map[string][]string{durable.HeaderObjectID: {strings.ToUpper(id)}}, "lowercase"},
		{"ID of another class", map[string][]string{durable.HeaderObjectID: {e.probes.NewUniqueID().String()}}, "minted for class Probe"},
		{"malformed call chain", map[string][]string{durable.HeaderObjectName: {"a"}, durable.HeaderCallChain: {"garbage"}}, durable.HeaderCallChain},
	}
	rpc := counterv1connect.NewCounterClient(h2cClient(), e.url)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := connect.NewRequest(&counterv1.GetValueRequest{})
			for k, vs := range c.headers {
				for _, v := range vs {
					req.Header().Add(k, v)
				}
			}
			_, err := rpc.GetValue(context.Background(), req)
			if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want InvalidArgument mentioning %q", err, c.want)
			}
		})
	}
}

func testRemoteOverload(t *testing.T, d Deployment) {
	e := newEnv(t, d, server.WithMailboxSize(1))
	e.serve(t)
	ctx := context.Background()
	probes := durabletestv1durable.NewProbeClient(h2cClient(), e.url)
	stub := probes.Get(probes.IDFromName("busy"))
	blocked := make(chan error, 1)
	go func() {
		_, err := stub.Block(ctx, &durabletestv1.BlockRequest{})
		blocked <- err
	}()
	<-e.probe.Entered
	queued := make(chan error, 1)
	go func() {
		_, err := stub.Add(ctx, &durabletestv1.AddRequest{Amount: 1})
		queued <- err
	}()
	eventually(t, "one call is queued", func() bool { return e.srv.QueuedCalls("Probe", e.probes.IDFromName("busy")) == 1 })
	_, err := stub.Add(ctx, &durabletestv1.AddRequest{Amount: 1})
	if !errors.Is(err, durable.ErrOverloaded) || connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("error %v, want ErrOverloaded over the network", err)
	}
	e.probe.Gate <- struct{}{}
	if err := errors.Join(<-blocked, <-queued); err != nil {
		t.Fatal(err)
	}
}

// testReentrantChainAcrossTheNetwork has every hop go through the network,
// so only the Durable-Call-Chain header can reveal the cycle.
func testReentrantChainAcrossTheNetwork(t *testing.T, d Deployment) {
	e := newEnv(t, d)
	e.serve(t)
	probes := durabletestv1durable.NewProbeClient(h2cClient(), e.url, client.WithClientOptions(connect.WithGRPC()))
	e.probe.Peer = func(name string) durabletestv1durable.ProbeStub { return probes.Get(probes.IDFromName(name)) }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := probes.Get(probes.IDFromName("a")).Hop(ctx, &durabletestv1.HopRequest{Path: []string{"b", "c"}}); err != nil {
		t.Fatalf("A→B→C over the network: %v", err)
	}
	_, err := probes.Get(probes.IDFromName("a")).Hop(ctx, &durabletestv1.HopRequest{Path: []string{"b", "a"}})
	if !strings.Contains(fmt.Sprint(err), "reentrant") || connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("A→B→A over the network: %v, want a reentrant-call error", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the chain deadlocked until the deadline")
	}
}

// testGRPCClient calls through google.golang.org/grpc, gRPC proper, with the
// object's name in metadata, as a client in any language would.
func testGRPCClient(t *testing.T, d Deployment) {
	e := newEnv(t, d)
	e.serve(t)
	conn := grpcConn(t, e.url)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "durable-object-name", "grpc-counter")
	for i := int64(1); i <= 3; i++ {
		var res counterv1.IncrementResponse
		if err := conn.Invoke(ctx, counterv1connect.CounterIncrementProcedure, &counterv1.IncrementRequest{Amount: 10}, &res); err != nil {
			t.Fatal(err)
		}
		if res.GetValue() != 10*i {
			t.Fatalf("value %d, want %d", res.GetValue(), 10*i)
		}
	}
	var res counterv1.GetValueResponse
	err := conn.Invoke(context.Background(), counterv1connect.CounterGetValueProcedure, &counterv1.GetValueRequest{}, &res)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "Durable-Object-Name") {
		t.Fatalf("call without an ID: %v, want InvalidArgument naming the header", err)
	}
	failCtx := metadata.AppendToOutgoingContext(context.Background(), "durable-object-name", "grpc-probe")
	err = conn.Invoke(failCtx, durabletestv1connect.ProbeAddProcedure, &durabletestv1.AddRequest{Fail: true, Code: int32(connect.CodeOutOfRange)}, &durabletestv1.AddResponse{})
	if status.Code(err) != codes.OutOfRange {
		t.Fatalf("failing method over gRPC: %v, want OutOfRange", err)
	}

	health, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "examples.counter.v1.Counter"})
	if err != nil || health.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check: %v, %v", health, err)
	}

	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"}}); err != nil {
		t.Fatal(err)
	}
	listed, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range listed.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"examples.counter.v1.Counter", "durabletest.v1.Probe", "durable.v1.IDService"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
	stream.CloseSend()
}

// testHTTP1Connect calls with the Connect protocol over HTTP/1.1 and JSON,
// as curl does.
func testHTTP1Connect(t *testing.T, d Deployment) {
	e := newEnv(t, d)
	e.serve(t)
	req, _ := http.NewRequest(http.MethodPost, e.url+counterv1connect.CounterIncrementProcedure, strings.NewReader(`{"amount": 4}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(durable.HeaderObjectName, "curl")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || res.ProtoMajor != 1 || strings.TrimSpace(string(body)) != `{"value":"4"}` {
		t.Fatalf("HTTP/%d %d %s", res.ProtoMajor, res.StatusCode, body)
	}
}

// testRemoteUnknownClass calls a class the server does not register, over
// every protocol.
func testRemoteUnknownClass(t *testing.T, d Deployment) {
	srv, err := newServer(t, d, server.WithLogger(slog.New(slog.NewTextHandler(t.Output(), nil))))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := counterv1durable.RegisterCounter(srv, counter.Counter{}); err != nil {
		t.Fatal(err)
	}
	e := &env{srv: srv}
	t.Cleanup(func() { e.shutdown(t) })
	e.serve(t)
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			probes := durabletestv1durable.NewProbeClient(h2cClient(), e.url, client.WithClientOptions(p.opts...))
			_, err := probes.Get(probes.IDFromName("x")).Get(context.Background(), &durabletestv1.GetRequest{})
			if !errors.Is(err, durable.ErrClassNotFound) || connect.CodeOf(err) != connect.CodeUnimplemented {
				t.Fatalf("error %v (code %v), want ErrClassNotFound with Unimplemented", err, connect.CodeOf(err))
			}
			if !strings.Contains(err.Error(), `"Probe" not found; registered classes: Counter`) {
				t.Fatalf("error %q does not list the classes", err)
			}
			_, err = probes.NewUniqueID(context.Background())
			// Unimplemented from the ID service too: one code per kind.
			if !errors.Is(err, durable.ErrClassNotFound) || connect.CodeOf(err) != connect.CodeUnimplemented {
				t.Fatalf("NewUniqueID of an unknown class: %v", err)
			}
		})
	}
}
