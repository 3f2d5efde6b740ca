package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	analyticsv1 "github.com/durablego/durable/gen/examples/analytics/v1"
	"github.com/durablego/durable/gen/examples/analytics/v1/analyticsv1durable"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	walletv1 "github.com/durablego/durable/gen/examples/wallet/v1"
	"github.com/durablego/durable/gen/examples/wallet/v1/walletv1durable"
)

// binary is the example server, built once for the tests that run it as a
// separate process.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "durable-server-test")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "server")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		panic(fmt.Sprintf("building the example server: %v", err))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a running example server.
type process struct {
	cmd    *exec.Cmd
	url    string
	stderr *lockedBuffer
	exited chan error
}

var listening = regexp.MustCompile(`listening" addr=(http://127\.0\.0\.1:\d+)`)

// start runs the example server on data, with the flags args added.
func start(t *testing.T, data string, args ...string) *process {
	t.Helper()
	return startEnv(t, nil, data, args...)
}

// startEnv is start with env added to the server's environment.
func startEnv(t *testing.T, env []string, data string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"-addr", "127.0.0.1:0", "-data", data}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan error, 1)}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			p.stderr.write(sc.Text() + "\n")
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
		io.Copy(io.Discard, pipe)
		p.exited <- cmd.Wait()
	}()
	select {
	case p.url = <-found:
	case err := <-p.exited:
		t.Fatalf("server exited before listening: %v\n%s", err, p.stderr)
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("server did not listen within 30s\n%s", p.stderr)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

func (p *process) counters() *counterv1durable.CounterClient {
	return counterv1durable.NewCounterClient(&http.Client{Timeout: 10 * time.Second}, p.url)
}

func TestRestartInNewProcess(t *testing.T) {
	data := t.TempDir()
	ctx := context.Background()
	p := start(t, data)
	stub := p.counters().Get(p.counters().IDFromName("restart"))
	for range 5 {
		if _, err := stub.Increment(ctx, &counterv1.IncrementRequest{Amount: 3}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-p.exited; err != nil {
		t.Fatalf("server did not exit cleanly on SIGTERM: %v\n%s", err, p.stderr)
	}
	if !regexp.MustCompile(`stopped cleanly`).MatchString(p.stderr.String()) {
		t.Fatalf("no clean-stop log line:\n%s", p.stderr)
	}

	p2 := start(t, data)
	r, err := p2.counters().Get(p2.counters().IDFromName("restart")).GetValue(ctx, &counterv1.GetValueRequest{})
	if err != nil || r.GetValue() != 15 {
		t.Fatalf("after restart: value %d, err %v; want 15", r.GetValue(), err)
	}
}

// TestKillDashNineKeepsAcknowledgedWrites kills the server with SIGKILL
// while callers increment counters, and checks that every increment the
// server acknowledged is in storage after a restart.
func TestKillDashNineKeepsAcknowledgedWrites(t *testing.T) {
	data := t.TempDir()
	p := start(t, data)
	counters := p.counters()

	const objects, callers, maxCalls = 4, 16, 2000
	var acked [objects]atomic.Int64    // highest value acknowledged per object
	var attempts [objects]atomic.Int64 // increments sent per object
	var total atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			obj := c % objects
			stub := counters.Get(counters.IDFromName(fmt.Sprint("kill-", obj)))
			for range maxCalls {
				attempts[obj].Add(1)
				r, err := stub.Increment(ctx, &counterv1.IncrementRequest{Amount: 1})
				if err != nil {
					return // the server is gone
				}
				for {
					old := acked[obj].Load()
					if r.GetValue() <= old || acked[obj].CompareAndSwap(old, r.GetValue()) {
						break
					}
				}
				total.Add(1)
			}
		})
	}
	// Kill once a good number of writes were acknowledged, mid-load.
	deadline := time.Now().Add(60 * time.Second)
	for total.Load() < 500 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	wg.Wait()
	if total.Load() < 500 {
		t.Fatalf("only %d increments acknowledged before the deadline", total.Load())
	}

	p2 := start(t, data)
	counters2 := p2.counters()
	for obj := range objects {
		r, err := counters2.Get(counters2.IDFromName(fmt.Sprint("kill-", obj))).GetValue(context.Background(), &counterv1.GetValueRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if r.GetValue() < acked[obj].Load() || r.GetValue() > attempts[obj].Load() {
			t.Errorf("object %d: stored value %d, acknowledged up to %d, attempted %d", obj, r.GetValue(), acked[obj].Load(), attempts[obj].Load())
		}
	}
	t.Logf("%d increments acknowledged before SIGKILL", total.Load())
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *lockedBuffer) write(s string) {
	b.mu.Lock()
	b.buf = append(b.buf, s...)
	b.mu.Unlock()
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// TestKillDashNineMixedKVAndSQL kills the server with SIGKILL while callers
// write key-value storage (Wallet) and SQL (Analytics), and checks that
// every acknowledged write is there after a restart.
func TestKillDashNineMixedKVAndSQL(t *testing.T) {
	data := t.TempDir()
	p := start(t, data)
	httpClient := &http.Client{Timeout: 10 * time.Second}
	load := startMixedLoad(p, "kill-wallet", "kill-analytics", 1, 16, 2000)
	load.waitFor(t, 200)
	maxBalance, tracked, deposits, attemptedDeposits, attemptedEvents := &load.maxBalance, &load.tracked, &load.deposits, &load.attemptedDeposits, &load.attemptedEvents
	ctx := context.Background()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	load.wg.Wait()

	p2 := start(t, data)
	wallets2 := walletv1durable.NewWalletClient(httpClient, p2.url)
	b, err := wallets2.Get(wallets2.IDFromName("kill-wallet")).Balance(ctx, &walletv1.BalanceRequest{Account: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if b.GetBalance() < maxBalance.Load() || b.GetBalance() > attemptedDeposits.Load() {
		t.Errorf("balance %d after restart; acknowledged up to %d, attempted %d", b.GetBalance(), maxBalance.Load(), attemptedDeposits.Load())
	}
	events2 := analyticsv1durable.NewAnalyticsClient(httpClient, p2.url)
	counts, err := events2.Get(events2.IDFromName("kill-analytics-0")).GetEventCounts(ctx, &analyticsv1.GetEventCountsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var stored int64
	for _, c := range counts.GetCounts() {
		stored += c.GetCount()
	}
	if stored < tracked.Load() || stored > attemptedEvents.Load() {
		t.Errorf("%d events after restart; acknowledged %d, attempted %d", stored, tracked.Load(), attemptedEvents.Load())
	}
	t.Logf("%d deposits and %d events acknowledged before SIGKILL; %d and %d stored", deposits.Load(), tracked.Load(), b.GetBalance(), stored)
}
