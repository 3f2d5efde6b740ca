package server_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"

	"connectrpc.com/connect"

	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/probe"
)

// diskFullChild writes to a server on dir with the process's file size
// limited to limit bytes, printing each acknowledged key, until writes
// fail; it prints the first error and exits 0.
func diskFullChild(dir string, limit uint64) int {
	signal.Ignore(syscall.SIGXFSZ) // a write past the limit fails with EFBIG instead
	_, probes := childProbes(dir, &probe.Probe{})
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	stub := probes.Get(probes.IDFromName("full"))
	value := bytes.Repeat([]byte("x"), 100<<10)
	failures := 0
	for i := 0; i < 1000 && failures < 5; i++ {
		key := fmt.Sprint("key-", i)
		if _, err := stub.Put(context.Background(), &durabletestv1.PutRequest{Key: key, Value: value}); err != nil {
			if failures == 0 {
				fmt.Println("error", strings.ReplaceAll(err.Error(), "\n", " "))
				fmt.Println("code", connect.CodeOf(err), errors.Is(err, engine.ErrDatabaseFull))
			}
			failures++
			continue
		}
		fmt.Println("acked", key)
	}
	if failures == 0 {
		fmt.Println("never full")
	}
	return 0 // no Shutdown: the process dies like one whose disk filled up
}

// TestDiskFullNeverAcknowledgesALostWrite fills the disk (a file size limit)
// under a server, and checks that writes fail with a clear error and that
// every acknowledged write is there after a restart with room again.
func TestDiskFullNeverAcknowledgesALostWrite(t *testing.T) {
	dir := t.TempDir()
	out, err := childCommand("DURABLE_DISKFULL_CHILD=" + dir).Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var acked []string
	var firstErr, code string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		switch kind, rest, _ := strings.Cut(sc.Text(), " "); kind {
		case "acked":
			acked = append(acked, rest)
		case "error":
			firstErr = rest
		case "code":
			code = rest
		case "never":
			t.Fatal("the file size limit never failed a write")
		}
	}
	if len(acked) == 0 || firstErr == "" {
		t.Fatalf("acked %d, first error %q", len(acked), firstErr)
	}
	if !strings.Contains(firstErr, "Put failed") || !strings.Contains(firstErr, "not committed") {
		t.Errorf("the error does not say the write was lost: %s", firstErr)
	}
	// A full disk is no internal error: ResourceExhausted, matching
	// storage.ErrDatabaseFull, saying so.
	if code != "resource_exhausted true" || !strings.Contains(firstErr, "the disk is full") {
		t.Errorf("the error of a full disk has code and ErrDatabaseFull %q, want ResourceExhausted true, and says %q", code, firstErr)
	}

	e := newEnvIn(t, dir)
	l, err := e.probes.Get(e.probes.IDFromName("full")).List(context.Background(), &durabletestv1.ListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range acked {
		if !slices.Contains(l.GetKeys(), key) {
			t.Fatalf("acknowledged %s is missing after the restart (%d acknowledged, %d stored)", key, len(acked), len(l.GetKeys()))
		}
	}
	if _, err := e.probes.Get(e.probes.IDFromName("full")).Put(context.Background(), &durabletestv1.PutRequest{Key: "after"}); err != nil {
		t.Fatalf("writing after the restart: %v", err)
	}
	t.Logf("%d writes acknowledged before the disk filled; first failure: %s", len(acked), firstErr)
}
