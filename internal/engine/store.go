package engine

import (
	"context"
)

// Store is the storage of one object: its state, its key-value storage and,
// for classes declared with SQL, its SQL database. The server's object
// goroutine drives it: BeginCall and EndCall around each call, Commit after
// a batch of calls. It is not safe for concurrent use.
type Store struct {
	// KV is the object's key-value storage.
	KV *KV
	// SQL is the object's SQL database; its methods fail with ErrNoSQL for
	// a store without one.
	SQL *SQL

	b       *guarded // the backend, under the fence that cuts it off (Fence)
	onAlarm func(AlarmChange)
}

// backend is where a store's writes go: the node database (committed by
// its writer goroutine, asynchronously) or the object's own SQL file
// (committed by the object's goroutine).
type backend interface {
	loadState(ctx context.Context) ([]byte, bool, error)
	beginCall() error
	endCall(ok bool) error
	// needsCommit reports whether commit must run even without state or
	// key-value writes (an open SQL transaction).
	needsCommit() bool
	commit(state []byte, writeState bool, kv *layer, valid func() bool, done func(error))
	// initialized: the writes so far are Init's (see Store.Initialized).
	initialized()
	reset()
	close() error
}

// LoadState returns the object's stored state, and whether there is one.
func (s *Store) LoadState(ctx context.Context) (state []byte, found bool, err error) {
	defer catch(&err)
	return s.b.loadState(ctx)
}

// BeginCall starts a call: its writes are kept by EndCall(true) and undone
// by EndCall(false).
func (s *Store) BeginCall() (err error) {
	defer catch(&err)
	if err := s.b.beginCall(); err != nil {
		return err
	}
	s.KV.push()
	return nil
}

// EndCall ends the current call, keeping its writes in the batch when ok.
// An error means the batch can no longer be committed: Reset the store.
func (s *Store) EndCall(ok bool) (err error) {
	defer catch(&err)
	for s.KV.txDepth > 0 { // a Transaction left open by a panic
		s.KV.txDepth--
		s.KV.pop(false)
	}
	s.KV.pop(ok)
	return s.b.endCall(ok)
}

// Dirty reports whether the batch has writes to commit besides the state.
// Those of Init that Initialized set apart do not count.
func (s *Store) Dirty() bool { return !s.KV.stack[0].empty() || s.b.needsCommit() }

// Initialized sets the writes of the batch so far (those of the Init hook
// of an object with no stored state) apart: the object's calls see them,
// and they are committed with the first batch that writes something else,
// so that an object that is only read is never stored, as on Cloudflare,
// where an object exists once it stores something. Until then a new SQL
// object's database stays in memory. Reset forgets them; Init runs again.
func (s *Store) Initialized() {
	s.KV.holdBase()
	s.b.initialized()
}

// Commit commits the batch: the key-value and SQL writes of its successful
// calls and, when writeState is set, state. done is called once, with nil
// when all of it is durable; for the node database it is called later, from
// its writer goroutine, and valid is asked first (a batch no longer valid
// is acknowledged with ErrStale and not written). The writes Initialized
// set apart are committed with the first batch that writes something.
func (s *Store) Commit(state []byte, writeState bool, valid func() bool, done func(error)) {
	batch := s.KV.takeBatch(writeState || s.Dirty())
	op := batch.alarm
	if op.kind == alarmUnchanged {
		s.b.commit(state, writeState, batch, valid, done) // nothing to tell
		return
	}
	s.b.commit(state, writeState, batch, valid, func(err error) {
		if err == nil {
			s.alarmCommitted(op)
		}
		done(err)
	})
}

// Reset drops every write not yet committed, after a failed commit, so the
// store reads what the database holds.
func (s *Store) Reset() {
	s.KV.reset()
	s.b.reset()
}

// Close releases the store's resources; the node database stays open.
func (s *Store) Close() error { return s.b.close() }
