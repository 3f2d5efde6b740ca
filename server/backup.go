package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"connectrpc.com/connect"

	"github.com/durablego/durable"
	durablev1 "github.com/durablego/durable/gen/durable/v1"
	"github.com/durablego/durable/internal/engine"
)

// BackupStats is what a backup copied.
type BackupStats struct {
	// Files is the number of files written: the node database, the secret
	// file, and one per SQL object.
	Files int
	// Bytes is their total size.
	Bytes int64
}

// Backup writes an online, consistent copy of the server's data directory
// into dir, which must be empty or absent, while the server serves: the
// node database (objects.db) and every SQL object's database, each a
// consistent copy taken during the backup (SQLite's online backup API,
// from a read transaction of its own, which blocks no writer), and the
// secret file, without which the copy's IDs could not be resolved. Every
// write acknowledged before Backup was called is in the copy; a call whose
// writes are in it is there whole (each database's copy is of one
// transaction's view, and a call commits to one database).
//
// To restore, start a server on the copy (or on a copy of it): its
// secret's fingerprint matches. A directory restored without the secret
// file is refused with ErrSecretMismatch, which says so. Files in the data
// directory that are not Durable's (a program's own databases) are not
// copied.
func (s *Server) Backup(ctx context.Context, dir string) (BackupStats, error) {
	var st BackupStats
	if s.ownDB == nil {
		return st, errNoNodeDB
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return st, fmt.Errorf("server: backup into %s: the directory is not empty", dir)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return st, fmt.Errorf("server: backup: %w", err)
	}
	add := func(path string) {
		if fi, err := os.Stat(path); err == nil {
			st.Files++
			st.Bytes += fi.Size()
		}
	}
	dst := filepath.Join(dir, "objects.db")
	if err := s.ownDB.Backup(ctx, dst); err != nil {
		return st, fmt.Errorf("server: backup: %w", err)
	}
	add(dst)
	if secret, err := os.ReadFile(filepath.Join(s.opts.dataDir, "secret")); err == nil {
		if err := os.WriteFile(filepath.Join(dir, "secret"), secret, 0o600); err != nil {
			return st, fmt.Errorf("server: backup the secret: %w", err)
		}
		add(filepath.Join(dir, "secret"))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return st, fmt.Errorf("server: backup the secret: %w", err)
	}
	err := s.ownDB.SQLFiles(func(class string, id [32]byte, path string) error {
		rel, err := filepath.Rel(s.opts.dataDir, path)
		if err != nil {
			return err
		}
		out := filepath.Join(dir, rel)
		if err := s.backupSQLObject(ctx, class, id, path, out); err != nil {
			if _, statErr := os.Stat(path); errors.Is(statErr, fs.ErrNotExist) {
				return nil // the object was deleted meanwhile
			}
			return err
		}
		add(out)
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("server: backup: %w", err)
	}
	return st, nil
}

// backupSQLObject copies the database file path of an SQL object to out:
// when the object is not in memory, else (or when it came into
// memory meanwhile) after asking it to leave memory, while none of its
// class can come into memory: an object in memory holds its file locked
// (see engine.OpenFile).
func (s *Server) backupSQLObject(ctx context.Context, class string, id [32]byte, path, out string) error {
	ns, err := s.lookup(class)
	if err != nil {
		return engine.BackupFile(ctx, path, out) // no class to ask: the file is closed
	}
	return ns.outOfMemory(ctx, id, func() error { return engine.BackupFile(ctx, path, out) })
}

// backupChunk is the size of the chunks the admin service streams a
// backup's files in: well under the RPC message limits of either side.
const backupChunk = 256 << 10

// Backup stages the backup in the data directory (.backup-*, on the same
// file system; removed after, or at the next start after a crash), then
// streams it: the staging needs as much free space as the data.
func (s *adminService) Backup(ctx context.Context, _ *connect.Request[durablev1.BackupRequest], stream *connect.ServerStream[durablev1.BackupResponse]) error {
	tmp, err := os.MkdirTemp(s.srv.opts.dataDir, ".backup-")
	if err != nil {
		return connect.NewError(connect.CodeInternal, err)
	}
	defer os.RemoveAll(tmp)
	if _, err := s.srv.Backup(ctx, tmp); err != nil {
		return s.srv.toConnectError(ctx, err, "", "Admin.Backup", durable.ID{})
	}
	buf := make([]byte, backupChunk)
	return filepath.WalkDir(tmp, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(tmp, path)
		if err != nil {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		for first := true; ; first = false {
			n, err := io.ReadFull(f, buf)
			if n > 0 || first {
				if serr := stream.Send(&durablev1.BackupResponse{Path: filepath.ToSlash(rel), Data: buf[:n]}); serr != nil {
					return serr
				}
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			if err != nil {
				return err
			}
		}
	})
}

// removeStaleBackups deletes what admin backups staged in the data
// directory and a crash left there (.backup-*): the server owns the
// directory, so no backup of another runs.
func removeStaleBackups(dir string) {
	stale, _ := filepath.Glob(filepath.Join(dir, ".backup-*"))
	for _, p := range stale {
		os.RemoveAll(p)
	}
}

// outOfMemory runs fn while the object raw is not in memory and none of
// its class can come into memory: it asks the object to leave, waits until
// it has (it leaves once its mailbox is empty, at the latest a few
// seconds), and holds the namespace's lock during fn, which must be short.
func (n *Namespace[S]) outOfMemory(ctx context.Context, raw [32]byte, fn func() error) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		n.mu.Lock()
		a := n.actors[raw]
		if a == nil {
			defer n.mu.Unlock()
			return fn()
		}
		n.mu.Unlock()
		a.requestEviction()
		select {
		case <-tick.C:
		case <-deadline:
			return fmt.Errorf("the %s object %x stayed busy in memory for 10s: back up again when it is quieter", n.class.Name, raw)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
