package engine

import (
	"fmt"
	"io"
	"sync"

	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/vfs"
)

// memVFSName is the VFS of new objects' in-memory databases (see
// OpenFile): like the memdb VFS, a database that lives in the process's
// memory, but one whose bytes the store can read, so that materialize
// writes them to the object's file itself. Through SQLite (VACUUM INTO,
// the online backup) the copy costs an ATTACH, a rollback journal created
// and deleted beside the copy, and a page-by-page rebuild: on this
// project's machines most of a new object's first write (see
// BenchmarkNewSQLObjectFirstWrite).
const memVFSName = "durable-mem"

// memImages holds the images waiting for their connection: newMemImage
// puts one under a name unique to it, and the VFS's Open takes it out.
// SQLite's registry of VFSes is process-wide; so is this, which holds
// nothing once each connection is open.
var memImages sync.Map // string -> *memImage

func init() { vfs.Register(memVFSName, memVFS{}) }

// memImage is the bytes of one in-memory database, the database file as
// SQLite wrote it. Only its connection uses it, from the object's
// goroutine, so there is no locking beyond what SQLite asks for.
type memImage struct {
	data []byte
	lock vfs.LockLevel
}

// newMemImage returns an empty image, its name, and the URI that opens a
// connection on it (with sqlite3.OPEN_URI).
func newMemImage() (m *memImage, name, uri string) {
	m = &memImage{}
	name = fmt.Sprintf("object-%p", m)
	memImages.Store(name, m)
	return m, name, "file:" + name + "?vfs=" + memVFSName
}

type memVFS struct{}

func (memVFS) Open(name string, flags vfs.OpenFlag) (vfs.File, vfs.OpenFlag, error) {
	// OPEN_MEMORY tells SQLite the database is in memory: it keeps its
	// rollback journal in memory too, and asks for no other file than
	// temporary ones (a sorter's, a temporary table's).
	switch {
	case flags&vfs.OPEN_MAIN_DB != 0:
		m, ok := memImages.LoadAndDelete(name)
		if !ok {
			return nil, flags, sqlite3.CANTOPEN
		}
		return m.(*memImage), flags | vfs.OPEN_MEMORY, nil
	case flags&(vfs.OPEN_TEMP_DB|vfs.OPEN_TRANSIENT_DB|vfs.OPEN_TEMP_JOURNAL) != 0:
		return &memImage{}, flags | vfs.OPEN_MEMORY, nil
	}
	return nil, flags, sqlite3.CANTOPEN
}

func (memVFS) Delete(string, bool) error { return sqlite3.IOERR_DELETE_NOENT }

func (memVFS) Access(string, vfs.AccessFlag) (bool, error) { return false, nil }

func (memVFS) FullPathname(name string) (string, error) { return name, nil }

func (m *memImage) ReadAt(b []byte, off int64) (int, error) {
	n := 0
	if off < int64(len(m.data)) {
		n = copy(b, m.data[off:])
	}
	if n < len(b) {
		clear(b[n:]) // SQLite reads past the end as zeros
		return n, io.EOF
	}
	return n, nil
}

func (m *memImage) WriteAt(b []byte, off int64) (int, error) {
	if end := off + int64(len(b)); end > int64(len(m.data)) {
		m.grow(end)
	}
	return copy(m.data[off:], b), nil
}

// grow extends the image to size bytes, zeroed, doubling its capacity.
func (m *memImage) grow(size int64) {
	if size <= int64(cap(m.data)) {
		n := len(m.data)
		m.data = m.data[:size]
		clear(m.data[n:])
		return
	}
	d := make([]byte, size, max(size, 2*int64(cap(m.data))))
	copy(d, m.data)
	m.data = d
}

func (m *memImage) Truncate(size int64) error {
	if size < int64(len(m.data)) {
		m.data = m.data[:size]
	} else {
		m.grow(size)
	}
	return nil
}

func (m *memImage) SizeHint(size int64) error {
	if size > int64(len(m.data)) {
		m.grow(size)
	}
	return nil
}

func (m *memImage) Size() (int64, error)       { return int64(len(m.data)), nil }
func (m *memImage) Close() error               { return nil }
func (m *memImage) Sync(vfs.SyncFlag) error    { return nil }
func (m *memImage) SectorSize() int            { return 4096 }
func (m *memImage) LockState() vfs.LockLevel   { return m.lock }
func (m *memImage) Lock(l vfs.LockLevel) error { m.lock = max(m.lock, l); return nil }
func (m *memImage) Unlock(l vfs.LockLevel) error {
	m.lock = min(m.lock, l)
	return nil
}
func (m *memImage) CheckReservedLock() (bool, error) { return m.lock >= vfs.LOCK_RESERVED, nil }

func (m *memImage) DeviceCharacteristics() vfs.DeviceCharacteristic {
	return vfs.IOCAP_ATOMIC | vfs.IOCAP_SEQUENTIAL | vfs.IOCAP_SAFE_APPEND | vfs.IOCAP_POWERSAFE_OVERWRITE
}

var (
	_ vfs.FileLockState = &memImage{}
	_ vfs.FileSizeHint  = &memImage{}
)
