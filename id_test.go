package durable_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/durablego/durable"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func TestIDSpace(t *testing.T) {
	counters := durable.NewIDSpace("Counter", secret)
	a, b := counters.FromName("room"), counters.FromName("room")
	if !a.Equal(b) || a.String() != b.String() || len(a.String()) != durable.IDLen {
		t.Fatalf("FromName is not deterministic: %s %s", a, b)
	}
	if a.Name() != "room" || a.Class() != "Counter" || !a.Resolved() || a.IsZero() {
		t.Fatalf("ID accessors: name %q class %q resolved %v", a.Name(), a.Class(), a.Resolved())
	}
	if again := durable.NewIDSpace("Counter", secret).FromName("room"); !again.Equal(a) {
		t.Fatal("the same secret and class must give the same ID")
	}
	if other := durable.NewIDSpace("Counter", []byte("another secret, another deploy!")).FromName("room"); other.String() == a.String() {
		t.Fatal("another secret gave the same ID")
	}
	if counters.FromName("room").Equal(counters.FromName("Room")) {
		t.Fatal("names are case-sensitive")
	}
	if u, v := counters.NewUnique(), counters.NewUnique(); u.Equal(v) || u.Name() != "" {
		t.Fatalf("NewUnique: %s %s", u, v)
	}
	for _, id := range []durable.ID{a, counters.NewUnique(), counters.FromName("")} {
		got, err := counters.FromString(id.String())
		if err != nil || !got.Equal(id) {
			t.Fatalf("FromString(%s) = %v, %v", id, got, err)
		}
	}
}

func TestIDEqual(t *testing.T) {
	counters := durable.NewIDSpace("Counter", secret)
	rooms := durable.NewIDSpace("Room", secret)
	if counters.FromName("x").Equal(rooms.FromName("x")) {
		t.Error("IDs of two classes are equal")
	}
	if !durable.NameOnlyID("Counter", "x").Equal(durable.NameOnlyID("Counter", "x")) {
		t.Error("name-only IDs with the same name are not equal")
	}
	if durable.NameOnlyID("Counter", "x").String() != "" {
		t.Error("a name-only ID has a string form before it is resolved")
	}
	if !(durable.ID{}).IsZero() || (durable.ID{}).Equal(durable.ID{}) {
		t.Error("the zero ID must be zero and equal to nothing")
	}
	// The empty name is a name: not the zero ID, equal to itself only.
	empty := durable.NameOnlyID("Counter", "")
	if empty.IsZero() || !empty.Named() || !empty.Equal(durable.NameOnlyID("Counter", "")) {
		t.Error("the name-only ID of the empty name is zero or unequal to itself")
	}
	if empty.Equal(durable.ID{}) || (durable.ID{}).Equal(empty) || empty.Equal(durable.NameOnlyID("Counter", " ")) {
		t.Error("the empty name equals the zero ID or another name")
	}
	if id := counters.FromName(""); id.IsZero() || !id.Named() || id.Name() != "" || id.Equal(counters.FromName(" ")) {
		t.Error("FromName(\"\") is not an ordinary named ID")
	}
	if counters.NewUnique().Named() {
		t.Error("a unique ID is named")
	}
}

func TestIDFromStringErrors(t *testing.T) {
	counters := durable.NewIDSpace("Counter", secret)
	valid := counters.NewUnique().String()
	cases := []struct {
		in   string
		want error
	}{
		{"", durable.ErrIDLength},
		{"abc", durable.ErrIDLength},
		{valid + "00", durable.ErrIDLength},
		{strings.Repeat("é", 32), durable.ErrIDNotHex},
		{"G" + valid[1:], durable.ErrIDNotHex},
		{strings.ToUpper(valid), durable.ErrIDNotHex},
		{" " + valid[1:], durable.ErrIDNotHex},
		{strings.Repeat("0", 64), durable.ErrIDNamespace},
		{durable.NewIDSpace("Room", secret).NewUnique().String(), durable.ErrIDNamespace},
	}
	for _, c := range cases {
		_, err := counters.FromString(c.in)
		if !errors.Is(err, c.want) || !errors.Is(err, durable.ErrInvalidID) {
			t.Errorf("FromString(%q) = %v, want %v", c.in, err, c.want)
		}
	}
}

// FuzzIDFromString checks that no input crashes the parser, and that what
// it accepts is exactly what the space minted.
func FuzzIDFromString(f *testing.F) {
	counters := durable.NewIDSpace("Counter", secret)
	f.Add(counters.NewUnique().String())
	f.Add(counters.FromName("x").String())
	f.Add("")
	f.Add(strings.Repeat("f", 64))
	f.Fuzz(func(t *testing.T, s string) {
		id, err := counters.FromString(s)
		if err != nil {
			if !errors.Is(err, durable.ErrInvalidID) {
				t.Fatalf("error %v does not match ErrInvalidID", err)
			}
			return
		}
		if id.String() != s || !counters.Verify(id.Bytes()) {
			t.Fatalf("accepted %q as %s", s, id)
		}
	})
}
