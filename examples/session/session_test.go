package session_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/durablego/durable/examples/internal/exampletest"
	"github.com/durablego/durable/examples/session"
	sessionv1 "github.com/durablego/durable/gen/examples/session/v1"
	"github.com/durablego/durable/gen/examples/session/v1/sessionv1durable"
)

// The tests come in two kinds. Those that move a hand-driven clock use the
// default idle period of 30 minutes, so that no alarm falls due while they
// run: alarms fire on the wall clock. Those that let alarms fire use the
// wall clock and an idle period of a few hundred milliseconds, and poll
// with Peek, which does not count as activity, until the alarm has done
// its work.

var ctx = context.Background()

// cleanupTimeout bounds the wait for an alarm to clean a session up, well
// past the idle periods used here.
const cleanupTimeout = 10 * time.Second

func start(t *testing.T, dir string, impl session.Session) (*exampletest.Server, *sessionv1durable.SessionNamespace) {
	t.Helper()
	srv := exampletest.Start(t, dir)
	ns, err := sessionv1durable.RegisterSession(srv.Server, impl)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start() // the tests call the sessions in process
	return srv, ns
}

// wallClock returns a hand-driven clock reading the wall clock's time,
// truncated to a millisecond, the precision of the session's times.
func wallClock() *exampletest.Clock {
	return exampletest.NewClock(time.UnixMilli(time.Now().UnixMilli()))
}

func peek(t *testing.T, s sessionv1durable.SessionStub) *sessionv1.PeekResponse {
	t.Helper()
	r, err := s.Peek(ctx, &sessionv1.PeekRequest{})
	if err != nil {
		t.Fatalf("Peek: %v", err)
	}
	return r
}

// wantPeek fails the test unless the session has the data, last activity
// and alarm given (Unix milliseconds, 0 for none).
func wantPeek(t *testing.T, what string, s sessionv1durable.SessionStub, data map[string]string, last, alarm time.Time) {
	t.Helper()
	r := peek(t, s)
	if got := r.GetSession().GetData(); !maps.Equal(got, data) {
		t.Errorf("%s: data %v, want %v", what, got, data)
	}
	if got, want := r.GetSession().GetLastActivityMs(), ms(last); got != want {
		t.Errorf("%s: last activity %d, want %d", what, got, want)
	}
	if got, want := r.GetAlarmAtMs(), ms(alarm); got != want {
		t.Errorf("%s: alarm at %d, want %d", what, got, want)
	}
}

// ms returns t in Unix milliseconds, 0 for the zero time.
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func setData(t *testing.T, s sessionv1durable.SessionStub, key, value string) {
	t.Helper()
	if _, err := s.SetData(ctx, &sessionv1.SetDataRequest{Key: key, Value: value}); err != nil {
		t.Fatalf("SetData %q: %v", key, err)
	}
}

func wantData(t *testing.T, what string, s sessionv1durable.SessionStub, want map[string]string) {
	t.Helper()
	r, err := s.GetData(ctx, &sessionv1.GetDataRequest{})
	if err != nil {
		t.Fatalf("%s: GetData: %v", what, err)
	}
	if got := r.GetData(); !maps.Equal(got, want) {
		t.Fatalf("%s: GetData = %v, want %v", what, got, want)
	}
}

