package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/durablego/durable/cluster/etcdtest"
	v1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
)

// TestThreeNodeProcessesLoseNoAcknowledgedWrite runs three node processes
// on one etcd and increments 24 counters through every node (each call
// reaches the counter's owner, forwarded when another node owns it); then
// one node leaves on SIGTERM while the load goes through the other two,
// and another is killed with SIGKILL while it goes through the last. At
// the end, read through the survivor, every counter holds at least every
// increment acknowledged, by any node, in any phase. Calls through live
// nodes may fail only while the killed node's partitions wait for its
// lease to expire; the failures are counted, not asserted.
func TestThreeNodeProcessesLoseNoAcknowledgedWrite(t *testing.T) {
	bin := buildNode(t)
	etcd := etcdtest.Start(t, 1).Endpoints()
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("a shared secret of thirty-two B."), 0o600); err != nil {
		t.Fatal(err)
	}
	names := []string{"n1", "n2", "n3"}
	procs := make([]*os.Process, len(names))
	clients := make([]*counterv1durable.CounterClient, len(names))
	for i, name := range names {
		addr := freeAddr(t)
		procs[i] = startNode(t, bin, etcd, name, addr, secret).Process
		clients[i] = counterv1durable.NewCounterClient(http.DefaultClient, "http://"+addr)
	}
	ctx := t.Context()
	for i, c := range clients { // every node answers
		ok := false
		for deadline := time.Now().Add(60 * time.Second); !ok && time.Now().Before(deadline); {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := c.Get(c.IDFromName("probe")).GetValue(cctx, &v1.GetValueRequest{})
			cancel()
			if ok = err == nil; !ok {
				time.Sleep(50 * time.Millisecond) // polling a process's readiness with a deadline
			}
		}
		if !ok {
			t.Fatalf("%s never answered", names[i])
		}
	}
	const counters = 24
	var mu sync.Mutex
	acked := make([]int64, counters)
	// load calls each counter rounds times through the nodes via, and
	// returns how many calls failed.
	load := func(via []int, rounds int) int {
		var failed sync.Map
		var wg sync.WaitGroup
		for k := range counters {
			wg.Go(func() {
				for r := range rounds {
					c := clients[via[(k+r)%len(via)]]
					cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
					_, err := c.Get(c.IDFromName(fmt.Sprint("counter-", k))).Increment(cctx, &v1.IncrementRequest{Amount: 1})
					cancel()
					if err != nil {
						failed.Store(fmt.Sprint(k, "/", r), err)
						continue
					}
					mu.Lock()
					acked[k]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		n := 0
		failed.Range(func(k, v any) bool {
			if n++; n <= 3 {
				t.Logf("call %v: %v", k, v)
			}
			return true
		})
		return n
	}
	if n := load([]int{0, 1, 2}, 10); n > 0 {
		t.Fatalf("%d calls failed with all three nodes up", n)
	}
	// SIGTERM: n2 hands its partitions off while n1 and n3 carry the load.
	if err := procs[1].Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	left := time.Now()
	failedLeave := load([]int{0, 2}, 10)
	if st, err := procs[1].Wait(); err != nil || !st.Success() {
		t.Errorf("n2's graceful stop: %v %v", st, err)
	}
	t.Logf("leave: n2 exited %v after SIGTERM; %d calls failed meanwhile", time.Since(left), failedLeave)
	// SIGKILL: n3 dies; its partitions come to n1 when its lease expires.
	if err := procs[2].Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	procs[2].Wait()
	killed := time.Now()
	failedCrash := load([]int{0}, 5)
	t.Logf("crash: %d calls failed in the %v after kill -9 (TTL 2 s)", failedCrash, time.Since(killed))
	for k := range counters {
		c := clients[0]
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		res, err := c.Get(c.IDFromName(fmt.Sprint("counter-", k))).GetValue(cctx, &v1.GetValueRequest{})
		cancel()
		if err != nil {
			t.Fatalf("counter %d through the survivor: %v", k, err)
		}
		if res.GetValue() < acked[k] {
			t.Errorf("counter %d = %d, but %d increments were acknowledged: writes lost", k, res.GetValue(), acked[k])
		}
	}
}
