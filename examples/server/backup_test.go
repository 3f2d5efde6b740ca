package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	analyticsv1 "github.com/durablego/durable/gen/examples/analytics/v1"
	"github.com/durablego/durable/gen/examples/analytics/v1/analyticsv1durable"
	walletv1 "github.com/durablego/durable/gen/examples/wallet/v1"
	"github.com/durablego/durable/gen/examples/wallet/v1/walletv1durable"
)

// TestBackupUnderLoadRestoresAcknowledgedWrites backs the running server up
// with "durable backup" while callers write key-value storage (Wallet) and
// SQL (Analytics), kills the server with SIGKILL, wipes its directory,
// restores the backup and starts a server on it: every write acknowledged
// before the backup began is there, and nothing that was never attempted.
func TestBackupUnderLoadRestoresAcknowledgedWrites(t *testing.T) {
	cli := filepath.Join(t.TempDir(), "durable")
	if out, err := exec.Command("go", "build", "-o", cli, "github.com/durablego/durable/cmd/durable").CombinedOutput(); err != nil {
		t.Fatalf("building the durable command: %v\n%s", err, out)
	}
	data := t.TempDir()
	token := []string{"DURABLE_ADMIN_TOKEN=op"}
	p := startEnv(t, token, data, "-admin")
	httpClient := &http.Client{Timeout: 10 * time.Second}
	load := startMixedLoad(p, "backup-wallet", "backup-analytics", 3, 8, 5000)
	waitFor := func(n int64) { load.waitFor(t, n) }
	maxBalance, tracked, attemptedDeposits, attemptedEvents := &load.maxBalance, &load.tracked, &load.attemptedDeposits, &load.attemptedEvents
	ctx := context.Background()
	waitFor(200)
	// What was acknowledged before the backup began.
	balanceBefore, trackedBefore := maxBalance.Load(), tracked.Load()
	backup := filepath.Join(t.TempDir(), "backup")
	out, err := exec.Command(cli, "backup", "--url", p.url, "--token", "op", backup).CombinedOutput()
	if err != nil {
		t.Fatalf("durable backup: %v\n%s", err, out)
	}
	t.Logf("durable backup: %s", out)
	waitFor(trackedBefore + 100) // the load went on during and after it
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	load.wg.Wait()

	// Wipe, restore, start.
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(data, os.DirFS(backup)); err != nil {
		t.Fatal(err)
	}
	p2 := start(t, data)
	wallets2 := walletv1durable.NewWalletClient(httpClient, p2.url)
	b, err := wallets2.Get(wallets2.IDFromName("backup-wallet")).Balance(ctx, &walletv1.BalanceRequest{Account: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if b.GetBalance() < balanceBefore || b.GetBalance() > attemptedDeposits.Load() {
		t.Errorf("restored balance %d; acknowledged before the backup %d, attempted %d", b.GetBalance(), balanceBefore, attemptedDeposits.Load())
	}
	events2 := analyticsv1durable.NewAnalyticsClient(httpClient, p2.url)
	var stored int64
	for c := range 3 {
		counts, err := events2.Get(events2.IDFromName(fmt.Sprint("backup-analytics-", c))).GetEventCounts(ctx, &analyticsv1.GetEventCountsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range counts.GetCounts() {
			stored += c.GetCount()
		}
	}
	if stored < trackedBefore || stored > attemptedEvents.Load() {
		t.Errorf("%d events restored; acknowledged before the backup %d, attempted %d", stored, trackedBefore, attemptedEvents.Load())
	}
	t.Logf("before the backup: balance %d, %d events; restored: %d, %d; at the kill: %d, %d",
		balanceBefore, trackedBefore, b.GetBalance(), stored, maxBalance.Load(), tracked.Load())
}

// mixedLoad is callers writing key-value storage (deposits on one Wallet)
// and SQL (events over several Analytics objects) on a server until each
// fails (the server is gone) or made its calls; it counts what it
// attempted and what was acknowledged.
type mixedLoad struct {
	maxBalance                         atomic.Int64 // highest balance a deposit acknowledged
	tracked, deposits                  atomic.Int64 // acknowledged
	attemptedEvents, attemptedDeposits atomic.Int64
	wg                                 sync.WaitGroup
}

// startMixedLoad starts callers on p: the even ones deposit on the wallet
// named wallet, the odd ones track events on analytics objects named
// analytics-0 to analytics-(objects-1).
func startMixedLoad(p *process, wallet, analytics string, objects, callers, maxCalls int) *mixedLoad {
	l := &mixedLoad{}
	httpClient := &http.Client{Timeout: 10 * time.Second}
	wallets := walletv1durable.NewWalletClient(httpClient, p.url)
	events := analyticsv1durable.NewAnalyticsClient(httpClient, p.url)
	ctx := context.Background()
	for c := range callers {
		l.wg.Go(func() {
			w := wallets.Get(wallets.IDFromName(wallet))
			a := events.Get(events.IDFromName(fmt.Sprint(analytics, "-", c%objects)))
			for range maxCalls {
				if c%2 == 0 {
					l.attemptedDeposits.Add(1)
					r, err := w.Deposit(ctx, &walletv1.DepositRequest{Account: "a", Amount: 1})
					if err != nil {
						return
					}
					l.deposits.Add(1)
					for old := l.maxBalance.Load(); r.GetBalance() > old && !l.maxBalance.CompareAndSwap(old, r.GetBalance()); old = l.maxBalance.Load() {
					}
				} else {
					l.attemptedEvents.Add(1)
					if _, err := a.TrackEvent(ctx, &analyticsv1.TrackEventRequest{Name: "click"}); err != nil {
						return
					}
					l.tracked.Add(1)
				}
			}
		})
	}
	return l
}

// waitFor waits until n deposits and n events were acknowledged, failing t
// after a deadline.
func (l *mixedLoad) waitFor(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for (l.deposits.Load() < n || l.tracked.Load() < n) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if l.deposits.Load() < n || l.tracked.Load() < n {
		t.Fatalf("only %d deposits and %d events acknowledged before the deadline", l.deposits.Load(), l.tracked.Load())
	}
}
