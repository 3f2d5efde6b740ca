package server

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/durablego/durable/internal/engine"
)

// descriptorsPerSQLFile is what an object's SQL database holds open: the
// database and its WAL (the file is opened with an exclusive lock, so the
// WAL index lives in memory, not in a -shm file).
const descriptorsPerSQLFile = 2

// sqlFileWait bounds how long a call waits for an SQL file when the budget
// is spent and the least recently used objects are asked to leave; past
// it the call fails with ResourceExhausted.
const sqlFileWait = 5 * time.Second

// sqlFileRetry is how often a waiting call asks one more object to leave,
// in case the one it asked is busy.
const sqlFileRetry = 50 * time.Millisecond

// sqlBudget counts the objects' SQL databases open on disk and, past its
// limit, makes room by asking the least recently used holders to leave
// memory (they do once idle and durable, closing their files).
type sqlBudget struct {
	limit int
	wait  time.Duration

	poolOnce sync.Once
	pool     *engine.FilePool // nil until the first SQL store, or if it failed to start

	mu      sync.Mutex
	open    int
	holders map[fileHolder]struct{}
	freed   chan struct{} // closed, and replaced, at each release
}

// fileHolder is an active object that may hold an SQL file.
type fileHolder interface {
	lastUse() int64     // UnixNano of its last call
	askedToLeave() bool // already asked, by the budget or the LRU
	askToLeave()
}

func newSQLBudget(limit int, wait time.Duration) *sqlBudget {
	return &sqlBudget{limit: max(1, limit), wait: wait, holders: make(map[fileHolder]struct{}), freed: make(chan struct{})}
}

// limiter returns the engine.FileLimiter of one object.
func (b *sqlBudget) limiter(h fileHolder) engine.FileLimiter { return &sqlFile{b: b, h: h} }

// filePool returns the pool of empty files for new objects' databases in
// db, started at the first call; nil if it could not start (each new object
// then creates its own file, as without a pool). The pool counts the
// descriptor it holds while creating a file in the budget, and never asks
// objects to leave for one.
func (b *sqlBudget) filePool(db *engine.DB, log *slog.Logger) *engine.FilePool {
	b.poolOnce.Do(func() {
		p, err := db.NewSQLFilePool(engine.WithPoolLimiter(poolFiles{b}), engine.WithPoolLogger(log))
		if err != nil {
			log.Warn("server: no pool of SQL files; each new SQL object creates its own", "err", err)
			return
		}
		b.pool = p
	})
	return b.pool
}

// closePool stops the pool, if it started, and deletes its files.
func (b *sqlBudget) closePool() error {
	b.poolOnce.Do(func() {}) // no pool starts after this
	if b.pool == nil {
		return nil
	}
	return b.pool.Close()
}

// poolFiles is the pool's claim on the budget.
type poolFiles struct{ b *sqlBudget }

// TryAcquire takes a file from the budget if one is free.
func (p poolFiles) TryAcquire() bool {
	b := p.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open >= b.limit {
		return false
	}
	b.open++
	return true
}

// Release returns the file and wakes the calls waiting for one.
func (p poolFiles) Release() {
	b := p.b
	b.mu.Lock()
	defer b.mu.Unlock()
	b.open--
	close(b.freed)
	b.freed = make(chan struct{})
}

// OpenSQLFiles returns how many objects hold their SQL database open on
// disk, which WithMaxOpenSQLFiles caps. A file is counted from before it
// is opened until after it is closed.
func (s *Server) OpenSQLFiles() int {
	b := s.sqlFiles
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open
}

// MaxOpenSQLFiles returns the budget of SQL databases open on disk at
// once: WithMaxOpenSQLFiles, or the default derived from RLIMIT_NOFILE.
func (s *Server) MaxOpenSQLFiles() int { return s.sqlFiles.limit }

// sqlFile is one object's claim on the budget.
type sqlFile struct {
	b *sqlBudget
	h fileHolder
}

// Acquire takes a file from the budget, asking the least recently used
// holders to leave while none is free, for at most the budget's wait.
func (f *sqlFile) Acquire() error {
	b := f.b
	var deadline <-chan time.Time
	for {
		b.mu.Lock()
		if b.open < b.limit {
			b.open++
			b.holders[f.h] = struct{}{}
			b.mu.Unlock()
			return nil
		}
		victim := b.leastRecentlyUsed()
		freed := b.freed
		b.mu.Unlock()
		if victim != nil {
			victim.askToLeave()
		}
		if deadline == nil {
			t := time.NewTimer(b.wait)
			defer t.Stop()
			deadline = t.C
		}
		retry := time.NewTimer(sqlFileRetry)
		select {
		case <-freed:
		case <-retry.C:
		case <-deadline:
			retry.Stop()
			return fmt.Errorf("%w: all %d SQL files of the budget (server.WithMaxOpenSQLFiles) are held by objects that did not leave memory within %v",
				engine.ErrTooManyOpenFiles, b.limit, b.wait)
		}
		retry.Stop()
	}
}

// Release returns the file and wakes the calls waiting for one.
func (f *sqlFile) Release() {
	b := f.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.holders[f.h]; !ok {
		return
	}
	delete(b.holders, f.h)
	b.open--
	close(b.freed)
	b.freed = make(chan struct{})
}

// leastRecentlyUsed returns the holder used longest ago that has not been
// asked to leave yet, or nil. The caller holds b.mu.
func (b *sqlBudget) leastRecentlyUsed() fileHolder {
	var victim fileHolder
	oldest := int64(1<<63 - 1)
	for h := range b.holders {
		if h.askedToLeave() {
			continue
		}
		if used := h.lastUse(); used < oldest {
			victim, oldest = h, used
		}
	}
	return victim
}

func (a *actor[S]) lastUse() int64     { return a.lastUsed.Load() }
func (a *actor[S]) askedToLeave() bool { return a.evicting.Load() }
func (a *actor[S]) askToLeave()        { a.requestEviction() }
