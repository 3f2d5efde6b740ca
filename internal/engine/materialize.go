package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// materialize creates the object's file from its in-memory database, which
// has just committed the object's first writes, and moves the store onto
// it. The file is built under a temporary name and renamed into place, so
// that a crash at any point leaves either no file or a whole one:
//
//  1. the in-memory database's bytes (its image, see memImage: a whole
//     database file, since no transaction is open) are written to an
//     empty file of the store's FilePool, if one is ready (creating a file
//     is the dearest step on some file systems), or else to <path>.new,
//     which it creates, with bytes 18 and 19 of the header set to 2, which is
//     how SQLite records WAL mode in the file (the in-memory database
//     cannot be in WAL mode itself), so the file never needs converting
//     once in place;
//  2. with PowerSafe, the file is synced, then renamed, then its directory
//     synced; with CrashSafe the rename alone survives the process being
//     killed, as a WAL commit with synchronous=NORMAL does.
//
// A failure before the rename fails the batch and forgets everything the
// store held in memory, Init's writes included: the object reloads from
// what the disk holds, which is nothing. After the rename the batch is
// durable; the next call opens the file (and reports a failure to, trying
// again at each call).
func (f *fileStore) materialize() (err error) {
	if err := f.acquireFile(); err != nil {
		f.forget()
		return err
	}
	if err := f.writeFile(); err != nil {
		f.forget()
		f.releaseFile()
		return fmt.Errorf("storage: create the object's database: %w", err)
	}
	// The file is opened by the object's next call (reopen), not here: the
	// commit is durable now, and an object written once and evicted, the
	// usual fate of a new one, never pays for the connection, its WAL
	// file and its statements. Until then it holds no descriptor.
	f.closeConn()
	f.releaseFile()
	f.mem, f.fresh = false, true
	return nil
}

// forget replaces the in-memory database, which holds writes that never
// reached the disk, with an empty one.
func (f *fileStore) forget() {
	f.closeConn()
	f.inTx, f.calls, f.wrote = false, 0, false
	f.openConn() // on failure conn stays nil: the next call opens it again
}

// writeFile puts the in-memory database at f.path, as materialize says:
// into one of the pool's empty files if one is ready, else into a file it
// creates, <path>.new.
func (f *fileStore) writeFile() error {
	img := f.image.data
	if len(img) < 100 || string(img[:16]) != "SQLite format 3\x00" {
		return fmt.Errorf("the in-memory database is not a database file (%d bytes)", len(img))
	}
	dir := filepath.Dir(f.path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	// Leftovers of a crash: journals of a file that no longer exists,
	// which SQLite would otherwise apply to the new one.
	for _, p := range []string{f.path + "-wal", f.path + "-shm", f.path + "-journal"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if f.cfg.pool != nil {
		if tmp, ok := f.cfg.pool.Take(); ok {
			if f.placeImage(tmp, img, 0) == nil {
				return f.syncParent(dir)
			}
			// The pool's file is gone, or on another file system than
			// f.path: create one, as without a pool.
		}
	}
	tmp := f.path + ".new" // a half-written copy a crash left
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := f.placeImage(tmp, img, os.O_CREATE|os.O_EXCL); err != nil {
		return err
	}
	return f.syncParent(dir)
}

// placeImage writes the database image img to the file tmp (created with
// flags, or an empty one of the pool), marked as a WAL database and, for
// PowerSafe, synced, then renames it to f.path; on failure tmp is
// deleted. img itself is left as it is: the in-memory database is not in
// WAL mode.
func (f *fileStore) placeImage(tmp string, img []byte, flags int) error {
	err := f.writeImage(tmp, img, flags)
	if err == nil {
		err = os.Rename(tmp, f.path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func (f *fileStore) writeImage(tmp string, img []byte, flags int) error {
	h, err := os.OpenFile(tmp, os.O_WRONLY|flags, filePerm)
	if err != nil {
		return err
	}
	var header [100]byte
	copy(header[:], img)
	header[18], header[19] = 2, 2 // file format write and read versions: WAL
	_, err = h.Write(header[:])
	if err == nil {
		_, err = h.Write(img[len(header):])
	}
	if err == nil && f.cfg.durability == PowerSafe {
		err = h.Sync()
	}
	if cerr := h.Close(); err == nil {
		err = cerr
	}
	return err
}

// filePerm is the mode of a new object's database, and of a pool's file.
const filePerm = 0o640

// syncParent syncs dir, the directory of the renamed file, for PowerSafe;
// with CrashSafe the rename alone survives the process being killed.
func (f *fileStore) syncParent(dir string) error {
	if f.cfg.durability == PowerSafe {
		return syncDir(dir)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// RemoveLeftovers deletes what a crash in materialize can leave in dir, a
// directory of object databases (each class's under it, one level down):
// a half-written copy (<name>.db.new), and journals (-wal, -shm, -journal)
// of a database that does not exist. It must run before any object of the
// directory is opened, as a server starting does: a journal beside its
// database is never touched. A dir that does not exist has nothing left.
func RemoveLeftovers(dir string) error {
	classes, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("storage: leftovers: %w", err)
	}
	var errs []error
	for _, c := range classes {
		if !c.IsDir() {
			continue
		}
		sub := filepath.Join(dir, c.Name())
		files, err := os.ReadDir(sub)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range files {
			name := e.Name()
			if e.IsDir() || !leftover(name, func(db string) bool {
				_, err := os.Lstat(filepath.Join(sub, db))
				return err == nil
			}) {
				continue
			}
			if err := os.Remove(filepath.Join(sub, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("storage: leftovers: %w", err)
	}
	return nil
}

// leftover tells whether the file name is one RemoveLeftovers deletes;
// exists tells whether a database of a name exists.
func leftover(name string, exists func(db string) bool) bool {
	if strings.HasSuffix(name, ".db.new") || strings.Contains(name, ".db.new-") {
		return true // the copy, and any journal of it
	}
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if db, ok := strings.CutSuffix(name, suffix); ok && strings.HasSuffix(db, ".db") {
			return !exists(db)
		}
	}
	return false
}
