package server

import "time"

// Connections returns how many connections Serve counts as open and, of
// those, idle; zero before Serve.
func Connections(s *Server) (open, idle int) {
	s.mu.RLock()
	l := s.conns
	s.mu.RUnlock()
	if l == nil {
		return 0, 0
	}
	return l.counts()
}

// StorageDescriptors is storageDescriptors, for the external tests.
func StorageDescriptors(s *Server) int { return s.storageDescriptors() }

// DescriptorsPerSQLFile is descriptorsPerSQLFile, for the external tests.
const DescriptorsPerSQLFile = descriptorsPerSQLFile

// ForwardedHeader returns the signed forwarding headers s would set on a
// request with method to path forwarded for the hops-th time, signed now,
// for the tests of the hop limit.
func ForwardedHeader(s *Server, hops int, method, path string) map[string][]string {
	return ForwardedHeaderAt(s, time.Now(), hops, method, path)
}

// ForwardedHeaderAt is ForwardedHeader signed at the time at, for the
// tests of expired signatures.
func ForwardedHeaderAt(s *Server, at time.Time, hops int, method, path string) map[string][]string {
	h := make(map[string][]string)
	s.router.setForwarded(h, hops, method, path, at)
	return h
}
