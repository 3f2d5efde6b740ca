package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/durablego/durable/internal/engine"
)

// ErrDataDirLocked matches the error of New when another server, in this
// process or another, holds the data directory. Two servers on one
// directory would each keep a live copy of the same objects and run the
// same alarms: acknowledged writes of one would be lost to the other.
var ErrDataDirLocked = errors.New("server: the data directory is in use by another server")

// ErrSecretMismatch matches the error of New when the data directory was
// written with another ID secret than the one the server was given (the
// file "secret" in it, or WithSecret), or when that file is missing from a
// directory that holds data. With another secret every name maps to
// another ID, so every stored object would read as empty and the old ones
// would be unreachable; New refuses rather than start like that.
var ErrSecretMismatch = errors.New("server: the ID secret does not match the one the data was written with")

// lockFileName is the file in the data directory that the server holding
// the directory keeps locked, and that says who holds it.
const lockFileName = "LOCK"

// errLocked is lockFile's error when another open file holds the lock.
var errLocked = errors.New("locked")

// dirLock is a data directory's lock, held by this server. It is an OS
// lock (flock on Unix, LockFileEx on Windows) on an open file, so it is
// released whenever the process ends, kill -9 included, and never goes
// stale. flock locks belong to the open file, not the process, so a second
// server in the same process is refused as well.
type dirLock struct {
	f *os.File
}

// lockDataDir takes dir's lock, or fails at once with an error matching
// ErrDataDirLocked that names dir and, when it could be read, the holder.
func lockDataDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("server: lock the data directory %s: %w", dir, err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if !errors.Is(err, errLocked) {
			return nil, fmt.Errorf("server: lock the data directory %s (%s): %w", dir, path, err)
		}
		holder := "another process (it has not written who it is yet)"
		if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			holder = strings.TrimSpace(string(b))
		}
		return nil, fmt.Errorf("%w: %s is held by %s (lock file %s): stop that server, or give this one another data directory",
			ErrDataDirLocked, dir, holder, path)
	}
	// Who holds it, for the error of the next server that tries.
	host, _ := os.Hostname()
	holder := fmt.Sprintf("pid %d on host %s since %s\n", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(holder), 0) // the lock holds without it
	}
	return &dirLock{f: f}, nil
}

// release gives the lock up. The file stays: removing it would let a
// server lock a new file while another still holds the old one.
func (l *dirLock) release() error {
	if l == nil || l.f == nil {
		return nil
	}
	l.f.Truncate(0) // no holder; the lock alone is what counts
	err := l.f.Close()
	l.f = nil
	return err
}

// secretFingerprintKey is where the node database records the fingerprint
// of the secret its IDs were minted with.
const secretFingerprintKey = "secret_fingerprint"

// fingerprint is a keyed hash of the secret that identifies it without
// revealing it: HMAC-SHA256(secret, "durable secret fingerprint v1"), its
// first 16 bytes in hexadecimal.
func fingerprint(secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("durable secret fingerprint v1"))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// openSecret returns the server's secret, checked against the fingerprint
// recorded in db: the secret of WithSecret, or the one of the file
// "secret" in the data directory, created only when the directory holds
// no data. The first start records the fingerprint, as does the first of
// a directory written before fingerprints were.
func openSecret(ctx context.Context, o *options, db engine.ObjectStore) ([]byte, error) {
	dir := o.dataDir
	recorded, haveRecord, err := db.Meta(ctx, secretFingerprintKey)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "secret")
	secret, source := o.secret, "the secret given with WithSecret"
	if secret == nil {
		source = "the secret file " + path
		secret, err = readSecret(path)
		if errors.Is(err, os.ErrNotExist) {
			data, derr := hasData(ctx, dir, db)
			if derr != nil {
				return nil, derr
			}
			if haveRecord || data {
				return nil, fmt.Errorf("%w: the data directory %s holds data, but its secret file %s is missing; "+
					"a new secret would map every name to a new ID and leave the stored objects unreachable, so none was created. "+
					"Restore the original secret file from the backup; or, to start over deliberately, move the data directory away",
					ErrSecretMismatch, dir, path)
			}
			secret, err = createSecret(path)
		}
		if err != nil {
			return nil, err
		}
	}
	fp := fingerprint(secret)
	switch {
	case !haveRecord:
		if err := db.SetMeta(ctx, secretFingerprintKey, fp); err != nil {
			return nil, fmt.Errorf("server: record the secret's fingerprint: %w", err)
		}
	case recorded != fp:
		return nil, fmt.Errorf("%w: the data directory %s was written with another secret than %s (fingerprints %s recorded, %s given); "+
			"with it every name would map to a new ID and the stored objects would be unreachable. "+
			"Restore the original secret file from the backup (or pass the original to WithSecret); or, to start over deliberately, move the data directory away",
			ErrSecretMismatch, dir, source, recorded, fp)
	}
	return secret, nil
}

// hasData reports whether the data directory holds any object: a row of
// the node database or a file of an object with SQL.
func hasData(ctx context.Context, dir string, db engine.ObjectStore) (bool, error) {
	empty, err := db.Empty(ctx)
	if err != nil || !empty {
		return !empty, err
	}
	entries, err := os.ReadDir(filepath.Join(dir, "sql"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("server: %w", err)
	}
	return len(entries) > 0, nil
}

// readSecret reads the hex secret at path; the error matches
// os.ErrNotExist when there is none.
func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("server: read secret: %w", err)
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(secret) < 16 {
		return nil, fmt.Errorf("server: secret file %s must hold at least 16 bytes in hexadecimal", path)
	}
	return secret, nil
}

// createSecret writes a new random secret at path, failing if one exists.
func createSecret(path string) ([]byte, error) {
	secret := make([]byte, 32)
	rand.Read(secret)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("server: create secret: %w", err)
	}
	_, err = f.WriteString(hex.EncodeToString(secret) + "\n")
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("server: create secret: %w", err)
	}
	return secret, nil
}
