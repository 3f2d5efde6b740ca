package servertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/durablego/durable"
	"github.com/durablego/durable/client"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1connect"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/probe"
	"github.com/durablego/durable/server"
)

// logBuffer is a log sink the server's goroutines may write to at once.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// line returns the log line that has every one of parts, or "".
func (l *logBuffer) line(parts ...string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
lines:
	for _, line := range strings.Split(l.b.String(), "\n") {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue lines
			}
		}
		return line
	}
	return ""
}

// capturedLog is a server option logging at every level to the returned
// buffer.
func capturedLog() (*logBuffer, server.Option) {
	l := &logBuffer{}
	return l, server.WithLogger(slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})))
}

// errorRef returns the identifier of a generic message, or "".
func errorRef(msg string) string {
	m := regexp.MustCompile(`error id ([0-9a-f]{16})`).FindStringSubmatch(msg)
	if m == nil {
		return ""
	}
	return m[1]
}

// kindCase is a failure to cause in process and over each protocol, with
// what it must be on both sides.
type kindCase struct {
	name      string
	kind      durable.Kind // the Durable-Error sent; "" when the client refuses before sending
	cause     durable.Kind // the Durable-Error-Cause sent, for kind "method"
	code      connect.Code
	sentinels []error
	rpc       bool // an *RPCError on both sides
	local     func(ctx context.Context) error
	remote    func(ctx context.Context, opts []connect.ClientOption) error
}

// check asserts what every error of c must be, wherever it comes from.
func (c *kindCase) check(t *testing.T, where string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: %s succeeded", c.name, where)
		return
	}
	if got := connect.CodeOf(err); got != c.code {
		t.Errorf("%s: %s: code %v, want %v: %v", c.name, where, got, c.code, err)
	}
	for _, s := range c.sentinels {
		if !errors.Is(err, s) {
			t.Errorf("%s: %s: %v does not match %v", c.name, where, err, s)
		}
	}
	var rpc *durable.RPCError
	if errors.As(err, &rpc) != c.rpc {
		t.Errorf("%s: %s: %T is an *RPCError: %v, want %v", c.name, where, err, !c.rpc, c.rpc)
	}
	if c.kind != "" && durable.KindOf(err) != c.kind {
		t.Errorf("%s: %s: KindOf = %q, want %q", c.name, where, durable.KindOf(err), c.kind)
	}
}

// checkWire asserts the kind the server sent, and that its code is the
// table's.
func (c *kindCase) checkWire(t *testing.T, where string, err error) {
	t.Helper()
	var ce *connect.Error
	if c.kind == "" || !errors.As(err, &ce) {
		return
	}
	if got := durable.Kind(ce.Meta().Get(durable.HeaderError)); got != c.kind {
		t.Errorf("%s: %s: kind %q sent, want %q", c.name, where, got, c.kind)
	}
	if got := durable.Kind(ce.Meta().Get(durable.HeaderErrorCause)); got != c.cause {
		t.Errorf("%s: %s: cause %q sent, want %q", c.name, where, got, c.cause)
	}
	if c.kind != durable.KindMethod && ce.Code() != c.kind.Code() {
		t.Errorf("%s: %s: code %v, but the table's for %s is %v", c.name, where, ce.Code(), c.kind, c.kind.Code())
	}
}

// rawCounterCall calls Counter.GetValue on the object name through the
// client package, with edit applied to the request header just before it
// is sent and procedure instead of GetValue's when not "": the way to send
// what the typed client refuses to.
func rawCounterCall(ctx context.Context, url string, opts []connect.ClientOption, procedure string, edit func(http.Header)) error {
	ns := client.NewNamespace(counterv1durable.CounterClassName, h2cClient(), url, client.WithClientOptions(opts...))
	call := counterv1connect.NewCounterClient(h2cClient(), url, opts...).GetValue
	if procedure != "" {
		call = connect.NewClient[counterv1.GetValueRequest, counterv1.GetValueResponse](h2cClient(), url+procedure, opts...).CallUnary
	}
	_, err := client.Invoke(ctx, ns, ns.IDFromName("raw"), counterv1durable.CounterGetValueMethod, &counterv1.GetValueRequest{},
		func(ctx context.Context, r *connect.Request[counterv1.GetValueRequest]) (*connect.Response[counterv1.GetValueResponse], error) {
			edit(r.Header())
			return call(ctx, r)
		})
	return err
}

