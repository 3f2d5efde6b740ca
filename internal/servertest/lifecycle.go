package servertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/durablego/durable"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/server"
)

func testStateSurvivesRestart(t *testing.T, d Deployment) {
	st := d.Storage(t)
	ctx := context.Background()
	e := newEnvOn(t, st)
	stub := e.counters.Get(e.counters.IDFromName("persist"))
	unique := e.counters.NewUniqueID()
	for range 3 {
		if _, err := stub.Increment(ctx, &counterv1.IncrementRequest{Amount: 7}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.counters.Get(unique).Increment(ctx, &counterv1.IncrementRequest{Amount: 2}); err != nil {
		t.Fatal(err)
	}
	e.shutdown(t)

	e2 := newEnvOn(t, st)
	r, err := e2.counters.Get(e2.counters.IDFromName("persist")).GetValue(ctx, &counterv1.GetValueRequest{})
	if err != nil || r.GetValue() != 21 {
		t.Fatalf("after restart: value %d, err %v; want 21", r.GetValue(), err)
	}
	// A unique ID's string form addresses the same object after a restart:
	// the ID secret persists in the data directory.
	id, err := e2.counters.IDFromString(unique.String())
	if err != nil {
		t.Fatal(err)
	}
	if r, err := e2.counters.Get(id).GetValue(ctx, &counterv1.GetValueRequest{}); err != nil || r.GetValue() != 2 {
		t.Fatalf("unique object after restart: value %d, err %v; want 2", r.GetValue(), err)
	}
}

func testIdleObjectsAreEvictedAndReactivated(t *testing.T, d Deployment) {
	e := newEnv(t, d, server.WithIdleTimeout(10*time.Millisecond))
	ctx := context.Background()
	for i := range 5 {
		stub := e.counters.Get(e.counters.IDFromName(fmt.Sprint("idle-", i)))
		if _, err := stub.Increment(ctx, &counterv1.IncrementRequest{Amount: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every idle object is evicted", func() bool { return e.srv.ActiveObjects() == 0 })
	for i := range 5 {
		r, err := e.counters.Get(e.counters.IDFromName(fmt.Sprint("idle-", i))).GetValue(ctx, &counterv1.GetValueRequest{})
		if err != nil || r.GetValue() != int64(i+1) {
			t.Fatalf("object %d after reactivation: value %d, err %v", i, r.GetValue(), err)
		}
	}
}

func testActiveObjectsAreCapped(t *testing.T, d Deployment) {
	const limit = 3
	e := newEnv(t, d, server.WithMaxActiveObjects(limit), server.WithIdleTimeout(time.Hour))
	ctx := context.Background()
	for i := range 20 {
		stub := e.counters.Get(e.counters.IDFromName(fmt.Sprint("lru-", i)))
		if _, err := stub.Increment(ctx, &counterv1.IncrementRequest{Amount: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, fmt.Sprintf("at most %d objects are active", limit), func() bool { return e.srv.ActiveObjects() <= limit })
	for i := range 20 {
		r, err := e.counters.Get(e.counters.IDFromName(fmt.Sprint("lru-", i))).GetValue(ctx, &counterv1.GetValueRequest{})
		if err != nil || r.GetValue() != int64(max(i, 1)) {
			t.Fatalf("object %d: value %d, err %v", i, r.GetValue(), err)
		}
	}
}

func testFullMailboxIsOverloaded(t *testing.T, d Deployment) {
	e := newEnv(t, d, server.WithMailboxSize(1))
	ctx := context.Background()
	stub := e.probes.Get(e.probes.IDFromName("busy"))
	blocked := make(chan error, 1)
	go func() {
		_, err := stub.Block(ctx, &durabletestv1.BlockRequest{})
		blocked <- err
	}()
	<-e.probe.Entered

	// The object is busy and its mailbox holds one call: of n callers,
	// exactly one is queued and the others are refused at once.
	const n = 8
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := stub.Add(ctx, &durabletestv1.AddRequest{Amount: 1})
			errs <- err
		})
	}
	for range n - 1 {
		err := <-errs
		if !errors.Is(err, durable.ErrOverloaded) || connect.CodeOf(err) != connect.CodeResourceExhausted {
			t.Fatalf("error %v (code %v), want ErrOverloaded with ResourceExhausted", err, connect.CodeOf(err))
		}
	}
	e.probe.Gate <- struct{}{}
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := <-errs; err != nil {
		t.Fatalf("the queued call failed: %v", err)
	}
	if v := probeValue(t, e, "busy"); v != 1 {
		t.Fatalf("value %d, want 1", v)
	}
}

func testReentrantChainFailsInsteadOfDeadlocking(t *testing.T, d Deployment) {
	e := newEnv(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := e.probes.Get(e.probes.IDFromName("a"))
	if _, err := e.probes.Get(e.probes.IDFromName("c")).Add(ctx, &durabletestv1.AddRequest{Amount: 9}); err != nil {
		t.Fatal(err)
	}

	// A→B→C is fine.
	r, err := a.Hop(ctx, &durabletestv1.HopRequest{Path: []string{"b", "c"}})
	if err != nil || r.GetValue() != 9 {
		t.Fatalf("A→B→C: value %d, err %v; want 9", r.GetValue(), err)
	}
	for _, path := range [][]string{{"b", "a"}, {"a"}, {"b", "c", "b"}} {
		_, err := a.Hop(ctx, &durabletestv1.HopRequest{Path: path})
		if !errors.Is(err, durable.ErrReentrantCall) || connect.CodeOf(err) != connect.CodeFailedPrecondition {
			t.Fatalf("path a→%v: error %v, want ErrReentrantCall with FailedPrecondition", path, err)
		}
	}
	if ctx.Err() != nil {
		t.Fatal("the chain deadlocked until the deadline")
	}
}

func testShutdownDrainsQueuedCalls(t *testing.T, d Deployment) {
	e := newEnv(t, d)
	ctx := context.Background()
	stub := e.probes.Get(e.probes.IDFromName("drain"))
	blocked := make(chan error, 1)
	go func() {
		_, err := stub.Block(ctx, &durabletestv1.BlockRequest{})
		blocked <- err
	}()
	<-e.probe.Entered
	const n = 10
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := stub.Add(ctx, &durabletestv1.AddRequest{Amount: 1})
			errs <- err
		}()
	}
	eventually(t, "the calls are queued", func() bool { return e.srv.QueuedCalls("Probe", stub.ID()) == n })

	shutdown := make(chan error, 1)
	go func() { shutdown <- e.srv.Shutdown(ctx) }()
	// New calls are refused once shutdown has begun...
	eventually(t, "new calls are refused", func() bool {
		_, err := e.counters.Get(e.counters.IDFromName("late")).GetValue(ctx, &counterv1.GetValueRequest{})
		return errors.Is(err, durable.ErrShutdown)
	})
	// ...and the queued ones still run and commit.
	e.probe.Gate <- struct{}{}
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("queued call failed during shutdown: %v", err)
		}
	}
	if err := <-shutdown; err != nil {
		t.Fatal(err)
	}
	e.closed = true
	if err := e.release(); err != nil {
		t.Fatal(err)
	}

	e2 := newEnvOn(t, e.storage)
	if v := probeValue(t, e2, "drain"); v != n {
		t.Fatalf("after restart: value %d, want %d", v, n)
	}
}

func testIDs(t *testing.T, d Deployment) {
	e := newEnv(t, d)
	a, b := e.counters.IDFromName("x"), e.counters.IDFromName("x")
	if !a.Equal(b) || a.String() != b.String() || a.Name() != "x" {
		t.Fatalf("IDFromName not deterministic: %v %v", a, b)
	}
	if p := e.probes.IDFromName("x"); p.String() == a.String() {
		t.Fatal("the same name maps to the same ID in two namespaces")
	}
	u1, u2 := e.counters.NewUniqueID(), e.counters.NewUniqueID()
	if u1.Equal(u2) || u1.Name() != "" || len(u1.String()) != durable.IDLen {
		t.Fatalf("unique IDs %v %v", u1, u2)
	}
	parsed, err := e.counters.IDFromString(u1.String())
	if err != nil || !parsed.Equal(u1) {
		t.Fatalf("IDFromString(%s) = %v, %v", u1, parsed, err)
	}
	if named, err := e.counters.IDFromString(a.String()); err != nil || !named.Equal(a) || named.Name() != "" {
		t.Fatalf("IDFromString of a named ID = %v, %v; want an equal ID without the name", named, err)
	}

	valid := u1.String()
	cases := []struct {
		in   string
		want error
	}{
		{"", durable.ErrIDLength},
		{valid[:63], durable.ErrIDLength},
		{valid + "0", durable.ErrIDLength},
		{"g" + valid[1:], durable.ErrIDNotHex},
		{strings.ToUpper(valid), durable.ErrIDNotHex},
		{"../../etc/passwd" + valid[16:], durable.ErrIDNotHex},
		{flip(valid), durable.ErrIDNamespace},
		{e.probes.NewUniqueID().String(), durable.ErrIDNamespace},
	}
	for _, c := range cases {
		_, err := e.counters.IDFromString(c.in)
		if !errors.Is(err, c.want) || !errors.Is(err, durable.ErrInvalidID) {
			t.Errorf("IDFromString(%q) = %v, want %v", c.in, err, c.want)
		}
	}
	_, err = e.counters.IDFromString(e.probes.NewUniqueID().String())
	if !strings.Contains(fmt.Sprint(err), "minted for class Probe") {
		t.Errorf("error for another class's ID = %v; want it to name the class", err)
	}
	// A stub refuses an ID of another class.
	_, err = e.counters.Get(e.probes.IDFromName("x")).GetValue(context.Background(), &counterv1.GetValueRequest{})
	if !errors.Is(err, durable.ErrIDNamespace) || connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("call with another class's ID: %v", err)
	}
}

// flip changes the last hex digit, breaking the MAC.
func flip(s string) string {
	last := s[len(s)-1]
	if last == '0' {
		last = '1'
	} else {
		last = '0'
	}
	return s[:len(s)-1] + string(last)
}

func testUnknownClass(t *testing.T, d Deployment) {
	e := newEnv(t, d)
	_, err := e.srv.Class("Nope")
	var nf *durable.ClassNotFoundError
	if !errors.Is(err, durable.ErrClassNotFound) || !errors.As(err, &nf) {
		t.Fatalf("error %v, want ClassNotFoundError", err)
	}
	if !slices.Equal(nf.Known, []string{"Counter", "Probe"}) {
		t.Fatalf("known classes %v", nf.Known)
	}
}
