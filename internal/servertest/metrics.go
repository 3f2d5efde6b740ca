package servertest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	gorilla "github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/durablego/durable"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/internal/probe"
	"github.com/durablego/durable/server"
)

// metricsOf is a server's metrics registry, served at /metrics.
type metricsOf struct {
	reg *prometheus.Registry
	url string // of the server; set by mount
}

// withMetrics returns a registry and the option that fills it.
func withMetrics() (*metricsOf, server.Option) {
	reg := prometheus.NewRegistry()
	return &metricsOf{reg: reg}, server.WithMetrics(reg)
}

// mount serves the registry at GET /metrics on e, which must be served.
func (m *metricsOf) mount(e *env) {
	e.srv.Mount("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	m.url = e.url
}

// scrape fetches /metrics over HTTP and parses it.
func (m *metricsOf) scrape(t testing.TB) families {
	t.Helper()
	res, err := (&http.Client{Timeout: 10 * time.Second}).Get(m.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", res.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// gather reads the registry directly, for a server that no longer serves.
func (m *metricsOf) gather(t testing.TB) families {
	t.Helper()
	list, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	fams := make(families, len(list))
	for _, f := range list {
		fams[f.GetName()] = f
	}
	return fams
}

type families map[string]*dto.MetricFamily

// get returns the value of the series of name whose labels include the
// given name/value pairs, summed over matches: a counter's or gauge's
// value, a histogram's sample count. A series that does not exist is 0.
func (f families) get(name string, labels ...string) float64 {
	fam := f[name]
	if fam == nil {
		return 0
	}
	total := 0.0
next:
	for _, m := range fam.GetMetric() {
		for i := 0; i < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

// metricsEnv is an env with metrics, served with /metrics mounted.
func metricsEnv(t testing.TB, d Deployment, opts ...server.Option) (*env, *metricsOf) {
	t.Helper()
	m, opt := withMetrics()
	e := newEnv(t, d, append(opts, opt)...)
	e.serve(t)
	m.mount(e)
	return e, m
}

func testMetricsCallsByCode(t *testing.T, d Deployment) {
	e, m := metricsEnv(t, d)
	ctx := context.Background()
	stub := e.probes.Get(e.probes.IDFromName("calls"))
	for range 3 {
		if _, err := stub.Add(ctx, &durabletestv1.AddRequest{Amount: 1}); err != nil {
			t.Fatal(err)
		}
	}
	// Over the network: counted the same.
	remote := durabletestv1durable.NewProbeClient(h2cClient(), e.url)
	if _, err := remote.Get(remote.IDFromName("calls")).Add(ctx, &durabletestv1.AddRequest{Amount: 1}); err != nil {
		t.Fatal(err)
	}
	// Failures, by the code the caller gets.
	if _, err := stub.Add(ctx, &durabletestv1.AddRequest{Fail: true, Code: int32(connect.CodeNotFound)}); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("Add failing with NotFound: %v", err)
	}
	if _, err := remote.Get(remote.IDFromName("calls")).Add(ctx, &durabletestv1.AddRequest{Fail: true, Code: int32(connect.CodeNotFound)}); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("remote Add failing with NotFound: %v", err)
	}
	if _, err := stub.Add(ctx, &durabletestv1.AddRequest{Panic: true}); connect.CodeOf(err) != connect.CodeInternal {
		t.Fatalf("panicking Add: %v", err)
	}
	// A request without an object header fails before reaching one.
	res, err := http.Post(e.url+"/examples.counter.v1.Counter/GetValue", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("GetValue without an ID header: %s", res.Status)
	}

	f := m.scrape(t)
	for _, c := range []struct {
		class, method, code string
		want                float64
	}{
		{"Probe", "Add", "ok", 4},
		{"Probe", "Add", "not_found", 2},
		{"Probe", "Add", "internal", 1},
		{"Counter", "GetValue", "invalid_argument", 1},
	} {
		if got := f.get("durable_calls_total", "class", c.class, "method", c.method, "code", c.code); got != c.want {
			t.Errorf("durable_calls_total{class=%q,method=%q,code=%q} = %v, want %v", c.class, c.method, c.code, got, c.want)
		}
	}
	if got := f.get("durable_calls_total", "class", "Probe", "method", "Add", "code", "unknown"); got != 0 {
		t.Errorf("unknown-code series: %v", got)
	}
	if got := f.get("durable_call_duration_seconds", "class", "Probe", "method", "Add"); got != 7 {
		t.Errorf("durable_call_duration_seconds count %v, want 7", got)
	}
	// Every Add that reached the object waited in its mailbox, however
	// briefly; Get does not count here, it was not called.
	if got := f.get("durable_call_queue_seconds", "class", "Probe"); got != 7 {
		t.Errorf("durable_call_queue_seconds count %v, want 7", got)
	}
	if got := f.get("durable_active_objects", "class", "Probe"); got != 1 {
		t.Errorf("durable_active_objects{Probe} = %v, want 1", got)
	}
	if got := f.get("durable_activations_total", "class", "Probe"); got != 1 {
		t.Errorf("durable_activations_total{Probe} = %v, want 1", got)
	}
}

func testMetricsStorageCommits(t *testing.T, d Deployment) {
	e, m := metricsEnv(t, d)
	ctx := context.Background()
	before := m.scrape(t)
	stub := e.probes.Get(e.probes.IDFromName("writer"))
	value := strings.Repeat("v", 1000)
	for i := range 3 {
		if _, err := stub.Put(ctx, &durabletestv1.PutRequest{Key: fmt.Sprint("k", i), Value: []byte(value)}); err != nil {
			t.Fatal(err)
		}
	}
	// The calls are answered only once committed: the counters are up to
	// date by then.
	after := m.scrape(t)
	if d := after.get("durable_storage_commits_total") - before.get("durable_storage_commits_total"); d < 1 || d > 3 {
		t.Errorf("commits rose by %v for 3 sequential writing calls", d)
	}
	if d := after.get("durable_storage_batches_total") - before.get("durable_storage_batches_total"); d < 1 || d > 3 {
		t.Errorf("batches rose by %v for 3 sequential writing calls", d)
	}
	if d := after.get("durable_storage_written_bytes_total") - before.get("durable_storage_written_bytes_total"); d < 3*1002 {
		t.Errorf("bytes written rose by %v, want at least %d (3 keys and values)", d, 3*1002)
	}
	// A failed call writes nothing.
	if _, err := stub.Put(ctx, &durabletestv1.PutRequest{Key: "x", Value: []byte(value), Fail: true}); err == nil {
		t.Fatal("Put with Fail succeeded")
	}
	if d := m.scrape(t).get("durable_storage_written_bytes_total") - after.get("durable_storage_written_bytes_total"); d != 0 {
		t.Errorf("a failed call wrote %v bytes", d)
	}
}

func testMetricsActivationsAndEvictions(t *testing.T, d Deployment) {
	t.Run("capacity and shutdown", func(t *testing.T) {
		e, m := metricsEnv(t, d, server.WithMaxActiveObjects(2), server.WithIdleTimeout(time.Hour))
		ctx := context.Background()
		inc := func(name string) {
			t.Helper()
			if _, err := e.counters.Get(e.counters.IDFromName(name)).Increment(ctx, &counterv1.IncrementRequest{Amount: 1}); err != nil {
				t.Fatal(err)
			}
		}
		inc("a")
		inc("b")
		f := m.scrape(t)
		if got := f.get("durable_active_objects", "class", "Counter"); got != 2 {
			t.Fatalf("active objects %v after two calls, want 2", got)
		}
		if got := f.get("durable_activations_total", "class", "Counter"); got != 2 {
			t.Fatalf("activations %v, want 2", got)
		}
		inc("c") // over the cap: the least recently used leaves
		eventually(t, "an object is evicted for capacity", func() bool {
			f := m.scrape(t)
			return f.get("durable_evictions_total", "class", "Counter", "reason", "capacity") == 1 &&
				f.get("durable_active_objects", "class", "Counter") == 2
		})
		if got := m.scrape(t).get("durable_activations_total", "class", "Counter"); got != 3 {
			t.Fatalf("activations %v, want 3", got)
		}
		e.shutdown(t)
		f = m.gather(t)
		if got := f.get("durable_evictions_total", "class", "Counter", "reason", "shutdown"); got != 2 {
			t.Fatalf("evictions at shutdown %v, want 2", got)
		}
		if got := f.get("durable_active_objects", "class", "Counter"); got != 0 {
			t.Fatalf("active objects %v after shutdown", got)
		}
	})
	t.Run("idle", func(t *testing.T) {
		e, m := metricsEnv(t, d, server.WithIdleTimeout(10*time.Millisecond))
		ctx := context.Background()
		for i := range 3 {
			if _, err := e.counters.Get(e.counters.IDFromName(fmt.Sprint("idle-", i))).Increment(ctx, &counterv1.IncrementRequest{Amount: 1}); err != nil {
				t.Fatal(err)
			}
		}
		if got := m.scrape(t).get("durable_activations_total", "class", "Counter"); got != 3 {
			t.Fatalf("activations %v, want 3", got)
		}
		eventually(t, "the idle objects are evicted", func() bool {
			f := m.scrape(t)
			return f.get("durable_evictions_total", "class", "Counter", "reason", "idle") == 3 &&
				f.get("durable_active_objects", "class", "Counter") == 0
		})
	})
}

func testMetricsMailboxDepthAndOverload(t *testing.T, d Deployment) {
	e, m := metricsEnv(t, d, server.WithMailboxSize(2))
	ctx := context.Background()
	stub := e.probes.Get(e.probes.IDFromName("busy"))
	blocked := make(chan error, 1)
	go func() {
		_, err := stub.Block(ctx, &durabletestv1.BlockRequest{})
		blocked <- err
	}()
	<-e.probe.Entered
	queued := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := stub.Add(ctx, &durabletestv1.AddRequest{Amount: 1})
			queued <- err
		}()
	}
	eventually(t, "two calls wait in the mailbox", func() bool {
		f := m.scrape(t)
		return f.get("durable_mailbox_depth", "class", "Probe") == 2 && f.get("durable_mailbox_depth_max", "class", "Probe") == 2
	})
	if _, err := stub.Add(ctx, &durabletestv1.AddRequest{Amount: 1}); !errors.Is(err, durable.ErrOverloaded) {
		t.Fatalf("a third call: %v, want ErrOverloaded", err)
	}
	e.probe.Gate <- struct{}{}
	for _, ch := range []chan error{blocked, queued, queued} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	f := m.scrape(t)
	if got := f.get("durable_mailbox_depth", "class", "Probe"); got != 0 {
		t.Errorf("mailbox depth %v once the calls ran", got)
	}
	if got := f.get("durable_calls_total", "class", "Probe", "method", "Add", "code", "resource_exhausted"); got != 1 {
		t.Errorf("overloaded calls %v, want 1", got)
	}
	if got := f.get("durable_calls_total", "class", "Probe", "method", "Add", "code", "ok"); got != 2 {
		t.Errorf("ok Add calls %v, want 2", got)
	}
	if got := f.get("durable_calls_total", "class", "Probe", "method", "Block", "code", "ok"); got != 1 {
		t.Errorf("ok Block calls %v, want 1", got)
	}
}

func testMetricsAlarms(t *testing.T, d Deployment) {
	e, m := metricsEnv(t, d, server.WithAlarmRetry(time.Millisecond))
	e.probe.Alarms = make(chan probe.AlarmRun, 1024)

	// Two failed runs, then a successful retry.
	e.probe.AlarmFailures.Store(2)
	e.alarmAt(t, "retried", time.Now())
	for range 3 {
		e.nextRun(t)
	}
	eventually(t, "three runs are counted, two of them retries", func() bool {
		f := m.scrape(t)
		return f.get("durable_alarms_fired_total", "class", "Probe") == 3 &&
			f.get("durable_alarms_retried_total", "class", "Probe") == 2 &&
			f.get("durable_calls_total", "class", "Probe", "method", "Alarm", "code", "ok") == 1 &&
			f.get("durable_calls_total", "class", "Probe", "method", "Alarm", "code", "unknown") == 2
	})

	// Failing for good: dropped after the initial run and 6 retries.
	e.probe.AlarmFailures.Store(1000)
	e.alarmAt(t, "doomed", time.Now())
	for range 7 {
		e.nextRun(t)
	}
	eventually(t, "the alarm is counted as dropped", func() bool {
		f := m.scrape(t)
		return f.get("durable_alarms_dropped_total", "class", "Probe") == 1 &&
			f.get("durable_alarms_fired_total", "class", "Probe") == 10 &&
			f.get("durable_alarms_retried_total", "class", "Probe") == 8
	})
	// The Counter class has no Alarm hook: no alarm series.
	if f := m.scrape(t); f["durable_alarms_fired_total"] != nil {
		for _, s := range f["durable_alarms_fired_total"].GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetValue() == "Counter" {
					t.Errorf("alarm series for a class without an Alarm hook")
				}
			}
		}
	}
}

