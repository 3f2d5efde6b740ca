// Package session implements the reference page's alarm example: a session
// that cleans itself up after a period without activity.
//
// Init records the session's first activity and schedules the object's
// alarm for when the session will have been idle for Idle. Touch, SetData
// and GetData record activity. When the alarm runs, a session idle for
// Idle or longer has its storage deleted and its state reset, so its data
// is gone; a session used since has its alarm scheduled again, at its last
// activity + Idle.
//
// Two details differ from the reference's code, on purpose:
//
//   - The reference reschedules at now + 30 minutes, so a session last used
//     just before its alarm lives up to twice the idle period. This one
//     reschedules at last activity + Idle, the moment the session becomes
//     idle, so every session ends between Idle and Idle plus the alarm's
//     lateness after its last use.
//   - The reference's session, once cleaned up, has no alarm any more: used
//     again, it would never expire. Here every activity makes sure an alarm
//     is scheduled, so a revived session expires like a new one.
package session

import (
	"context"
	"time"

	"github.com/durablego/durable"
	sessionv1 "github.com/durablego/durable/gen/examples/session/v1"
	"github.com/durablego/durable/gen/examples/session/v1/sessionv1durable"
)

// DefaultIdle is how long a session may stay idle when Session.Idle is not
// set: the reference's 30 minutes.
const DefaultIdle = 30 * time.Minute

// Session implements sessionv1durable.Session and the Init and Alarm hooks.
type Session struct {
	// Idle is how long a session may go without activity before its alarm
	// cleans it up; DefaultIdle when zero or negative. It is rounded up to
	// a whole millisecond, the precision of alarms and of the state's
	// times.
	Idle time.Duration
	// Now is the clock, time.Now when nil. Alarms fire on the wall clock, so
	// a clock that runs behind it makes the alarm find the session not yet
	// idle and reschedule it again and again: tests that let alarms fire use
	// time.Now with a short Idle, and those that move the clock by hand use
	// an Idle long enough that no alarm falls due during the test.
	Now func() time.Time
}

var (
	_ sessionv1durable.Session                     = Session{}
	_ durable.Initializer[*sessionv1.SessionState] = Session{}
	_ durable.Alarmer[*sessionv1.SessionState]     = Session{}
)

func (s Session) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// idleMs returns Idle in whole milliseconds, rounded up.
func (s Session) idleMs() int64 {
	idle := s.Idle
	if idle <= 0 {
		idle = DefaultIdle
	}
	return int64((idle + time.Millisecond - 1) / time.Millisecond)
}

// idleAt returns when a session last active at lastMs (Unix milliseconds)
// will have been idle for Idle.
func (s Session) idleAt(lastMs int64) time.Time {
	return time.UnixMilli(lastMs + s.idleMs())
}

// Init starts a new session: active now, its alarm due in Idle.
func (s Session) Init(ctx context.Context, o *sessionv1durable.SessionObject) error {
	o.State.LastActivityMs = s.now().UnixMilli()
	return o.SetAlarm(ctx, s.idleAt(o.State.LastActivityMs))
}

// activity records activity now and makes sure the session has an alarm
// due no later than it will have been idle for Idle: a session cleaned up
// and used again has none, and one whose alarm was scheduled under a longer
// Idle (the server restarted with another setting) has a later one. An
// alarm already due in time is left alone, so that activity costs no alarm
// write: the alarm moves itself forward when it runs.
func (s Session) activity(ctx context.Context, o *sessionv1durable.SessionObject) error {
	o.State.LastActivityMs = s.now().UnixMilli()
	due := s.idleAt(o.State.LastActivityMs)
	at, ok, err := o.GetAlarm(ctx)
	if err != nil {
		return err
	}
	if ok && !at.After(due) {
		return nil
	}
	return o.SetAlarm(ctx, due)
}

// Touch records activity.
func (s Session) Touch(ctx context.Context, o *sessionv1durable.SessionObject, _ *sessionv1.TouchRequest) (*sessionv1.TouchResponse, error) {
	if err := s.activity(ctx, o); err != nil {
		return nil, err
	}
	return &sessionv1.TouchResponse{LastActivityMs: o.State.LastActivityMs}, nil
}

// SetData sets one entry of the session's data and records activity.
func (s Session) SetData(ctx context.Context, o *sessionv1durable.SessionObject, req *sessionv1.SetDataRequest) (*sessionv1.SetDataResponse, error) {
	if o.State.Data == nil {
		o.State.Data = make(map[string]string)
	}
	o.State.Data[req.GetKey()] = req.GetValue()
	if err := s.activity(ctx, o); err != nil {
		return nil, err
	}
	return &sessionv1.SetDataResponse{}, nil
}

// GetData returns the session's data and, as the reference's getData does,
// records activity.
func (s Session) GetData(ctx context.Context, o *sessionv1durable.SessionObject, _ *sessionv1.GetDataRequest) (*sessionv1.GetDataResponse, error) {
	if err := s.activity(ctx, o); err != nil {
		return nil, err
	}
	// The server clones a response before the object runs its next call.
	return &sessionv1.GetDataResponse{Data: o.State.Data}, nil
}

// Peek returns the session and its alarm, without recording activity.
func (Session) Peek(ctx context.Context, o *sessionv1durable.SessionObject, _ *sessionv1.PeekRequest) (*sessionv1.PeekResponse, error) {
	res := &sessionv1.PeekResponse{Session: o.State}
	at, ok, err := o.GetAlarm(ctx)
	if err != nil {
		return nil, err
	}
	if ok {
		res.AlarmAtMs = at.UnixMilli()
	}
	return res, nil
}

// Alarm cleans the session up if it has been idle for Idle or longer, and
// otherwise schedules the alarm again for when it will have been.
//
// The test is "at least Idle" (>=), not the reference's "more than": the
// alarm is due exactly when the session has been idle for Idle, and with
// "more than" an alarm that ran on time, in the same millisecond, would
// find the session not quite idle and reschedule itself for the very time
// it was due, only to run again for nothing. With "at least", a
// rescheduled alarm is always later than now.
//
// Cleaning up deletes all the object's storage (o.Storage.DeleteAll, as
// the reference does; it also deletes the alarm) and, since the state is
// not part of that storage, resets the state: the session's data is gone
// and its last activity is 0 until it is used again. A failure is returned
// and the server retries the alarm.
func (s Session) Alarm(ctx context.Context, o *sessionv1durable.SessionObject, _ durable.AlarmInfo) error {
	due := s.idleAt(o.State.GetLastActivityMs())
	if s.now().Before(due) {
		return o.SetAlarm(ctx, due)
	}
	if err := o.Storage.DeleteAll(ctx); err != nil {
		return err
	}
	o.State = &sessionv1.SessionState{}
	return nil
}
