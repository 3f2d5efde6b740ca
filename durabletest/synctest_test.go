package durabletest_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/durablego/durable/durabletest"
	"github.com/durablego/durable/examples/session"
	sessionv1 "github.com/durablego/durable/gen/examples/session/v1"
	"github.com/durablego/durable/gen/examples/session/v1/sessionv1durable"
	"github.com/durablego/durable/server"
)

// TestSynctestAlarm: inside a testing/synctest bubble, a session's alarm
// 30 minutes ahead fires once fake time reaches it, with the session's
// wall clock (time.Now) and no clock injected: the idle session is
// deleted. Real time spent is milliseconds (the test states no bound on
// it: it asserts the order of events, not their speed).
func TestSynctestAlarm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ts := durabletest.New(t)
		sessions, err := sessionv1durable.RegisterSession(ts.Server, session.Session{})
		if err != nil {
			t.Fatal(err)
		}
		s := sessions.Get(sessions.IDFromName("alice"))
		if _, err := s.SetData(ctx, &sessionv1.SetDataRequest{Key: "k", Value: "v"}); err != nil {
			t.Fatal(err)
		}
		due := time.Now().Add(session.DefaultIdle)
		time.Sleep(session.DefaultIdle - time.Second)
		synctest.Wait()
		if r := peek(t, s); r.GetSession().GetData()["k"] != "v" || r.GetAlarmAtMs() != due.UnixMilli() {
			t.Fatalf("a second before the alarm: %v, want the data and the alarm at %v", r, due)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if r := peek(t, s); len(r.GetSession().GetData()) != 0 || r.GetAlarmAtMs() != 0 {
			t.Fatalf("a second after the alarm: %v, want the session deleted", r)
		}
	})
}

// TestSynctestIdleEviction: inside a bubble, an object leaves memory once
// fake time passes the idle timeout, and comes back with its state.
func TestSynctestIdleEviction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ts := durabletest.New(t, server.WithIdleTimeout(10*time.Second))
		sessions, err := sessionv1durable.RegisterSession(ts.Server, session.Session{})
		if err != nil {
			t.Fatal(err)
		}
		s := sessions.Get(sessions.IDFromName("bob"))
		if _, err := s.SetData(ctx, &sessionv1.SetDataRequest{Key: "k", Value: "v"}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if n := ts.ActiveObjects(); n != 1 {
			t.Fatalf("after a call: %d objects in memory, want 1", n)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := ts.ActiveObjects(); n != 0 {
			t.Fatalf("a minute later: %d objects in memory, want 0", n)
		}
		if r := peek(t, s); r.GetSession().GetData()["k"] != "v" {
			t.Fatalf("reactivated: %v, want the data", r)
		}
	})
}

func peek(t *testing.T, s sessionv1durable.SessionStub) *sessionv1.PeekResponse {
	t.Helper()
	r, err := s.Peek(context.Background(), &sessionv1.PeekRequest{})
	if err != nil {
		t.Fatalf("Peek: %v", err)
	}
	return r
}
