package etcdstore

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
)

// Partitions is the number of partitions object IDs map to (design 6.1):
// fixed, so that every node maps an ID to the same partition.
const Partitions = 1024

// Partition returns the partition of an object ID: its first two bytes,
// the identity half that is a keyed hash or random already, modulo
// Partitions.
func Partition(id [32]byte) int { return int(binary.BigEndian.Uint16(id[:2]) % Partitions) }

// keys builds the keys of one deployment, all under its prefix:
//
//	parts/{p:04x}                         owner key of partition p, under the owner's lease
//	o/{p:04x}/{class}/{id hex}/s          state
//	o/{p:04x}/{class}/{id hex}/k/{key}    key-value entry
//	o/{p:04x}/{class}/{id hex}/a          alarm due time, Unix ms in decimal
//	al/{p:04x}/{due:016x}/{class hex}/{id hex}   the partition's due-time index (empty value)
//	meta/{key}                            facts about the data (the secret's fingerprint)
//
// Key bytes sort like the KV API's ranges: an object's entries are one
// range in the byte order of their keys, and a partition's index is
// ordered by due time, then class, then ID (the class in hex, so that "/"
// sorts below every digit and a class name that is a prefix of another
// sorts first, as DueAlarm.Less orders them).
type keys struct{ prefix string }

func (k keys) part(p int) string { return fmt.Sprintf("%sparts/%04x", k.prefix, p) }

func (k keys) object(class string, id [32]byte) string {
	return fmt.Sprintf("%so/%04x/%s/%s/", k.prefix, Partition(id), class, hex.EncodeToString(id[:]))
}

func (k keys) state(class string, id [32]byte) string { return k.object(class, id) + "s" }

func (k keys) alarm(class string, id [32]byte) string { return k.object(class, id) + "a" }

// kvPrefix is the prefix of the object's key-value entries.
func (k keys) kvPrefix(class string, id [32]byte) string { return k.object(class, id) + "k/" }

func (k keys) indexPrefix(p int) string { return fmt.Sprintf("%sal/%04x/", k.prefix, p) }

func (k keys) index(class string, id [32]byte, at int64) string {
	return fmt.Sprintf("%s%016x/%s/%s", k.indexPrefix(Partition(id)), uint64(at), hex.EncodeToString([]byte(class)), hex.EncodeToString(id[:]))
}

// parseIndex reads back an index key of partition p.
func (k keys) parseIndex(p int, key string) (class string, id [32]byte, at int64, err error) {
	rest := key[len(k.indexPrefix(p)):]
	var due, c, i string
	if len(rest) < 16+1+1+64 || rest[16] != '/' {
		return "", id, 0, fmt.Errorf("etcdstore: malformed index key %q", key)
	}
	due, rest = rest[:16], rest[17:]
	c, i = rest[:len(rest)-65], rest[len(rest)-64:]
	u, err := strconv.ParseUint(due, 16, 64)
	if err != nil {
		return "", id, 0, fmt.Errorf("etcdstore: malformed index key %q: %w", key, err)
	}
	cb, err := hex.DecodeString(c)
	if err != nil {
		return "", id, 0, fmt.Errorf("etcdstore: malformed index key %q: %w", key, err)
	}
	if _, err := hex.Decode(id[:], []byte(i)); err != nil {
		return "", id, 0, fmt.Errorf("etcdstore: malformed index key %q: %w", key, err)
	}
	return string(cb), id, int64(u), nil
}

func (k keys) meta(key string) string { return k.prefix + "meta/" + key }

// objects is the prefix of every object's data.
func (k keys) objects() string { return k.prefix + "o/" }

// successor returns the smallest key greater than every key with prefix p
// (etcd's prefix range end), for a p that does not end in 0xff bytes only.
func successor(p string) string {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return "\x00" // every key: etcd's "from key" range end
}
