package servertest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"connectrpc.com/connect"

	"github.com/durablego/durable"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/probe"
	"github.com/durablego/durable/server"
)

// alarmEnv is an env whose probes report every alarm run.
func alarmEnv(t testing.TB, d Deployment, opts ...server.Option) *env {
	t.Helper()
	e := newEnv(t, d, opts...)
	e.probe.Alarms = make(chan probe.AlarmRun, 1024)
	return e
}

func (e *env) schedule(t testing.TB, name string, req *durabletestv1.ScheduleRequest) (time.Time, error) {
	t.Helper()
	r, err := e.probes.Get(e.probes.IDFromName(name)).Schedule(context.Background(), req)
	if err != nil {
		return time.Time{}, err
	}
	if r.GetAtMs() == 0 {
		return time.Time{}, nil
	}
	return time.UnixMilli(r.GetAtMs()), nil
}

func (e *env) alarmAt(t testing.TB, name string, at time.Time) {
	t.Helper()
	if _, err := e.schedule(t, name, &durabletestv1.ScheduleRequest{AtMs: at.UnixMilli()}); err != nil {
		t.Fatal(err)
	}
}

// nextRun waits for the next alarm run, failing after a deadline.
func (e *env) nextRun(t testing.TB) probe.AlarmRun {
	t.Helper()
	select {
	case r := <-e.probe.Alarms:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("no alarm ran within 20s")
		return probe.AlarmRun{}
	}
}