// testErrorKindsMatchTheSameSentinels: for each kind of failure, the error
// in process and the error over Connect, gRPC and gRPC-Web restored by the
// client package match the same sentinels with errors.Is, have the same
// code, the table's for the kind, and are *RPCErrors alike.
func testErrorKindsMatchTheSameSentinels(t *testing.T, d Deployment) {
	logs, logOpt := capturedLog()
	e := newEnv(t, d, logOpt)
	e.serve(t)
	probeID := e.probes.IDFromName("p").String()
	remoteProbe := func(opts []connect.ClientOption, name string) durabletestv1durable.ProbeStub {
		probes := durabletestv1durable.NewProbeClient(h2cClient(), e.url, client.WithClientOptions(opts...))
		return probes.Get(probes.IDFromName(name))
	}
	localProbe := func(name string) durabletestv1durable.ProbeStub { return e.probes.Get(e.probes.IDFromName(name)) }
	header := func(k, v string) func(http.Header) {
		return func(h http.Header) { h.Del(durable.HeaderObjectName); h.Set(k, v) }
	}
	cases := []kindCase{{
		name: "ID of another class", kind: durable.KindIDNamespace, code: connect.CodeInvalidArgument,
		sentinels: []error{durable.ErrIDNamespace, durable.ErrInvalidID},
		local: func(ctx context.Context) error {
			_, err := e.counters.Get(e.probes.IDFromName("p")).GetValue(ctx, &counterv1.GetValueRequest{})
			return err
		},
		remote: func(ctx context.Context, opts []connect.ClientOption) error {
			counters := counterv1durable.NewCounterClient(h2cClient(), e.url, client.WithClientOptions(opts...))
			id, err := counters.IDFromString(probeID) // no secret: only the syntax is checked here
			if err != nil {
				return err
			}
			_, err = counters.Get(id).GetValue(ctx, &counterv1.GetValueRequest{})
			return err
		},
	}, {
		name: "ID of another class, refused by the client", code: connect.CodeUnknown,
		sentinels: []error{durable.ErrIDNamespace, durable.ErrInvalidID},
		remote: func(ctx context.Context, opts []connect.ClientOption) error {
			counters := counterv1durable.NewCounterClient(h2cClient(), e.url, client.WithClientOptions(opts...))
			_, err := counters.Get(e.probes.IDFromName("p")).GetValue(ctx, &counterv1.GetValueRequest{})
			return err
		},
	}, {
		name: "short ID", kind: durable.KindIDLength, code: connect.CodeInvalidArgument,
		sentinels: []error{durable.ErrIDLength, durable.ErrInvalidID},
		remote: func(ctx context.Context, opts []connect.ClientOption) error {
			return rawCounterCall(ctx, e.url, opts, "", header(durable.HeaderObjectID, "abc"))
		},
	}, {
		name: "ID not hex", kind: durable.KindIDNotHex, code: connect.CodeInvalidArgument,
		sentinels: []error{durable.ErrIDNotHex, durable.ErrInvalidID},
		remote: func(ctx context.Context, opts []connect.ClientOption) error {
			return rawCounterCall(ctx, e.url, opts, "", header(durable.HeaderObjectID, strings.Repeat("G", 64)))
		},
	}, {
		name: "no ID header", kind: durable.KindInvalidID, code: connect.CodeInvalidArgument,
		sentinels: []error{durable.ErrInvalidID},
		remote: func(ctx context.Context, opts []connect.ClientOption) error {
			return rawCounterCall(ctx, e.url, opts, "", func(h http.Header) { h.Del(durable.HeaderObjectName) })
		},
	}, {
		name: "malformed call chain", kind: durable.KindInvalidChain, code: connect.CodeInvalidArgument,
		sentinels: []error{durable.ErrInvalidCallChain},
		remote: func(ctx context.Context, opts []connect.ClientOption) error {
			return rawCounterCall(ctx, e.url, opts, "", func(h http.Header) { h.Set(durable.HeaderCallChain, "not a chain") })
		},
	}, {
		name: "unknown method", kind: durable.KindMethodNotFound, code: connect.CodeUnimplemented,
		sentinels: []error{durable.ErrMethodNotFound},
		remote: func(ctx context.Context, opts []connect.ClientOption) error {
			return rawCounterCall(ctx, e.url, opts, "/examples.counter.v1.Counter/Nope", func(http.Header) {})
		},
	}, {
		name: "unknown class, from the ID service", kind: durable.KindClassNotFound, code: connect.CodeUnimplemented,
		sentinels: []error{durable.ErrClassNotFound},
		remote: func(ctx context.Context, opts []connect.ClientOption) error {
			_, err := client.NewNamespace("Nope", h2cClient(), e.url, client.WithClientOptions(opts...)).NewUniqueID(ctx)
			return err
		},
	}, {
		name: "reentrant nested call", kind: durable.KindMethod, cause: durable.KindReentrant, code: connect.CodeFailedPrecondition,
		sentinels: []error{durable.ErrReentrantCall}, rpc: true,
		local: func(ctx context.Context) error {
			_, err := localProbe("ra").Hop(ctx, &durabletestv1.HopRequest{Path: []string{"rb", "ra"}})
			return err
		},
		remote: func(ctx context.Context, opts []connect.ClientOption) error {
			_, err := remoteProbe(opts, "ra").Hop(ctx, &durabletestv1.HopRequest{Path: []string{"rb", "ra"}})
			return err
		},
	}, {
		name: "panic", kind: durable.KindInternal, code: connect.CodeInternal,
		sentinels: []error{durable.ErrInternal}, rpc: true,
		local: func(ctx context.Context) error {
			_, err := localProbe("panics").Add(ctx, &durabletestv1.AddRequest{Panic: true})
			return err
		},
		remote: func(ctx context.Context, opts []connect.ClientOption) error {
			_, err := remoteProbe(opts, "panics").Add(ctx, &durabletestv1.AddRequest{Panic: true})
			return err
		},
	}, {
		name: "plain error of the method", kind: durable.KindMethod, code: connect.CodeUnknown, rpc: true,
		local: func(ctx context.Context) error {
			_, err := localProbe("fails").Add(ctx, &durabletestv1.AddRequest{Fail: true})
			return err
		},
		remote: func(ctx context.Context, opts []connect.ClientOption) error {
			_, err := remoteProbe(opts, "fails").Add(ctx, &durabletestv1.AddRequest{Fail: true})
			return err
		},
	}, {
		name: "connect error of the method", kind: durable.KindMethod, code: connect.CodeNotFound, rpc: true,
		local: func(ctx context.Context) error {
			_, err := localProbe("fails").Add(ctx, &durabletestv1.AddRequest{Fail: true, Code: int32(connect.CodeNotFound)})
			return err
		},
		remote: func(ctx context.Context, opts []connect.ClientOption) error {
			_, err := remoteProbe(opts, "fails").Add(ctx, &durabletestv1.AddRequest{Fail: true, Code: int32(connect.CodeNotFound)})
			return err
		},
	}}
	ctx := context.Background()
	for i := range cases {
		c := &cases[i]
		if c.local != nil {
			c.check(t, "in process", c.local(ctx))
		}
		for _, p := range protocols {
			err := c.remote(ctx, p.opts)
			c.check(t, p.name, err)
			c.checkWire(t, p.name, err)
		}
	}

	// What the messages say, and what the log has.
	_, err := remoteProbe(nil, "panics").Add(ctx, &durabletestv1.AddRequest{Panic: true})
	ref := errorRef(err.Error())
	if ref == "" || strings.Contains(err.Error(), "panicking") {
		t.Errorf("a panic over the network: %q, want a generic message with an error id", err)
	} else if logs.line("level=ERROR", "error_id="+ref, "class=Probe", "method=Add", "panicking as asked") == "" {
		t.Errorf("no Error line with error_id=%s, the class, the method and the cause", ref)
	}
	_, err = localProbe("panics").Add(ctx, &durabletestv1.AddRequest{Panic: true})
	if !strings.Contains(err.Error(), "panicking as asked") {
		t.Errorf("a panic in process: %q, want the full cause", err)
	}
	_, err = remoteProbe(nil, "fails").Add(ctx, &durabletestv1.AddRequest{Fail: true})
	if !strings.Contains(err.Error(), probe.ErrAsked.Error()) {
		t.Errorf("a plain error over the network: %q, want its message", err)
	}
	if logs.line("level=WARN", "class=Probe", "method=Add", "code=unknown", "failing as asked") == "" {
		t.Error("no Warn line for the plain error a method returned")
	}
	err = rawCounterCall(ctx, e.url, nil, "/examples.counter.v1.Counter/Nope", func(http.Header) {})
	if !strings.Contains(err.Error(), `Counter has no method "Nope"`) || !strings.Contains(err.Error(), "Increment, ") {
		t.Errorf("unknown method: %q, want the class's methods named", err)
	}
}

