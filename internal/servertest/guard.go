package servertest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	gorilla "github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionalphapb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	"github.com/durablego/durable"
	"github.com/durablego/durable/client"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1connect"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/internal/probe"
	"github.com/durablego/durable/server"
)

// accessLog records what a guard was asked.
type accessLog struct {
	mu   sync.Mutex
	seen []server.Access
}

func (l *accessLog) add(a *server.Access) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = append(l.seen, *a)
}

// last returns the last access recorded, failing t if there is none.
func (l *accessLog) last(t testing.TB) server.Access {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.seen) == 0 {
		t.Fatal("the guard was not asked")
	}
	return l.seen[len(l.seen)-1]
}

func (l *accessLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = nil
}

// newGuardEnv is an env with the Counter, Probe and SocketProbe classes
// and a route at GET /extra, guarded by g, served on a loopback port.
func newGuardEnv(t *testing.T, d Deployment, g server.Guard, opts ...server.Option) *env {
	t.Helper()
	e := newEnv(t, d, append([]server.Option{server.WithGuard(g)}, opts...)...)
	sp := &probe.SocketProbe{Closed: make(chan probe.SocketClose, 64), Errors: make(chan error, 64)}
	if _, err := server.Register[*durabletestv1.ProbeState](e.srv, server.Class{Name: "SocketProbe", Segment: "socket-probe"}, sp); err != nil {
		t.Fatal(err)
	}
	e.srv.Mount("GET /extra", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "extra") }))
	e.serve(t)
	return e
}

// listServices asks reflection for the services, over gRPC.
func listServices(ctx context.Context, conn *grpc.ClientConn) ([]string, error) {
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, err
	}
	defer stream.CloseSend()
	// Send fails with io.EOF when the server has ended the stream: Recv
	// returns its status then.
	err = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"}})
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	res, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range res.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names, nil
}

