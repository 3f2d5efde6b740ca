package alarms_test

import (
	"context"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/durablego/durable/internal/alarms"
	"github.com/durablego/durable/internal/engine"
)

// setAlarm commits an alarm of object i in db, as an object's call would,
// and tells s (if any) once it is durable.
func setAlarm(t *testing.T, db *engine.DB, s *alarms.Scheduler, i int, at time.Time) {
	t.Helper()
	var id [32]byte
	copy(id[:], strconv.Itoa(i))
	st := db.Store("C", id)
	st.HandleAlarms(func(c engine.AlarmChange) {
		if s != nil {
			s.Update(alarms.Key{Class: "C", ID: id}, c.Set, c.At)
		}
	})
	st.BeginCall()
	if err := st.KV.SetAlarm(context.Background(), at); err != nil {
		t.Fatal(err)
	}
	st.EndCall(true)
	done := make(chan error, 1)
	st.Commit(nil, false, nil, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// recorder counts dispatches per key and succeeds them all.
type recorder struct {
	mu    sync.Mutex
	runs  map[alarms.Key]int
	total chan struct{}
}

func (r *recorder) dispatch(key alarms.Key, _ time.Time, _ int, done func(error)) {
	r.mu.Lock()
	r.runs[key]++
	r.mu.Unlock()
	done(nil)
	r.total <- struct{}{}
}

func TestEveryAlarmFiresOnceAcrossPages(t *testing.T) {
	db, err := engine.Open(filepath.Join(t.TempDir(), "objects.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const before, during = 250, 250
	now := time.Now()
	for i := range before {
		setAlarm(t, db, nil, i, now.Add(time.Duration(i%50)*time.Millisecond))
	}
	r := &recorder{runs: map[alarms.Key]int{}, total: make(chan struct{}, before+during)}
	// A small page, so the index is paged while alarms fire and while
	// other alarms are committed.
	s := alarms.New(db, alarms.Config{Dispatch: r.dispatch, PageSize: 16})
	defer s.Close()
	for i := before; i < before+during; i++ {
		setAlarm(t, db, s, i, now.Add(time.Duration(i%50)*time.Millisecond))
	}
	for range before + during {
		select {
		case <-r.total:
		case <-time.After(20 * time.Second):
			r.mu.Lock()
			n := len(r.runs)
			r.mu.Unlock()
			t.Fatalf("only %d alarms fired", n)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.runs) != before+during {
		t.Fatalf("%d objects' alarms fired, want %d", len(r.runs), before+during)
	}
	for k, n := range r.runs {
		if n != 1 {
			t.Fatalf("alarm of %x fired %d times", k.ID[:4], n)
		}
	}
}

// countingIndex counts the scheduler's reads of the index it wraps.
type countingIndex struct {
	alarms.Index
	mu    sync.Mutex
	reads int
}

func (c *countingIndex) DueAlarms(ctx context.Context, after engine.DueAlarm, until int64, limit int) ([]engine.DueAlarm, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return c.Index.DueAlarms(ctx, after, until, limit)
}

func (c *countingIndex) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

// TestCommittedAlarmsDoNotRereadTheIndex sets and fires alarms well within
// the horizon after the scheduler has loaded the index: Update tells it of
// each, so the index is read only by the first load, not once per alarm
// (as it was when every wake of the loop re-read it).
func TestCommittedAlarmsDoNotRereadTheIndex(t *testing.T) {
	db, err := engine.Open(filepath.Join(t.TempDir(), "objects.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	index := &countingIndex{Index: db}
	const n = 200
	r := &recorder{runs: map[alarms.Key]int{}, total: make(chan struct{}, n)}
	s := alarms.New(index, alarms.Config{Dispatch: r.dispatch, Horizon: time.Hour})
	defer s.Close()
	now := time.Now()
	for i := range n {
		// Spread over 200 ms, so the loop wakes in many different
		// milliseconds.
		setAlarm(t, db, s, i, now.Add(time.Duration(i)*time.Millisecond))
	}
	for range n {
		select {
		case <-r.total:
		case <-time.After(20 * time.Second):
			t.Fatal("not every alarm fired")
		}
	}
	// One read at the start; one more if the first ran before the
	// scheduler's clock moved at all is still fine, one per alarm is not.
	if reads := index.count(); reads > 2 {
		t.Fatalf("the index was read %d times for %d alarms set while loaded, want at most 2", reads, n)
	}
}
