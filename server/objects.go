package server

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/durablego/durable"
)

// ObjectIDs returns the IDs of the objects of class that exist, in byte
// order, starting after the ID after (the zero ID: from the first), at most
// limit of them; page through a class by passing the last ID returned. An
// object exists once it has stored something (state, a key, an SQL row or
// an alarm), as on Cloudflare: one that was only read, or whose writes all
// failed, does not. The IDs carry no name (names are not stored).
//
// It reads the node database and, for a class with SQL, the directory of
// its database files; it is for tests (Cloudflare's listDurableObjectIds)
// and tools, not for a request path.
func (s *Server) ObjectIDs(ctx context.Context, class string, after durable.ID, limit int) ([]durable.ID, error) {
	ns, err := s.lookup(class)
	if err != nil || limit <= 0 {
		return nil, err
	}
	if !after.IsZero() && after.Class() != class {
		return nil, fmt.Errorf("%w: an ID of class %q cannot page through class %s", durable.ErrIDNamespace, after.Class(), class)
	}
	var from []byte
	if !after.IsZero() {
		if !after.Resolved() {
			after = ns.ids().FromName(after.Name())
		}
		raw := after.Bytes()
		from = raw[:]
	}
	raws, err := s.db.Objects(ctx, class, from, limit)
	if err != nil {
		return nil, err
	}
	if ns.info().SQL {
		files, err := sqlObjects(filepath.Join(s.opts.dataDir, "sql", class), from, limit)
		if err != nil {
			return nil, err
		}
		raws = append(raws, files...)
		slices.SortFunc(raws, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
		raws = slices.Compact(raws)
	}
	ids := make([]durable.ID, 0, min(len(raws), limit))
	for _, raw := range raws[:min(len(raws), limit)] {
		ids = append(ids, durable.ResolvedID(class, raw, ""))
	}
	return ids, nil
}

// sqlObjects returns the IDs of the database files in dir after from, in
// byte order, at most limit of them. Other files (a write-ahead log, a
// temporary copy being written) are skipped.
func sqlObjects(dir string, from []byte, limit int) ([][32]byte, error) {
	entries, err := os.ReadDir(dir) // sorted by name: hexadecimal, so byte order
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("server: list objects: %w", err)
	}
	var ids [][32]byte
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".db")
		var id [32]byte
		if !ok || len(name) != hex.EncodedLen(len(id)) || !e.Type().IsRegular() {
			continue
		}
		if _, err := hex.Decode(id[:], []byte(name)); err != nil || name != strings.ToLower(name) || bytes.Compare(id[:], from) <= 0 {
			continue
		}
		if ids = append(ids, id); len(ids) == limit {
			break
		}
	}
	return ids, nil
}
