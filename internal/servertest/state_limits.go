package servertest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/durablego/durable"
	"github.com/durablego/durable/examples/session"
	sessionv1 "github.com/durablego/durable/gen/examples/session/v1"
	"github.com/durablego/durable/gen/examples/session/v1/sessionv1durable"
	"github.com/durablego/durable/server"
)

func registerSessions(t testing.TB, e *env) *sessionv1durable.SessionNamespace {
	t.Helper()
	sessions, err := sessionv1durable.RegisterSession(e.srv, session.Session{})
	if err != nil {
		t.Fatal(err)
	}
	return sessions
}

// testStateSizeCap: a call that would leave a state over WithMaxStateSize
// fails with ResourceExhausted, naming the size and the limit, over the
// network and in process, and nothing of it is written.
func testStateSizeCap(t *testing.T, d Deployment) {
	const limit = 64 << 10
	e := newEnv(t, d, server.WithMaxStateSize(limit))
	sessions := registerSessions(t, e)
	e.serve(t)
	ctx := context.Background()
	value := strings.Repeat("v", 40<<10)

	remote := sessionv1durable.NewSessionClient(http.DefaultClient, e.url)
	stub := remote.Get(remote.IDFromName("big"))
	if _, err := stub.SetData(ctx, &sessionv1.SetDataRequest{Key: "a", Value: value}); err != nil {
		t.Fatal(err)
	}
	_, err := stub.SetData(ctx, &sessionv1.SetDataRequest{Key: "b", Value: value})
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), fmt.Sprintf("over the limit of %d", limit)) {
		t.Fatalf("a state over the cap: %v, want ResourceExhausted naming the limit", err)
	}
	_, err = sessions.Get(sessions.IDFromName("big")).SetData(ctx, &sessionv1.SetDataRequest{Key: "c", Value: value})
	if !errors.Is(err, durable.ErrStateTooLarge) || connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("in process: %v, want durable.ErrStateTooLarge with ResourceExhausted", err)
	}

	// Nothing of the refused calls was kept, in memory or on disk.
	e.shutdown(t)
	e2 := newEnvOn(t, e.storage, server.WithMaxStateSize(limit))
	data, err := registerSessions(t, e2).Get(sessions.IDFromName("big")).GetData(ctx, &sessionv1.GetDataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(data.GetData()) != 1 || data.GetData()["a"] != value {
		t.Fatalf("after a restart the session holds keys %v, want only a", keys(data.GetData()))
	}
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