// testStorageErrorKinds: a state over the cap and a database over its cap
// are ResourceExhausted RPCErrors matching their sentinels in process and
// remotely; the full database reaches the remote caller as a generic
// message, its cause logged.
func testStorageErrorKinds(t *testing.T, d Deployment) {
	requireSQL(t, d)
	logs, logOpt := capturedLog()
	e := newEnv(t, d, logOpt, server.WithMaxStateSize(8), server.WithMaxSQLSize(64<<10))
	ledgers := registerLedger(t, e)
	e.serve(t)
	ctx := context.Background()
	remote := func(opts []connect.ClientOption) *durabletestv1durable.LedgerClient {
		return durabletestv1durable.NewLedgerClient(h2cClient(), e.url, client.WithClientOptions(opts...))
	}
	bigState := &durabletestv1.RecordRequest{Key: "k", Owner: "0123456789abcdef"} // over 8 bytes of state
	tooLarge := kindCase{name: "state over the cap", kind: durable.KindStateTooLarge, code: connect.CodeResourceExhausted,
		sentinels: []error{durable.ErrStateTooLarge}, rpc: true}
	_, err := ledgers.Get(ledgers.IDFromName("big")).Record(ctx, bigState)
	tooLarge.check(t, "in process", err)
	for _, p := range protocols {
		l := remote(p.opts)
		_, err := l.Get(l.IDFromName("big")).Record(ctx, bigState)
		tooLarge.check(t, p.name, err)
		tooLarge.checkWire(t, p.name, err)
	}

	full := kindCase{name: "database over the cap", kind: durable.KindDatabaseFull, code: connect.CodeResourceExhausted,
		sentinels: []error{engine.ErrDatabaseFull}, rpc: true}
	fill := func(record func(*durabletestv1.RecordRequest) error) error {
		for i := range 200 {
			if err := record(&durabletestv1.RecordRequest{Key: fmt.Sprintf("%04d%s", i, strings.Repeat("x", 2000))}); err != nil {
				return err
			}
		}
		return nil
	}
	err = fill(func(r *durabletestv1.RecordRequest) error {
		_, err := ledgers.Get(ledgers.IDFromName("full")).Record(ctx, r)
		return err
	})
	full.check(t, "in process", err)
	for _, p := range protocols {
		l := remote(p.opts)
		err := fill(func(r *durabletestv1.RecordRequest) error {
			_, err := l.Get(l.IDFromName("full-"+p.name)).Record(ctx, r)
			return err
		})
		full.check(t, p.name, err)
		full.checkWire(t, p.name, err)
		ref := errorRef(fmt.Sprint(err))
		if ref == "" || !strings.Contains(err.Error(), "disk is full or the object's database reached its size cap") {
			t.Errorf("%s: a full database: %q, want a message saying so with an error id", p.name, err)
		} else if logs.line("level=ERROR", "error_id="+ref, "class=Ledger", "method=Record", "object database is full") == "" {
			t.Errorf("%s: no Error line with error_id=%s and the cause", p.name, ref)
		}
	}
}

