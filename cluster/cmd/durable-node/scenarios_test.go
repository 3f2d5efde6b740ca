package main

import "testing"

// The multi-node scenarios of issue 17 need the membership node (Join,
// Leave, partition ownership) and the router (forwarded calls, 1012 on a
// move). They are named here so that they are not forgotten; each skips
// until both are merged and plugged in at run's PLUG-IN POINT.
func TestScenarioMultiNode(t *testing.T) {
	for _, name := range []string{
		"ThreeNodesKill9", "SIGSTOPPastLease", "SIGTERMLeave", "FourthNodeJoins",
		"CrashedNodeRestarts", "EtcdLeaderKilled", "EtcdQuorumLost10s",
	} {
		t.Run(name, func(t *testing.T) {
			t.Skip("needs the membership node and the router (issue 17): not merged yet")
		})
	}
}
