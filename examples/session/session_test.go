package session_test

import (
	"context"
	"maps"
	"testing"
	"testing/synctest"
	"time"

	"connectrpc.com/connect"

	"github.com/durablego/durable/examples/internal/exampletest"
	"github.com/durablego/durable/examples/session"
	sessionv1 "github.com/durablego/durable/gen/examples/session/v1"
	"github.com/durablego/durable/gen/examples/session/v1/sessionv1durable"
)

// The tests come in three kinds. Those that move a hand-driven clock use the
// default idle period of 30 minutes, so that no alarm falls due while they
// run. Those that let alarms fire run in a testing/synctest bubble, on the
// wall clock in fake time: thirty minutes pass in milliseconds, and
// synctest.Wait returns once the alarm has done its work. The restart test,
// about an alarm that fell due while no server ran, uses the wall clock and
// an idle period of a few hundred milliseconds, and polls with Peek, which
// does not count as activity.

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

// TestIdleSessionIsCleanedUp runs in a testing/synctest bubble, with the
// default idle period of 30 minutes and the wall clock, in fake time: the
// first alarm finds the session active since and reschedules itself at the
// last activity + the idle period, and that one, with no activity since,
// deletes the session. Used again, it starts over, empty, with an alarm.
func TestIdleSessionIsCleanedUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, ns := start(t, t.TempDir(), session.Session{})
		s := ns.Get(ns.IDFromName("idle"))
		t0 := time.Now()
		idle := session.DefaultIdle
		setData(t, s, "k", "v") // Init, then the data
		kept := map[string]string{"k": "v"}
		wantPeek(t, "a new session", s, kept, t0, t0.Add(idle))

		time.Sleep(time.Minute)
		if _, err := s.Touch(ctx, &sessionv1.TouchRequest{}); err != nil {
			t.Fatalf("Touch: %v", err)
		}
		last := time.Now()
		wantPeek(t, "after Touch", s, kept, last, t0.Add(idle))

		sleepUntil(t0.Add(idle))
		wantPeek(t, "after the first alarm", s, kept, last, last.Add(idle))
		sleepUntil(last.Add(idle - time.Millisecond))
		wantPeek(t, "a millisecond before the session is idle", s, kept, last, last.Add(idle))
		sleepUntil(last.Add(idle))
		wantPeek(t, "once idle for 30 minutes", s, nil, time.Time{}, time.Time{})

		wantData(t, "a revived session", s, nil)
		wantPeek(t, "a revived session", s, nil, time.Now(), time.Now().Add(idle))
	})
}

// TestActiveSessionIsKeptAlive, in a bubble: a session touched every 7
// minutes outlives its first alarm, which reschedules itself at the last
// activity + the idle period; left alone, it is deleted an idle period
// after its last activity.
func TestActiveSessionIsKeptAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, ns := start(t, t.TempDir(), session.Session{})
		s := ns.Get(ns.IDFromName("active"))
		t0 := time.Now()
		idle := session.DefaultIdle
		setData(t, s, "k", "v")
		kept := map[string]string{"k": "v"}
		var touches []time.Time
		for range 5 { // at 7, 14, 21, 28 and 35 minutes
			time.Sleep(7 * time.Minute)
			if _, err := s.Touch(ctx, &sessionv1.TouchRequest{}); err != nil {
				t.Fatalf("Touch: %v", err)
			}
			touches = append(touches, time.Now())
		}
		// The alarm due at 30 minutes found the touch of 28 and moved to 58.
		wantPeek(t, "after the first alarm", s, kept, touches[4], touches[3].Add(idle))
		sleepUntil(touches[3].Add(idle))
		// The one at 58 found the touch of 35 and moved to 65.
		wantPeek(t, "after the second alarm", s, kept, touches[4], touches[4].Add(idle))
		sleepUntil(touches[4].Add(idle))
		wantPeek(t, "idle for 30 minutes since the last touch", s, nil, time.Time{}, time.Time{})
		if !t0.Before(touches[0]) {
			t.Fatalf("fake time did not move: %v, %v", t0, touches[0])
		}
	})
}

// sleepUntil sleeps, in a synctest bubble, until at, then waits for every
// goroutine of the bubble (the alarm scheduler's run among them) to block.
func sleepUntil(at time.Time) {
	time.Sleep(time.Until(at))
	synctest.Wait()
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