// waitCleanedUp polls Peek until the session has been cleaned up, and
// checks that the cleanup left nothing: no data, no last activity, no
// alarm. It returns the time it saw the cleanup.
func waitCleanedUp(t *testing.T, what string, s sessionv1durable.SessionStub) time.Time {
	t.Helper()
	deadline := time.Now().Add(cleanupTimeout)
	for {
		r := peek(t, s)
		seen := time.Now()
		if r.GetSession().GetLastActivityMs() == 0 {
			if len(r.GetSession().GetData()) != 0 || r.GetAlarmAtMs() != 0 {
				t.Fatalf("%s: cleaned up session has data %v and alarm %d, want none", what, r.GetSession().GetData(), r.GetAlarmAtMs())
			}
			return seen
		}
		if seen.After(deadline) {
			t.Fatalf("%s: not cleaned up after %v: %v", what, cleanupTimeout, r)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wantNotBefore fails the test if a cleanup seen at seen came before the
// session, last active at lastMs, had been idle for idle.
func wantNotBefore(t *testing.T, what string, seen time.Time, lastMs int64, idle time.Duration) {
	t.Helper()
	if idleAt := time.UnixMilli(lastMs).Add(idle); seen.Before(idleAt) {
		t.Fatalf("%s: cleaned up by %v, before the session had been idle for %v (at %v)", what, seen, idle, idleAt)
	}
}

// TestActivity checks what Init and each RPC do to the session, with a
// clock moved by hand: Init schedules the alarm an idle period ahead;
// Touch, SetData and GetData record activity without moving an alarm that
// is due in time; Peek changes nothing.
func TestActivity(t *testing.T) {
	clock := wallClock()
	_, ns := start(t, t.TempDir(), session.Session{Now: clock.Now})
	s := ns.Get(ns.IDFromName("session-1"))
	t0 := clock.Now()
	alarm := t0.Add(session.DefaultIdle) // Idle zero means 30 minutes

	wantPeek(t, "a new session", s, nil, t0, alarm)

	clock.Advance(time.Minute)
	setData(t, s, "theme", "dark")
	wantPeek(t, "after SetData", s, map[string]string{"theme": "dark"}, t0.Add(time.Minute), alarm)

	clock.Advance(time.Minute)
	setData(t, s, "theme", "light")
	setData(t, s, "lang", "")
	want := map[string]string{"theme": "light", "lang": ""}
	wantData(t, "GetData", s, want)
	wantPeek(t, "after GetData", s, want, t0.Add(2*time.Minute), alarm)

	clock.Advance(time.Minute)
	r, err := s.Touch(ctx, &sessionv1.TouchRequest{})
	if err != nil {
		t.Fatalf("Touch: %v", err)
	}
	if got, want := r.GetLastActivityMs(), t0.Add(3*time.Minute).UnixMilli(); got != want {
		t.Fatalf("Touch = last activity %d, want %d", got, want)
	}

	clock.Advance(time.Minute)
	wantPeek(t, "Peek a minute after Touch", s, want, t0.Add(3*time.Minute), alarm)

	_, err = s.SetData(ctx, &sessionv1.SetDataRequest{Key: "", Value: "v"})
	exampletest.WantError(t, "SetData with an empty key", err, connect.CodeInvalidArgument, "key")
	wantPeek(t, "after the refused SetData", s, want, t0.Add(3*time.Minute), alarm)

	// Sessions are separate objects.
	wantPeek(t, "another session", ns.Get(ns.IDFromName("session-2")), nil, t0.Add(4*time.Minute), t0.Add(4*time.Minute+session.DefaultIdle))
}

// TestIdleRoundsUp checks that an idle period finer than a millisecond is
// rounded up to the next, the precision of alarms.
func TestIdleRoundsUp(t *testing.T) {
	clock := wallClock()
	_, ns := start(t, t.TempDir(), session.Session{Idle: time.Hour + time.Nanosecond, Now: clock.Now})
	s := ns.Get(ns.IDFromName("s"))
	t0 := clock.Now()
	wantPeek(t, "a new session", s, nil, t0, t0.Add(time.Hour+time.Millisecond))
}

// TestRestart checks that a session that is not idle keeps its data and
// its alarm across a restart, and that a server restarted with a shorter
// idle period brings a session's alarm forward at its next activity.
func TestRestart(t *testing.T) {
	clock := wallClock()
	dir := t.TempDir()
	srv, ns := start(t, dir, session.Session{Now: clock.Now})
	s := ns.Get(ns.IDFromName("s"))
	t0 := clock.Now()
	setData(t, s, "cart", "3 items")
	srv.Shutdown(t)

	clock.Advance(time.Minute)
	_, ns = start(t, dir, session.Session{Idle: 10 * time.Minute, Now: clock.Now})
	s = ns.Get(ns.IDFromName("s"))
	want := map[string]string{"cart": "3 items"}
	wantPeek(t, "after the restart", s, want, t0, t0.Add(session.DefaultIdle))
	wantData(t, "after the restart", s, want)
	wantPeek(t, "after GetData with a 10-minute idle period", s, want, t0.Add(time.Minute), t0.Add(11*time.Minute))
}

// TestIdleSessionIsCleanedUp lets a session's alarm fire: once it has been
// idle for the idle period, its data is gone and it has no alarm. Used
// again, it starts over, empty, with an alarm, and expires again.
func TestIdleSessionIsCleanedUp(t *testing.T) {
	const idle = 200 * time.Millisecond
	_, ns := start(t, t.TempDir(), session.Session{Idle: idle})
	s := ns.Get(ns.IDFromName("idle"))

	r := peek(t, s) // Init
	created := r.GetSession().GetLastActivityMs()
	if created == 0 || r.GetAlarmAtMs() != created+idle.Milliseconds() {
		t.Fatalf("a new session: last activity %d, alarm at %d; want the alarm %v later", created, r.GetAlarmAtMs(), idle)
	}
	setData(t, s, "k", "v")
	last := peek(t, s).GetSession().GetLastActivityMs()
	seen := waitCleanedUp(t, "an idle session", s)
	wantNotBefore(t, "an idle session", seen, last, idle)

	// Revived: empty, active from now, with an alarm an idle period ahead.
	wantData(t, "a revived session", s, nil)
	r = peek(t, s)
	last = r.GetSession().GetLastActivityMs()
	if last == 0 || r.GetAlarmAtMs() != last+idle.Milliseconds() {
		t.Fatalf("a revived session: last activity %d, alarm at %d; want the alarm %v after the activity", last, r.GetAlarmAtMs(), idle)
	}
	seen = waitCleanedUp(t, "a revived session left idle", s)
	wantNotBefore(t, "a revived session left idle", seen, last, idle)
}

// TestActiveSessionIsKeptAlive touches a session until its first alarm has
// run: the alarm keeps the data and schedules itself again at the last
// activity + the idle period (not at the time it ran + the idle period).
// Left alone, the session is then cleaned up an idle period after its last
// activity.
func TestActiveSessionIsKeptAlive(t *testing.T) {
	const idle = 400 * time.Millisecond
	_, ns := start(t, t.TempDir(), session.Session{Idle: idle})
	s := ns.Get(ns.IDFromName("active"))
	setData(t, s, "k", "v")
	first := peek(t, s).GetAlarmAtMs()

	// Activity every few milliseconds until the alarm has moved. Activity
	// never moves an alarm due in time, so only the alarm handler does.
	touched := map[int64]bool{}
	var lastTouch int64
	var r *sessionv1.PeekResponse
	deadline := time.Now().Add(cleanupTimeout)
	for {
		tr, err := s.Touch(ctx, &sessionv1.TouchRequest{})
		if err != nil {
			t.Fatalf("Touch: %v", err)
		}
		lastTouch = tr.GetLastActivityMs()
		touched[lastTouch] = true
		if r = peek(t, s); r.GetAlarmAtMs() != first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first alarm, due at %d, did not run in %v", first, cleanupTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := r.GetSession().GetData(); !maps.Equal(got, map[string]string{"k": "v"}) {
		t.Fatalf("an active session's data after its first alarm: %v, want it kept", got)
	}
	at := r.GetAlarmAtMs()
	if at <= first || !touched[at-idle.Milliseconds()] {
		t.Fatalf("the first alarm (due at %d) rescheduled itself at %d, want a Touch's last activity + %v", first, at, idle)
	}

	seen := waitCleanedUp(t, "a session left idle after its first alarm", s)
	wantNotBefore(t, "a session left idle after its first alarm", seen, lastTouch, idle)
}

// TestOverdueAlarmAfterRestart shuts a server down before a session's
// alarm is due and restarts it after: the overdue alarm cleans the session
// up promptly.
func TestOverdueAlarmAfterRestart(t *testing.T) {
	const idle = 300 * time.Millisecond
	dir := t.TempDir()
	srv, ns := start(t, dir, session.Session{Idle: idle})
	s := ns.Get(ns.IDFromName("overdue"))
	setData(t, s, "k", "v")
	r := peek(t, s)
	alarm := time.UnixMilli(r.GetAlarmAtMs())
	srv.Shutdown(t)
	if !time.Now().Before(alarm) {
		// The server runs only alarms that are due: this one may have run
		// before the shutdown, and the test would prove nothing.
		t.Skipf("the shutdown ended after the alarm was due (%v); nothing to test", alarm)
	}

	for !time.Now().After(alarm) { // wait for the alarm to fall due with the server down
		time.Sleep(10 * time.Millisecond)
	}

	_, ns = start(t, dir, session.Session{Idle: idle})
	s = ns.Get(ns.IDFromName("overdue"))
	restarted := time.Now()
	waitCleanedUp(t, "a session whose alarm fell due while the server was down", s)
	t.Logf("cleaned up %v after the restart", time.Since(restarted))
}
