package websocket

// Open returns the number of sockets the hub holds across every object:
// those accepted and not yet closed. It takes the hub's lock and walks
// its objects, so it is meant for a metrics scrape, not for a hot path.
func (h *Hub) Open() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, o := range h.objects {
		n += len(o.conns)
	}
	return n
}
