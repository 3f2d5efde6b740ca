package servertest

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	"github.com/durablego/durable/internal/probe"
	"github.com/durablego/durable/server"
	"github.com/durablego/durable/websocket"
)

// Implementations with one method named like a hook but not the hook: each
// embeds a Probe, whose RPC methods (and Init and Alarm) it keeps, and
// shadows one hook with a near miss.
type (
	initNoError    struct{ *probe.Probe }
	alarmNoInfo    struct{ *probe.Probe }
	fetchWithError struct{ *probe.Probe }
	messageBytes   struct{ *probe.Probe }
	closeNoClean   struct{ *probe.Probe }
	errorNoResult  struct{ *probe.Probe }
	initOnPointer  struct{ *probe.Probe }
	wrongTwoAtOnce struct{ *probe.Probe }
	rightHooksToo  struct{ *probe.Probe }
	probeObject    = durabletestv1durable.ProbeObject
)

func (initNoError) Init(context.Context, *probeObject) {}

func (alarmNoInfo) Alarm(context.Context, *probeObject) error { return nil }

func (fetchWithError) Fetch(context.Context, *probeObject, http.ResponseWriter, *http.Request) error {
	return nil
}

func (messageBytes) WebSocketMessage(context.Context, *probeObject, *websocket.Conn, []byte) error {
	return nil
}

func (closeNoClean) WebSocketClose(context.Context, *probeObject, *websocket.Conn, int, string) error {
	return nil
}

func (errorNoResult) WebSocketError(context.Context, *probeObject, *websocket.Conn, error) {}

func (*initOnPointer) Init(context.Context, *probeObject) error { return nil }

func (wrongTwoAtOnce) Init(context.Context, *probeObject)                              {}
func (wrongTwoAtOnce) WebSocketMessage(context.Context, *probeObject, *websocket.Conn) {}

func (rightHooksToo) WebSocketMessage(context.Context, *probeObject, *websocket.Conn, websocket.Message) error {
	return nil
}

// testRegisterRefusesHookWithWrongSignature registers, for each hook, an
// implementation whose method of that name has a slightly wrong signature,
// which would silently never be called: Register fails with
// ErrHookSignature, naming the class, the method, the signature found and
// the one expected, and registers nothing.
func testRegisterRefusesHookWithWrongSignature(t *testing.T, d Deployment) {
	p := &probe.Probe{}
	for _, tc := range []struct {
		name string
		impl durabletestv1durable.Probe
		want []string // in the error
	}{
		{"Init without error", initNoError{p}, []string{"class Probe", "servertest.initNoError.Init is func(context.Context, *durable.Object[",
			"must be func(context.Context, *durable.Object[*durabletestv1.ProbeState]) error"}},
		{"Alarm without info", alarmNoInfo{p}, []string{"alarmNoInfo.Alarm is func(context.Context, *durable.Object[*durabletestv1.ProbeState]) error",
			"must be func(context.Context, *durable.Object[*durabletestv1.ProbeState], durable.AlarmInfo) error"}},
		{"Fetch with an error", fetchWithError{p}, []string{"Fetch hook", "http.ResponseWriter, *http.Request) error, but",
			"*http.Request)"}},
		{"WebSocketMessage of bytes", messageBytes{p}, []string{"*websocket.Conn, []uint8) error", "*websocket.Conn, websocket.Message) error"}},
		{"WebSocketClose without clean", closeNoClean{p}, []string{"WebSocketClose hook", "int, string, bool) error"}},
		{"WebSocketError without result", errorNoResult{p}, []string{"*websocket.Conn, error), but", "*websocket.Conn, error) error"}},
		{"Init on a pointer, registered by value", initOnPointer{p}, []string{"Init has a pointer receiver", "register a *servertest.initOnPointer"}},
		{"two wrong at once", wrongTwoAtOnce{p}, []string{"wrongTwoAtOnce.Init is", "wrongTwoAtOnce.WebSocketMessage is"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := newServer(t, d)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Shutdown(context.Background()) })
			_, err = durabletestv1durable.RegisterProbe(srv, tc.impl)
			if !errors.Is(err, server.ErrHookSignature) {
				t.Fatalf("RegisterProbe = %v, want ErrHookSignature", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not say %q:\n%v", w, err)
				}
			}
			if classes := srv.Classes(); len(classes) != 0 {
				t.Errorf("classes registered anyway: %v", classes)
			}
		})
	}

	// The right signatures, by value or pointer, still register.
	for _, impl := range []durabletestv1durable.Probe{rightHooksToo{p}, &initOnPointer{p}, p} {
		srv, err := newServer(t, d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := durabletestv1durable.RegisterProbe(srv, impl); err != nil {
			t.Errorf("RegisterProbe(%T) = %v", impl, err)
		}
		srv.Shutdown(context.Background())
	}
}
