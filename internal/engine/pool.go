package engine

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

// poolSuffix ends the names of a pool's files.
const poolSuffix = ".db.new"

// filesPerPoolDir is how many files a pool creates in one directory before
// it moves to a new one. Where a file's inode goes follows its directory:
// on ext4, files pile into their directory's block group, and once its
// inodes run short each creation searches further (over a millisecond of
// CPU per file on this project's machines, against about 40 µs in a fresh
// directory, which the kernel places where inodes are free).
const filesPerPoolDir = 64

// FilePool keeps a few empty files ready, made by a goroutine of its own,
// for new objects' databases: creating a file (allocating its inode) is
// the dearest step of an object's first write on some file systems, and
// with a pool it happens off the caller's path. The object's first commit
// writes its database into a pooled file and renames it into place (see
// WithFilePool); an empty file is never mistaken for an object, since only
// the rename of a whole database gives it an object's name. When the pool
// is empty a store creates its file itself, as without a pool.
//
// A pool owns its directory: NewFilePool deletes whatever is in it (what
// an earlier process left), and Close deletes the files still ready. The
// directory must be on the file system of the objects' databases, for the
// rename; a store falls back to creating its own file when the rename
// fails.
type FilePool struct {
	dir     string
	size    int
	limiter TryFileLimiter
	log     *slog.Logger
	prefix  string // random: names never collide with an earlier pool's

	mu sync.Mutex
	// The pool's files, in two halves, each in directories of its own: the
	// filler creates into halves[filling] while Take renames out of the
	// other, so that a rename does not wait for a directory's lock, which
	// the kernel holds through a creation (and spins on, burning CPU).
	halves  [2]poolHalf
	filling int
	next    int      // number of the next file and directory
	retired []string // directories to delete once their files are taken
	closed  bool

	wake chan struct{} // a file was taken, or the pool closes
	done chan struct{} // closed when the filler has returned
}

// poolHalf is one half of a pool's files.
type poolHalf struct {
	files []string // paths of empty files, made and closed
	dir   string   // where the next one goes; "" for a new directory
	made  int      // files created in dir
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
// (it tries again at the next Take). Default slog.Default().
func WithPoolLogger(l *slog.Logger) PoolOption { return func(p *FilePool) { p.log = l } }

// NewFilePool empties dir (making it if need be) and starts filling it.
// Close stops it.
func NewFilePool(dir string, opts ...PoolOption) (*FilePool, error) {
	var id [6]byte
	rand.Read(id[:])
	p := &FilePool{dir: dir, size: DefaultFilePoolSize, log: slog.Default(), prefix: hex.EncodeToString(id[:]),
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	for _, o := range opts {
		o(p)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("storage: file pool: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("storage: file pool: %w", err)
	}
	go p.fill()
	return p, nil
}

// Take returns the path of an empty file of the pool, which is the
// caller's from then on (to rename, or to delete), and asks for another;
// ok is false when none is ready.
func (p *FilePool) Take() (path string, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := &p.halves[1-p.filling]
	if len(h.files) == 0 {
		h = &p.halves[p.filling]
	}
	n := len(h.files)
	if n == 0 || p.closed {
		return "", false
	}
	path = h.files[n-1]
	h.files = h.files[:n-1]
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
	return len(p.halves[0].files) + len(p.halves[1].files)
}

// Close stops the refills and deletes the files still ready, and the
// pool's directories once empty. Files already taken are their takers'.
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
	halves := p.halves
	p.halves = [2]poolHalf{}
	p.mu.Unlock()
	var errs []error
	for _, h := range halves {
		for _, path := range h.files {
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		if h.dir != "" {
			p.mu.Lock()
			p.retired = append(p.retired, h.dir)
			p.mu.Unlock()
		}
	}
	p.removeRetired()
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
		p.removeRetired()
		if _, ok := <-p.wake; !ok {
			return
		}
	}
}

// removeRetired deletes the retired directories that are empty (a
// directory still holding a file that is ready stays).
func (p *FilePool) removeRetired() {
	p.mu.Lock()
	dirs := p.retired
	p.retired = nil
	p.mu.Unlock()
	var kept []string
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			kept = append(kept, d) // not empty yet
		}
	}
	p.mu.Lock()
	p.retired = append(p.retired, kept...)
	p.mu.Unlock()
}

// topUp creates one file if the pool lacks one and the budget allows,
// and reports whether it did. Only the filler's goroutine calls it.
func (p *FilePool) topUp() bool {
	p.mu.Lock()
	if p.closed || len(p.halves[0].files)+len(p.halves[1].files) >= p.size {
		p.mu.Unlock()
		return false
	}
	// Fill the half with fewer files: Take drains the other.
	if len(p.halves[1-p.filling].files) < len(p.halves[p.filling].files) {
		p.filling = 1 - p.filling
	}
	h := &p.halves[p.filling]
	if h.made >= filesPerPoolDir && h.dir != "" {
		p.retired = append(p.retired, h.dir)
		h.dir = ""
	}
	dir := h.dir
	n := p.next
	p.next++
	p.mu.Unlock()

	if p.limiter != nil {
		if !p.limiter.TryAcquire() {
			return false // the next Take tries again
		}
		defer p.limiter.Release()
	}
	newDir := dir == ""
	if newDir {
		dir = filepath.Join(p.dir, fmt.Sprintf("%s-%d", p.prefix, n))
		if err := os.Mkdir(dir, 0o750); err != nil {
			p.log.Warn("storage: file pool: make a directory", "dir", dir, "err", err)
			return false
		}
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-%d%s", p.prefix, n, poolSuffix))
	file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, filePerm)
	if err == nil {
		err = file.Close()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if newDir {
		h.dir, h.made = dir, 0
	}
	if err != nil {
		os.Remove(path)
		p.log.Warn("storage: file pool: create a file", "path", path, "err", err)
		return false
	}
	h.made++
	if p.closed {
		os.Remove(path)
		return false
	}
	h.files = append(h.files, path)
	return true
}
