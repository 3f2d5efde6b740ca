package server_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/durablego/durable"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	"github.com/durablego/durable/internal/probe"
)

// blockingProbe is a Probe whose Alarm leaves a marker file and then, in
// blocking mode, never returns: the process is killed in the handler.
type blockingProbe struct {
	*probe.Probe
	dir   string
	block bool
}

func (p blockingProbe) Alarm(ctx context.Context, o *durabletestv1durable.ProbeObject, info durable.AlarmInfo) error {
	marker := "ran-after-restart"
	if p.block {
		marker = "started"
	}
	if err := os.WriteFile(filepath.Join(p.dir, marker), nil, 0o600); err != nil {
		return err
	}
	if p.block {
		select {}
	}
	return p.Probe.Alarm(ctx, o, info)
}

// alarmChild runs a server on dir. In blocking mode it sets an alarm due at
// once and waits to be killed in its handler; otherwise it waits for the
// alarm to run and be cleared, then exits 0.
func alarmChild(dir string, block bool) int {
	srv, probes := childProbes(dir, blockingProbe{Probe: &probe.Probe{}, dir: dir, block: block})
	srv.Start() // fire alarms: the child calls its objects in process
	stub := probes.Get(probes.IDFromName("killed"))
	ctx := context.Background()
	if block {
		if _, err := stub.Schedule(ctx, &durabletestv1.ScheduleRequest{AtMs: time.Now().UnixMilli()}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		select {}
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		r, err := stub.Schedule(ctx, &durabletestv1.ScheduleRequest{})
		if err == nil && r.GetAtMs() == 0 {
			if s, err := stub.Get(ctx, &durabletestv1.GetRequest{}); err == nil && s.GetState().GetAlarmRuns() == 1 {
				srv.Shutdown(ctx)
				return 0
			}
		}
	}
	fmt.Fprintln(os.Stderr, "the alarm did not run and clear within 30s")
	return 1
}

// TestAlarmSurvivesKillDashNineInItsHandler kills a server with SIGKILL
// while the alarm handler runs, before anything of it commits: after a
// restart the alarm fires again. At least once, never zero times.
func TestAlarmSurvivesKillDashNineInItsHandler(t *testing.T) {
	dir := t.TempDir()
	child := func(block bool) *exec.Cmd {
		env := []string{"DURABLE_ALARM_CHILD=" + dir}
		if block {
			env = append(env, "DURABLE_ALARM_BLOCK=1")
		}
		cmd := childCommand(env...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	first := child(true)
	eventually(t, "the first server's alarm handler starts", func() bool {
		_, err := os.Stat(filepath.Join(dir, "started"))
		return err == nil
	})
	first.Process.Kill()
	first.Wait()

	second := child(false)
	exited := make(chan error, 1)
	go func() { exited <- second.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the restarted server did not see its alarm run and clear: %v", err)
		}
	case <-time.After(60 * time.Second):
		second.Process.Kill()
		t.Fatal("the restarted server did not finish within 60s")
	}
	if _, err := os.Stat(filepath.Join(dir, "ran-after-restart")); err != nil {
		t.Fatal("the alarm did not run after the restart")
	}
}
