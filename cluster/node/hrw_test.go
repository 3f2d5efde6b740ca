package node

import (
	"fmt"
	"testing"

	"github.com/durablego/durable/cluster/etcdstore"
)

// TestHRWJoinMovesAboutOneNth: a fourth node takes about a quarter of the
// 1,024 partitions, every one of them from its previous owner to the new
// node (no partition moves between old nodes), within 1/N + 2%.
func TestHRWJoinMovesAboutOneNth(t *testing.T) {
	for _, n := range []int{2, 3, 4, 8} {
		var names []string
		for i := range n {
			names = append(names, fmt.Sprintf("node-%d", i))
		}
		joined := append(append([]string(nil), names...), "newcomer")
		moved := 0
		for p := range etcdstore.Partitions {
			before, after := desired(names, p), desired(joined, p)
			if before != after {
				moved++
				if after != "newcomer" {
					t.Fatalf("N=%d: partition %d moved from %s to %s, not to the new node", n, p, before, after)
				}
			}
		}
		limit := etcdstore.Partitions/(n+1) + etcdstore.Partitions*2/100
		t.Logf("N=%d→%d: %d of %d partitions moved (limit %d)", n, n+1, moved, etcdstore.Partitions, limit)
		if moved > limit || moved == 0 {
			t.Errorf("N=%d: join moved %d partitions, want 1..%d", n, moved, limit)
		}
	}
}

// TestHRWLeaveSpreads: when a node leaves, only its partitions move, and
// they spread over every remaining node.
func TestHRWLeaveSpreads(t *testing.T) {
	names := []string{"a", "b", "c", "d"}
	rest := []string{"a", "b", "c"}
	got := map[string]int{}
	for p := range etcdstore.Partitions {
		before, after := desired(names, p), desired(rest, p)
		if before != "d" && before != after {
			t.Fatalf("partition %d moved from %s, which stayed, to %s", p, before, after)
		}
		if before == "d" {
			got[after]++
		}
	}
	for _, n := range rest {
		if got[n] == 0 {
			t.Errorf("none of d's partitions went to %s: %v", n, got)
		}
	}
	t.Logf("d's partitions spread as %v", got)
}

func TestHRWEmpty(t *testing.T) {
	if d := desired(nil, 3); d != "" {
		t.Fatalf("desired of no nodes = %q", d)
	}
}
