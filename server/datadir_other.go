//go:build !unix && !windows

package server

import (
	"errors"
	"fmt"
	"os"
	"runtime"
)

// lockFile fails: this platform has no file lock to keep two servers off
// one data directory.
func lockFile(*os.File) error {
	return fmt.Errorf("%w: no file locks on %s", errors.ErrUnsupported, runtime.GOOS)
}

// openFileLimit reports no limit on open file descriptors to divide: this
// platform has no RLIMIT_NOFILE.
func openFileLimit() (uint64, bool) { return 0, false }
