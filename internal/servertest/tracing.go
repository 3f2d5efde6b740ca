package servertest

import (
	"context"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/durablego/durable/client"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/server"
)

// tracedClient returns the option of clients whose calls make client spans
// in their own recorder, and propagate them with W3C Trace Context.
func tracedClient(t *testing.T) (client.Option, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	interceptor, err := otelconnect.NewInterceptor(otelconnect.WithTracerProvider(tp),
		otelconnect.WithPropagator(propagation.TraceContext{}))
	if err != nil {
		t.Fatal(err)
	}
	return client.WithClientOptions(connect.WithInterceptors(interceptor)), rec
}

// tracedEnv is an env served with tracing on, with WithTracing's options
// opts, and the recorder of its spans.
func tracedEnv(t *testing.T, d Deployment, opts ...otelconnect.Option) (*env, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	e := newEnv(t, d, server.WithTracing(tp, opts...))
	e.serve(t)
	return e, rec
}

// spansNamed returns the ended spans called name, in the order they ended.
func spansNamed(rec *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var found []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			found = append(found, s)
		}
	}
	return found
}

// spanNamed returns the one ended span called name.
func spanNamed(t *testing.T, rec *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	found := spansNamed(rec, name)
	if len(found) != 1 {
		var names []string
		for _, s := range rec.Ended() {
			names = append(names, s.Name())
		}
		t.Fatalf("%d spans named %q; spans: %q", len(found), name, names)
	}
	return found[0]
}

func testTracingServerSpans(t *testing.T, d Deployment) {
	e, serverRec := tracedEnv(t, d)
	traced, clientRec := tracedClient(t)
	counters := counterv1durable.NewCounterClient(h2cClient(), e.url, traced)
	ctx := context.Background()
	stub := counters.Get(counters.IDFromName("traced"))
	if _, err := stub.Increment(ctx, &counterv1.IncrementRequest{Amount: 2}); err != nil {
		t.Fatal(err)
	}
	const procedure = "examples.counter.v1.Counter/Increment"
	srvSpan := spanNamed(t, serverRec, procedure)
	cliSpan := spanNamed(t, clientRec, procedure)
	if srvSpan.SpanKind() != trace.SpanKindServer || cliSpan.SpanKind() != trace.SpanKindClient {
		t.Fatalf("span kinds: server %v, client %v", srvSpan.SpanKind(), cliSpan.SpanKind())
	}
	if srvSpan.Status().Code == codes.Error {
		t.Fatalf("server span status %v for a successful call", srvSpan.Status())
	}
	// By default the caller is not trusted: a new trace, linked to the
	// caller's span.
	if srvSpan.SpanContext().TraceID() == cliSpan.SpanContext().TraceID() {
		t.Fatal("the server span joined the caller's trace without WithTrustRemote")
	}
	links := srvSpan.Links()
	if len(links) != 1 || links[0].SpanContext.SpanID() != cliSpan.SpanContext().SpanID() ||
		links[0].SpanContext.TraceID() != cliSpan.SpanContext().TraceID() {
		t.Fatalf("server span links %+v, want one to the client span %v", links, cliSpan.SpanContext())
	}

	// A failing call: an error status, and the code as an attribute.
	probes := durabletestv1durable.NewProbeClient(h2cClient(), e.url, traced)
	_, err := probes.Get(probes.IDFromName("traced")).Add(ctx, &durabletestv1.AddRequest{Fail: true, Code: int32(connect.CodeInternal)})
	if connect.CodeOf(err) != connect.CodeInternal {
		t.Fatalf("failing Add: %v", err)
	}
	failed := spanNamed(t, serverRec, "durabletest.v1.Probe/Add")
	if failed.Status().Code != codes.Error {
		t.Errorf("failed call's span status %v", failed.Status())
	}
	found := false
	for _, a := range failed.Attributes() {
		if a.Key == "rpc.response.status_code" && a.Value.AsString() == "INTERNAL" {
			found = true
		}
	}
	if !found {
		t.Errorf("no rpc.response.status_code INTERNAL attribute: %v", failed.Attributes())
	}
}

func testTracingTrustRemote(t *testing.T, d Deployment) {
	e, serverRec := tracedEnv(t, d, otelconnect.WithTrustRemote())
	traced, clientRec := tracedClient(t)
	counters := counterv1durable.NewCounterClient(h2cClient(), e.url, traced)
	if _, err := counters.Get(counters.IDFromName("traced")).Increment(context.Background(), &counterv1.IncrementRequest{Amount: 1}); err != nil {
		t.Fatal(err)
	}
	const procedure = "examples.counter.v1.Counter/Increment"
	srvSpan := spanNamed(t, serverRec, procedure)
	cliSpan := spanNamed(t, clientRec, procedure)
	if srvSpan.Parent().SpanID() != cliSpan.SpanContext().SpanID() || srvSpan.SpanContext().TraceID() != cliSpan.SpanContext().TraceID() {
		t.Fatalf("server span's parent %v, want the client span %v", srvSpan.Parent(), cliSpan.SpanContext())
	}

	// The server span is in the context the method receives: a call the
	// method makes to another object over the network is its child, and
	// the whole chain is one trace.
	probes := durabletestv1durable.NewProbeClient(h2cClient(), e.url, traced)
	e.probe.Peer = func(name string) durabletestv1durable.ProbeStub { return probes.Get(probes.IDFromName(name)) }
	if _, err := probes.Get(probes.IDFromName("a")).Hop(context.Background(), &durabletestv1.HopRequest{Path: []string{"b"}}); err != nil {
		t.Fatal(err)
	}
	clients, servers := spansNamed(clientRec, "durabletest.v1.Probe/Hop"), spansNamed(serverRec, "durabletest.v1.Probe/Hop")
	if len(clients) != 2 || len(servers) != 2 {
		t.Fatalf("%d client and %d server Hop spans, want 2 and 2", len(clients), len(servers))
	}
	// Spans end innermost first: b's server span, the nested client span,
	// then a's server span and the outer client span.
	inner, outer := clients[0], clients[1]
	serverB, serverA := servers[0], servers[1]
	switch {
	case serverA.Parent().SpanID() != outer.SpanContext().SpanID():
		t.Fatalf("a's server span is not the outer client span's child")
	case inner.Parent().SpanID() != serverA.SpanContext().SpanID():
		t.Fatalf("the nested client span's parent %v, want a's server span %v", inner.Parent(), serverA.SpanContext())
	case serverB.Parent().SpanID() != inner.SpanContext().SpanID():
		t.Fatalf("b's server span is not the nested client span's child")
	case serverB.SpanContext().TraceID() != outer.SpanContext().TraceID():
		t.Fatalf("the chain spans two traces")
	}
}
