package engine

import "testing"

// TestEveryRefusedSchemaIsChecked: no statement the sandbox refuses may
// take mayReachDurable's way around the check that follows a schema
// change, even in a database that tolerates nothing; a CREATE TABLE of
// the object's own does.
func TestEveryRefusedSchemaIsChecked(t *testing.T) {
	for _, q := range RefusedSchema {
		if !mayReachDurable(map[string]bool{}, q) {
			t.Errorf("mayReachDurable(%q) = false: the schema check would be skipped", q)
		}
	}
	if mayReachDurable(map[string]bool{}, `CREATE TABLE events (name TEXT, at INTEGER)`) {
		t.Error("an object's own CREATE TABLE is checked: the fast path never runs")
	}
	if !mayReachDurable(map[string]bool{"view v refers to Durable's tables (_durable_*)": true}, `DROP VIEW v`) {
		t.Error("a DROP in a database that tolerates a view is not checked: the view stays tolerated")
	}
}