// testGuardDenyAllClosesEveryDoor: a guard that refuses everything refuses
// RPCs over Connect, gRPC-Web and gRPC (the grpc-go client), the ID
// service, reflection, unknown procedures, Fetch by name and by ID,
// WebSocket upgrades and mounted routes, each with the code or status of
// its protocol and the kind "denied", and nothing reaches an object; health
// still answers SERVING, and in-process calls are not guarded.
func testGuardDenyAllClosesEveryDoor(t *testing.T, d Deployment) {
	var log accessLog
	e := newGuardEnv(t, d, func(_ context.Context, a *server.Access) error {
		log.add(a)
		return errors.New("closed")
	})
	ctx := context.Background()
	victim := e.counters.IDFromName("victim")

	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			counters := counterv1durable.NewCounterClient(h2cClient(), e.url, client.WithClientOptions(p.opts...))
			_, err := counters.Get(counters.IDFromName("victim")).Increment(ctx, &counterv1.IncrementRequest{Amount: 1})
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != connect.CodePermissionDenied || ce.Meta().Get(durable.HeaderError) != string(durable.KindDenied) {
				t.Fatalf("Increment: %v, want PermissionDenied, kind denied", err)
			}
			if !errors.Is(err, durable.ErrDenied) {
				t.Fatalf("Increment: %v does not match durable.ErrDenied", err)
			}
			if a := log.last(t); a.Kind != server.AccessRPC || a.Class != "Counter" || a.Method != "Increment" || !a.ID.Equal(victim) || a.ID.Name() != "victim" {
				t.Fatalf("the guard saw %+v", a)
			}
			if _, err := counters.NewUniqueID(ctx); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("IDService.NewUniqueID: %v, want PermissionDenied", err)
			}
			if a := log.last(t); a.Kind != server.AccessIDService || a.Method != "NewUniqueID" {
				t.Fatalf("the guard saw %+v", a)
			}
			if _, err := counters.ResolveName(ctx, "victim"); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("IDService.IDFromName: %v, want PermissionDenied", err)
			}
			// A service the server does not have: refused before the
			// answer lists the classes.
			probes := durabletestv1durable.NewProbeClient(h2cClient(), e.url, client.WithClientOptions(p.opts...))
			_, err = probes.Get(probes.IDFromName("x")).Get(ctx, &durabletestv1.GetRequest{})
			if connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("Probe.Get: %v, want PermissionDenied", err)
			}
		})
	}

	t.Run("grpc-go", func(t *testing.T) {
		conn := grpcConn(t, e.url)
		md := metadata.AppendToOutgoingContext(ctx, "durable-object-name", "victim")
		err := conn.Invoke(md, counterv1connect.CounterIncrementProcedure, &counterv1.IncrementRequest{Amount: 1}, &counterv1.IncrementResponse{})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("Increment over gRPC: %v, want PermissionDenied", err)
		}
		if _, err := listServices(ctx, conn); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("reflection: %v, want PermissionDenied", err)
		}
		if a := log.last(t); a.Kind != server.AccessReflection || a.Method != "ServerReflectionInfo" {
			t.Fatalf("the guard saw %+v", a)
		}
		// The stream opens without a round trip: the refusal is its first
		// answer.
		alpha, err := reflectionalphapb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err == nil {
			_, err = alpha.Recv()
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("reflection v1alpha: %v, want PermissionDenied", err)
		}
		if a := log.last(t); a.Kind != server.AccessReflection || a.Path != "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo" {
			t.Fatalf("the guard saw %+v", a)
		}
		log.reset()
		health, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "examples.counter.v1.Counter"})
		if err != nil || health.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health check: %v, %v, want SERVING", health, err)
		}
		log.mu.Lock()
		defer log.mu.Unlock()
		if len(log.seen) != 0 {
			t.Fatalf("the guard was asked about health: %+v", log.seen)
		}
	})

	t.Run("http", func(t *testing.T) {
		for _, c := range []struct{ method, path, class, fetchPath string }{
			{http.MethodPost, "/objects/counter/victim/increment", "Counter", "/increment"},
			{http.MethodGet, "/objects/counter/victim/", "Counter", "/"},
			{http.MethodPost, "/objects-by-id/counter/" + victim.String() + "/increment", "Counter", "/increment"},
			{http.MethodGet, "/objects/no-such-class/x/", "", "/"}, // not the 404 listing the classes
			{http.MethodGet, "/extra", "", ""},
		} {
			code, body, h := do(t, c.method, e.url+c.path, `{"amount": 1}`)
			if code != http.StatusForbidden || h.Get(durable.HeaderError) != string(durable.KindDenied) || !strings.Contains(body, "closed") {
				t.Errorf("%s %s: %d %q (kind %q), want 403 denied", c.method, c.path, code, body, h.Get(durable.HeaderError))
				continue
			}
			a := log.last(t)
			switch {
			case c.fetchPath == "":
				if a.Kind != server.AccessRoute || a.Path != c.path {
					t.Errorf("%s %s: the guard saw %+v", c.method, c.path, a)
				}
			case a.Kind != server.AccessFetch || a.Class != c.class || a.Path != c.fetchPath || a.Request.Method != c.method:
				t.Errorf("%s %s: the guard saw %+v", c.method, c.path, a)
			case c.class != "" && (!a.ID.Equal(victim) || (strings.HasPrefix(c.path, "/objects/") && a.ID.Name() != "victim")):
				t.Errorf("%s %s: the guard saw the ID %v (name %q)", c.method, c.path, a.ID, a.ID.Name())
			}
		}
		_, res, err := gorilla.DefaultDialer.Dial("ws"+strings.TrimPrefix(e.url, "http")+"/objects/socket-probe/room/", nil)
		if err == nil || res == nil || res.StatusCode != http.StatusForbidden || res.Header.Get(durable.HeaderError) != string(durable.KindDenied) {
			t.Fatalf("WebSocket upgrade: %v (%v), want 403 denied", err, res)
		}
		if a := log.last(t); a.Kind != server.AccessWebSocket || a.Class != "SocketProbe" || a.ID.Name() != "room" {
			t.Fatalf("the guard saw %+v", a)
		}
	})

	// Nothing reached the counter; the in-process stub is the program's
	// own and goes through.
	if v := counterValue(t, e, "victim"); v != 0 {
		t.Fatalf("the victim counter is at %d", v)
	}
	if _, err := e.counters.Get(victim).Increment(ctx, &counterv1.IncrementRequest{Amount: 2}); err != nil {
		t.Fatalf("in-process call: %v", err)
	}
}

// testGuardRefusesBeforeReadingTheBody: the guard refuses an RPC and a
// Fetch whose body never ends; the answer comes without the body being
// read.
func testGuardRefusesBeforeReadingTheBody(t *testing.T, d Deployment) {
	e := newGuardEnv(t, d, func(context.Context, *server.Access) error {
		return connect.NewError(connect.CodeUnauthenticated, errors.New("who are you?"))
	})
	for _, c := range []struct {
		path, contentType string
		want              int
	}{
		{counterv1connect.CounterIncrementProcedure, "application/json", http.StatusUnauthorized},
		{"/objects/counter/victim/increment", "text/plain", http.StatusUnauthorized},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		body, endless := io.Pipe() // nothing is written: reading it blocks
		context.AfterFunc(ctx, func() { endless.Close() })
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url+c.path, body)
		req.Header.Set("Content-Type", c.contentType)
		req.Header.Set(durable.HeaderObjectName, "victim")
		// HTTP/2, whose server may answer before the request ends (an
		// HTTP/1.1 server reads some of what is left of it first).
		res, err := h2cClient().Do(req)
		if err != nil {
			cancel()
			t.Fatalf("%s: %v", c.path, err)
		}
		res.Body.Close()
		cancel()
		if res.StatusCode != c.want || res.Header.Get(durable.HeaderError) != string(durable.KindDenied) {
			t.Fatalf("%s: %d (kind %q), want %d denied", c.path, res.StatusCode, res.Header.Get(durable.HeaderError), c.want)
		}
	}
}

