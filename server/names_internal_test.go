package server

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/durablego/durable"
)

// TestNameCacheMatchesDerivation: whatever the table holds (hits, names
// that share a slot, names too long to cache, writers racing on slots),
// the cached ID is the one the ID space derives.
func TestNameCacheMatchesDerivation(t *testing.T) {
	space := durable.NewIDSpace("Counter", []byte("0123456789abcdef0123456789abcdef"))
	other := durable.NewIDSpace("Other", []byte("0123456789abcdef0123456789abcdef"))
	c := newNameCache()
	names := []string{"", "hot", strings.Repeat("x", maxCachedName), strings.Repeat("y", maxCachedName+1)}
	for i := range 4 * nameSlots { // more names than slots: collisions
		names = append(names, fmt.Sprint("user-", i))
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for round := range 3 {
				for i, name := range names {
					if (i+g+round)%3 == 0 {
						continue
					}
					got, want := c.fromName(space, name), space.FromName(name)
					if got != want || got.Name() != name || got.Class() != "Counter" {
						t.Errorf("name %q: got %v (%q), want %v", name, got, got.Name(), want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	// Another class's table is another table: the same name, another ID.
	if c2 := newNameCache(); c2.fromName(other, "hot") == c.fromName(space, "hot") {
		t.Error("two classes derived the same ID for one name")
	}
}
