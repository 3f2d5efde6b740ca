package node

import "github.com/cespare/xxhash/v2"

// score is partition p's rendezvous weight for the node name: xxhash of
// the name and the partition's two bytes. Every node computes the same.
func score(name string, p int) uint64 {
	var d xxhash.Digest
	d.Reset()
	d.WriteString(name)
	d.Write([]byte{0, byte(p >> 8), byte(p)})
	return d.Sum64()
}

// desired returns the node of names with the highest score for p (ties to
// the smaller name), or "" when names is empty. A node joining takes from
// each other node only the partitions it now scores highest on, about 1/N;
// one leaving spreads each of its partitions to that partition's next
// choice.
func desired(names []string, p int) string {
	var best string
	var top uint64
	for _, n := range names {
		if s := score(n, p); best == "" || s > top || (s == top && n < best) {
			best, top = n, s
		}
	}
	return best
}
