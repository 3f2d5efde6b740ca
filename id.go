package durable

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"sync"
)

// IDLen is the length of an ID's canonical string form: 64 lowercase
// hexadecimal characters encoding 32 bytes.
const IDLen = 64

// ID addresses one object within the namespace of its class. As on
// Cloudflare, its 32 bytes are 16 bytes of identity (random for a unique ID,
// a keyed hash of the name for a named one) followed by a 16-byte MAC over
// them, keyed per namespace, so the server can tell an ID it minted from a
// forged or mistyped one and from one minted for another class.
//
// The zero ID is invalid. The empty name is not the zero ID: as on
// Cloudflare, where idFromName("") is an ordinary object, it addresses an
// object like any other name. IDs are comparable values; use [ID.Equal] to
// compare, which ignores whether the name is known.
type ID struct {
	raw   [32]byte
	class string
	name  string
	// resolved is false only for IDs a remote namespace made from a name
	// without the server's secret: they carry the name, and the server
	// derives the bytes.
	resolved bool
	// named: the ID was made from name, which may be "".
	named bool
}

// String returns the canonical form: 64 lowercase hexadecimal characters.
// It returns the empty string for the zero ID and for a name-only ID of a
// remote namespace that has not been resolved by the server.
func (id ID) String() string {
	if !id.resolved {
		return ""
	}
	return hex.EncodeToString(id.raw[:])
}

// Name returns the name the ID was derived from, or "" when it was minted
// by NewUniqueID or parsed from a string; [ID.Named] tells these apart from
// the empty name.
func (id ID) Name() string { return id.name }

// Named reports whether the ID was made from a name, possibly the empty
// one, by IDFromName (or [NameOnlyID], [IDFromBytes] with a name) rather
// than minted or parsed.
func (id ID) Named() bool { return id.named }

// Class returns the name of the object class whose namespace minted the ID.
func (id ID) Class() string { return id.class }

// Resolved reports whether the ID's bytes are known. Every ID minted in
// process is resolved; a remote namespace without the server's secret
// returns name-only IDs that the server resolves.
func (id ID) Resolved() bool { return id.resolved }

// IsZero reports whether id is the zero ID, which addresses no object. A
// name-only ID of the empty name is not zero.
func (id ID) IsZero() bool { return !id.resolved && !id.named }

// Bytes returns the ID's 32 bytes. It is the zero array for a name-only ID.
func (id ID) Bytes() [32]byte { return id.raw }

// Equal reports whether id and other address the same object: the same
// class and the same bytes (or, for name-only IDs, the same name).
func (id ID) Equal(other ID) bool {
	if id.class != other.class {
		return false
	}
	if id.resolved && other.resolved {
		return id.raw == other.raw
	}
	return id.named && other.named && id.name == other.name
}

// NameOnlyID returns an unresolved ID that carries only a name, for callers
// that address an object by name without holding the server's secret (a
// remote namespace). The server derives the bytes from the name.
func NameOnlyID(class, name string) ID { return ID{class: class, name: name, named: true} }

// IDSpace mints and verifies the IDs of one class. Its keys derive from a
// server secret and the class name, so the same secret yields the same IDs
// for the same names across restarts and across processes.
//
// An IDSpace is safe for concurrent use.
type IDSpace struct {
	class   string
	nameKey []byte
	macKey  []byte
	// Keyed HMACs, Reset between uses: deriving an ID happens on every
	// request addressed by name, and a new HMAC costs a dozen allocations.
	names, macs sync.Pool
}

// NewIDSpace derives the ID keys of class from secret, which should be at
// least 32 random bytes kept private to the servers of one deployment.
func NewIDSpace(class string, secret []byte) *IDSpace {
	ns := derive(secret, "durable/v1 namespace\x00"+class)
	return &IDSpace{
		class:   class,
		nameKey: derive(ns, "name"),
		macKey:  derive(ns, "mac"),
	}
}

func derive(key []byte, label string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// FromName returns the ID that name maps to: the same for the same name,
// every time, on every server sharing the secret. Any string is a valid name,
// including the empty string; names never become file paths.
func (s *IDSpace) FromName(name string) ID {
	id := ID{class: s.class, name: name, resolved: true, named: true}
	sum(&s.names, s.nameKey, []byte(name), id.raw[:16])
	s.seal(&id)
	return id
}

// NewUnique returns a fresh ID from 16 random bytes.
func (s *IDSpace) NewUnique() ID {
	id := ID{class: s.class, resolved: true}
	rand.Read(id.raw[:16]) // never fails; see crypto/rand.Read
	s.seal(&id)
	return id
}

// FromString parses the canonical form of an ID minted by this space. It
// fails with an error matching [ErrInvalidID] and, more precisely,
// [ErrIDLength], [ErrIDNotHex] or [ErrIDNamespace].
func (s *IDSpace) FromString(str string) (ID, error) {
	raw, err := ParseIDBytes(str)
	if err != nil {
		return ID{}, err
	}
	id := ID{raw: raw, class: s.class, resolved: true}
	if !s.Verify(raw) {
		return ID{}, &idError{kind: ErrIDNamespace, msg: fmt.Sprintf("durable: ID %.16s… was not minted for class %s", str, s.class)}
	}
	return id, nil
}

// Verify reports whether raw carries a valid MAC for this space.
func (s *IDSpace) Verify(raw [32]byte) bool {
	want := s.mac(raw[:16])
	return hmac.Equal(want[:], raw[16:])
}

func (s *IDSpace) seal(id *ID) {
	mac := s.mac(id.raw[:16])
	copy(id.raw[16:], mac[:])
}

func (s *IDSpace) mac(body []byte) [16]byte {
	var out [16]byte
	sum(&s.macs, s.macKey, body, out[:])
	return out
}

// sum writes the first len(out) bytes of the HMAC-SHA256 of data under key
// to out, with an HMAC from pool (all keyed with key).
func sum(pool *sync.Pool, key, data, out []byte) {
	m, ok := pool.Get().(hash.Hash)
	if ok {
		m.Reset()
	} else {
		m = hmac.New(sha256.New, key)
	}
	m.Write(data)
	var buf [sha256.Size]byte
	copy(out, m.Sum(buf[:0]))
	pool.Put(m)
}

// ParseIDBytes checks the syntax of an ID's canonical form, 64 lowercase
// hexadecimal characters, and returns its bytes. It does not check the MAC:
// only an [IDSpace] can. Remote clients use it to reject malformed IDs
// before any network traffic.
func ParseIDBytes(str string) ([32]byte, error) {
	var raw [32]byte
	if len(str) != IDLen {
		return raw, &idError{kind: ErrIDLength, msg: fmt.Sprintf("durable: ID must be %d hexadecimal characters, got %d", IDLen, len(str))}
	}
	for i := 0; i < len(str); i++ {
		c := str[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return raw, &idError{kind: ErrIDNotHex, msg: fmt.Sprintf("durable: ID has %q at offset %d; only lowercase hexadecimal characters are allowed", c, i)}
		}
	}
	hex.Decode(raw[:], []byte(str)) // validated above
	return raw, nil
}

// IDFromBytes returns the ID of class whose bytes are raw, with the name
// they were derived from if known ("" for none: the ID is then not Named,
// even if the name was the empty one): a resolved ID. It checks nothing:
// raw comes from a server, or its MAC was checked against the class's
// [IDSpace] (Verify), or it is an object's own key.
func IDFromBytes(class string, raw [32]byte, name string) ID {
	return ID{raw: raw, class: class, name: name, resolved: true, named: name != ""}
}
