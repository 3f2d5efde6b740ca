package servertest

import (
	"testing"
	"time"

	"github.com/durablego/durable/internal/probe"
)

// An object evicted (here: its server restarted) before its alarm fires
// knows its name inside Alarm: the name is stored with the object.
func testNamePersistedForAlarmAfterRestart(t *testing.T, d Deployment) {
	requireCatalog(t, d)
	st := d.Storage(t)
	e := newEnvOn(t, st)
	e.alarmAt(t, "named-object", time.Now().Add(time.Hour))
	e.alarmAt(t, "named-object", time.Now().Add(200*time.Millisecond))
	e.shutdown(t)

	e = newEnvOn(t, st)
	e.probe.Alarms = make(chan probe.AlarmRun, 16)
	e.serve(t) // starts the scheduler without calling the object
	run := e.nextRun(t)
	if got := run.ID.Name(); got != "named-object" {
		t.Fatalf("o.ID.Name() in Alarm after a restart = %q, want %q", got, "named-object")
	}
	if !run.ID.Equal(e.probes.IDFromName("named-object")) {
		t.Fatalf("alarm ran on %v", run.ID)
	}
}
