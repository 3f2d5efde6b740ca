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
	wallets := walletv1durable.NewWalletClient(httpClient, p.url)
	events := analyticsv1durable.NewAnalyticsClient(httpClient, p.url)

	const callers, maxCalls = 8, 5000
	var maxBalance atomic.Int64 // highest balance a deposit acknowledged
	var tracked, deposits, attemptedEvents, attemptedDeposits atomic.Int64
	ctx := context.Background()
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			wallet := wallets.Get(wallets.IDFromName("backup-wallet"))
			analytics := events.Get(events.IDFromName(fmt.Sprint("backup-analytics-", c%3)))
			for range maxCalls {
				if c%2 == 0 {
					attemptedDeposits.Add(1)
					r, err := wallet.Deposit(ctx, &walletv1.DepositRequest{Account: "a", Amount: 1})
					if err != nil {
						return
					}
					deposits.Add(1)
					for old := maxBalance.Load(); r.GetBalance() > old && !maxBalance.CompareAndSwap(old, r.GetBalance()); old = maxBalance.Load() {
					}
				} else {
					attemptedEvents.Add(1)
					if _, err := analytics.TrackEvent(ctx, &analyticsv1.TrackEventRequest{Name: "click"}); err != nil {
						return
					}
					tracked.Add(1)
				}
			}
		})
	}
	waitFor := func(n int64) {
		deadline := time.Now().Add(60 * time.Second)
		for (deposits.Load() < n || tracked.Load() < n) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if deposits.Load() < n || tracked.Load() < n {
			t.Fatalf("only %d deposits and %d events acknowledged before the deadline", deposits.Load(), tracked.Load())
		}
	}
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
	wg.Wait()

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
