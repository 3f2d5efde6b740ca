package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Durability chooses what an acknowledged write survives.
type Durability int

const (
	// CrashSafe writes survive the process being killed (WAL with
	// synchronous=NORMAL). The default.
	CrashSafe Durability = iota
	// PowerSafe writes also survive power loss or an OS crash
	// (synchronous=FULL: an fsync per commit).
	PowerSafe
)

// ErrClosed is returned by a DB after Close.
var ErrClosed = errors.New("storage: database is closed")

// Option configures Open.
type Option func(*config)

type config struct {
	durability Durability
	readers    int // read-only connections: how many objects load at once
	maxGroup   int // batches one transaction commits at most
	queue      int // batches waiting for the writer
}

// WithDurability sets what an acknowledged write survives. Default CrashSafe.
func WithDurability(d Durability) Option { return func(c *config) { c.durability = d } }

// DB is the node-level database holding the state of objects. It is safe
// for concurrent use.
type DB struct {
	cfg     config
	path    string
	readers chan *reader

	mu     sync.RWMutex // guards closed against Submit
	closed bool
	queue  chan *Batch
	done   chan struct{} // closed when the writer has finished
	writer *writer

	// backups takes Backup's jobs to the commit loop, which runs them on
	// the writer's connection (nodebackup.go); running is the job in
	// progress, owned by the commit loop.
	backups chan *backupJob
	running *backupJob

	// Written by the commit loop only; read by Stats.
	commits, batches, bytes atomic.Uint64
}

// Stats is what a DB has committed since it was opened: the figures of a
// server's metrics.
type Stats struct {
	// Commits counts SQLite transactions committed: one per group commit.
	Commits uint64
	// Batches counts the batches those transactions held: one per object
	// and group commit.
	Batches uint64
	// Bytes counts the bytes of states, keys and values written by them.
	Bytes uint64
}

// Stats returns what the DB has committed so far. It reads three counters
// the commit loop adds to once per group commit, and is cheap enough to
// call on every scrape.
func (db *DB) Stats() Stats {
	return Stats{Commits: db.commits.Load(), Batches: db.batches.Load(), Bytes: db.bytes.Load()}
}

// Open opens (creating if needed) the database at path, a file name inside
// a directory the server owns.
func Open(path string, opts ...Option) (*DB, error) {
	cfg := config{readers: 4, maxGroup: 1024, queue: 4096}
	for _, o := range opts {
		o(&cfg)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	w, err := openWriter(path, cfg.durability)
	if err != nil {
		return nil, err
	}
	db := &DB{
		cfg:     cfg,
		path:    path,
		readers: make(chan *reader, cfg.readers),
		queue:   make(chan *Batch, cfg.queue),
		done:    make(chan struct{}),
		writer:  w,
		backups: make(chan *backupJob),
	}
	for range cfg.readers {
		r, err := openReader(path)
		if err != nil {
			db.closeReaders()
			w.close()
			return nil, err
		}
		db.readers <- r
	}
	go db.commitLoop()
	return db, nil
}

// submit queues b for the next group commit. It blocks while the queue is
// full, which slows the objects that write faster than the disk commits.
// After Close, b is acknowledged with ErrClosed at once.
func (db *DB) submit(b *Batch) {
	db.mu.RLock()
	defer db.mu.RUnlock()
	if db.closed {
		b.Done(ErrClosed)
		return
	}
	db.queue <- b
}

// Close commits what is queued, then closes the database. Batches submitted
// after Close are acknowledged with ErrClosed.
func (db *DB) Close() error {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		<-db.done
		return nil
	}
	db.closed = true
	close(db.queue)
	db.mu.Unlock()
	<-db.done
	db.closeReaders()
	if db.writer == nil {
		return nil
	}
	return db.writer.close()
}

func (db *DB) closeReaders() {
	for {
		select {
		case r := <-db.readers:
			r.close()
		default:
			return
		}
	}
}

func (db *DB) commitLoop() {
	defer close(db.done)
	group := make([]*Batch, 0, db.cfg.maxGroup)
	step := time.NewTimer(0)
	step.Stop()
	defer func() {
		if db.running != nil {
			db.endBackup(db.running, ErrClosed)
			db.running = nil
		}
	}()
	for {
		// While a backup runs, its steps take turns with group commits,
		// and the next backup waits for it.
		jobs, steps, cancel := db.backups, (<-chan time.Time)(nil), (<-chan struct{})(nil)
		if db.running != nil {
			jobs, steps, cancel = nil, step.C, db.running.ctx.Done()
		}
		select {
		case b, ok := <-db.queue:
			if !ok {
				return
			}
			group = append(group[:0], b)
			// Once more after yielding: the goroutines made runnable while
			// this one waited (objects about to submit) get to run, and a
			// commit, whose cost is mostly per transaction, carries their
			// batches too. Yielding costs nothing when nothing else is
			// runnable.
			for yielded := false; ; yielded = true {
				group = db.fill(group)
				if yielded || len(group) == cap(group) {
					break
				}
				runtime.Gosched()
			}
			db.commitGroup(group)
			clear(group)
		case job := <-jobs:
			if err := db.startBackup(job); err != nil {
				db.endBackup(job, err)
				continue
			}
			db.running = job
			step.Reset(0)
		case <-steps:
			rest, done, err := db.stepBackup(db.running)
			if done || err != nil {
				db.endBackup(db.running, err)
				db.running = nil
				continue
			}
			step.Reset(rest)
		case <-cancel:
			db.endBackup(db.running, db.running.ctx.Err())
			db.running = nil
		}
	}
}

// fill appends to group what the queue holds, up to group's capacity,
// without waiting.
func (db *DB) fill(group []*Batch) []*Batch {
	for len(group) < cap(group) {
		select {
		case b, ok := <-db.queue:
			if !ok {
				return group
			}
			group = append(group, b)
		default:
			return group
		}
	}
	return group
}

// commitGroup applies every valid batch of group in one transaction and
// acknowledges each.
func (db *DB) commitGroup(group []*Batch) {
	live := group[:0:0]
	for _, b := range group {
		if b.valid != nil && !b.valid() {
			b.Done(ErrStale)
			continue
		}
		live = append(live, b)
	}
	n, committed, err := db.apply(live)
	if committed {
		db.commits.Add(1)
		db.batches.Add(uint64(len(live)))
		db.bytes.Add(uint64(n))
	}
	err = fullError(err, "")
	for _, b := range live {
		b.Done(err)
	}
}

// apply commits batches with the writer connection. A panic of SQLite (out
// of memory, on a huge batch) fails the group instead of the process, and
// the connection is replaced: it may hold half of the transaction, and the
// memory it grew to would otherwise stay allocated for the process's life.
func (db *DB) apply(batches []*Batch) (n int, committed bool, err error) {
	if db.writer == nil {
		if db.writer, err = openWriter(db.path, db.cfg.durability); err != nil {
			return 0, false, fmt.Errorf("storage: reopen the writer after a failure: %w", err)
		}
	}
	defer func() {
		if r := recover(); r != nil {
			n, committed, err = 0, false, recovered(r)
			db.dropWriter()
		}
	}()
	return db.writer.apply(batches)
}

// dropWriter closes the writer connection after a panic; the next group
// opens a new one. Closing rolls back what the transaction had written.
func (db *DB) dropWriter() {
	if db.running != nil { // it copies through the connection
		db.endBackup(db.running, errors.New("the writer's connection failed"))
		db.running = nil
	}
	w := db.writer
	db.writer = nil
	quietly(func() { w.close() })
}
