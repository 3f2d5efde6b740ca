package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// TestGroupCoalescesOneObjectsBatches: consecutive batches of one object in
// one group commit leave the last state, and their key-value writes and
// alarms as if applied one after the other; each batch is acknowledged.
// The group is handed to commitGroup directly, so that it is one group
// whatever the scheduling.
func TestGroupCoalescesOneObjectsBatches(t *testing.T) {
	for _, n := range []int{2, 5, 40} { // both sides of the small-group scan
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			db, err := Open(filepath.Join(t.TempDir(), "objects.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			a, b := [32]byte{1}, [32]byte{2}
			acked := 0
			done := func(err error) {
				if err != nil {
					t.Errorf("batch failed: %v", err)
				}
				acked++
			}
			var group []*Batch
			lastEven := (n - 1) &^ 1 // the last batch of b that writes its state
			for i := range n {
				kv := &layer{writes: map[string]version{
					"k":                    {data: fmt.Appendf(nil, "%d", i)},
					fmt.Sprint("each-", i): {data: []byte("x")},
				}}
				if i > 0 {
					kv.writes[fmt.Sprint("each-", i-1)] = version{deleted: true}
				}
				if i == n/2 {
					kv.alarm = alarmOp{kind: alarmSet, at: int64(1000 + i)}
				}
				// Another object's batch in between, and one without a state.
				group = append(group,
					&Batch{class: "C", id: a, state: fmt.Appendf(nil, "a%d", i), writeState: true, kv: kv, done: done},
					&Batch{class: "C", id: b, state: fmt.Appendf(nil, "b%d", i), writeState: i%2 == 0, kv: &layer{}, done: done})
			}
			// Only the last state of each object is written.
			superseded := stateSuperseded(group, nil)
			for i, bt := range group {
				last := bt.id == a && i == len(group)-2 || bt.id == b && i/2 == lastEven
				if want := bt.writeState && !last; superseded[i] != want {
					t.Fatalf("batch %d (object %d, writes state %v): superseded %v, want %v", i, bt.id[0], bt.writeState, superseded[i], want)
				}
			}
			db.commitGroup(group)
			if acked != len(group) {
				t.Fatalf("%d batches acknowledged, want %d", acked, len(group))
			}
			st := db.Store("C", a)
			ctx := context.Background()
			state, _, err := st.LoadState(ctx)
			if err != nil || string(state) != fmt.Sprintf("a%d", n-1) {
				t.Fatalf("state of a = %q, %v; want the last batch's", state, err)
			}
			if state, _, _ := db.Store("C", b).LoadState(ctx); string(state) != fmt.Sprintf("b%d", lastEven) {
				t.Fatalf("state of b = %q, want b%d", state, lastEven)
			}
			got := map[string]string{}
			if err := st.b.scan(ctx, keyRange{}, 1000, func(k string, v []byte) bool { got[k] = string(v); return true }); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"k": fmt.Sprint(n - 1), fmt.Sprint("each-", n-1): "x"}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("keys = %v, want %v", got, want)
			}
			if at, ok, err := st.b.alarm(ctx); err != nil || !ok || at != int64(1000+n/2) {
				t.Fatalf("alarm = %d, %v, %v; want %d", at, ok, err, 1000+n/2)
			}
			if s := db.Stats(); s.Commits != 1 || s.Batches != uint64(len(group)) {
				t.Fatalf("stats %+v, want one commit of %d batches", s, len(group))
			}
		})
	}
}
