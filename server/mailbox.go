package server

import "sync"

// mailbox is an object's bounded FIFO of calls. Unlike a buffered channel
// it allocates as it fills, not up front: a channel of the default 1,024
// slots would cost 8 KiB for every object in memory, most of which never
// hold more than a call or two.
type mailbox[T any] struct {
	mu    sync.Mutex
	items []T // items[head:] are queued
	head  int
	limit int
	// ready holds a token while the mailbox may be non-empty, so that the
	// object's goroutine can wait for calls in a select.
	ready chan struct{}
}

func newMailbox[T any](limit int) *mailbox[T] {
	return &mailbox[T]{limit: limit, ready: make(chan struct{}, 1)}
}

// push queues x and reports whether there was room.
func (m *mailbox[T]) push(x T) bool {
	m.mu.Lock()
	if len(m.items)-m.head >= m.limit {
		m.mu.Unlock()
		return false
	}
	if m.head > 0 && len(m.items) == cap(m.items) {
		// Reuse the consumed front before growing.
		n := copy(m.items, m.items[m.head:])
		clear(m.items[n:])
		m.items, m.head = m.items[:n], 0
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
	if m.head == len(m.items) {
		return zero, false
	}
	x := m.items[m.head]
	m.items[m.head] = zero
	m.head++
	if m.head == len(m.items) {
		m.items, m.head = m.items[:0], 0
	}
	return x, true
}

// len returns how many calls are queued.
func (m *mailbox[T]) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items) - m.head
}
