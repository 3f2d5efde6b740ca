package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// materialize creates the object's file from its in-memory database, which
// has just committed the object's first writes, and moves the store onto
// it. The file is built under a temporary name and renamed into place, so
// that a crash at any point leaves either no file or a whole one:
//
//  1. VACUUM INTO writes a compact copy of the database to <path>.new;
//  2. bytes 18 and 19 of its header are set to 2, which is how SQLite
//     records WAL mode in the file (the in-memory database cannot be in
//     WAL mode itself), so the file never needs converting once in place;
//  3. with PowerSafe, the file is synced, then renamed, then its directory
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

// writeFile puts the in-memory database at f.path, as materialize says.
func (f *fileStore) writeFile() error {
	dir := filepath.Dir(f.path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	tmp := f.path + ".new"
	// Leftovers of a crash: a half-written copy, and journals of a file
	// that no longer exists, which SQLite would otherwise apply to the
	// new one.
	for _, p := range []string{tmp, f.path + "-wal", f.path + "-shm", f.path + "-journal"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	abs, err := filepath.Abs(tmp)
	if err != nil {
		return err
	}
	// The in-memory connection's VFS is memdb; the copy goes to the
	// operating system's files.
	uri := "file:" + (&url.URL{Path: filepath.ToSlash(abs)}).EscapedPath() + "?vfs=os"
	stmt, _, err := f.prepareGuarded(`VACUUM INTO ?`)
	if err != nil {
		return err
	}
	stmt.BindText(1, uri)
	err = stmt.Exec()
	closeGuarded(stmt)
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("VACUUM INTO: %w", err)
	}
	if err := f.finishFile(tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, f.path); err != nil {
		os.Remove(tmp)
		return err
	}
	if f.cfg.durability == PowerSafe {
		return syncDir(dir)
	}
	return nil
}

// finishFile marks the copy at tmp as a WAL database and, for PowerSafe,
// syncs it.
func (f *fileStore) finishFile(tmp string) error {
	h, err := os.OpenFile(tmp, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	_, err = h.WriteAt([]byte{2, 2}, 18) // file format write and read versions: WAL
	if err == nil && f.cfg.durability == PowerSafe {
		err = h.Sync()
	}
	if cerr := h.Close(); err == nil {
		err = cerr
	}
	return err
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
