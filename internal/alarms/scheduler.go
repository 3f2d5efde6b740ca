// Package alarms schedules the alarms of a node's objects.
//
// Every object has at most one alarm, stored with the object and indexed
// in the node database by due time. The Scheduler pages through that index,
// holding in memory only the alarms due within a horizon (a minute by
// default) and at most a page of them, so that a node with a million
// scheduled alarms uses no more memory than one with a hundred. Changes
// committed by objects reach it through Update. When an alarm falls due,
// the Scheduler hands it to the server (Config.Dispatch), which runs the
// object's Alarm handler through its mailbox; a failed run is retried with
// exponential backoff and jitter, from 2 s, at most 6 times (Cloudflare's
// policy), then dropped (Config.Drop) with a logged error.
//
// Delivery is at least once: an alarm leaves the index only when the
// handler's run has committed, so a crash at any point makes it fire again
// after the restart, and one that fell due while the node was down fires
// promptly.
package alarms

import (
	"container/heap"
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/objectkey"
)

// Key names one object: Durable's one key type (its class and ID bytes),
// which storage's alarm index uses too.
type Key = objectkey.Key

// Index is where the Scheduler finds scheduled alarms: the node database.
type Index interface {
	DueAlarms(ctx context.Context, after engine.DueAlarm, until int64, limit int) ([]engine.DueAlarm, error)
}

// Config configures a Scheduler. Dispatch is required.
type Config struct {
	// Dispatch runs the alarm of key, due at at, for the retry-th time
	// (0 for the first run), and calls done with the outcome. It must not
	// block.
	Dispatch func(key Key, at time.Time, retry int, done func(error))
	// Drop removes the alarm of key due at at, after its last retry failed.
	Drop func(key Key, at time.Time)
	// Horizon is how far ahead alarms are held in memory. Default 1 minute.
	Horizon time.Duration
	// PageSize caps the alarms loaded from the index at once. Default 10,000.
	PageSize int
	// MaxRetries is how often a failed run is retried. Default 6.
	MaxRetries int
	// FirstRetry is the delay before the first retry; each next one
	// doubles it. Default 2 s.
	FirstRetry time.Duration
	// Logger logs dropped alarms and index failures. Default slog.Default().
	Logger *slog.Logger
}

// Scheduler fires the alarms of a node. Create it with New, stop it with
// Close.
type Scheduler struct {
	cfg   Config
	index Index

	mu      sync.Mutex
	pending entries       // due within the horizon, earliest first; may hold stale entries
	next    map[Key]int64 // when each pending key fires; what is not here is stale
	running map[Key]int64 // dispatched and not yet done: the due time
	// fired remembers the due time of runs that succeeded until the news
	// of their own commit arrives, so that late news of the commit that
	// set the alarm does not schedule it again.
	fired    map[Key]int64
	cursor   engine.DueAlarm // the index is loaded up to and including this entry
	complete bool            // the index holds nothing more up to cursor.At
	wake     chan struct{}
	stop     chan struct{}
	done     chan struct{}
}

// New starts a scheduler over index.
func New(index Index, cfg Config) *Scheduler {
	if cfg.Horizon <= 0 {
		cfg.Horizon = time.Minute
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 10_000
	}
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = 6
	}
	if cfg.FirstRetry <= 0 {
		cfg.FirstRetry = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Scheduler{
		cfg:     cfg,
		index:   index,
		next:    make(map[Key]int64),
		running: make(map[Key]int64),
		fired:   make(map[Key]int64),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go s.loop()
	return s
}

// Close stops firing alarms. Runs already dispatched finish through their
// objects (the server drains mailboxes after closing the scheduler);
// alarms not yet fired stay in the index for the next start.
func (s *Scheduler) Close() {
	close(s.stop)
	<-s.done
}

// Pending returns how many alarms the scheduler holds in memory.
func (s *Scheduler) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.next)
}

// Update records a committed change to the alarm of key: due at at (Unix
// milliseconds), or deleted when set is false.
func (s *Scheduler) Update(key Key, set bool, at int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Known already when a page of the index brought it before this news
	// of its commit arrived.
	known := set && (s.next[key] == at || s.running[key] == at || s.fired[key] == at)
	delete(s.fired, key)
	if known {
		return
	}
	delete(s.next, key) // what is pending for key is stale now
	if !set {
		return
	}
	e := engine.DueAlarm{Key: key, At: at}
	if !s.cursor.Less(e) {
		// Within what was loaded: the index will not return it again.
		s.schedule(entry{key: key, at: at})
	}
	// Otherwise a later page of the index brings it.
}

// schedule holds the run e in memory. The caller holds s.mu.
func (s *Scheduler) schedule(e entry) {
	s.next[e.key] = e.at
	heap.Push(&s.pending, e)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Scheduler) loop() {
	defer close(s.done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		now := time.Now()
		s.load(now)
		wait := s.fire(now)
		timer.Reset(wait)
		select {
		case <-s.stop:
			return
		case <-s.wake:
		case <-timer.C:
		}
	}
}

