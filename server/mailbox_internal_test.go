package server

import (
	"slices"
	"testing"
)

func TestMailboxWithdrawFreesSlotsAndKeepsOrder(t *testing.T) {
	m := newMailbox[*int](3)
	v := make([]*int, 8)
	for i := range v {
		v[i] = new(int)
		*v[i] = i
	}
	for _, x := range v[:3] {
		if !m.push(x) {
			t.Fatal("push refused below the limit")
		}
	}
	if m.push(v[3]) {
		t.Fatal("push accepted past the limit")
	}
	if !m.withdraw(v[1]) || m.withdraw(v[1]) || m.len() != 2 {
		t.Fatalf("withdraw: len %d, want 2, and a second withdraw to find nothing", m.len())
	}
	// The tombstone's slot is free; pushes past the capacity compact.
	for _, x := range v[3:4] {
		if !m.push(x) {
			t.Fatal("push refused after a withdraw")
		}
	}
	if m.push(v[4]) {
		t.Fatal("push accepted past the limit after a withdraw")
	}
	x, _ := m.pop()
	m.withdraw(v[2])
	if !m.push(v[4]) || !m.push(v[5]) || m.push(v[6]) {
		t.Fatal("pushes after a pop and a withdraw")
	}
	got := []int{*x}
	for y, ok := m.pop(); ok; y, ok = m.pop() {
		got = append(got, *y)
	}
	if !slices.Equal(got, []int{0, 3, 4, 5}) || m.len() != 0 {
		t.Fatalf("popped %v, want [0 3 4 5], len %d", got, m.len())
	}
	// Withdrawing every call leaves a mailbox that counts as empty.
	m.push(v[6])
	m.push(v[7])
	m.withdraw(v[7])
	m.withdraw(v[6])
	if _, ok := m.pop(); ok || m.len() != 0 {
		t.Fatal("a mailbox of tombstones popped a call")
	}
	if got := m.drain(); len(got) != 0 {
		t.Fatalf("drain of an empty mailbox: %v", got)
	}
}

// BenchmarkMailboxWithdrawAll: a full default mailbox whose 1,024 callers
// all give up, newest first (the longest scans); per op, the whole lot.
func BenchmarkMailboxWithdrawAll(b *testing.B) {
	const n = 1024
	v := make([]*int, n)
	for i := range v {
		v[i] = new(int)
	}
	m := newMailbox[*int](n)
	b.ReportAllocs()
	for b.Loop() {
		for _, x := range v {
			m.push(x)
		}
		for i := n - 1; i >= 0; i-- {
			m.withdraw(v[i])
		}
		if _, ok := m.pop(); ok {
			b.Fatal("popped a withdrawn call")
		}
	}
}

// BenchmarkMailboxPushPop: the hot path, one call in and out.
func BenchmarkMailboxPushPop(b *testing.B) {
	m := newMailbox[*int](1024)
	x := new(int)
	b.ReportAllocs()
	for b.Loop() {
		m.push(x)
		m.pop()
	}
}
