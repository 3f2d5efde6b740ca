package server

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
)

// WithMetrics registers the server's Prometheus collectors with reg, and
// has the server keep the figures they report. Off by default, at no cost
// on any path: without it the server measures nothing.
//
// Serve them with promhttp.HandlerFor on the Registry behind reg, mounted
// on the server (srv.Mount("GET /metrics", ...)) or on another listener.
// One Registerer holds the collectors of one server: New fails with the
// registration error when reg already holds them. To register several
// servers in one registry, wrap reg with a distinct label for each
// (prometheus.WrapRegistererWith).
// The library never registers anything on prometheus.DefaultRegisterer of
// its own accord; pass it explicitly if that is where they belong.
//
// Counters and histograms, updated as calls run:
//
//   - durable_calls_total{class, method, code}: calls that finished, by
//     outcome: "ok", or the Connect code the caller got ("not_found",
//     "resource_exhausted" for a full mailbox, "unavailable" during
//     shutdown, ...). method is the RPC's name, or "Fetch", "Alarm",
//     "WebSocketMessage", "WebSocketClose" or "WebSocketError" for the
//     hooks. A Fetch counts as "ok" whatever status below 500 it answered;
//     a 5xx answer of its own counts as "unknown".
//   - durable_call_duration_seconds{class, method}: from the call's
//     arrival to its answer, once its writes are durable: mailbox wait,
//     run and group commit.
//   - durable_call_queue_seconds{class}: how long calls waited in their
//     object's mailbox before running.
//   - durable_activations_total{class}: objects brought into memory.
//   - durable_evictions_total{class, reason}: objects that left memory,
//     because they were "idle" (WithIdleTimeout), evicted for "capacity"
//     (WithMaxActiveObjects), at "shutdown", because activation
//     "failed", or "reset" after a call overran its time limit while
//     ignoring its context (WithCallTimeout; its goroutine is leaked until
//     the call returns).
//   - durable_forwarded_calls_total{outcome}, with a placement (cluster
//     mode): calls this node sent to the node that serves their object,
//     forwarded requests and in-process calls alike, by outcome: "ok" (the
//     owner answered, whatever it answered: the call's own outcome is in
//     the owner's durable_calls_total), "local" (retried here, the object
//     having come back), "not_owner" (the nodes disagreed on the owner),
//     "failed" (no node answered) or "canceled" (the caller left first);
//     durable_forward_retries_total: those sent again after a not-owner
//     answer or a refused connection.
//   - durable_alarms_fired_total{class}: runs of Alarm hooks, retries
//     included; durable_alarms_retried_total{class}: the runs that were
//     retries; durable_alarms_dropped_total{class}: alarms given up after
//     their last retry failed.
//
// Gauges and counters read when scraped, from state the server keeps
// anyway:
//
//   - durable_active_objects{class}: objects in memory.
//   - durable_mailbox_depth{class}: calls waiting in the mailboxes of the
//     class's objects, not counting those running;
//     durable_mailbox_depth_max{class}: the longest of those mailboxes.
//   - durable_alarms_pending: alarms the scheduler holds in memory.
//   - durable_websockets_open: WebSockets open across objects.
//   - durable_storage_commits_total, durable_storage_batches_total,
//     durable_storage_written_bytes_total: SQLite transactions committed
//     to the node database (group commits), the object batches they held,
//     and the bytes of states, keys and values they wrote. The SQL files
//     of classes declared with sql: true commit on their own and are not
//     counted.
//
// The per-call cost is a few atomic additions and three clock reads: the
// label children of each class and method are resolved once.
func WithMetrics(reg prometheus.Registerer) Option {
	return func(o *options) { o.metrics = reg }
}

// callBuckets are the bounds of the call latency histograms, in seconds:
// from the tens of microseconds a hot in-process call takes to the
// seconds of a call that waits on others.
var callBuckets = []float64{
	25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3,
	1, 2.5, 5, 10,
}

// Why an object left memory: the reason label of durable_evictions_total.
type evictReason int

const (
	evictIdle evictReason = iota
	evictCapacity
	evictShutdown
	evictFailed
	evictReset
	evictReasons
)

var evictReasonNames = [evictReasons]string{"idle", "capacity", "shutdown", "failed", "reset"}

// metrics is the server's collectors, when WithMetrics is set.
type metrics struct {
	calls       *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	queue       *prometheus.HistogramVec
	activations *prometheus.CounterVec
	evictions   *prometheus.CounterVec
	fired       *prometheus.CounterVec
	retried     *prometheus.CounterVec
	dropped     *prometheus.CounterVec
	forward     *forwardMetrics // nil without a placement
}

