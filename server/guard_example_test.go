package server_test

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"connectrpc.com/connect"

	"github.com/durablego/durable/client"
	"github.com/durablego/durable/examples/counter"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/server"
)

// bearer is a Guard that lets through the requests carrying the token in
// an Authorization header, and may be narrowed by Access: here it also
// keeps reflection for the operators' token.
func bearer(token, operators string) server.Guard {
	unauthenticated := connect.NewError(connect.CodeUnauthenticated, errors.New("send Authorization: Bearer <token>"))
	unauthenticated.Meta().Set("WWW-Authenticate", `Bearer realm="durable"`)
	is := func(r *http.Request, want string) bool {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		return ok && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
	}
	return func(_ context.Context, a *server.Access) error {
		switch {
		case a.Kind == server.AccessReflection && !is(a.Request, operators):
			return connect.NewError(connect.CodePermissionDenied, errors.New("reflection is for operators"))
		case a.Kind == server.AccessReflection, is(a.Request, token), is(a.Request, operators):
			return nil
		}
		return unauthenticated
	}
}

// A guard that asks every remote caller for a bearer token: RPCs, Fetch
// routes, WebSocket upgrades, the ID service, reflection and mounted
// routes. Health answers without one, and in-process calls are not
// guarded.
func ExampleWithGuard() {
	dir, _ := os.MkdirTemp("", "durable-example")
	defer os.RemoveAll(dir)
	srv, err := server.New(server.WithDataDir(dir), server.WithGuard(bearer("user-token", "operator-token")))
	if err != nil {
		panic(err)
	}
	if _, err := counterv1durable.RegisterCounter(srv, counter.Counter{}); err != nil {
		panic(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	url := "http://" + ln.Addr().String()

	withToken := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer user-token")
			return next(ctx, req)
		}
	})
	anonymous := counterv1durable.NewCounterClient(http.DefaultClient, url)
	user := counterv1durable.NewCounterClient(http.DefaultClient, url, client.WithClientOptions(connect.WithInterceptors(withToken)))

	_, err = anonymous.Get(anonymous.IDFromName("c")).Increment(context.Background(), &counterv1.IncrementRequest{Amount: 1})
	fmt.Println(connect.CodeOf(err))
	res, err := user.Get(user.IDFromName("c")).Increment(context.Background(), &counterv1.IncrementRequest{Amount: 1})
	fmt.Println(res.GetValue(), err)

	get, _ := http.Get(url + "/objects/counter/c/")
	get.Body.Close()
	fmt.Println(get.Status, get.Header.Get("WWW-Authenticate"))
	// Output:
	// unauthenticated
	// 1 <nil>
	// 401 Unauthorized Bearer realm="durable"
}
