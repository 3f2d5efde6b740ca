//go:build windows

package server

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// lockFile takes an exclusive LockFileEx lock on f without waiting. It
// locks one byte far past the end of the file, so that others can still
// read who holds it.
func lockFile(f *os.File) error {
	ol := &windows.Overlapped{OffsetHigh: 0x40000000}
	err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol)
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
		return errLocked
	}
	return err
}

// openFileLimit reports no limit on open file descriptors to divide: this
// platform has no RLIMIT_NOFILE.
func openFileLimit() (uint64, bool) { return 0, false }
