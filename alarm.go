package durable

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"
)

// AlarmInfo tells an Alarm handler about the run: Cloudflare's alarmInfo.
type AlarmInfo struct {
	// RetryCount is 0 for the first run and counts the retries after it.
	RetryCount int
	// IsRetry reports whether an earlier run of this alarm failed.
	IsRetry bool
	// ScheduledTime is when the alarm was due.
	ScheduledTime time.Time
}

// Alarmer is the optional hook an implementation satisfies to receive its
// object's alarm, Cloudflare's alarm(). It runs through the object's
// mailbox like a call, activating the object if needed, and its writes
// commit atomically.
//
// As on Cloudflare, the running alarm is no longer set once the handler
// starts: GetAlarm inside it reports none, so "set an alarm if none is
// set" works there too; SetAlarm schedules the next run, and DeleteAlarm
// cancels one the handler set. When the handler returns nil, that is what
// is committed (no alarm, unless it set one). An error or a panic rolls
// the call back, the running alarm's removal with it (unlike Cloudflare,
// where what the handler wrote before it threw stays, and an alarm it set
// or deleted cancels the retry): the alarm is still set (GetAlarm in other
// calls returns it) and is retried with exponential backoff from 2 s, at
// most 6 times; then it is dropped and the failure logged.
type Alarmer[S proto.Message] interface {
	Alarm(ctx context.Context, o *Object[S], info AlarmInfo) error
}

// SetAlarm schedules the object's alarm at t, replacing any other: an
// object has at most one. It is part of the call's writes: undone if the
// call fails. Alarms have millisecond precision. A time in the past is
// stored as now, as Cloudflare does (GetAlarm then returns now), and fires
// at once; the zero time, or one before 1970, is an error. The class must
// implement Alarmer.
func (o *Object[S]) SetAlarm(ctx context.Context, t time.Time) error {
	return o.Storage.SetAlarm(ctx, t)
}

// GetAlarm returns the time of the object's alarm, and false when it has
// none. Inside the Alarm hook, the running alarm does not count: it
// reports only one the hook set.
func (o *Object[S]) GetAlarm(ctx context.Context) (time.Time, bool, error) {
	return o.Storage.GetAlarm(ctx)
}

// DeleteAlarm cancels the object's alarm, if any. Storage.DeleteAll also
// deletes it.
func (o *Object[S]) DeleteAlarm(ctx context.Context) error {
	return o.Storage.DeleteAlarm(ctx)
}
