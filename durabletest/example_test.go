package durabletest_test

// The examples are written as the body of a test, with the test's t: they
// are compiled, not run (an example has no *testing.T). The tests of this
// package run the same code.

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/durablego/durable/durabletest"
	"github.com/durablego/durable/examples/counter"
	"github.com/durablego/durable/examples/session"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	sessionv1 "github.com/durablego/durable/gen/examples/session/v1"
	"github.com/durablego/durable/gen/examples/session/v1/sessionv1durable"
)

// A test gets a server of its own, with storage of its own, and calls
// objects in process and over the network.
func ExampleNew() {
	var t *testing.T // the test's
	ctx := context.Background()
	ts := durabletest.New(t)
	counters, err := counterv1durable.RegisterCounter(ts.Server, counter.Counter{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := counters.Get(counters.IDFromName("user-123")).Increment(ctx, &counterv1.IncrementRequest{Amount: 5})
	if err != nil || res.GetValue() != 5 {
		t.Fatalf("in process: %v %v", res, err)
	}
	remote := counterv1durable.NewCounterClient(ts.Client(), ts.URL())
	res, err = remote.Get(remote.IDFromName("user-123")).Increment(ctx, &counterv1.IncrementRequest{Amount: 2})
	if err != nil || res.GetValue() != 7 {
		t.Fatalf("over Connect: %v %v", res, err)
	}
}

// Set an object up, or look inside it, in one of its calls.
func ExampleRun() {
	var t *testing.T // the test's
	ts := durabletest.New(t)
	counters, _ := counterv1durable.RegisterCounter(ts.Server, counter.Counter{})
	id := counters.IDFromName("user-123")
	durabletest.Run(t, ts, id, func(ctx context.Context, o *counterv1durable.CounterObject) error {
		o.State.Value = 41 // committed when the function returns nil
		return o.Storage.Put(ctx, "note", []byte("set by the test"))
	})
	res, _ := counters.Get(id).Increment(context.Background(), &counterv1.IncrementRequest{Amount: 1})
	if res.GetValue() != 42 {
		t.Fatalf("Increment after the setup: %d", res.GetValue())
	}
}

// Run an alarm now, however far ahead it is.
func ExampleRunAlarm() {
	var t *testing.T // the test's
	ts := durabletest.New(t)
	sessions, _ := sessionv1durable.RegisterSession(ts.Server, session.Session{})
	id := sessions.IDFromName("alice")
	sessions.Get(id).Touch(context.Background(), &sessionv1.TouchRequest{}) // sets an alarm 30 minutes ahead
	if !durabletest.RunAlarm(t, ts, id) {
		t.Fatal("no alarm ran")
	}
}

// List the objects of a class that exist: those that stored something.
func ExampleObjectIDs() {
	var t *testing.T // the test's
	ts := durabletest.New(t)
	counters, _ := counterv1durable.RegisterCounter(ts.Server, counter.Counter{})
	counters.Get(counters.IDFromName("a")).Increment(context.Background(), &counterv1.IncrementRequest{})
	counters.Get(counters.IDFromName("b")).GetValue(context.Background(), &counterv1.GetValueRequest{}) // read only
	if ids := durabletest.ObjectIDs(t, ts, counterv1durable.CounterClassName); len(ids) != 1 {
		t.Fatalf("%d counters, want 1", len(ids))
	}
}

// Thirty minutes of alarms and eviction in milliseconds: inside a
// testing/synctest bubble, time is fake and moves once every goroutine is
// blocked. The objects and the server use time.Now and timers as usual.
func Example_synctest() {
	var t *testing.T // the test's
	synctest.Test(t, func(t *testing.T) {
		ts := durabletest.New(t) // inside the bubble; no URL there: no network
		sessions, _ := sessionv1durable.RegisterSession(ts.Server, session.Session{})
		s := sessions.Get(sessions.IDFromName("alice"))
		s.SetData(context.Background(), &sessionv1.SetDataRequest{Key: "k", Value: "v"})
		time.Sleep(session.DefaultIdle) // returns at once, 30 minutes later
		synctest.Wait()                 // the alarm has deleted the idle session
		r, _ := s.Peek(context.Background(), &sessionv1.PeekRequest{})
		if len(r.GetSession().GetData()) != 0 {
			t.Fatalf("the idle session kept %v", r.GetSession().GetData())
		}
	})
}
