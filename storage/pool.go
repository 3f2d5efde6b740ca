package storage

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
)

// DefaultFilePoolSize is how many empty files a FilePool keeps ready by
// default: enough for a burst of new objects from a few dozen callers.
const DefaultFilePoolSize = 32

// poolSuffix ends the names of a pool's files: what a crash leaves of them
// is a leftover by its name alone (see RemoveLeftovers and FilePool).
const poolSuffix = ".db.new"

// FilePool keeps a few empty files ready, made by a goroutine of its own,
// for new objects' databases: creating a file (allocating its inode) is
// the dearest step of an object's first write on some file systems (over
// a millisecond of CPU on a busy ext4), and with a pool it happens off the
// caller's path. The object's first commit writes its database into a
// pooled file and renames it into place (see WithFilePool); an empty file
// is never mistaken for an object, since only the rename of a whole
// database gives it an object's name. When the pool is empty a store
// creates its file itself, as without a pool.
//
// A pool owns its directory: NewFilePool deletes every file in it (what an
// earlier process left), and Close deletes the files still ready. The
// directory must be on the file system of the objects' databases, for the
// rename; a store falls back to creating its own file when the rename
// fails.
type FilePool struct {
	dir     string
	size    int
	limiter TryFileLimiter
	log     *slog.Logger
	prefix  string // random: names never collide with another pool's

	mu     sync.Mutex
	ready  []string // paths of empty files, made and closed
	next   int      // number of the next file
	closed bool

	wake chan struct{} // a file was taken, or the pool closes
	done chan struct{} // closed when the filler has returned
}

// TryFileLimiter is the descriptor budget a FilePool counts the file it
// creates in while it holds it open: a pool never waits for a file, nor
// makes room by asking objects to leave; a spent budget only delays the
// refill.
type TryFileLimiter interface {
	// TryAcquire reserves a file if one is free, and reports whether it did.
	TryAcquire() bool
	// Release returns a file TryAcquire reserved.
	Release()
}

// PoolOption configures NewFilePool.
type PoolOption func(*FilePool)

// WithPoolSize sets how many empty files the pool keeps ready. Default
// DefaultFilePoolSize; at least 1.
func WithPoolSize(n int) PoolOption { return func(p *FilePool) { p.size = max(1, n) } }

// WithPoolLimiter counts the descriptor the pool holds while it creates a
// file in l. Default: not counted.
func WithPoolLimiter(l TryFileLimiter) PoolOption { return func(p *FilePool) { p.limiter = l } }

// WithPoolLogger sets where the pool reports a file it failed to create
// (it tries again at the next refill). Default slog.Default().
func WithPoolLogger(l *slog.Logger) PoolOption { return func(p *FilePool) { p.log = l } }

// NewFilePool makes dir if need be, deletes the files an earlier pool left
// in it, and starts filling it. Close stops it.
func NewFilePool(dir string, opts ...PoolOption) (*FilePool, error) {
	var id [6]byte
	rand.Read(id[:])
	p := &FilePool{dir: dir, size: DefaultFilePoolSize, log: slog.Default(), prefix: hex.EncodeToString(id[:]),
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	for _, o := range opts {
		o(p)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("storage: file pool: %w", err)
	}
	if err := removeAll(dir); err != nil {
		return nil, err
	}
	go p.fill()
	return p, nil
}

// removeAll deletes the files in dir, not the directory.
func removeAll(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("storage: file pool: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("storage: file pool: %w", err)
	}
	return nil
}

// Take returns the path of an empty file of the pool, which is the
// caller's from then on (to rename, or to delete), and asks for another;
// ok is false when none is ready.
func (p *FilePool) Take() (path string, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.ready)
	if n == 0 || p.closed {
		return "", false
	}
	path = p.ready[n-1]
	p.ready = p.ready[:n-1]
	select {
	case p.wake <- struct{}{}:
	default: // a refill is already asked for
	}
	return path, true
}

// Ready returns how many files the pool holds ready.
func (p *FilePool) Ready() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ready)
}

// Close stops the refills and deletes the files still ready. Files
// already taken are their takers'.
func (p *FilePool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.wake) // under mu: Take sends only while the pool is open
	p.mu.Unlock()
	<-p.done
	p.mu.Lock()
	ready := p.ready
	p.ready = nil
	p.mu.Unlock()
	var errs []error
	for _, path := range ready {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("storage: file pool: %w", err)
	}
	return nil
}

// fill keeps the pool full until Close: it tops it up, then waits for a
// Take.
func (p *FilePool) fill() {
	defer close(p.done)
	for {
		for p.topUp() {
		}
		if _, ok := <-p.wake; !ok {
			return
		}
	}
}

// topUp creates one file if the pool lacks one and the budget allows,
// and reports whether it did.
func (p *FilePool) topUp() bool {
	p.mu.Lock()
	if p.closed || len(p.ready) >= p.size {
		p.mu.Unlock()
		return false
	}
	n := p.next
	p.next++
	p.mu.Unlock()
	if p.limiter != nil {
		if !p.limiter.TryAcquire() {
			return false // the next Take tries again
		}
		defer p.limiter.Release()
	}
	path := filepath.Join(p.dir, fmt.Sprintf("%s-%d%s", p.prefix, n, poolSuffix))
	h, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, filePerm)
	if err == nil {
		err = h.Close()
	}
	if err != nil {
		os.Remove(path)
		p.log.Warn("storage: file pool: create a file", "dir", p.dir, "err", err)
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		os.Remove(path)
		return false
	}
	p.ready = append(p.ready, path)
	return true
}
