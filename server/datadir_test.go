package server_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"

	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/server"
)

// lockChild, run by TestMain when DURABLE_LOCK_CHILD names dir (and
// DURABLE_LOCK_MODE the mode), runs a server on dir. In mode "hold" it
// writes the file "holding" beside dir once New returned and waits to be
// killed; in mode "try" it exits with 0 if New succeeded and with 3, the
// error on standard error, if it did not.
func lockChild(dir, mode string) int {
	srv, err := server.New(server.WithDataDir(dir))
	if mode == "try" {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		srv.Shutdown(context.Background())
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := os.WriteFile(dir+".holding", nil, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	select {}
}

// TestDataDirIsOwnedByOneProcess starts a server process on a directory:
// a second process fails at once with an error naming the directory and
// the first one's PID, and so does a server in this process; once the
// first is killed with SIGKILL, a new server starts on the directory.
func TestDataDirIsOwnedByOneProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	holder := childCommand("DURABLE_LOCK_CHILD="+dir, "DURABLE_LOCK_MODE=hold")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- holder.Wait() }()
	t.Cleanup(func() { holder.Process.Kill(); <-exited })
	eventually(t, "the first server holds the directory", func() bool {
		_, err := os.Stat(dir + ".holding")
		return err == nil
	})
	pid := fmt.Sprintf("pid %d", holder.Process.Pid)

	var stderr bytes.Buffer
	second := childCommand("DURABLE_LOCK_CHILD="+dir, "DURABLE_LOCK_MODE=try")
	second.Stderr = &stderr
	err := runWithin(t, second, 30*time.Second)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("second process: %v, stderr %q; want exit status 3", err, stderr.String())
	}
	for _, want := range []string{dir, pid, "in use by another server"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("the second process's error does not say %q: %s", want, stderr.String())
		}
	}

	_, err = server.New(server.WithDataDir(dir))
	if !errors.Is(err, server.ErrDataDirLocked) || !strings.Contains(err.Error(), pid) {
		t.Fatalf("New in this process = %v, want ErrDataDirLocked naming %s", err, pid)
	}

	holder.Process.Kill() // SIGKILL: no chance to clean up
	<-exited
	exited <- nil // for the cleanup
	e := newEnvIn(t, dir)
	if _, err := e.counters.Get(e.counters.IDFromName("after-kill")).Increment(context.Background(), &counterv1.IncrementRequest{Amount: 1}); err != nil {
		t.Fatalf("a call on the server started after the kill: %v", err)
	}
}

// runWithin runs cmd and returns its error, killing it if it has not
// exited within d.
func runWithin(t *testing.T, cmd *exec.Cmd, d time.Duration) error {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%v did not exit within %v", cmd.Args, d)
		return nil
	}
}

// TestDataDirLockInProcess: two servers of one process cannot share a
// directory either (flock locks belong to the open file, not the process);
// Shutdown releases the lock, and so does a New that fails after taking
// it.
func TestDataDirLockInProcess(t *testing.T) {
	dir := t.TempDir()
	first, err := server.New(server.WithDataDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // a refused New leaves the lock with the first
		_, err = server.New(server.WithDataDir(dir), server.WithSecret(bytes.Repeat([]byte{1}, 32)))
		if !errors.Is(err, server.ErrDataDirLocked) || !strings.Contains(err.Error(), dir) ||
			!strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
			t.Fatalf("second New = %v, want ErrDataDirLocked naming %s and this process", err, dir)
		}
	}
	if err := first.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	// A New that fails after locking (here: another secret) releases it.
	_, err = server.New(server.WithDataDir(dir), server.WithSecret(bytes.Repeat([]byte{1}, 32)))
	if !errors.Is(err, server.ErrSecretMismatch) {
		t.Fatalf("New with another secret = %v, want ErrSecretMismatch", err)
	}
	again, err := server.New(server.WithDataDir(dir))
	if err != nil {
		t.Fatalf("New after Shutdown and a failed New: %v", err)
	}
	again.Shutdown(context.Background())
}

// TestDataDirLockFileUnusable: a lock file that cannot be opened fails New
// with an error naming the directory, before anything else is created.
func TestDataDirLockFileUnusable(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "LOCK"), 0o700); err != nil { // a directory cannot be opened for writing
		t.Fatal(err)
	}
	_, err := server.New(server.WithDataDir(dir))
	if err == nil || !strings.Contains(err.Error(), "lock the data directory "+dir) {
		t.Fatalf("New = %v, want an error about locking %s", err, dir)
	}
	for _, name := range []string{"objects.db", "secret"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after the refused New: %v", name, err)
		}
	}
}

// counterIn starts a server on dir with opts, adds amount to the counter
// name, returns its value and shuts the server down.
func counterIn(t *testing.T, dir, name string, amount int64, opts ...server.Option) int64 {
	t.Helper()
	e := newEnvIn(t, dir, opts...)
	defer e.shutdown(t)
	r, err := e.counters.Get(e.counters.IDFromName(name)).Increment(context.Background(), &counterv1.IncrementRequest{Amount: amount})
	if err != nil {
		t.Fatal(err)
	}
	return r.GetValue()
}

