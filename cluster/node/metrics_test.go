package node_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/durablego/durable/cluster/etcdstore"
	"github.com/durablego/durable/cluster/etcdtest"
	"github.com/durablego/durable/cluster/node"
)

// metricValue gathers reg and returns the value of the one series of
// name: a gauge's or counter's value, a histogram's sample count; -1 when
// there is no such series.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		if len(f.GetMetric()) != 1 {
			t.Fatalf("%s has %d series; want 1", name, len(f.GetMetric()))
		}
		m := f.GetMetric()[0]
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

// TestMetricsAfterAHandoff reads a node's metrics from a real registry:
// alone it owns every partition, with a lease it trusts and no fence
// rejection; once a second node joins, durable_cluster_handoff_seconds
// has one sample per partition it handed off, and the owned gauge follows.
func TestMetricsAfterAHandoff(t *testing.T) {
	ec := etcdtest.Start(t, 1)
	reg := prometheus.NewRegistry()
	first := mustStart(t, ec.Endpoints(), "m1", setup{cluster: "metrics", opts: []node.Option{node.WithRegisterer(reg)}})
	eventually(t, 30*time.Second, "the first node owns every partition", func() bool { return first.n.Owned() == etcdstore.Partitions })
	if got := metricValue(t, reg, "durable_cluster_partitions_owned"); got != etcdstore.Partitions {
		t.Fatalf("partitions owned: %v; want %d", got, etcdstore.Partitions)
	}
	if got := metricValue(t, reg, "durable_cluster_lease_remaining_seconds"); got <= 0 || got > ttl.Seconds() {
		t.Fatalf("lease remaining: %v s; want in (0, %v]", got, ttl.Seconds())
	}
	if got := metricValue(t, reg, "durable_cluster_fence_rejections_total"); got != 0 {
		t.Fatalf("fence rejections: %v; want 0", got)
	}
	if got := metricValue(t, reg, "durable_cluster_handoff_seconds"); got != 0 {
		t.Fatalf("handoffs before any: %v", got)
	}
	second := mustStart(t, ec.Endpoints(), "m2", setup{cluster: "metrics"})
	ms := []*member{first, second}
	eventually(t, 30*time.Second, "the two converge", func() bool { return converged(ms) })
	if first.h.releases() == 0 {
		t.Fatal("the first node handed nothing off to the second")
	}
	// A handoff is observed once its owner key is gone, which is when
	// the second node may take the partition: poll.
	eventually(t, 10*time.Second, "a handoff sample per partition released", func() bool {
		return metricValue(t, reg, "durable_cluster_handoff_seconds") == float64(first.h.releases())
	})
	if got, owned := metricValue(t, reg, "durable_cluster_partitions_owned"), first.n.Owned(); got != float64(owned) || owned == etcdstore.Partitions {
		t.Fatalf("partitions owned: gauge %v, node %d; want them equal and below %d", got, owned, etcdstore.Partitions)
	}
}