func newMetrics(s *Server, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "durable_calls_total",
			Help: "Calls to objects that finished, by class, method and outcome: ok or the Connect code.",
		}, []string{"class", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "durable_call_duration_seconds",
			Help:    "Time from a call's arrival to its answer once its writes are durable: mailbox wait, run and commit.",
			Buckets: callBuckets,
		}, []string{"class", "method"}),
		queue: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "durable_call_queue_seconds",
			Help:    "Time calls waited in their object's mailbox before running.",
			Buckets: callBuckets,
		}, []string{"class"}),
		activations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "durable_activations_total",
			Help: "Objects brought into memory.",
		}, []string{"class"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "durable_evictions_total",
			Help: "Objects that left memory, by reason: idle, capacity, shutdown or failed (activation).",
		}, []string{"class", "reason"}),
		fired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "durable_alarms_fired_total",
			Help: "Runs of Alarm hooks, retries included.",
		}, []string{"class"}),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "durable_alarms_retried_total",
			Help: "Runs of Alarm hooks that retried a failed run.",
		}, []string{"class"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "durable_alarms_dropped_total",
			Help: "Alarms given up after their last retry failed.",
		}, []string{"class"}),
	}
	collectors := []prometheus.Collector{m.calls, m.duration, m.queue, m.activations, m.evictions,
		m.fired, m.retried, m.dropped, newStateCollector(s)}
	if s.router != nil {
		var more []prometheus.Collector
		m.forward, more = newForwardMetrics()
		collectors = append(collectors, more...)
	}
	for i, c := range collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range collectors[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("server: registering metrics: %w", err)
		}
	}
	return m, nil
}

// class returns the metrics of one class, nil when metrics are off.
// Series appear as they are first used, except the activations of every
// class and, for a class with an Alarm hook (alarms), its alarm counters.
func (m *metrics) class(name string, alarms bool) *classMetrics {
	if m == nil {
		return nil
	}
	cm := &classMetrics{
		m:           m,
		class:       name,
		activations: m.activations.WithLabelValues(name),
	}
	if alarms {
		cm.fired = m.fired.WithLabelValues(name)
		cm.retried = m.retried.WithLabelValues(name)
		cm.dropped = m.dropped.WithLabelValues(name)
	}
	cm.methods.Store(&map[string]*methodMetrics{})
	return cm
}

// classMetrics is the label children of one class. Its methods are safe to
// call on nil (metrics off) and do nothing then.
type classMetrics struct {
	m     *metrics
	class string

	activations prometheus.Counter
	evictions   [evictReasons]atomic.Pointer[prometheus.Counter] // each once used
	fired       prometheus.Counter                               // the alarm counters: nil
	retried     prometheus.Counter                               // for a class without
	dropped     prometheus.Counter                               // an Alarm hook

	// methods is copied on write, so that the lookup of every call is a
	// plain map read, without a lock and without converting the name to
	// an interface (which sync.Map would, allocating).
	methods atomic.Pointer[map[string]*methodMetrics]
	mu      sync.Mutex // serializes writers of methods
}