// recordedFingerprint reads the fingerprint the node database of dir holds.
func recordedFingerprint(t *testing.T, dir string) (string, bool) {
	t.Helper()
	db, err := engine.Open(filepath.Join(dir, "objects.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fp, ok, err := db.Meta(context.Background(), "secret_fingerprint")
	if err != nil {
		t.Fatal(err)
	}
	return fp, ok
}

func wantFingerprint(secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("durable secret fingerprint v1"))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// TestSecretFingerprintRecorded: a fresh directory starts and records a
// keyed fingerprint of its new secret, never the secret, and a restart
// with the same secret file finds its objects.
func TestSecretFingerprintRecorded(t *testing.T) {
	dir := t.TempDir()
	if v := counterIn(t, dir, "c", 5); v != 5 {
		t.Fatalf("value %d", v)
	}
	hexSecret, err := os.ReadFile(filepath.Join(dir, "secret"))
	if err != nil {
		t.Fatal(err)
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(hexSecret)))
	if err != nil {
		t.Fatal(err)
	}
	if fp, ok := recordedFingerprint(t, dir); !ok || fp != wantFingerprint(secret) {
		t.Fatalf("recorded fingerprint %q (%v), want %q", fp, ok, wantFingerprint(secret))
	}
	for _, name := range []string{"objects.db", "objects.db-wal"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if bytes.Contains(b, secret) || bytes.Contains(b, bytes.TrimSpace(hexSecret)) {
			t.Errorf("%s holds the secret", name)
		}
	}
	if v := counterIn(t, dir, "c", 1); v != 6 {
		t.Fatalf("value after a restart %d, want 6", v)
	}
}

// TestLostSecretFileRefusesToStart: with the secret file gone from a
// directory that holds data, New refuses with an error that names the
// directory and says how to recover, and creates no new secret; putting
// the original back brings every object back.
func TestLostSecretFileRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	counterIn(t, dir, "c", 7)
	path := filepath.Join(dir, "secret")
	original, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	_, err = server.New(server.WithDataDir(dir))
	if !errors.Is(err, server.ErrSecretMismatch) {
		t.Fatalf("New without the secret file = %v, want ErrSecretMismatch", err)
	}
	for _, want := range []string{dir, path, "missing", "Restore the original secret file", "move the data directory away"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a secret file was created by the refused New: %v", err)
	}
	if err := os.WriteFile(path, original, 0o600); err != nil {
		t.Fatal(err)
	}
	if v := counterIn(t, dir, "c", 1); v != 8 {
		t.Fatalf("value with the original secret restored = %d, want 8", v)
	}
}

// TestOtherSecretRefusesToStart: a secret file, or a WithSecret, other
// than the one the data was written with is refused; the original passed
// to WithSecret is accepted.
func TestOtherSecretRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	counterIn(t, dir, "c", 3)
	path := filepath.Join(dir, "secret")
	original, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	other := bytes.Repeat([]byte{7}, 32)
	if err := os.WriteFile(path, []byte(hex.EncodeToString(other)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = server.New(server.WithDataDir(dir))
	if !errors.Is(err, server.ErrSecretMismatch) {
		t.Fatalf("New with another secret file = %v, want ErrSecretMismatch", err)
	}
	for _, want := range []string{dir, "the secret file " + path, wantFingerprint(other), "Restore the original secret file", "move the data directory away"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), hex.EncodeToString(other)) {
		t.Errorf("the error shows the secret: %v", err)
	}
	if _, err := server.New(server.WithDataDir(dir), server.WithSecret(other)); !errors.Is(err, server.ErrSecretMismatch) || !strings.Contains(err.Error(), "WithSecret") {
		t.Fatalf("New with another WithSecret = %v, want ErrSecretMismatch naming WithSecret", err)
	}
	secret, _ := hex.DecodeString(strings.TrimSpace(string(original)))
	if v := counterIn(t, dir, "c", 1, server.WithSecret(secret)); v != 4 {
		t.Fatalf("value with the original secret as WithSecret = %d, want 4", v)
	}
}

// TestSecretOfDirectoryWithoutFingerprint: a directory written before
// fingerprints were recorded starts with its secret file and records it;
// without its secret file it is refused, whether its data is in the node
// database or only in objects' SQL files.
func TestSecretOfDirectoryWithoutFingerprint(t *testing.T) {
	forget := func(dir string) { // as an older version left it
		c, err := sqlite3.Open(filepath.Join(dir, "objects.db"))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Exec(`DROP TABLE meta`); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	dir := t.TempDir()
	counterIn(t, dir, "c", 2)
	forget(dir)
	if _, ok := recordedFingerprint(t, dir); ok {
		t.Fatal("the fingerprint is still there")
	}
	if v := counterIn(t, dir, "c", 1); v != 3 {
		t.Fatalf("value %d, want 3", v)
	}
	if _, ok := recordedFingerprint(t, dir); !ok {
		t.Fatal("no fingerprint recorded on the first start with the secret file")
	}

	forget(dir)
	os.Remove(filepath.Join(dir, "secret"))
	if _, err := server.New(server.WithDataDir(dir)); !errors.Is(err, server.ErrSecretMismatch) {
		t.Fatalf("New without a secret file or a fingerprint, with data = %v", err)
	}

	// Data only in an SQL object's file.
	dir = t.TempDir()
	e := newEnvIn(t, dir)
	ledgers := registerLedger(t, e)
	if _, err := ledgers.Get(ledgers.IDFromName("l")).Record(context.Background(), &durabletestv1.RecordRequest{Key: "k"}); err != nil {
		t.Fatal(err)
	}
	e.shutdown(t)
	forget(dir)
	os.Remove(filepath.Join(dir, "secret"))
	if _, err := server.New(server.WithDataDir(dir)); !errors.Is(err, server.ErrSecretMismatch) {
		t.Fatalf("New without a secret file or a fingerprint, with SQL data = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "secret")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a secret file was created: %v", err)
	}
}
