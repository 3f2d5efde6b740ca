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