// testGuardSelective: a guard asking for a token lets the calls that carry
// it through every door, refuses the others with its own code and the
// metadata it set (WWW-Authenticate), and sees the object addressed by ID
// without a name.
func testGuardSelective(t *testing.T, d Deployment) {
	var log accessLog
	refusal := connect.NewError(connect.CodeUnauthenticated, errors.New("token required"))
	refusal.Meta().Set("WWW-Authenticate", `Bearer realm="durable"`)
	e := newGuardEnv(t, d, func(_ context.Context, a *server.Access) error {
		log.add(a)
		if a.Request.Header.Get("Authorization") != "Bearer good" {
			return refusal // one shared error for every request
		}
		return nil
	})
	ctx := context.Background()
	auth := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer good")
			return next(ctx, req)
		}
	})
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			with := counterv1durable.NewCounterClient(h2cClient(), e.url, client.WithClientOptions(append(slices.Clone(p.opts), connect.WithInterceptors(auth))...))
			without := counterv1durable.NewCounterClient(h2cClient(), e.url, client.WithClientOptions(p.opts...))
			id, err := with.NewUniqueID(ctx)
			if err != nil {
				t.Fatalf("NewUniqueID with the token: %v", err)
			}
			if _, err := with.Get(id).Increment(ctx, &counterv1.IncrementRequest{Amount: 3}); err != nil {
				t.Fatalf("Increment with the token: %v", err)
			}
			if a := log.last(t); a.Kind != server.AccessRPC || !a.ID.Equal(id) || a.ID.Name() != "" {
				t.Fatalf("the guard saw %+v, want the ID %v", a, id)
			}
			_, err = without.Get(id).Increment(ctx, &counterv1.IncrementRequest{Amount: 3})
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != connect.CodeUnauthenticated || !strings.Contains(ce.Message(), "token required") {
				t.Fatalf("Increment without the token: %v, want Unauthenticated", err)
			}
			if res, err := with.Get(id).GetValue(ctx, &counterv1.GetValueRequest{}); err != nil || res.GetValue() != 3 {
				t.Fatalf("GetValue: %v, %v, want 3", res, err)
			}
		})
	}

	// Fetch and WebSocket: the token lets the request through; without it,
	// 401 with the guard's WWW-Authenticate.
	post := func(token string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, e.url+"/objects/counter/fetched/increment", strings.NewReader(`{"amount": 5}`))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	if res := post("bad"); res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") != `Bearer realm="durable"` {
		t.Fatalf("Fetch without the token: %d %v, want 401 with WWW-Authenticate", res.StatusCode, res.Header)
	}
	if res := post("good"); res.StatusCode != http.StatusOK {
		t.Fatalf("Fetch with the token: %d", res.StatusCode)
	}
	if v := counterValue(t, e, "fetched"); v != 5 {
		t.Fatalf("counter at %d after one allowed Fetch, want 5", v)
	}
	wsURL := "ws" + strings.TrimPrefix(e.url, "http") + "/objects/socket-probe/room/"
	if _, res, err := gorilla.DefaultDialer.Dial(wsURL, nil); err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("WebSocket without the token: %v", err)
	}
	c, _, err := gorilla.DefaultDialer.Dial(wsURL, http.Header{"Authorization": {"Bearer good"}})
	if err != nil {
		t.Fatalf("WebSocket with the token: %v", err)
	}
	defer c.Close()
	if got := ask(t, c, "echo hi"); got != "hi" {
		t.Fatalf("echo: %q", got)
	}
	if refusal.Meta().Get(durable.HeaderError) != "" {
		t.Fatal("the guard's shared error was changed")
	}
}

// testGuardNoneKeepsAnswers: without WithGuard the doors are as they were:
// the unknown class is still answered with the classes that exist.
func testGuardNoneKeepsAnswers(t *testing.T, d Deployment) {
	e := newEnv(t, d)
	e.serve(t)
	code, body, _ := do(t, http.MethodGet, e.url+"/objects/no-such-class/x/", "")
	if code != http.StatusNotFound || !strings.Contains(body, "/objects/counter/") {
		t.Fatalf("%d %q, want 404 listing the classes", code, body)
	}
	if code, _, _ := do(t, http.MethodPost, e.url+"/objects/counter/x/increment", `{"amount": 1}`); code != http.StatusOK {
		t.Fatalf("Fetch: %d", code)
	}
}
