package main

import (
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/durablego/durable/durabletest"
	"github.com/durablego/durable/examples/analytics"
	"github.com/durablego/durable/examples/counter"
	"github.com/durablego/durable/gen/examples/analytics/v1/analyticsv1durable"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/server"
)

// TestMain lets this test binary stand in for the durable command when
// "durable bench" runs itself as the bare handler's child process.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "bench" {
		os.Exit(run(context.Background(), &env{stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// startServer serves the example classes the load command calls, Counter
// and Analytics, with /metrics, on a loopback port, as the example server
// does, and returns its URL.
func startServer(t *testing.T) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ts := durabletest.New(t, server.WithMetrics(reg))
	ts.Mount("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if _, err := counterv1durable.RegisterCounter(ts.Server, counter.Counter{}); err != nil {
		t.Fatal(err)
	}
	if _, err := analyticsv1durable.RegisterAnalytics(ts.Server, analytics.Analytics{}); err != nil {
		t.Fatal(err)
	}
	return ts.URL()
}

var benchRow = regexp.MustCompile(`(?m)^\s*(\w+)\s+(h1|h2c)\s+(\d+)\s+(\d+)\s.*\s(\S+)\s+(\S+)\s+(\d+)\s*$`)

// TestBench runs the load command briefly against a real server, every
// workload over both protocols and the bare handler in its child process:
// each row has calls, none failed, the server's CPU per call is read from
// its /metrics, and the workloads carry their ratio to the bare handler.
func TestBench(t *testing.T) {
	url := startServer(t)
	code, out, errOut := runCmd(t, "bench", "-d", "300ms", "-warmup", "50ms", "-n", "300", "-c", "4", "-h2c-conns", "2", url)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	rows := benchRow.FindAllStringSubmatch(out, -1)
	seen := map[string]bool{}
	for _, r := range rows {
		name, proto, cpu, ratio := r[1], r[2], r[5], r[6]
		calls, _ := strconv.Atoi(r[3])
		if errs, _ := strconv.Atoi(r[7]); calls == 0 || calls > 300 || errs != 0 {
			t.Errorf("%s over %s: %d calls (want 1 to -n 300), %d errors", name, proto, calls, errs)
		}
		if !strings.HasSuffix(cpu, "µs") {
			t.Errorf("%s over %s: CPU per call %q, want it measured", name, proto, cpu)
		}
		if !strings.HasSuffix(ratio, "%") {
			t.Errorf("%s over %s: ratio to bare %q, want a percentage", name, proto, ratio)
		}
		seen[name+"/"+proto] = true
	}
	for _, w := range []string{"bare", "increment", "newsql", "hotsql"} {
		for _, p := range []string{"h1", "h2c"} {
			if !seen[w+"/"+p] {
				t.Errorf("no row for %s over %s in:\n%s", w, p, out)
			}
		}
	}
}

// TestBenchRefusesBadInput: a URL off loopback, or that is not http, an
// unknown workload or protocol, and bounds out of range are refused before
// anything is sent.
func TestBenchRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"http://192.0.2.1:8080"}, "not a loopback address"},
		{[]string{"https://127.0.0.1:8080"}, "want http://host:port"},
		{[]string{"-workloads", "increment,frob", "http://127.0.0.1:1"}, `unknown workload "frob"`},
		{[]string{"-protocols", "h3", "http://127.0.0.1:1"}, `"h3" is neither h1 nor h2c`},
		{[]string{"-c", "0", "http://127.0.0.1:1"}, "want 1 to 10000 callers"},
		{[]string{"-c", "4", "-h2c-conns", "5", "http://127.0.0.1:1"}, "want 1 to -c connections"},
		{[]string{"-d", "11m", "http://127.0.0.1:1"}, "at most 10m"},
		{[]string{"-n", "0", "http://127.0.0.1:1"}, "want 1 to 100000000 calls"},
	} {
		code, _, errOut := runCmd(t, append([]string{"bench"}, tc.args...)...)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 1 and %q", tc.args, code, errOut, tc.want)
		}
	}
	if code, _, errOut := runCmd(t, "bench"); code != 2 || !strings.Contains(errOut, "usage: durable bench") {
		t.Errorf("no URL: exit %d, stderr %q", code, errOut)
	}
}