// testUnknownMethodIsUnimplemented: a method a known class does not have
// is Unimplemented in the caller's protocol, naming the class's methods:
// over google.golang.org/grpc, and Connect and gRPC-Web (through the
// client package, with durable.ErrMethodNotFound), not a plain-text 404.
func testUnknownMethodIsUnimplemented(t *testing.T, d Deployment) {
	e := newEnv(t, d)
	e.serve(t)
	conn := grpcConn(t, e.url)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "durable-object-name", "x")
	err := conn.Invoke(ctx, "/examples.counter.v1.Counter/Nope", &counterv1.GetValueRequest{}, &counterv1.GetValueResponse{})
	if status.Code(err) != codes.Unimplemented || !strings.Contains(status.Convert(err).Message(), "GetValue") {
		t.Errorf("gRPC: %v, want Unimplemented naming the methods", err)
	}
	for _, p := range protocols {
		err := rawCounterCall(context.Background(), e.url, p.opts, "/examples.counter.v1.Counter/Nope", func(http.Header) {})
		if !errors.Is(err, durable.ErrMethodNotFound) || connect.CodeOf(err) != connect.CodeUnimplemented || !strings.Contains(err.Error(), "Increment") {
			t.Errorf("%s: %v, want ErrMethodNotFound, Unimplemented, naming the methods", p.name, err)
		}
	}
	// A plain Connect request with a body for another message: the
	// Connect error, with Connect's status for Unimplemented, not a
	// plain-text 404.
	req, _ := http.NewRequest(http.MethodPost, e.url+"/examples.counter.v1.Counter/Nope", strings.NewReader(`{"amount": "5", "other": true}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(durable.HeaderObjectName, "x")
	hres, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(hres.Body)
	hres.Body.Close()
	if hres.StatusCode != http.StatusNotImplemented || hres.Header.Get("Content-Type") != "application/json" ||
		!strings.Contains(string(body), `"code":"unimplemented"`) || !strings.Contains(string(body), "GetValue") {
		t.Errorf("Connect JSON: %d %s %s, want 501 with an unimplemented Connect error naming the methods", hres.StatusCode, hres.Header.Get("Content-Type"), body)
	}
	// The known methods still reach the object.
	var res counterv1.IncrementResponse
	if err := conn.Invoke(ctx, counterv1connect.CounterIncrementProcedure, &counterv1.IncrementRequest{Amount: 1}, &res); err != nil || res.GetValue() != 1 {
		t.Errorf("Increment: %v, %v", &res, err)
	}
}

// testFetchRouteHidesPanics: a Fetch that panics answers the HTTP route
// with a 500 of kind "internal" whose body is a generic message with an
// identifier, logged at Error with the panic; the in-process Fetch has the
// panic in its body.
func testFetchRouteHidesPanics(t *testing.T, d Deployment) {
	logs, logOpt := capturedLog()
	e, _ := newFetchEnv(t, d, logOpt)
	status, body, h := do(t, http.MethodPost, e.url+"/objects/counter/p/panic", "")
	ref := errorRef(body)
	if status != http.StatusInternalServerError || durable.Kind(h.Get(durable.HeaderError)) != durable.KindInternal || ref == "" || strings.Contains(body, "panicking") {
		t.Fatalf("/panic = %d %q (kind %q), want 500 of kind internal with a generic message", status, body, h.Get(durable.HeaderError))
	}
	if logs.line("level=ERROR", "error_id="+ref, "class=Counter", "method=Fetch", "panicking as asked") == "" {
		t.Errorf("no Error line with error_id=%s, the class, Fetch and the panic", ref)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://counter/panic", nil)
	res, err := e.counters.Get(e.counters.IDFromName("p")).Fetch(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	local, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusInternalServerError || !strings.Contains(string(local), "panicking as asked") {
		t.Errorf("in-process /panic = %d %q, want 500 with the panic", res.StatusCode, local)
	}
}
