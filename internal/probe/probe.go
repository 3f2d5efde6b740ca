// Package probe implements the test object durabletest.v1.Probe, whose
// methods fail, panic, block and call other objects on request.
package probe

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/durablego/durable"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	"github.com/durablego/durable/storage"
)

// Probe implements durabletestv1durable.Probe.
type Probe struct {
	// Peer returns the stub Hop calls for a name; set it after
	// registration, to an in-process or a remote namespace.
	Peer func(name string) durabletestv1durable.ProbeStub
	// Gate is what Block waits on; Entered receives a value each time a
	// Block call starts waiting.
	Gate    chan struct{}
	Entered chan struct{}
	// InitFail makes Init fail while it is set.
	InitFail atomic.Bool
	// AlarmFailures is how many runs of Alarm fail before one succeeds.
	AlarmFailures atomic.Int64
	// Reschedule, in nanoseconds, makes Alarm set a new alarm that far
	// ahead.
	Reschedule atomic.Int64
	// Alarms, if set, receives every run of Alarm.
	Alarms chan AlarmRun
	// OnPut, if set, runs in Put after its write, and its error fails
	// the call: a test's own method body (one that ignores ctx, say).
	OnPut func(ctx context.Context, o *durabletestv1durable.ProbeObject) error
	// OnInit, if set, runs at the end of Init, and its error fails it.
	OnInit func(ctx context.Context, o *durabletestv1durable.ProbeObject) error
	// OnAlarm, if set, runs at the start of each run of Alarm, and its
	// error fails the run.
	OnAlarm func(ctx context.Context, o *durabletestv1durable.ProbeObject, info durable.AlarmInfo) error
}

var _ durabletestv1durable.Probe = (*Probe)(nil)

// ErrAsked is the error Add returns when asked to fail with no code.
var ErrAsked = errors.New("probe: failing as asked")

// Init counts its runs in the state.
func (p *Probe) Init(ctx context.Context, o *durabletestv1durable.ProbeObject) error {
	if p.InitFail.Load() {
		return errors.New("probe: Init failing as asked")
	}
	o.State.InitRuns++
	if p.OnInit != nil {
		return p.OnInit(ctx, o)
	}
	return nil
}

// Add adds, then fails or panics as asked.
func (p *Probe) Add(_ context.Context, o *durabletestv1durable.ProbeObject, req *durabletestv1.AddRequest) (*durabletestv1.AddResponse, error) {
	o.State.Value += req.GetAmount()
	switch {
	case req.GetPanic():
		panic("probe: panicking as asked")
	case req.GetFail() && req.GetCode() != 0:
		return nil, connect.NewError(connect.Code(req.GetCode()), fmt.Errorf("probe: failing with code %d as asked", req.GetCode()))
	case req.GetFail():
		return nil, ErrAsked
	}
	return &durabletestv1.AddResponse{Value: o.State.Value}, nil
}

// Get returns the state.
func (p *Probe) Get(_ context.Context, o *durabletestv1durable.ProbeObject, _ *durabletestv1.GetRequest) (*durabletestv1.GetResponse, error) {
	return &durabletestv1.GetResponse{State: o.State}, nil
}

// Hop calls the next object of the path.
func (p *Probe) Hop(ctx context.Context, o *durabletestv1durable.ProbeObject, req *durabletestv1.HopRequest) (*durabletestv1.HopResponse, error) {
	if len(req.GetPath()) == 0 {
		return &durabletestv1.HopResponse{Value: o.State.Value}, nil
	}
	return p.Peer(req.GetPath()[0]).Hop(ctx, &durabletestv1.HopRequest{Path: req.GetPath()[1:]})
}

