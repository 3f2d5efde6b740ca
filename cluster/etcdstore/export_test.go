package etcdstore

// QueuedReads is how many single-key reads wait for the request in flight.
func QueuedReads(s *Store) int {
	s.reads.mu.Lock()
	defer s.reads.mu.Unlock()
	return len(s.reads.queue)
}