func testMetricsFetch(t *testing.T, d Deployment) {
	m, opt := withMetrics()
	e, _ := newFetchEnv(t, d, opt)
	m.mount(e)
	if status, _, _ := do(t, http.MethodGet, e.url+"/objects/counter/f/echo/x", ""); status != http.StatusOK {
		t.Fatalf("echo: %d", status)
	}
	if status, _, _ := do(t, http.MethodGet, e.url+"/objects/counter/f/reject", ""); status != http.StatusTooManyRequests {
		t.Fatalf("reject: %d", status)
	}
	if status, _, _ := do(t, http.MethodGet, e.url+"/objects/counter/f/fail", ""); status != http.StatusServiceUnavailable {
		t.Fatalf("fail: %d", status)
	}
	f := m.scrape(t)
	if got := f.get("durable_calls_total", "class", "Counter", "method", "Fetch", "code", "ok"); got != 2 {
		t.Errorf("ok Fetch calls %v, want 2 (a 429 is an answer)", got)
	}
	if got := f.get("durable_calls_total", "class", "Counter", "method", "Fetch", "code", "unknown"); got != 1 {
		t.Errorf("failed Fetch calls %v, want 1 (its own 503)", got)
	}
	if got := f.get("durable_call_duration_seconds", "class", "Counter", "method", "Fetch"); got != 3 {
		t.Errorf("Fetch duration count %v, want 3", got)
	}
}