// Block waits for the gate.
func (p *Probe) Block(ctx context.Context, _ *durabletestv1durable.ProbeObject, _ *durabletestv1.BlockRequest) (*durabletestv1.BlockResponse, error) {
	if p.Entered != nil {
		p.Entered <- struct{}{}
	}
	select {
	case <-p.Gate:
		return &durabletestv1.BlockResponse{}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Put writes an entry, adds one to the value, then fails if asked to.
func (p *Probe) Put(ctx context.Context, o *durabletestv1durable.ProbeObject, req *durabletestv1.PutRequest) (*durabletestv1.PutResponse, error) {
	if err := o.Storage.Put(ctx, req.GetKey(), req.GetValue()); err != nil {
		return nil, err
	}
	o.State.Value++
	if req.GetFail() {
		return nil, ErrAsked
	}
	if p.OnPut != nil {
		if err := p.OnPut(ctx, o); err != nil {
			return nil, err
		}
	}
	return &durabletestv1.PutResponse{}, nil
}

// List returns the keys of the probe's entries.
func (p *Probe) List(ctx context.Context, o *durabletestv1durable.ProbeObject, _ *durabletestv1.ListRequest) (*durabletestv1.ListResponse, error) {
	entries, err := o.Storage.List(ctx, storage.ListOptions{})
	if err != nil {
		return nil, err
	}
	res := &durabletestv1.ListResponse{}
	for _, e := range entries {
		res.Keys = append(res.Keys, e.Key)
	}
	return res, nil
}

// Ledger implements durabletestv1durable.Ledger.
type Ledger struct {
	// OnRecord, if set, runs in Record after its writes, and its error
	// fails the call.
	OnRecord func(ctx context.Context, o *durabletestv1durable.LedgerObject) error
}

var _ durabletestv1durable.Ledger = Ledger{}

// Init creates the ledger's table.
func (Ledger) Init(ctx context.Context, o *durabletestv1durable.LedgerObject) error {
	_, err := o.SQL.Exec(ctx, `CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY)`)
	return err
}

// Record writes state, an entry and a row, then fails or panics as asked.
func (l Ledger) Record(ctx context.Context, o *durabletestv1durable.LedgerObject, req *durabletestv1.RecordRequest) (*durabletestv1.RecordResponse, error) {
	if err := o.Storage.Put(ctx, req.GetKey(), []byte("v")); err != nil {
		return nil, err
	}
	if _, err := o.SQL.Exec(ctx, `INSERT INTO entries (key) VALUES (?)`, req.GetKey()); err != nil {
		return nil, err
	}
	o.State.Entries += max(1, req.GetEntries())
	if req.GetOwner() != "" {
		o.State.Owner = req.GetOwner()
	}
	switch {
	case req.GetPanic():
		panic("ledger: panicking as asked")
	case req.GetFail():
		return nil, ErrAsked
	}
	if l.OnRecord != nil {
		if err := l.OnRecord(ctx, o); err != nil {
			return nil, err
		}
	}
	return &durabletestv1.RecordResponse{}, nil
}

// Read returns the state, keys and rows.
func (Ledger) Read(ctx context.Context, o *durabletestv1durable.LedgerObject, _ *durabletestv1.ReadRequest) (*durabletestv1.ReadResponse, error) {
	res := &durabletestv1.ReadResponse{State: o.State}
	entries, err := o.Storage.List(ctx, storage.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		res.Keys = append(res.Keys, e.Key)
	}
	cur, err := o.SQL.Exec(ctx, `SELECT key FROM entries ORDER BY key`)
	if err != nil {
		return nil, err
	}
	for cur.Next() {
		var k string
		if err := cur.Scan(&k); err != nil {
			return nil, err
		}
		res.Rows = append(res.Rows, k)
	}
	return res, nil
}

// Schedule sets, deletes or reads the alarm, then fails if asked.
func (p *Probe) Schedule(ctx context.Context, o *durabletestv1durable.ProbeObject, req *durabletestv1.ScheduleRequest) (*durabletestv1.ScheduleResponse, error) {
	var err error
	switch {
	case req.GetDeleteAll():
		err = o.Storage.DeleteAll(ctx)
	case req.GetDelete():
		err = o.DeleteAlarm(ctx)
	case req.GetAtMs() != 0:
		err = o.SetAlarm(ctx, time.UnixMilli(req.GetAtMs()))
	}
	if err != nil {
		return nil, err
	}
	if req.GetFail() {
		return nil, ErrAsked
	}
	res := &durabletestv1.ScheduleResponse{}
	if at, ok, err := o.GetAlarm(ctx); err != nil {
		return nil, err
	} else if ok {
		res.AtMs = at.UnixMilli()
	}
	return res, nil
}

// Alarm counts its runs. It fails while AlarmFailures is above zero,
// counting it down, and reports each run's info on Alarms if set. With
// Reschedule set, it sets a new alarm that far ahead.
func (p *Probe) Alarm(ctx context.Context, o *durabletestv1durable.ProbeObject, info durable.AlarmInfo) error {
	// Read before reporting the run: a test may change Reschedule as soon
	// as it has seen the run.
	reschedule := p.Reschedule.Load()
	if p.Alarms != nil {
		p.Alarms <- AlarmRun{ID: o.ID, Info: info, Started: time.Now()}
	}
	if p.OnAlarm != nil {
		if err := p.OnAlarm(ctx, o, info); err != nil {
			return err
		}
	}
	if p.AlarmFailures.Add(-1) >= 0 {
		return errors.New("probe: alarm failing as asked")
	}
	o.State.AlarmRuns++
	o.State.AlarmRetry = int64(info.RetryCount)
	if reschedule > 0 {
		return o.SetAlarm(ctx, time.Now().Add(time.Duration(reschedule)))
	}
	return nil
}

// AlarmRun is one run of the Alarm hook.
type AlarmRun struct {
	ID      durable.ID
	Info    durable.AlarmInfo
	Started time.Time
}
