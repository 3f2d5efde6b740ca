package server

import "sync"

// mailbox is an object's bounded FIFO of calls. Unlike a buffered channel
// it allocates as it fills, not up front: a channel of the default 1,024
// slots would cost 8 KiB for every object in memory, most of which never
// hold more than a call or two.
//
// A call whose caller gave up is withdrawn at once: its slot becomes a
// tombstone (the zero T, which is never queued) that no longer counts
// against the limit and that pop skips, so callers that time out behind a
// busy object do not make later ones "overloaded".
type mailbox[T comparable] struct {
	mu    sync.Mutex
	items []T // items[head:] are queued, tombstones included
	head  int
	dead  int // tombstones in items[head:]
	limit int
	// ready holds a token while the mailbox may be non-empty, so that the
	// object's goroutine can wait for calls in a select.
	ready chan struct{}
}

func newMailbox[T comparable](limit int) *mailbox[T] {
	return &mailbox[T]{limit: limit, ready: make(chan struct{}, 1)}
}

// push queues x and reports whether there was room.
func (m *mailbox[T]) push(x T) bool {
	m.mu.Lock()
	if len(m.items)-m.head-m.dead >= m.limit {
		m.mu.Unlock()
		return false
	}
	if len(m.items) == cap(m.items) && (m.head > 0 || m.dead > 0) {
		// Reuse the consumed front and the tombstones before growing.
		var zero T
		n := 0
		for _, y := range m.items[m.head:] {
			if y != zero {
				m.items[n] = y
				n++
			}
		}
		clear(m.items[n:])
		m.items, m.head, m.dead = m.items[:n], 0, 0
	}
	m.items = append(m.items, x)
	m.mu.Unlock()
	select {
	case m.ready <- struct{}{}:
	default:
	}
	return true
}

// pop takes the oldest call, if any.
func (m *mailbox[T]) pop() (T, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var zero T
	for m.head < len(m.items) {
		x := m.items[m.head]
		m.items[m.head] = zero
		m.head++
		if x == zero {
			m.dead--
		}
		if m.head == len(m.items) {
			m.items, m.head, m.dead = m.items[:0], 0, 0
		}
		if x != zero {
			return x, true
		}
	}
	return zero, false
}

// withdraw takes x out of the mailbox if it is still queued, and reports
// whether it was. It looks through the queue, which is short unless the
// object is stuck, and runs only when a caller gives up.
func (m *mailbox[T]) withdraw(x T) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	var zero T
	for i := m.head; i < len(m.items); i++ {
		if m.items[i] == x {
			m.items[i] = zero
			m.dead++
			return true
		}
	}
	return false
}

// len returns how many calls are queued, tombstones not counted.
func (m *mailbox[T]) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items) - m.head - m.dead
}

// drain takes every queued call, oldest first.
func (m *mailbox[T]) drain() []T {
	var out []T
	for x, ok := m.pop(); ok; x, ok = m.pop() {
		out = append(out, x)
	}
	return out
}
