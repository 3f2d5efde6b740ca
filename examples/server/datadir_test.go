package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
)

// TestSecondServerOnOneDataDirectoryExits is the split brain of two
// servers on one data directory: the second exits at once, with an error
// naming the directory and the first server's PID, so all increments go
// to the one live copy of the object; once the first is killed with
// SIGKILL, the next server starts and finds every increment.
func TestSecondServerOnOneDataDirectoryExits(t *testing.T) {
	data := t.TempDir()
	ctx := context.Background()
	first := start(t, data)

	second := exec.Command(binary, "-addr", "127.0.0.1:0", "-data", data)
	done := make(chan error, 1)
	var out []byte
	go func() {
		var err error
		out, err = second.CombinedOutput()
		done <- err
	}()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("the second server: %v, want a failed exit\n%s", err, out)
		}
	case <-time.After(30 * time.Second):
		second.Process.Kill()
		<-done
		t.Fatalf("the second server on %s was still running after 30s\n%s", data, out)
	}
	for _, want := range []string{data, fmt.Sprintf("pid %d", first.cmd.Process.Pid), "in use by another server"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the second server's output does not say %q:\n%s", want, out)
		}
	}

	stub := first.counters().Get(first.counters().IDFromName("split"))
	for range 6 {
		if _, err := stub.Increment(ctx, &counterv1.IncrementRequest{Amount: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.exited

	third := start(t, data)
	r, err := third.counters().Get(third.counters().IDFromName("split")).GetValue(ctx, &counterv1.GetValueRequest{})
	if err != nil || r.GetValue() != 6 {
		t.Fatalf("after the kill: value %d, err %v; want 6", r.GetValue(), err)
	}
}
