// Package probe implements the test object durabletest.v1.Probe, whose
// methods fail, panic, block and call other objects on request.
package probe

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"connectrpc.com/connect"

	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
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
}

var _ durabletestv1durable.Probe = (*Probe)(nil)

// ErrAsked is the error Add returns when asked to fail with no code.
var ErrAsked = errors.New("probe: failing as asked")

// Init counts its runs in the state.
func (p *Probe) Init(_ context.Context, o *durabletestv1durable.ProbeObject) error {
	if p.InitFail.Load() {
		return errors.New("probe: Init failing as asked")
	}
	o.State.InitRuns++
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
