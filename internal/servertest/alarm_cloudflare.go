package servertest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/durablego/durable"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	"github.com/durablego/durable/server"
)

// The alarm semantics a user ported from Cloudflare relies on (issue 13,
// items 10 and 12).

// alarmSeen is what GetAlarm reported inside one run of the Alarm hook.
type alarmSeen struct {
	info durable.AlarmInfo
	set  bool
	at   time.Time
	err  error
}

// watchAlarm makes e's probe report on the returned channel what GetAlarm
// says at the start of each run of the Alarm hook, and then run then, if
// not nil, as the rest of the hook.
func watchAlarm(e *env, then func(ctx context.Context, o *durabletestv1durable.ProbeObject, info durable.AlarmInfo) error) <-chan alarmSeen {
	seen := make(chan alarmSeen, 64)
	e.probe.OnAlarm = func(ctx context.Context, o *durabletestv1durable.ProbeObject, info durable.AlarmInfo) error {
		at, ok, err := o.GetAlarm(ctx)
		seen <- alarmSeen{info: info, set: ok, at: at, err: err}
		if err != nil || then == nil {
			return err
		}
		return then(ctx, o, info)
	}
	return seen
}

func nextSeen(t testing.TB, seen <-chan alarmSeen) alarmSeen {
	t.Helper()
	select {
	case s := <-seen:
		if s.err != nil {
			t.Fatalf("GetAlarm inside the hook: %v", s.err)
		}
		return s
	case <-time.After(20 * time.Second):
		t.Fatal("no alarm ran within 20s")
		return alarmSeen{}
	}
}

// Inside the hook the running alarm is no longer set, so the common
// "set an alarm if none is set" pattern reschedules, and GetAlarm then
// reports the alarm the hook set.
func testAlarmHookSeesNoAlarmAndCanReschedule(t *testing.T, d Deployment) {
	e := alarmEnv(t, d)
	seenAfterSet := make(chan bool, 4)
	seen := watchAlarm(e, func(ctx context.Context, o *durabletestv1durable.ProbeObject, _ durable.AlarmInfo) error {
		if _, ok, err := o.GetAlarm(ctx); err != nil || ok {
			return err // the second run: an alarm is set already (never, here)
		}
		if o.State.AlarmRuns > 0 {
			return nil // ran once already: stop
		}
		if err := o.SetAlarm(ctx, time.Now().Add(20*time.Millisecond)); err != nil {
			return err
		}
		_, ok, err := o.GetAlarm(ctx)
		seenAfterSet <- ok
		return err
	})
	e.alarmAt(t, "pattern", time.Now())
	for run := range 2 {
		if s := nextSeen(t, seen); s.set {
			t.Fatalf("run %d: GetAlarm inside the hook reports the running alarm (%v)", run, s.at)
		}
		e.nextRun(t)
	}
	if !<-seenAfterSet {
		t.Fatal("GetAlarm after SetAlarm inside the hook reports no alarm")
	}
	eventually(t, "both runs are committed and no alarm is left", func() bool {
		at, _ := e.schedule(t, "pattern", &durabletestv1.ScheduleRequest{})
		return at.IsZero() && e.probeState(t, "pattern").GetAlarmRuns() == 2
	})
}

// A time in the past set inside the hook (Cloudflare's idiom for "run
// again at once") is a new alarm: it fires again.
func testAlarmHookSetsPastTimeRunsAgain(t *testing.T, d Deployment) {
	e := alarmEnv(t, d)
	watchAlarm(e, func(ctx context.Context, o *durabletestv1durable.ProbeObject, info durable.AlarmInfo) error {
		if o.State.AlarmRuns > 0 {
			return nil
		}
		return o.SetAlarm(ctx, time.UnixMilli(1))
	})
	e.alarmAt(t, "again", time.Now())
	first := e.nextRun(t)
	second := e.nextRun(t)
	if !second.ID.Equal(first.ID) || second.Info.IsRetry || !second.Info.ScheduledTime.After(first.Info.ScheduledTime) {
		t.Fatalf("second run %+v after %+v: want a new alarm, due later", second.Info, first.Info)
	}
	eventually(t, "both runs are committed and no alarm is left", func() bool {
		at, _ := e.schedule(t, "again", &durabletestv1.ScheduleRequest{})
		return at.IsZero() && e.probeState(t, "again").GetAlarmRuns() == 2
	})
}

