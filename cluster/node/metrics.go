package node

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	fence   prometheus.Counter
	handoff prometheus.Histogram
}

// newMetrics creates the node's metrics, registered with r when it is not
// nil (WithRegisterer).
func newMetrics(n *Node, r prometheus.Registerer) *metrics {
	labels := prometheus.Labels{"node": n.cfg.Name}
	m := &metrics{
		fence: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "durable_cluster_fence_rejections_total", ConstLabels: labels,
			Help: "Partitions this node lost because a commit's fence failed: another node had taken them.",
		}),
		handoff: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "durable_cluster_handoff_seconds", ConstLabels: labels,
			Help:    "Time to hand one partition off: drain its objects, commit, release its owner key.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}),
	}
	if r == nil {
		return m
	}
	owned := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "durable_cluster_partitions_owned", ConstLabels: labels,
		Help: "Partitions this node owns (holds the fence token of).",
	}, func() float64 { return float64(n.Owned()) })
	lease := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "durable_cluster_lease_remaining_seconds", ConstLabels: labels,
		Help: "How long the node still trusts its lease: at or under zero it is fenced and serves nothing.",
	}, func() float64 { return n.st.LeaseRemaining().Seconds() })
	r.MustRegister(m.fence, m.handoff, owned, lease)
	return m
}
