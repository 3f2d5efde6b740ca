//go:build unix

package server

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// errLocked: another open file holds the lock.
var errLocked = errors.New("locked")

// lockFile takes an exclusive flock on f without waiting. On NFS, Linux
// maps flock to POSIX record locks, which hold across clients only where
// the server supports them (NLM or NFSv4); keep data directories on local
// disks.
func lockFile(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EWOULDBLOCK):
			return errLocked
		}
		return err
	}
}