// method returns the metrics of one method, creating its series on first
// use; nil when metrics are off.
func (cm *classMetrics) method(name string) *methodMetrics {
	if cm == nil {
		return nil
	}
	if mm := (*cm.methods.Load())[name]; mm != nil {
		return mm
	}
	cm.mu.Lock()
	defer cm.mu.Unlock()
	old := *cm.methods.Load()
	if mm := old[name]; mm != nil {
		return mm
	}
	mm := &methodMetrics{
		class:    cm,
		name:     name,
		ok:       cm.m.calls.WithLabelValues(cm.class, name, "ok"),
		duration: cm.m.duration.WithLabelValues(cm.class, name),
		queue:    cm.m.queue.WithLabelValues(cm.class),
	}
	next := make(map[string]*methodMetrics, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[name] = mm
	cm.methods.Store(&next)
	return mm
}

func (cm *classMetrics) activated() {
	if cm != nil {
		cm.activations.Inc()
	}
}

func (cm *classMetrics) evicted(r evictReason) {
	if cm != nil {
		child(&cm.evictions[r], cm.m.evictions, cm.class, evictReasonNames[r]).Inc()
	}
}

// alarmFired counts a run of the class's Alarm hook.
func (cm *classMetrics) alarmFired(retry int) {
	if cm == nil || cm.fired == nil {
		return
	}
	cm.fired.Inc()
	if retry > 0 {
		cm.retried.Inc()
	}
}

func (cm *classMetrics) alarmDropped() {
	if cm != nil && cm.dropped != nil {
		cm.dropped.Inc()
	}
}

// child returns the counter cached in p, resolving it in vec with labels
// on first use. Racing first uses resolve the same child.
func child(p *atomic.Pointer[prometheus.Counter], vec *prometheus.CounterVec, labels ...string) prometheus.Counter {
	if c := p.Load(); c != nil {
		return *c
	}
	c := vec.WithLabelValues(labels...)
	p.Store(&c)
	return c
}

// methodMetrics is the label children of one method of a class.
type methodMetrics struct {
	class    *classMetrics
	name     string
	ok       prometheus.Counter
	duration prometheus.Observer
	queue    prometheus.Observer // the class's mailbox wait
	// failed holds the counter of each Connect code once seen; the series
	// of codes that never happen are not created.
	failed [connect.CodeUnauthenticated + 1]atomic.Pointer[prometheus.Counter]
}

// done records a call that arrived at start and ended with err.
func (mm *methodMetrics) done(start time.Time, err error) {
	var code connect.Code
	if err != nil {
		code = codeOf(err)
	}
	mm.doneCode(start, code)
}

// doneCode records a call that arrived at start and ended with code, 0
// for success.
func (mm *methodMetrics) doneCode(start time.Time, code connect.Code) {
	mm.duration.Observe(time.Since(start).Seconds())
	if code == 0 {
		mm.ok.Inc()
		return
	}
	if int(code) >= len(mm.failed) {
		code = connect.CodeUnknown
	}
	child(&mm.failed[code], mm.class.m.calls, mm.class.class, mm.name, code.String()).Inc()
}

// queued records how long c waited in its mailbox; the object's goroutine
// calls it when c starts to run.
func (c *call[S]) queued() {
	if c.queue != nil {
		c.queue.Observe(time.Since(c.arrived).Seconds())
	}
}

// stateCollector reports, when scraped, figures the server keeps anyway:
// objects in memory, mailbox depths, pending alarms, open sockets and the
// node database's commits.
type stateCollector struct {
	s *Server

	active, depth, depthMax, pending, sockets, commits, batches, bytes *prometheus.Desc
}

func newStateCollector(s *Server) *stateCollector {
	class := []string{"class"}
	return &stateCollector{
		s:        s,
		active:   prometheus.NewDesc("durable_active_objects", "Objects in memory.", class, nil),
		depth:    prometheus.NewDesc("durable_mailbox_depth", "Calls waiting in the mailboxes of the class's objects, not counting those running.", class, nil),
		depthMax: prometheus.NewDesc("durable_mailbox_depth_max", "Calls waiting in the longest mailbox of the class.", class, nil),
		pending:  prometheus.NewDesc("durable_alarms_pending", "Alarms the scheduler holds in memory: those due soon.", nil, nil),
		sockets:  prometheus.NewDesc("durable_websockets_open", "WebSockets open, across objects.", nil, nil),
		commits:  prometheus.NewDesc("durable_storage_commits_total", "Transactions committed to the node database: group commits.", nil, nil),
		batches:  prometheus.NewDesc("durable_storage_batches_total", "Object batches committed to the node database.", nil, nil),
		bytes:    prometheus.NewDesc("durable_storage_written_bytes_total", "Bytes of states, keys and values committed to the node database.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.active, c.depth, c.depthMax, c.pending, c.sockets, c.commits, c.batches, c.bytes} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	s.mu.RLock()
	classes := make(map[string]registeredClass, len(s.classes))
	for name, ns := range s.classes {
		classes[name] = ns
	}
	s.mu.RUnlock()
	for name, ns := range classes {
		active, depth, depthMax := ns.mailboxes()
		ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(active), name)
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(depth), name)
		ch <- prometheus.MustNewConstMetric(c.depthMax, prometheus.GaugeValue, float64(depthMax), name)
	}
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(s.PendingAlarms()))
	ch <- prometheus.MustNewConstMetric(c.sockets, prometheus.GaugeValue, float64(s.sockets.Open()))
	st := s.db.Stats()
	ch <- prometheus.MustNewConstMetric(c.commits, prometheus.CounterValue, float64(st.Commits))
	ch <- prometheus.MustNewConstMetric(c.batches, prometheus.CounterValue, float64(st.Batches))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(st.Bytes))
}

// mailboxes returns the objects of the class in memory, the calls waiting
// in their mailboxes, and the longest mailbox.
func (n *Namespace[S]) mailboxes() (active, depth, depthMax int) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, a := range n.actors {
		q := a.mailbox.len()
		depth += q
		depthMax = max(depthMax, q)
	}
	return len(n.actors), depth, depthMax
}
