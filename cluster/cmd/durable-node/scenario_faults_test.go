package main

import (
	"context"
	"math"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
	"net/http"
	"syscall"
	"testing"
	"time"

	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
)

// The faults of TestScenarios, one function each. Each starts the load,
// lets it run, sets alarms (and opens sockets where a partition moves)
// before its fault, injects the fault, waits for the cluster to settle,
// and lets the load run on; env.check then makes the common assertions.

// warmup is how long the load runs before a fault, and settle after the
// cluster has recovered from it.
const warmup, settle = 3 * time.Second, 2 * time.Second

// recovered polls until every probe counter (names spread over the
// partitions) answers through the running nodes in one pass, and returns
// the time since from: how long the objects were unavailable.
func (e *env) recovered(t *testing.T, probes []string, from time.Time) time.Duration {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for i := 0; ; i++ {
		urls := e.urls()
		all := true
		for j, name := range probes {
			c := counterv1durable.NewCounterClient(http.DefaultClient, urls[(i+j)%len(urls)])
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			_, err := c.Get(c.IDFromName(name)).GetValue(ctx, &counterv1.GetValueRequest{})
			cancel()
			if err != nil {
				all = false
				break
			}
		}
		if all {
			return time.Since(from)
		}
		if time.Now().After(deadline) {
			t.Fatalf("some of %d probe objects still do not answer 90 s after the fault", len(probes))
		}
		time.Sleep(20 * time.Millisecond) // polling the objects' recovery with a deadline
	}
}

// probesOn returns probe counter names on owner's partitions ("" for any).
func (e *env) probesOn(t *testing.T, owner string) []string {
	t.Helper()
	return e.pick(t, "Counter", "probe", 16, func(_ int, o string) bool { return owner == "" || o == owner })
}

// failedDuring returns how many calls failed (not counting the ones that
// never reached a node) since the counts before.
func (l *load) failedDuring(before, beforeDialed int64) int64 {
	return (l.failed.Load() - before) - (l.dialed.Load() - beforeDialed)
}

// scenarioKill9: a node dies with SIGKILL; the survivors take its
// partitions when its lease expires.
func scenarioKill9(t *testing.T, e *env) {
	e.startLoad(t)
	e.warm(warmup)
	victim, survivor := e.nodes[1], e.nodes[0]
	probes := e.probesOn(t, victim.name)
	e.setAlarms(t, victim.name, survivor)
	acquired := e.watchAcquisitions(t)
	victim.p.kill()
	killed := time.Now()
	e.load.route(e.urls())
	metric(t, "lease_expired_s", e.recordGone(t, victim.name, killed))
	e.waitBalanced(t, e.names(), 60*time.Second)
	metric(t, "takeover_s", time.Since(killed)) // every partition with its new owner in etcd
	if times := acquired(); len(times) > 0 {
		metric(t, "first_acquired_s", times[0].Sub(killed))
		metric(t, "last_acquired_s", times[len(times)-1].Sub(killed))
		t.Logf("kill9: %d partitions acquired after the kill", len(times))
	}
	metric(t, "failover_s", e.recovered(t, probes, killed))
	e.warm(settle)
}

// scenarioSigterm: a node leaves gracefully; it hands every partition off
// before it exits, its sockets close with 1012.
func scenarioSigterm(t *testing.T, e *env) {
	e.startLoad(t)
	e.warm(warmup)
	leaver, via := e.nodes[2], e.nodes[0]
	e.setAlarms(t, leaver.name, via)
	e.openSockets(t, leaver, via)
	f, d := e.load.failed.Load(), e.load.dialed.Load()
	leaver.p.signal(t, syscall.SIGTERM)
	sent := time.Now()
	if err := leaver.p.wait(t, 60*time.Second); err != nil {
		t.Errorf("%s's graceful stop: %v", leaver.name, err)
	}
	metric(t, "handoff_s", time.Since(sent))
	e.load.route(e.urls())
	e.waitBalanced(t, e.names(), 60*time.Second)
	t.Logf("sigterm: %d calls failed (reaching a node) while %s left", e.load.failedDuring(f, d), leaver.name)
	e.warm(settle)
}