func testMetricsWebSockets(t *testing.T, d Deployment) {
	m, opt := withMetrics()
	e := newSockEnv(t, d, opt)
	m.mount(e.env)
	a := e.dial(t, "room", "")
	b := e.dial(t, "room", "")
	if got := m.scrape(t).get("durable_websockets_open"); got != 2 {
		t.Fatalf("open sockets %v, want 2", got)
	}
	if got := ask(t, a, "echo hi"); got != "hi" {
		t.Fatal(got)
	}
	eventually(t, "the message's call is counted", func() bool {
		return m.scrape(t).get("durable_calls_total", "class", "SocketProbe", "method", "WebSocketMessage", "code", "ok") == 1
	})
	b.WriteMessage(gorilla.CloseMessage, gorilla.FormatCloseMessage(gorilla.CloseNormalClosure, "bye"))
	eventually(t, "one socket is left open", func() bool {
		f := m.scrape(t)
		return f.get("durable_websockets_open") == 1 &&
			f.get("durable_calls_total", "class", "SocketProbe", "method", "WebSocketClose", "code", "ok") == 1
	})
	if got := m.scrape(t).get("durable_calls_total", "class", "SocketProbe", "method", "Fetch", "code", "ok"); got != 2 {
		t.Errorf("upgrading Fetch calls %v, want 2", got)
	}
}

func testMetricsRegistrationErrors(t *testing.T, d Deployment) {
	reg := prometheus.NewRegistry()
	as := func(name string) server.Option {
		return server.WithMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"server": name}, reg))
	}
	// Two servers share a registry, each with a label of its own.
	newEnv(t, d, as("a"))
	newEnv(t, d, as("b"))
	// A third with the label of the first would report the same series.
	_, err := newServer(t, d, as("a"))
	if err == nil || !strings.Contains(err.Error(), "metrics") {
		t.Fatalf("a second server labelled a: %v", err)
	}
	// It failed whole: nothing of it stays registered, and the registry
	// still gathers.
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}
