package usersession_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"

	"github.com/durablego/durable/examples/internal/exampletest"
	"github.com/durablego/durable/examples/usersession"
	usersessionv1 "github.com/durablego/durable/gen/examples/usersession/v1"
	"github.com/durablego/durable/gen/examples/usersession/v1/usersessionv1durable"
)

var (
	ctx = context.Background()
	t0  = time.UnixMilli(1_700_000_000_000)
)

func start(t *testing.T, clock *exampletest.Clock) *usersessionv1durable.UserSessionNamespace {
	t.Helper()
	srv := exampletest.Start(t, t.TempDir())
	ns, err := usersessionv1durable.RegisterUserSession(srv.Server, usersession.UserSession{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func setUser(t *testing.T, s usersessionv1durable.UserSessionStub, user string, ttl int64) int64 {
	t.Helper()
	r, err := s.SetUser(ctx, &usersessionv1.SetUserRequest{UserId: user, TtlSeconds: ttl})
	if err != nil {
		t.Fatalf("SetUser %q: %v", user, err)
	}
	return r.GetExpiresAtMs()
}

func wantSession(t *testing.T, what string, s usersessionv1durable.UserSessionStub, user string, expiresAt time.Time) {
	t.Helper()
	r, err := s.GetData(ctx, &usersessionv1.GetDataRequest{})
	if err != nil {
		t.Fatalf("%s: GetData: %v", what, err)
	}
	if got := r.GetSession(); got.GetUserId() != user || got.GetExpiresAtMs() != expiresAt.UnixMilli() {
		t.Fatalf("%s: GetData = user %q expiring at %d; want %q at %d", what, got.GetUserId(), got.GetExpiresAtMs(), user, expiresAt.UnixMilli())
	}
}

func wantExpired(t *testing.T, what string, s usersessionv1durable.UserSessionStub) {
	t.Helper()
	_, err := s.GetData(ctx, &usersessionv1.GetDataRequest{})
	exampletest.WantError(t, what, err, connect.CodeFailedPrecondition, "session expired")
	if !errors.Is(err, usersession.ErrExpired) {
		t.Errorf("%s: errors.Is(err, ErrExpired) = false for %v", what, err)
	}
}

func TestSessionExpires(t *testing.T) {
	clock := exampletest.NewClock(t0)
	ns := start(t, clock)
	s := ns.Get(ns.IDFromName("session-1"))

	wantExpired(t, "a session that never had a user", s)

	exp := setUser(t, s, "user-42", 0)
	if want := t0.Add(usersession.DefaultTTL); exp != want.UnixMilli() {
		t.Fatalf("SetUser with no TTL expires at %d, want now + 1h = %d", exp, want.UnixMilli())
	}
	wantSession(t, "just signed in", s, "user-42", t0.Add(time.Hour))
	clock.Advance(time.Hour) // now == expires_at: not yet past it
	wantSession(t, "at the expiry time", s, "user-42", t0.Add(time.Hour))
	clock.Advance(time.Millisecond)
	wantExpired(t, "1ms past the expiry time", s)

	// Signing in again renews the session, from now, for the TTL asked.
	now := clock.Now()
	if exp := setUser(t, s, "user-7", 60); exp != now.Add(time.Minute).UnixMilli() {
		t.Fatalf("SetUser with a TTL of 60s expires at %d, want %d", exp, now.Add(time.Minute).UnixMilli())
	}
	wantSession(t, "renewed", s, "user-7", now.Add(time.Minute))
	clock.Advance(61 * time.Second)
	wantExpired(t, "61s into a 60s session", s)

	// Sessions are separate objects.
	wantExpired(t, "another session", ns.Get(ns.IDFromName("session-2")))
}

// TestInvalidStateIsRefused needs the server to validate the state against
// its protovalidate rules after each call: a user ID the request accepts but
// the state's 128-character limit refuses fails the call and leaves the
// session as it was. The code asserted, InvalidArgument, is the one
// expected for a state left invalid by the caller's input.
func TestInvalidStateIsRefused(t *testing.T) {
	clock := exampletest.NewClock(t0)
	ns := start(t, clock)
	s := ns.Get(ns.IDFromName("s"))
	setUser(t, s, "user-1", 0)

	_, err := s.SetUser(ctx, &usersessionv1.SetUserRequest{UserId: strings.Repeat("u", 129), TtlSeconds: 7200})
	exampletest.WantError(t, "SetUser with a 129-character user ID", err, connect.CodeInvalidArgument, "user_id")
	wantSession(t, "after the refused SetUser", s, "user-1", t0.Add(time.Hour))

	long := strings.Repeat("u", 128)
	setUser(t, s, long, 0)
	wantSession(t, "with a 128-character user ID", s, long, t0.Add(time.Hour))
}

// TestInvalidRequestsAreRefused needs the server to validate requests
// against their protovalidate rules.
func TestInvalidRequestsAreRefused(t *testing.T) {
	clock := exampletest.NewClock(t0)
	ns := start(t, clock)
	s := ns.Get(ns.IDFromName("s"))
	_, err := s.SetUser(ctx, &usersessionv1.SetUserRequest{UserId: ""})
	exampletest.WantError(t, "SetUser with no user", err, connect.CodeInvalidArgument, "user_id")
	_, err = s.SetUser(ctx, &usersessionv1.SetUserRequest{UserId: "u", TtlSeconds: -1})
	exampletest.WantError(t, "SetUser with a negative TTL", err, connect.CodeInvalidArgument, "ttl_seconds")
	_, err = s.SetUser(ctx, &usersessionv1.SetUserRequest{UserId: "u", TtlSeconds: 31536001})
	exampletest.WantError(t, "SetUser with a TTL over a year", err, connect.CodeInvalidArgument, "ttl_seconds")
	wantExpired(t, "after refused calls", s)
}

// TestStateRules checks the state's rules themselves, without a server.
func TestStateRules(t *testing.T) {
	for _, c := range []struct {
		name  string
		state *usersessionv1.UserSessionState
		valid bool
	}{
		{"initial", &usersessionv1.UserSessionState{}, true},
		{"signed in", &usersessionv1.UserSessionState{UserId: "u", ExpiresAtMs: 1, Data: map[string]string{"k": "v"}}, true},
		{"long user ID", &usersessionv1.UserSessionState{UserId: strings.Repeat("u", 129)}, false},
		{"negative expiry", &usersessionv1.UserSessionState{ExpiresAtMs: -1}, false},
		{"empty data key", &usersessionv1.UserSessionState{Data: map[string]string{"": "v"}}, false},
		{"long data value", &usersessionv1.UserSessionState{Data: map[string]string{"k": strings.Repeat("v", 4097)}}, false},
	} {
		if err := protovalidate.Validate(c.state); (err == nil) != c.valid {
			t.Errorf("%s: Validate = %v, want valid %v", c.name, err, c.valid)
		}
	}
}