// scenarioEtcdLeader: the etcd leader dies with SIGKILL; the others elect
// one, the nodes carry on; the member restarts on its data.
func scenarioEtcdLeader(t *testing.T, e *env) {
	e.startLoad(t)
	e.warm(warmup)
	e.setAlarms(t, e.nodes[1].name, e.nodes[0])
	leader := e.etcd.waitLeader(10 * time.Second)
	leader.kill()
	killed := time.Now()
	e.etcd.waitLeader(20 * time.Second)
	metric(t, "etcd_election_s", time.Since(killed))
	metric(t, "recovery_s", e.recovered(t, e.probesOn(t, ""), killed))
	e.warm(settle)
	leader.start(t)
	e.waitBalanced(t, e.names(), 60*time.Second)
	e.warm(settle)
}

// scenarioSigstop: a node is stopped past its lease (SIGSTOP), the others
// take its partitions, and it wakes (SIGCONT): it must find itself fenced,
// commit nothing under the lost partitions, and rejoin.
func scenarioSigstop(t *testing.T, e *env) {
	e.callTimeout = 30 * time.Second
	e.startLoad(t)
	e.warm(warmup)
	victim := e.nodes[1]
	probes := e.probesOn(t, victim.name)
	e.setAlarms(t, victim.name, e.nodes[0])
	victim.p.signal(t, syscall.SIGSTOP)
	victim.stopped = true
	stopped := time.Now()
	// The clients keep calling through the stopped node: those calls
	// hang, time out, and may run when it wakes.
	e.waitBalanced(t, e.names(), 60*time.Second)
	metric(t, "takeover_s", time.Since(stopped))
	metric(t, "failover_s", e.recovered(t, probes, stopped))
	e.warm(scenarioTTL) // the victim stays stopped well past its lease
	victim.p.signal(t, syscall.SIGCONT)
	victim.stopped = false
	woke := time.Now()
	metric(t, "rejoin_s", e.waitBalanced(t, e.names(), 60*time.Second))
	e.warm(settle + 1*time.Second)
	// The calls sent before SIGCONT (most through the stopped node) and
	// answered after it are in the history env.check verifies; count
	// them, to show the scenario made some.
	across := 0
	e.load.mu.Lock()
	for _, op := range e.load.ops {
		if op.Call < woke.Sub(e.start).Nanoseconds() && op.Return > woke.Sub(e.start).Nanoseconds() && op.Return != math.MaxInt64 {
			across++
		}
	}
	e.load.mu.Unlock()
	t.Logf("sigstop: %d calls sent before SIGCONT were answered after it", across)
}

