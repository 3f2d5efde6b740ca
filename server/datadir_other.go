//go:build !unix && !windows

package server

import (
	"errors"
	"fmt"
	"os"
	"runtime"
)

// errLocked: another open file holds the lock.
var errLocked = errors.New("locked")

// lockFile fails: this platform has no file lock to keep two servers off
// one data directory.
func lockFile(*os.File) error {
	return fmt.Errorf("%w: no file locks on %s", errors.ErrUnsupported, runtime.GOOS)
}
