package server

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/durablego/durable"
)

// runMethod labels the calls of Run and RunAlarm in errors. It is no RPC
// of any class, so metrics and traces do not count these calls.
const runMethod = "Run"

// Run runs fn inside the object id, as one of its calls: through its
// mailbox, never beside another call of the object, activating it (and
// running its Init hook) if needed. fn sees the object's handle as a
// method does, state, storage, SQL, alarm and sockets; its changes commit
// when it returns nil and are all undone when it returns an error or
// panics. The class is the ID's; S must be its state type.
//
// Run is for tests and tools that set up or inspect an object's state
// (package durabletest wraps it), Cloudflare's runInDurableObject: callers
// of a class go through its methods. Like any in-process call it is not
// guarded. If ctx ends first, Run returns its error; fn may still run if it
// had already started.
func Run[S proto.Message](ctx context.Context, srv *Server, id durable.ID, fn func(context.Context, *durable.Object[S]) error) error {
	n, err := namespaceOf[S](srv, id)
	if err != nil {
		return err
	}
	_, err = Invoke(ctx, n, id, runMethod, &emptypb.Empty{}, func(ctx context.Context, o *durable.Object[S], _ *emptypb.Empty) (*emptypb.Empty, error) {
		return nil, fn(ctx, o)
	})
	return err
}

// RunAlarm runs the alarm of the object id now, whatever its time, as the
// scheduler would run it when due, and reports whether the object had one:
// the Alarm hook runs as a call (info.ScheduledTime is the alarm's time,
// RetryCount 0), and the alarm is deleted in the same commit unless the
// hook set another. A failing hook's error is returned and its changes
// undone; the alarm stays, for the scheduler to run when due. An object
// without an alarm is left as it was (and false returned). It is
// Cloudflare's runDurableObjectAlarm, for tests (package durabletest).
func RunAlarm(ctx context.Context, srv *Server, id durable.ID) (bool, error) {
	ns, err := srv.lookupID(id)
	if err != nil {
		return false, err
	}
	return ns.(interface {
		runAlarmNow(context.Context, durable.ID) (bool, error)
	}).runAlarmNow(ctx, id)
}

func (n *Namespace[S]) runAlarmNow(ctx context.Context, id durable.ID) (bool, error) {
	// Set on the object's goroutine, read here: the call may outlive ctx.
	var ran atomic.Bool
	err := Run(ctx, n.srv, id, func(ctx context.Context, o *durable.Object[S]) error {
		at, ok, err := o.GetAlarm(ctx)
		if err != nil || !ok {
			return err
		}
		ran.Store(true)
		return n.alarmHook(ctx, o, at, durable.AlarmInfo{ScheduledTime: at})
	})
	return ran.Load(), err
}

// alarmHook runs the Alarm hook for the alarm set at at. As on Cloudflare,
// the running alarm is deleted first, so the hook sees none and what it
// sets or deletes is what remains; a failed hook rolls the deletion back
// with the rest of the call, and the alarm is retried. A class without the
// hook has its alarm deleted. The scheduler's runs and RunAlarm share it.
func (n *Namespace[S]) alarmHook(ctx context.Context, o *durable.Object[S], at time.Time, info durable.AlarmInfo) error {
	if err := o.DeleteAlarm(ctx); err != nil {
		return err
	}
	if n.alarm == nil {
		n.srv.log.Warn("durable: deleting the alarm of an object whose class has no Alarm handler", "class", n.class.Name)
		return nil
	}
	if err := n.alarm.Alarm(ctx, o, info); err != nil {
		return err
	}
	next, ok, err := o.GetAlarm(ctx)
	if err != nil || !ok || next.After(at) {
		return err
	}
	// Set for the running alarm's millisecond (a past time, stored as
	// now, when the alarm fired within the millisecond it was due): the
	// scheduler tells a new alarm from the running one by its time, so it
	// goes 1 ms later.
	return o.SetAlarm(ctx, at.Add(time.Millisecond))
}

// namespaceOf returns the namespace of id's class, which must have the
// state type S.
func namespaceOf[S proto.Message](srv *Server, id durable.ID) (*Namespace[S], error) {
	ns, err := srv.lookupID(id)
	if err != nil {
		return nil, err
	}
	n, ok := ns.(*Namespace[S])
	if !ok {
		var zero S
		return nil, fmt.Errorf("server: class %s does not have the state type %T", id.Class(), zero)
	}
	return n, nil
}

// lookupID returns the namespace of id's class.
func (s *Server) lookupID(id durable.ID) (namespace, error) {
	if id.IsZero() {
		return nil, fmt.Errorf("%w: the zero ID addresses no object", durable.ErrInvalidID)
	}
	return s.lookup(id.Class())
}