// load pages the index in while the loaded part ends before the horizon,
// and no more than a page is held. Once the index is loaded completely up
// to some time, it reads again only when that time is less than half the
// horizon ahead: every committed alarm wakes the loop, and re-reading the
// index on each wake cost one query per alarm set, though Update had told
// the scheduler of it already. It holds the lock across the query: an
// Update racing with it would otherwise see the old cursor, leave its alarm
// to the index, and find the cursor moved past it when the page lands.
func (s *Scheduler) load(now time.Time) {
	until := now.Add(s.cfg.Horizon).UnixMilli()
	refill := now.Add(s.cfg.Horizon / 2).UnixMilli()
	stale := now.Add(-s.cfg.Horizon).UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, due := range s.fired {
		if due < stale {
			delete(s.fired, key) // no news will come that late
		}
	}
	for len(s.next) < s.cfg.PageSize && !(s.complete && s.cursor.At > refill) {
		page, err := s.index.DueAlarms(context.Background(), s.cursor, until, s.cfg.PageSize)
		if err != nil {
			s.cfg.Logger.Error("durable: reading the alarm index", "err", err)
			return
		}
		for _, a := range page {
			key := Key{Class: a.Class, ID: a.ID}
			if _, known := s.next[key]; !known && s.running[key] == 0 {
				s.schedule(entry{key: key, at: a.At})
			}
		}
		if len(page) < s.cfg.PageSize {
			// Everything due up to until is loaded; later changes come
			// through Update.
			s.cursor = engine.DueAlarm{Key: Key{Class: "\x7f"}, At: until}
			s.complete = true
			return
		}
		s.cursor = page[len(page)-1]
		s.complete = false
	}
}

// fire dispatches what is due and returns how long to wait for the next.
func (s *Scheduler) fire(now time.Time) time.Duration {
	nowMs := now.UnixMilli()
	var due []entry
	s.mu.Lock()
	for s.pending.Len() > 0 && s.pending[0].at <= nowMs {
		e := heap.Pop(&s.pending).(entry)
		if at, ok := s.next[e.key]; !ok || at != e.at {
			continue // replaced or deleted since
		}
		delete(s.next, e.key)
		s.running[e.key] = e.dueAt()
		due = append(due, e)
	}
	s.mu.Unlock()
	// Outside the lock: Dispatch may call done at once.
	for _, e := range due {
		s.cfg.Dispatch(e.key, time.UnixMilli(e.dueAt()), e.retry, func(err error) { s.finished(e, err) })
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	wait := s.cfg.Horizon / 2
	if s.pending.Len() > 0 {
		wait = min(wait, time.Duration(s.pending[0].at-nowMs)*time.Millisecond)
	}
	if !s.complete && len(s.next) < s.cfg.PageSize {
		wait = 0 // more of the index to page in, and room for it
	}
	return max(wait, 0)
}

// finished records the outcome of a run. A success removed or replaced the
// alarm in a commit that Update reported already; a failure is retried.
func (s *Scheduler) finished(e entry, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.running, e.key)
	if err == nil {
		s.fired[e.key] = e.dueAt()
		return
	}
	if _, replaced := s.next[e.key]; replaced {
		return // a newer alarm of the object is scheduled
	}
	if e.retry >= s.cfg.MaxRetries {
		s.cfg.Logger.Error("durable: alarm dropped after its last retry failed",
			"class", e.key.Class, "retries", e.retry, "due", time.UnixMilli(e.dueAt()), "err", err)
		if s.cfg.Drop != nil {
			s.cfg.Drop(e.key, time.UnixMilli(e.dueAt()))
		}
		return
	}
	delay := s.cfg.FirstRetry << e.retry
	delay += time.Duration(rand.Int64N(int64(delay)/4 + 1)) // jitter: up to a quarter more
	s.schedule(entry{key: e.key, at: time.Now().Add(delay).UnixMilli(), retry: e.retry + 1, due: e.dueAt()})
}

// entry is one pending run.
type entry struct {
	key   Key
	at    int64 // when to run, Unix milliseconds
	retry int
	due   int64 // for a retry: when the alarm was due; 0 means at
}

func (e entry) dueAt() int64 {
	if e.due != 0 {
		return e.due
	}
	return e.at
}

type entries []entry

func (h entries) Len() int           { return len(h) }
func (h entries) Less(i, j int) bool { return h[i].at < h[j].at }
func (h entries) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *entries) Push(x any)        { *h = append(*h, x.(entry)) }
func (h *entries) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// Rescan has the scheduler page the index again from its start, so that
// alarms it did not hold (those of objects this node just began to serve,
// in cluster mode) are loaded: the overdue ones fire at once. Alarms it
// holds already are not scheduled twice.
func (s *Scheduler) Rescan() {
	s.mu.Lock()
	s.cursor = engine.DueAlarm{}
	s.complete = false
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Forget drops from memory the pending alarms of the objects match
// selects (objects this node no longer serves, in cluster mode); they stay
// in the index, for the node that serves them now. A run already
// dispatched finishes.
func (s *Scheduler) Forget(match func(Key) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key := range s.next {
		if match(key) {
			delete(s.next, key) // its heap entry is stale now
		}
	}
}