// scenarioJoin: a fourth node joins; it takes about a quarter of the
// partitions, those move by hand-off, their sockets close with 1012.
func scenarioJoin(t *testing.T, e *env) {
	e.startLoad(t)
	e.warm(warmup)
	before, err := e.owners(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	four := append(e.names(), "n4")
	moving := func(p int, o string) bool { return o != "" && desired(four, p) == "n4" }
	rooms := e.pick(t, "ChatRoom", "room", 2, moving)
	from := e.byName(t, before[partitionOfName("ChatRoom", rooms[0])])
	via := e.nodes[0]
	if via == from {
		via = e.nodes[1]
	}
	e.openSocketsTo(t, rooms, from, via)
	e.setAlarmsOn(t, e.pick(t, "Session", "session", 4, moving), via)
	f, d := e.load.failed.Load(), e.load.dialed.Load()
	started := time.Now()
	e.addNode(t, 3)
	e.load.route(e.urls())
	e.waitBalanced(t, four, 60*time.Second)
	metric(t, "rebalance_s", time.Since(started))
	after, err := e.owners(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	moved := 0
	for p := range before {
		if before[p] != after[p] {
			moved++
		}
	}
	frac := float64(moved) / float64(len(before))
	t.Logf("scenario-metric scenario=join name=moved_fraction value=%.4f (%d partitions; target <= %.4f)", frac, moved, 0.25+0.02)
	if frac > 0.25+0.02 {
		t.Logf("join: %.1f%% of the partitions moved, over the target of 27%%", 100*frac)
	}
	t.Logf("join: %d calls failed (reaching a node) while n4 joined", e.load.failedDuring(f, d))
	e.warm(settle)
}

// byName returns the node named name.
func (e *env) byName(t *testing.T, name string) *durableNode {
	t.Helper()
	for _, n := range e.nodes {
		if n.name == name {
			return n
		}
	}
	t.Fatalf("no node %q", name)
	return nil
}

// scenarioRestart: a node dies with SIGKILL and restarts at once with the
// same name and data directory; it waits for its old lease, then takes its
// partitions back.
func scenarioRestart(t *testing.T, e *env) {
	e.startLoad(t)
	e.warm(warmup)
	victim := e.nodes[1]
	e.setAlarms(t, victim.name, e.nodes[0])
	victim.p.kill()
	killed := time.Now()
	e.startNode(t, victim)
	metric(t, "restart_answer_s", time.Since(killed))
	e.load.route(e.urls())
	e.waitBalanced(t, e.names(), 60*time.Second)
	metric(t, "restart_balanced_s", time.Since(killed))
	e.warm(settle)
}

// scenarioEtcdQuorum: two of the three etcd members die for 10 s: no
// quorum, no lease renewal, the nodes fence themselves; then the members
// restart on their data and the nodes resume.
func scenarioEtcdQuorum(t *testing.T, e *env) {
	e.startLoad(t)
	e.warm(warmup)
	e.setAlarms(t, e.nodes[1].name, e.nodes[0])
	down := e.etcd.members[1:]
	for _, m := range down {
		m.kill()
	}
	lost := time.Now()
	e.warm(10 * time.Second)
	for _, m := range down {
		m.start(t)
	}
	back := time.Now()
	e.etcd.waitLeader(30 * time.Second)
	metric(t, "quorum_outage_s", back.Sub(lost))
	metric(t, "recovery_after_quorum_s", e.recovered(t, e.probesOn(t, ""), back))
	e.waitBalanced(t, e.names(), 60*time.Second)
	e.warm(settle)
}

// recordGone polls etcd until the node's record (nodes/{name}, under its
// lease) is gone, and returns the time since from: when its lease expired.
func (e *env) recordGone(t *testing.T, name string, from time.Time) time.Duration {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		resp, err := e.cli.Get(ctx, e.prefix+"nodes/"+name, clientv3.WithCountOnly())
		cancel()
		if err == nil && resp.Count == 0 {
			return time.Since(from)
		}
		time.Sleep(20 * time.Millisecond) // polling etcd with a deadline
	}
	t.Fatalf("%s's record is still in etcd 60 s later", name)
	return 0
}

// watchAcquisitions watches the owner keys from now on; the function it
// returns stops the watch and returns when each acquisition was seen, in
// order.
func (e *env) watchAcquisitions(t *testing.T) func() []time.Time {
	ctx, cancel := context.WithCancel(t.Context())
	var mu sync.Mutex
	var times []time.Time
	done := make(chan struct{})
	wch := e.cli.Watch(ctx, e.prefix+"parts/", clientv3.WithPrefix())
	go func() {
		defer close(done)
		for wr := range wch {
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypePut && ev.Kv.CreateRevision == ev.Kv.ModRevision {
					mu.Lock()
					times = append(times, time.Now())
					mu.Unlock()
				}
			}
		}
	}()
	return func() []time.Time {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return times
	}
}
