package server

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/durablego/durable"
)

// ObjectIDs returns the IDs of the objects of class that exist, in byte
// order, starting after the ID after (the zero ID: from the first), at most
// limit of them; page through a class by passing the last ID returned. An
// object exists once it has stored something (state, a key, an SQL row or
// an alarm), as on Cloudflare: one that was only read, or whose writes all
// failed, does not. The IDs carry no name (the admin service's catalog
// lists them with their names).
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
	if ns.Class().SQL {
		files, err := s.ownDB.SQLObjects(class, from, limit)
		if err != nil {
			return nil, err
		}
		raws = append(raws, files...)
		slices.SortFunc(raws, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
		raws = slices.Compact(raws)
	}
	ids := make([]durable.ID, 0, min(len(raws), limit))
	for _, raw := range raws[:min(len(raws), limit)] {
		ids = append(ids, durable.IDFromBytes(class, raw, ""))
	}
	return ids, nil
}
