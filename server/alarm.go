package server

import (
	"context"
	"fmt"
	"time"

	"github.com/durablego/durable"
	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/objectkey"
)

// alarmChanged tells the scheduler about a committed change of an alarm.
func (s *Server) alarmChanged(key objectkey.Key, c engine.AlarmChange) {
	s.mu.RLock()
	scheduler := s.alarms
	s.mu.RUnlock()
	if scheduler != nil {
		scheduler.Update(key, c.Set, c.At)
	}
	// Without a scheduler (not started, or shut down) the change is in the
	// index for the next start.
}

// dispatchAlarm runs the alarm of an object through its mailbox; the
// scheduler calls it when the alarm is due.
func (s *Server) dispatchAlarm(key objectkey.Key, at time.Time, retry int, done func(error)) {
	ns, err := s.lookup(key.Class)
	if err != nil {
		// Retried, then left in the index for a server that has the class.
		s.log.Warn("durable: alarm of an object whose class is not registered", "class", key.Class, "err", err)
		done(err)
		return
	}
	ns.runAlarm(key, at, retry, func(err error) {
		if err != nil {
			s.log.Warn("durable: alarm failed", "class", key.Class, "retry", retry, "err", err)
		}
		done(err)
	})
}

// dropAlarm deletes an alarm whose retries are exhausted, unless the
// object has set another since.
func (s *Server) dropAlarm(key objectkey.Key, at time.Time) {
	if ns, err := s.lookup(key.Class); err == nil {
		ns.dropAlarm(key, at)
	}
}

// runAlarm runs the Alarm hook of the object key as a call. The hook runs
// only if the object's stored alarm is due: the index may wake an object
// whose alarm was moved or deleted since. The running alarm is deleted in
// the call before the hook runs, as Cloudflare's is: GetAlarm inside the
// hook reports none, and what the hook sets is what remains. If the hook
// fails, the call rolls back, the deletion with it, and the scheduler
// retries the alarm.
func (n *Namespace[S]) runAlarm(key objectkey.Key, due time.Time, retry int, done func(error)) {
	n.alarmCall(key, n.m.method("Alarm"), done, func(ctx context.Context, o *durable.Object[S]) error {
		at, ok, err := o.GetAlarm(ctx)
		if err != nil || !ok || at.After(time.Now()) {
			return err
		}
		if n.alarm != nil {
			n.m.alarmFired(retry)
		}
		return n.alarmHook(ctx, o, at, durable.AlarmInfo{RetryCount: retry, IsRetry: retry > 0, ScheduledTime: due})
	})
}

// dropAlarm deletes the object's alarm if it is still the one due at due.
func (n *Namespace[S]) dropAlarm(key objectkey.Key, due time.Time) {
	n.m.alarmDropped()
	n.alarmCall(key, nil, func(error) {}, func(ctx context.Context, o *durable.Object[S]) error {
		if at, ok, err := o.GetAlarm(ctx); err != nil || !ok || !at.Equal(due) {
			return err
		}
		return o.DeleteAlarm(ctx)
	})
}

// alarmCall runs fn on the object key through its mailbox, without a
// caller waiting: done receives the outcome. The call is counted in mm,
// unless nil (metrics off, or not a run of the Alarm hook).
func (n *Namespace[S]) alarmCall(key objectkey.Key, mm *methodMetrics, done func(error), fn func(context.Context, *durable.Object[S]) error) {
	go func() {
		c, err := n.call(context.Background(), &entry[S]{
			id:     durable.IDFromBytes(key.Class, key.ID, ""),
			method: "Alarm",
			mm:     mm,
			run: func(ctx context.Context, o *durable.Object[S]) (any, error) {
				return nil, fn(ctx, o)
			},
		})
		if c == nil {
			err = fmt.Errorf("queueing the alarm: %w", err)
		}
		done(err)
	}()
}
