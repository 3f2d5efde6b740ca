// Copies of helpers of the tests that moved to internal/servertest, for the
// tests and benchmarks that stay here.

package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/internal/probe"
	"github.com/durablego/durable/server"
	gorilla "github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func (e *env) schedule(t testing.TB, name string, req *durabletestv1.ScheduleRequest) (time.Time, error) {
	t.Helper()
	r, err := e.probes.Get(e.probes.IDFromName(name)).Schedule(context.Background(), req)
	if err != nil {
		return time.Time{}, err
	}
	if r.GetAtMs() == 0 {
		return time.Time{}, nil
	}
	return time.UnixMilli(r.GetAtMs()), nil
}

func (e *env) alarmAt(t testing.TB, name string, at time.Time) {
	t.Helper()
	if _, err := e.schedule(t, name, &durabletestv1.ScheduleRequest{AtMs: at.UnixMilli()}); err != nil {
		t.Fatal(err)
	}
}

// nextRun waits for the next alarm run, failing after a deadline.
func (e *env) nextRun(t testing.TB) probe.AlarmRun {
	t.Helper()
	select {
	case r := <-e.probe.Alarms:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("no alarm ran within 20s")
		return probe.AlarmRun{}
	}
}

func (e *env) probeState(t testing.TB, name string) *durabletestv1.ProbeState {
	t.Helper()
	r, err := e.probes.Get(e.probes.IDFromName(name)).Get(context.Background(), &durabletestv1.GetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return r.GetState()
}

// sockEnv is an env serving the SocketProbe class at /objects/socket-probe/.
type sockEnv struct {
	*env
	sp *probe.SocketProbe
	ns *server.Namespace[*durabletestv1.ProbeState]
}

func newSockEnv(t testing.TB, opts ...server.Option) *sockEnv {
	t.Helper()
	e := newEnv(t, opts...)
	sp := &probe.SocketProbe{Closed: make(chan probe.SocketClose, 64), Errors: make(chan error, 64)}
	ns, err := server.Register[*durabletestv1.ProbeState](e.srv, server.Class{Name: "SocketProbe", Segment: "socket-probe"}, sp)
	if err != nil {
		t.Fatal(err)
	}
	e.serve(t)
	return &sockEnv{env: e, sp: sp, ns: ns}
}

// dial opens a socket on the SocketProbe named name with the query q.
func (e *sockEnv) dial(t testing.TB, name, q string) *gorilla.Conn {
	t.Helper()
	c, res, err := e.tryDial(name, q)
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		t.Fatalf("dial %s?%s: %v (status %d)", name, q, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (e *sockEnv) tryDial(name, q string) (*gorilla.Conn, *http.Response, error) {
	return gorilla.DefaultDialer.Dial(e.wsURL(name, q), nil)
}

// wsURL is the WebSocket URL of the SocketProbe named name, with the query q.
func (e *sockEnv) wsURL(name, q string) string {
	return "ws" + strings.TrimPrefix(e.url, "http") + "/objects/socket-probe/" + url.PathEscape(name) + "/?" + q
}

// nextClose waits for the next WebSocketClose call, failing after a
// deadline.
func (e *sockEnv) nextClose(t testing.TB) probe.SocketClose {
	t.Helper()
	select {
	case ev := <-e.sp.Closed:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no close event")
		return probe.SocketClose{}
	}
}

func send(t testing.TB, c *gorilla.Conn, text string) {
	t.Helper()
	if err := c.WriteMessage(gorilla.TextMessage, []byte(text)); err != nil {
		t.Fatalf("send %q: %v", text, err)
	}
}

func recv(t testing.TB, c *gorilla.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return string(b)
}

// quiet asserts that nothing arrived on c: the answer to an echo, which
// goes out after everything committed before it, comes first. (A read
// deadline would not do: a timed-out gorilla connection is broken.)
func quiet(t testing.TB, c *gorilla.Conn) {
	t.Helper()
	if got := ask(t, c, "echo --"); got != "--" {
		t.Fatalf("unexpected message %q", got)
	}
}

func ask(t testing.TB, c *gorilla.Conn, text string) string {
	t.Helper()
	send(t, c, text)
	return recv(t, c)
}

// gzipBomb returns mib concatenated gzip members of 1 MiB of zeros each:
// a body that inflates to mib MiB (gzip readers read every member).
func gzipBomb(mib int) []byte {
	var member bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
	zw.Write(make([]byte, 1<<20))
	zw.Close()
	return bytes.Repeat(member.Bytes(), mib)
}

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