func (e *env) probeState(t testing.TB, name string) *durabletestv1.ProbeState {
	t.Helper()
	r, err := e.probes.Get(e.probes.IDFromName(name)).Get(context.Background(), &durabletestv1.GetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return r.GetState()
}

func testAlarmFiresOnceAndIsCleared(t *testing.T, d Deployment) {
	e := alarmEnv(t, d)
	// Far enough ahead for the two calls below to return before it is
	// due: the first call of a server on etcd takes 200 ms under -race.
	due := time.Now().Add(500 * time.Millisecond)
	e.alarmAt(t, "a", due)
	if at, _ := e.schedule(t, "a", &durabletestv1.ScheduleRequest{}); at.UnixMilli() != due.UnixMilli() {
		t.Fatalf("GetAlarm = %v, want %v", at, due)
	}
	run := e.nextRun(t)
	if !run.ID.Equal(e.probes.IDFromName("a")) || run.Info.IsRetry || run.Info.RetryCount != 0 ||
		run.Info.ScheduledTime.UnixMilli() != due.UnixMilli() || run.Started.Before(due.Truncate(time.Millisecond)) {
		t.Fatalf("run %+v, due %v", run, due)
	}
	eventually(t, "the alarm is cleared after its run", func() bool {
		at, _ := e.schedule(t, "a", &durabletestv1.ScheduleRequest{})
		return at.IsZero()
	})
	if s := e.probeState(t, "a"); s.GetAlarmRuns() != 1 {
		t.Fatalf("alarm runs %d, want 1", s.GetAlarmRuns())
	}
}

// sentinel sets an alarm on another object after the others and waits for
// it: alarms fire in time order, so what had not fired by then never will.
func (e *env) sentinel(t testing.TB, after time.Duration) []probe.AlarmRun {
	t.Helper()
	e.alarmAt(t, "sentinel", time.Now().Add(after))
	sid := e.probes.IDFromName("sentinel")
	var others []probe.AlarmRun
	for {
		r := e.nextRun(t)
		if r.ID.Equal(sid) {
			return others
		}
		others = append(others, r)
	}
}

func testAlarmReplacementDeletionAndRollback(t *testing.T, d Deployment) {
	e := alarmEnv(t, d)
	// Replaced: only the new time fires.
	e.alarmAt(t, "replaced", time.Now().Add(time.Hour))
	e.alarmAt(t, "replaced", time.Now().Add(20*time.Millisecond))
	// Deleted by a later call, which must end before the alarm's time for
	// the test to say anything: a slow machine (a server on etcd under
	// -race) may take longer than the lead, and then the alarm rightly
	// fires first. late holds those, whose runs are allowed.
	const lead = 200 * time.Millisecond
	late := map[durable.ID]bool{}
	deleteBefore := func(name string, req *durabletestv1.ScheduleRequest) {
		t.Helper()
		at := time.Now().Add(lead)
		e.alarmAt(t, name, at)
		if _, err := e.schedule(t, name, req); err != nil {
			t.Fatal(err)
		}
		if !time.Now().Before(at.Truncate(time.Millisecond)) {
			late[e.probes.IDFromName(name)] = true
		}
	}
	deleteBefore("deleted", &durabletestv1.ScheduleRequest{Delete: true})  // never fires
	deleteBefore("wiped", &durabletestv1.ScheduleRequest{DeleteAll: true}) // DeleteAll deletes it too
	// Set by a failing method: rolled back.
	_, err := e.schedule(t, "rolledback", &durabletestv1.ScheduleRequest{AtMs: time.Now().Add(20 * time.Millisecond).UnixMilli(), Fail: true})
	if !errors.Is(err, probe.ErrAsked) {
		t.Fatal(err)
	}
	if at, _ := e.schedule(t, "rolledback", &durabletestv1.ScheduleRequest{}); !at.IsZero() {
		t.Fatalf("a failed call's alarm is there: %v", at)
	}

	runs := e.sentinel(t, 2*lead)
	var replaced int
	for _, r := range runs {
		switch {
		case r.ID.Equal(e.probes.IDFromName("replaced")):
			replaced++
		case late[r.ID]:
		default:
			t.Fatalf("runs before the sentinel: %v, want only the replaced alarm (and none deleted in time)", runs)
		}
	}
	if replaced != 1 {
		t.Fatalf("the replaced alarm ran %d times before the sentinel, want once: %v", replaced, runs)
	}
	if len(late) > 0 {
		t.Logf("%d deletions ended after their alarm's time: not checked", len(late))
	}
}

func testAlarmTimes(t *testing.T, d Deployment) {
	e := alarmEnv(t, d)
	// In the past: fires at once.
	e.alarmAt(t, "past", time.Now().Add(-time.Hour))
	if r := e.nextRun(t); !r.ID.Equal(e.probes.IDFromName("past")) {
		t.Fatalf("run of %v", r.ID)
	}
	for _, at := range []int64{-5} {
		_, err := e.schedule(t, "bad", &durabletestv1.ScheduleRequest{AtMs: at})
		var rpc *durable.RPCError
		if !errors.Is(err, engine.ErrInvalidAlarm) || !errors.As(err, &rpc) || rpc.Code != connect.CodeInvalidArgument {
			t.Fatalf("alarm at %d: %v", at, err)
		}
	}
}

func testAlarmRetriesWithCount(t *testing.T, d Deployment) {
	e := alarmEnv(t, d, server.WithAlarmRetry(5*time.Millisecond))
	e.probe.AlarmFailures.Store(2)
	e.alarmAt(t, "retry", time.Now())
	for want := range 3 {
		r := e.nextRun(t)
		if r.Info.RetryCount != want || r.Info.IsRetry != (want > 0) {
			t.Fatalf("run %d: info %+v", want, r.Info)
		}
	}
	eventually(t, "the successful run is committed", func() bool { return e.probeState(t, "retry").GetAlarmRuns() == 1 })
	if s := e.probeState(t, "retry"); s.GetAlarmRetry() != 2 {
		t.Fatalf("state %v: the handler was told the wrong retry count", s)
	}
}

func testAlarmDroppedAfterSixRetries(t *testing.T, d Deployment) {
	e := alarmEnv(t, d, server.WithAlarmRetry(time.Millisecond))
	e.probe.AlarmFailures.Store(1000)
	e.alarmAt(t, "doomed", time.Now())
	for want := range 7 {
		if r := e.nextRun(t); r.Info.RetryCount != want {
			t.Fatalf("run %d has retry count %d", want, r.Info.RetryCount)
		}
	}
	eventually(t, "the alarm is dropped", func() bool {
		at, _ := e.schedule(t, "doomed", &durabletestv1.ScheduleRequest{})
		return at.IsZero()
	})
	e.probe.AlarmFailures.Store(0)
	if runs := e.sentinel(t, 200*time.Millisecond); len(runs) != 0 {
		t.Fatalf("runs after the alarm was dropped: %v", runs)
	}
}

func testHandlerThatSetsANewAlarmKeepsIt(t *testing.T, d Deployment) {
	e := alarmEnv(t, d)
	e.probe.Reschedule.Store(int64(30 * time.Millisecond))
	e.alarmAt(t, "again", time.Now())
	e.nextRun(t)
	e.probe.Reschedule.Store(0)
	r := e.nextRun(t)
	if !r.ID.Equal(e.probes.IDFromName("again")) || r.Info.IsRetry {
		t.Fatalf("second run %+v", r)
	}
	eventually(t, "both runs are committed and the alarm cleared", func() bool {
		at, _ := e.schedule(t, "again", &durabletestv1.ScheduleRequest{})
		return at.IsZero() && e.probeState(t, "again").GetAlarmRuns() == 2
	})
}

func testAlarmActivatesEvictedObject(t *testing.T, d Deployment) {
	e := alarmEnv(t, d, server.WithIdleTimeout(5*time.Millisecond))
	e.alarmAt(t, "sleeper", time.Now().Add(300*time.Millisecond))
	eventually(t, "the object is evicted", func() bool { return e.srv.ActiveObjects() == 0 })
	if r := e.nextRun(t); !r.ID.Equal(e.probes.IDFromName("sleeper")) {
		t.Fatalf("run of %v", r.ID)
	}
}

func testOverdueAlarmFiresAfterRestart(t *testing.T, d Deployment) {
	st := d.Storage(t)
	e := newEnvOn(t, st)
	due := time.Now().Add(200 * time.Millisecond)
	e.alarmAt(t, "overdue", due)
	e.shutdown(t)
	for time.Now().Before(due.Add(50 * time.Millisecond)) {
		time.Sleep(10 * time.Millisecond) // let the alarm fall due while no server runs
	}
	e2 := newEnvOn(t, st)
	eventually(t, "the overdue alarm runs after the restart", func() bool {
		return e2.probeState(t, "overdue").GetAlarmRuns() == 1
	})
}

func testManyAlarmsAtTheSameInstant(t *testing.T, d Deployment) {
	e := alarmEnv(t, d)
	const n = 300
	due := time.Now().Add(200 * time.Millisecond)
	for i := range n {
		e.alarmAt(t, fmt.Sprint("same-", i), due)
	}
	seen := map[string]bool{}
	for range n {
		r := e.nextRun(t)
		if seen[r.ID.String()] {
			t.Fatalf("object %s ran twice", r.ID)
		}
		seen[r.ID.String()] = true
	}
}

// testAlarmsFireInTimeOrder runs in a synctest bubble: with fake time the
// four alarms are all set before the first is due however slow the
// machine, so the order observed is the scheduler's alone.
func testAlarmsFireInTimeOrder(t *testing.T, d Deployment) {
	requireSynctest(t, d)
	synctest.Test(t, func(t *testing.T) {
		e := alarmEnv(t, d)
		base := time.Now().Add(100 * time.Millisecond)
		names := []string{"third", "first", "fourth", "second"}
		offsets := []time.Duration{60, 0, 90, 30}
		for i, name := range names {
			e.alarmAt(t, name, base.Add(offsets[i]*time.Millisecond))
		}
		for _, want := range []string{"first", "second", "third", "fourth"} {
			if r := e.nextRun(t); !r.ID.Equal(e.probes.IDFromName(want)) {
				t.Fatalf("fired %s out of order, want %s", r.ID, want)
			}
		}
	})
}
