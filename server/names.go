package server

import (
	"hash/maphash"
	"sync/atomic"

	"github.com/durablego/durable"
)

// Deriving an object's ID from its name is a keyed hash (two HMAC-SHA256,
// with their allocations) that a call by name paid on every request: a
// hot object's callers send the same name again and again. nameCache
// remembers the IDs of recent names, per class.
//
// It is a direct-mapped table of immutable entries: a slot is chosen by a
// seeded hash of the name and holds the last name derived there, replaced
// whole by an atomic store, so a lookup takes no lock and a hit allocates
// nothing. The ID is a pure function of the class's ID space and the name,
// so a cached ID is the one FromName would derive: a miss, a collision or
// a race between two writers of a slot only costs a derivation. Names
// longer than maxCachedName are derived every time, so the table holds at
// most nameSlots × maxCachedName bytes of names.
type nameCache struct {
	seed  maphash.Seed
	slots [nameSlots]atomic.Pointer[nameEntry]
}

const (
	nameSlots     = 1024 // a power of two
	maxCachedName = 256
)

type nameEntry struct {
	name string
	id   durable.ID
}

func newNameCache() *nameCache { return &nameCache{seed: maphash.MakeSeed()} }

// fromName returns space.FromName(name), from the table when it can.
func (c *nameCache) fromName(space *durable.IDSpace, name string) durable.ID {
	if len(name) > maxCachedName {
		return space.FromName(name)
	}
	slot := &c.slots[maphash.String(c.seed, name)&(nameSlots-1)]
	if e := slot.Load(); e != nil && e.name == name {
		return e.id
	}
	id := space.FromName(name)
	slot.Store(&nameEntry{name: name, id: id})
	return id
}
