package durable_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/durablego/durable"
)

func BenchmarkIDFromName(b *testing.B) {
	s := durable.NewIDSpace("Counter", []byte("0123456789abcdef0123456789abcdef"))
	b.ReportAllocs()
	for b.Loop() {
		_ = s.FromName("user-123")
	}
}

func BenchmarkIDVerify(b *testing.B) {
	s := durable.NewIDSpace("Counter", []byte("0123456789abcdef0123456789abcdef"))
	raw := s.FromName("user-123").Bytes()
	b.ReportAllocs()
	for b.Loop() {
		if !s.Verify(raw) {
			b.Fatal("not verified")
		}
	}
}

// TestIDSpaceConcurrentUse derives and verifies IDs from many goroutines
// at once on one space (its HMACs are pooled and reused) and checks every
// result against a space used by one goroutine only.
func TestIDSpaceConcurrentUse(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	shared, alone := durable.NewIDSpace("Counter", secret), durable.NewIDSpace("Counter", secret)
	want := make(map[string][32]byte)
	for i := range 64 {
		name := fmt.Sprint("user-", i)
		want[name] = alone.FromName(name).Bytes()
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 64 * 20 {
				name := fmt.Sprint("user-", (i+g)%64)
				raw := shared.FromName(name).Bytes()
				if raw != want[name] || !shared.Verify(raw) {
					t.Errorf("FromName(%q) = %x, want %x (verified: %v)", name, raw, want[name], shared.Verify(raw))
					return
				}
			}
		})
	}
	wg.Wait()
}
