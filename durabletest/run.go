package durabletest

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/durablego/durable"
	"github.com/durablego/durable/server"
)

// Run runs fn inside the object id of s, as one of its calls (Cloudflare's
// runInDurableObject): through the object's mailbox, after the calls queued
// before it, activating the object (and running its Init hook) if needed.
// fn gets the handle a method gets, o.State, o.Storage, o.SQL, the alarm
// and o.Sockets, to set an object up or inspect it; its changes commit when
// it returns nil. An error from fn, or a failed commit, fails the test; to
// test a failing call itself, call server.Run, which returns the error.
//
// S, the class's state type, comes from fn's handle:
//
//	durabletest.Run(t, ts, id, func(ctx context.Context, o *counterv1durable.CounterObject) error {
//		o.State.Value = 41
//		return nil
//	})
//
// fn may call t.Errorf, and also t.Fatal or t.FailNow, although it runs on
// another goroutine than the test's: that call's changes are undone and
// the test stops when Run returns.
func Run[S proto.Message](t testing.TB, s *Server, id durable.ID, fn func(context.Context, *durable.Object[S]) error) {
	t.Helper()
	err := server.Run(t.Context(), s.Server, id, func(ctx context.Context, o *durable.Object[S]) error {
		return guarded(func() error { return fn(ctx, o) })
	})
	if errors.Is(err, errGoexit) {
		t.FailNow() // fn's t.Fatal has reported the failure already
	}
	if err != nil {
		t.Fatalf("durabletest: Run on %s: %v", id, err)
	}
}

// errGoexit is the error of a function that called runtime.Goexit, as
// t.Fatal and t.FailNow do.
var errGoexit = errors.New("durabletest: the function called t.FailNow (t.Fatal) or runtime.Goexit")

// guarded runs fn on a goroutine of its own and returns its error: a
// Goexit there (t.Fatal) becomes errGoexit instead of ending the goroutine
// of the object's mailbox, and a panic is panicked again on the caller's
// goroutine, where the server turns it into the call's error.
func guarded(fn func() error) error {
	type outcome struct {
		err      error
		panicked any
		returned bool
	}
	done := make(chan outcome, 1)
	go func() {
		var o outcome
		defer func() {
			if !o.returned {
				o.panicked = recover() // nil for a Goexit
			}
			done <- o
		}()
		o.err = fn()
		o.returned = true
	}()
	o := <-done
	switch {
	case o.returned:
		return o.err
	case o.panicked != nil:
		panic(o.panicked)
	}
	return errGoexit
}

// RunAlarm runs the alarm of the object id of s now, whatever its time,
// as the scheduler runs a due alarm (Cloudflare's runDurableObjectAlarm):
// the class's Alarm hook runs as a call, and the alarm is deleted with its
// commit unless the hook set another. It reports whether the object had an
// alarm; a failing hook fails the test (server.RunAlarm returns the error
// instead).
func RunAlarm(t testing.TB, s *Server, id durable.ID) bool {
	t.Helper()
	ran, err := server.RunAlarm(t.Context(), s.Server, id)
	if err != nil {
		t.Fatalf("durabletest: RunAlarm on %s: %v", id, err)
	}
	return ran
}

// maxObjects bounds ObjectIDs: a test that makes more objects than this
// pages with server.ObjectIDs.
const maxObjects = 10_000

// ObjectIDs returns the IDs of the objects of class that exist in s, in
// byte order (Cloudflare's listDurableObjectIds): those that stored
// something, as only those exist. The IDs carry no name. It fails the test
// for an unknown class, or past 10,000 objects (page with
// server.ObjectIDs then).
func ObjectIDs(t testing.TB, s *Server, class string) []durable.ID {
	t.Helper()
	ids, err := s.ObjectIDs(t.Context(), class, durable.ID{}, maxObjects+1)
	if err != nil {
		t.Fatalf("durabletest: ObjectIDs of %s: %v", class, err)
	}
	if len(ids) > maxObjects {
		t.Fatalf("durabletest: ObjectIDs of %s: more than %d objects; page with server.ObjectIDs", class, maxObjects)
	}
	return ids
}
