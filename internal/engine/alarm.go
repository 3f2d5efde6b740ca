package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/durablego/durable/internal/objectkey"
)

// Errors of the alarm methods.
var (
	// ErrInvalidAlarm: the zero time, or a time before 1970. It matches
	// ErrInvalid.
	ErrInvalidAlarm = invalid("storage: invalid alarm time")
	// ErrNoAlarmHandler: SetAlarm on an object whose class does not
	// implement the Alarm hook, so the alarm could never run.
	ErrNoAlarmHandler = errors.New("storage: the object's class has no Alarm handler")
)

// SetAlarm schedules the object's alarm at t, replacing any other: an
// object has at most one. It is one of the call's writes: committed with
// them, undone with them. Alarms have millisecond precision; a time in the
// past is stored as now, as Cloudflare does (GetAlarm then returns now),
// and fires at once: an alarm is never due before it was set, so a
// constant past time cannot sort ahead of every other object's alarms.
func (kv *KV) SetAlarm(ctx context.Context, t time.Time) error {
	if err := kv.inCall(); err != nil {
		return err
	}
	if !kv.alarms {
		return ErrNoAlarmHandler
	}
	if t.IsZero() || t.UnixMilli() <= 0 {
		return fmt.Errorf("%w: %v", ErrInvalidAlarm, t)
	}
	kv.top().alarm = alarmOp{kind: alarmSet, at: max(t.UnixMilli(), time.Now().UnixMilli())}
	return nil
}

// GetAlarm returns the time of the object's alarm, and false when it has
// none.
func (kv *KV) GetAlarm(ctx context.Context) (time.Time, bool, error) {
	if err := kv.inCall(); err != nil {
		return time.Time{}, false, err
	}
	for _, l := range kv.layers() {
		switch l.alarm.kind {
		case alarmSet:
			return time.UnixMilli(l.alarm.at), true, nil
		case alarmDeleted:
			return time.Time{}, false, nil
		}
	}
	at, ok, err := kv.src.alarm(ctx)
	if err != nil || !ok {
		return time.Time{}, false, err
	}
	return time.UnixMilli(at), true, nil
}

// DeleteAlarm cancels the object's alarm, if it has one.
func (kv *KV) DeleteAlarm(ctx context.Context) error {
	if err := kv.inCall(); err != nil {
		return err
	}
	kv.top().alarm = alarmOp{kind: alarmDeleted}
	return nil
}

// AlarmChange reports a committed change to an object's alarm: its new
// time in Unix milliseconds, or Set false when it was deleted.
type AlarmChange struct {
	Set bool
	At  int64
}

// HandleAlarms lets the store's object set alarms, and has onChange called
// after each commit that changes the alarm, once the change is durable.
func (s *Store) HandleAlarms(onChange func(AlarmChange)) {
	s.KV.alarms = true
	s.onAlarm = onChange
}

func (s *Store) alarmCommitted(op alarmOp) {
	if op.kind != alarmUnchanged && s.onAlarm != nil {
		s.onAlarm(AlarmChange{Set: op.kind == alarmSet, At: op.at})
	}
}

// alarmHints writes an object database's alarm into the node's index.
type alarmHints struct {
	db    ObjectStore
	class string
	id    [32]byte
}

// set indexes the alarm and waits until the index is durable.
func (h *alarmHints) set(at int64) error {
	done := make(chan error, 1)
	h.db.Commit(&Batch{class: h.class, id: h.id, kv: &layer{alarm: alarmOp{kind: alarmSet, at: at}},
		done: func(err error) { done <- err }})
	return <-done
}

// remove drops the index entry, without waiting: a stale entry only wakes
// the object for nothing.
func (h *alarmHints) remove() {
	h.db.Commit(&Batch{class: h.class, id: h.id, kv: &layer{alarm: alarmOp{kind: alarmDeleted}},
		done: func(error) {}})
}

// DueAlarm is one entry of the node's alarm index.
type DueAlarm struct {
	objectkey.Key       // the object
	At            int64 // Unix milliseconds
}

// Less orders due alarms by time, then class, then ID.
func (a DueAlarm) Less(b DueAlarm) bool {
	if a.At != b.At {
		return a.At < b.At
	}
	if a.Class != b.Class {
		return a.Class < b.Class
	}
	return string(a.ID[:]) < string(b.ID[:])
}

// DueAlarms returns up to limit alarms of the index that come after the
// entry after and are due no later than until (Unix milliseconds), in
// order. The scheduler pages through the index with it, holding in memory
// only what is due soon.
func (db *DB) DueAlarms(ctx context.Context, after DueAlarm, until int64, limit int) ([]DueAlarm, error) {
	var out []DueAlarm
	_, _, err := withReader(ctx, db, func(r *reader) ([]byte, bool, error) {
		defer r.due.Reset()
		r.due.BindInt64(1, after.At)
		r.due.BindText(2, after.Class)
		r.due.BindBlob(3, after.ID[:])
		r.due.BindInt64(4, until)
		r.due.BindInt(5, limit)
		for r.due.Step() {
			a := DueAlarm{Key: objectkey.Key{Class: r.due.ColumnText(0)}, At: r.due.ColumnInt64(2)}
			copy(a.ID[:], r.due.ColumnRawBlob(1))
			out = append(out, a)
		}
		return nil, false, r.due.Err()
	})
	return out, err
}
