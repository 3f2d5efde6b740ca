package server

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/emptypb"
)

// BenchmarkMetricsPerCall is what WithMetrics adds to each call, alone:
// the method's lookup, the clock reads and the counter and histogram
// updates of invoke and of the object's goroutine, from parallel callers
// of one method as on a hot object.
func BenchmarkMetricsPerCall(b *testing.B) {
	m, err := newMetrics(&Server{}, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	cm := m.class("Counter", false)
	cm.method("Increment")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mm := cm.method("Increment")
			c := call[*emptypb.Empty]{arrived: time.Now(), queue: mm.queue}
			c.queued()
			mm.done(c.arrived, nil)
		}
	})
}