// DeleteAlarm inside the hook cancels what the hook set; alone it deletes
// nothing more than the run did, and is no error.
func testAlarmHookDeleteAlarm(t *testing.T, d Deployment) {
	e := alarmEnv(t, d)
	watchAlarm(e, func(ctx context.Context, o *durabletestv1durable.ProbeObject, _ durable.AlarmInfo) error {
		if o.ID.Name() == "set-then-delete" {
			if err := o.SetAlarm(ctx, time.Now().Add(20*time.Millisecond)); err != nil {
				return err
			}
		}
		if err := o.DeleteAlarm(ctx); err != nil {
			return err
		}
		if _, ok, err := o.GetAlarm(ctx); err != nil || ok {
			return errors.New("an alarm is set after DeleteAlarm")
		}
		return nil
	})
	for _, name := range []string{"set-then-delete", "delete"} {
		e.alarmAt(t, name, time.Now())
		if r := e.nextRun(t); !r.ID.Equal(e.probes.IDFromName(name)) {
			t.Fatalf("run of %v, want %s", r.ID, name)
		}
		eventually(t, name+": the run is committed", func() bool { return e.probeState(t, name).GetAlarmRuns() == 1 })
	}
	if runs := e.sentinel(t, 200*time.Millisecond); len(runs) != 0 {
		t.Fatalf("runs after the hooks deleted their alarms: %v", runs)
	}
	for _, name := range []string{"set-then-delete", "delete"} {
		if at, _ := e.schedule(t, name, &durabletestv1.ScheduleRequest{}); !at.IsZero() {
			t.Fatalf("%s: alarm %v left", name, at)
		}
	}
}

// A failed run is rolled back, the running alarm's removal with it: until
// its retry starts, GetAlarm in other calls reports it, at its time, as
// Cloudflare's does ("set if it has failed and any retry has not begun").
func testAlarmFailedRunStaysSet(t *testing.T, d Deployment) {
	e := alarmEnv(t, d, server.WithAlarmRetry(time.Hour))
	seen := watchAlarm(e, nil)
	e.probe.AlarmFailures.Store(1)
	due, err := e.schedule(t, "failing", &durabletestv1.ScheduleRequest{AtMs: time.Now().UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	if s := nextSeen(t, seen); s.set {
		t.Fatalf("GetAlarm inside the failing run reports %v", s.at)
	}
	e.nextRun(t)
	// Queued behind the failing run: it sees its outcome.
	at, err := e.schedule(t, "failing", &durabletestv1.ScheduleRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !at.Equal(due) {
		t.Fatalf("GetAlarm after the failed run = %v, want %v (still set, for its retry)", at, due)
	}
}

// In every retry, too, the running alarm is not set inside the hook.
func testAlarmRetrySeesNoAlarm(t *testing.T, d Deployment) {
	e := alarmEnv(t, d, server.WithAlarmRetry(5*time.Millisecond))
	seen := watchAlarm(e, nil)
	e.probe.AlarmFailures.Store(2)
	e.alarmAt(t, "retried", time.Now())
	for want := range 3 {
		s := nextSeen(t, seen)
		if s.info.RetryCount != want || s.info.IsRetry != (want > 0) {
			t.Fatalf("run %d: info %+v", want, s.info)
		}
		if s.set {
			t.Fatalf("run %d: GetAlarm inside the hook reports %v", want, s.at)
		}
		e.nextRun(t)
	}
	eventually(t, "the successful retry is committed and no alarm is left", func() bool {
		at, _ := e.schedule(t, "retried", &durabletestv1.ScheduleRequest{})
		return at.IsZero() && e.probeState(t, "retried").GetAlarmRuns() == 1
	})
}

// SetAlarm with a time in the past stores now, as Cloudflare's does.
func testAlarmInThePastIsStoredAsNow(t *testing.T, d Deployment) {
	e := alarmEnv(t, d)
	before := time.Now().UnixMilli()
	at, err := e.schedule(t, "past", &durabletestv1.ScheduleRequest{AtMs: time.Now().Add(-time.Hour).UnixMilli()})
	after := time.Now().UnixMilli()
	if err != nil {
		t.Fatal(err)
	}
	if at.UnixMilli() < before || at.UnixMilli() > after {
		t.Fatalf("GetAlarm after SetAlarm an hour ago = %v, want now (%d to %d ms)", at, before, after)
	}
	if r := e.nextRun(t); r.Info.ScheduledTime.UnixMilli() != at.UnixMilli() {
		t.Fatalf("the run was due at %v, want %v", r.Info.ScheduledTime, at)
	}
}
