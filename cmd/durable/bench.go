package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// The load command: "durable bench URL" runs a few fixed workloads against
// a running Durable server (the example server's classes) over HTTP/1.1
// and h2c, and the same requests against a bare net/http handler it starts
// in a child process, the ceiling of the transport on this machine. It
// prints each workload's rate, latency percentiles, the server's CPU per
// call (from its /metrics, when it has process_cpu_seconds_total) and the
// ratio to the bare handler.

// benchWorkload is one kind of call the load command sends.
type benchWorkload struct {
	name, summary string
	path          string
	body          string
	// object names the object of caller c's i-th call ("" for none).
	object func(run string, c, i int) string
}

// benchWorkloads are the workloads, in the order they run.
var benchWorkloads = []benchWorkload{
	{
		name: "increment", summary: "Counter.Increment on one hot object",
		path: "/examples.counter.v1.Counter/Increment", body: `{"amount":1}`,
		object: func(run string, _, _ int) string { return "bench-hot-" + run },
	},
	{
		name: "newsql", summary: "Analytics.TrackEvent, each call the first write of a new SQL object",
		path: "/examples.analytics.v1.Analytics/TrackEvent", body: `{"name":"click"}`,
		object: func(run string, c, i int) string { return fmt.Sprintf("bench-new-%s-%d-%d", run, c, i) },
	},
	{
		name: "hotsql", summary: "Analytics.TrackEvent on one hot SQL object (an INSERT each)",
		path: "/examples.analytics.v1.Analytics/TrackEvent", body: `{"name":"click"}`,
		object: func(run string, _, _ int) string { return "bench-hotsql-" + run },
	},
}

// bareWorkload is what the bare handler is sent: a POST of a small JSON
// body, read whole and answered with a small JSON body, as Increment is.
var bareWorkload = benchWorkload{name: "bare", path: "/bare", body: `{"amount":1}`}

// benchConfig is what the flags of the load command set.
type benchConfig struct {
	target      *url.URL
	workloads   []benchWorkload
	protocols   []string // "h1", "h2c"
	clients     int
	conns       int // h2c connections
	duration    time.Duration
	warmup      time.Duration
	maxCalls    int
	bare        bool
	allowRemote bool
}

// benchResult is what one workload over one protocol measured.
type benchResult struct {
	workload, protocol string
	calls, errors      int
	firstErr           error
	elapsed            time.Duration
	latencies          []time.Duration // sorted
	cpu                time.Duration   // the server's, or -1 unknown
}

func (r *benchResult) rate() float64 { return float64(r.calls) / r.elapsed.Seconds() }

func (r *benchResult) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(r.latencies)))) - 1
	return r.latencies[max(0, min(i, len(r.latencies)-1))]
}

// bareChildFlag is the flag by which benchBare runs this program as the
// bare server of the ceiling.
const bareChildFlag = "serve-bare"

func runBench(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	var cfg benchConfig
	names := make([]string, len(benchWorkloads))
	help := "comma-separated workloads:"
	for i, w := range benchWorkloads {
		names[i] = w.name
		help += fmt.Sprintf("\n%s: %s", w.name, w.summary)
	}
	workloads := fs.String("workloads", strings.Join(names, ","), help)
	protocols := fs.String("protocols", "h1,h2c", "comma-separated protocols: h1 (HTTP/1.1, a connection per client), h2c (HTTP/2 without TLS)")
	fs.IntVar(&cfg.clients, "c", 32, "concurrent callers")
	fs.IntVar(&cfg.conns, "h2c-conns", 4, "HTTP/2 connections the h2c callers share")
	fs.DurationVar(&cfg.duration, "d", 5*time.Second, "how long each workload runs, after its warm-up")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "calls sent and not counted before each workload")
	fs.IntVar(&cfg.maxCalls, "n", 1_000_000, "the most calls a workload sends, whatever its duration")
	fs.BoolVar(&cfg.bare, "bare", true, "measure a bare net/http handler too, in a child process, for the ceiling")
	fs.BoolVar(&cfg.allowRemote, "allow-remote", false, "allow a URL whose host is not a loopback address")
	serveBare := fs.String(bareChildFlag, "", "(internal) serve the bare handler on this address for a parent bench")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *serveBare != "" {
		return serveBareHandler(ctx, e, *serveBare)
	}
	if fs.NArg() != 1 {
		return errUsage
	}
	var err error
	if cfg.target, err = parseTarget(fs.Arg(0), cfg.allowRemote); err != nil {
		return err
	}
	if cfg.workloads, err = pickWorkloads(*workloads); err != nil {
		return err
	}
	for p := range strings.SplitSeq(*protocols, ",") {
		if p != "h1" && p != "h2c" {
			return fmt.Errorf("-protocols: %q is neither h1 nor h2c", p)
		}
		cfg.protocols = append(cfg.protocols, p)
	}
	switch {
	case cfg.clients < 1 || cfg.clients > 10_000:
		return fmt.Errorf("-c %d: want 1 to 10000 callers", cfg.clients)
	case cfg.conns < 1 || cfg.conns > cfg.clients:
		return fmt.Errorf("-h2c-conns %d: want 1 to -c connections", cfg.conns)
	case cfg.duration <= 0 || cfg.duration > 10*time.Minute:
		return fmt.Errorf("-d %v: want more than 0 and at most 10m", cfg.duration)
	case cfg.warmup < 0 || cfg.warmup > time.Minute:
		return fmt.Errorf("-warmup %v: want 0 to 1m", cfg.warmup)
	case cfg.maxCalls < 1 || cfg.maxCalls > 100_000_000:
		return fmt.Errorf("-n %d: want 1 to 100000000 calls", cfg.maxCalls)
	}
	return bench(ctx, e, &cfg)
}

// parseTarget checks the server's URL: http only, and on loopback unless
// allowRemote, so that a load test goes nowhere it was not meant to.
func parseTarget(raw string, allowRemote bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("URL: %w", err)
	}
	if u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("URL %q: want http://host:port (h2c is HTTP/2 without TLS)", raw)
	}
	if !allowRemote {
		ips, err := net.DefaultResolver.LookupIPAddr(context.Background(), u.Hostname())
		if err != nil {
			return nil, fmt.Errorf("URL %q: %w", raw, err)
		}
		for _, ip := range ips {
			if !ip.IP.IsLoopback() {
				return nil, fmt.Errorf("URL %q: %s is not a loopback address (-allow-remote to load it anyway)", raw, ip.IP)
			}
		}
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

func pickWorkloads(list string) ([]benchWorkload, error) {
	var out []benchWorkload
	for name := range strings.SplitSeq(list, ",") {
		i := slices.IndexFunc(benchWorkloads, func(w benchWorkload) bool { return w.name == name })
		if i < 0 {
			return nil, fmt.Errorf("-workloads: unknown workload %q", name)
		}
		out = append(out, benchWorkloads[i])
	}
	return out, nil
}

func bench(ctx context.Context, e *env, cfg *benchConfig) error {
	var run [4]byte
	rand.Read(run[:])
	runID := hex.EncodeToString(run[:]) // fresh objects for each run
	fmt.Fprintf(e.stdout, "durable bench %s: %d callers (h2c over %d connections), %v each after %v warm-up, at most %d calls\n",
		cfg.target, cfg.clients, cfg.conns, cfg.duration, cfg.warmup, cfg.maxCalls)
	var bare map[string]*benchResult
	if cfg.bare {
		var err error
		if bare, err = benchBare(ctx, e, cfg); err != nil {
			return fmt.Errorf("bare handler: %w", err)
		}
	}
	var results []*benchResult
	for _, w := range cfg.workloads {
		for _, proto := range cfg.protocols {
			if err := ctx.Err(); err != nil {
				return err
			}
			cpu := newCPUReader(cfg.target)
			r, err := load(ctx, cfg, cfg.target, w, proto, runID+"-"+proto, cpu.read)
			if err != nil {
				return fmt.Errorf("%s over %s: %w", w.name, proto, err)
			}
			results = append(results, r)
		}
	}
	printResults(e.stdout, results, bare)
	for _, r := range results {
		if r.errors > 0 {
			return fmt.Errorf("%s over %s: %d calls failed, the first: %w", r.workload, r.protocol, r.errors, r.firstErr)
		}
	}
	return nil
}

// benchBare starts the bare handler in a child process (this program, with
// -serve-bare), loads it over each protocol, and returns the results by
// protocol, with the child's CPU time.
func benchBare(ctx context.Context, e *env, cfg *benchConfig) (map[string]*benchResult, error) {
	out := map[string]*benchResult{}
	for _, proto := range cfg.protocols {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cmd := exec.CommandContext(ctx, exe, "bench", "-"+bareChildFlag, "127.0.0.1:0")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		cmd.Stderr = e.stderr
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			stdin.Close()
			cmd.Wait()
			return nil, fmt.Errorf("child's address: %w", err)
		}
		u, err := url.Parse(strings.TrimSpace(line))
		if err != nil {
			stdin.Close()
			cmd.Wait()
			return nil, fmt.Errorf("child's address %q: %w", line, err)
		}
		// The child's CPU is known once it has exited: its whole life, of
		// which starting is a few milliseconds.
		r, lerr := load(ctx, cfg, u, bareWorkload, proto, "", nil)
		stdin.Close() // the child stops at the end of its input
		werr := cmd.Wait()
		if lerr != nil {
			return nil, lerr
		}
		if werr != nil {
			return nil, fmt.Errorf("child: %w", werr)
		}
		r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		out[proto] = r
	}
	return out, nil
}

// serveBareHandler is the child's side of benchBare: it serves the bare
// handler over HTTP/1.1 and h2c on addr (loopback), prints its URL, and
// stops when its standard input ends.
func serveBareHandler(ctx context.Context, e *env, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if a, ok := ln.Addr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
		ln.Close()
		return fmt.Errorf("-%s %s: not a loopback address", bareChildFlag, addr)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	hs := &http.Server{Handler: http.HandlerFunc(bareHandler), Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	fmt.Fprintf(e.stdout, "http://%s\n", ln.Addr())
	stopped := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
	}
	hs.Close()
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// bareHandler is the ceiling: it reads the request's body and answers
// with a JSON body of the size of Increment's.
func bareHandler(w http.ResponseWriter, r *http.Request) {
	if _, err := io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20)); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"value":"1"}`)
}

// clients returns the HTTP clients of a load over proto: for h1, one
// transport keeping a connection per caller; for h2c, conns transports of
// one connection each, which the callers share in turn.
func clients(proto string, callers, conns int) []*http.Client {
	mk := func(p *http.Protocols, idle int) *http.Client {
		return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			Protocols: p, MaxIdleConnsPerHost: idle, MaxConnsPerHost: idle, DisableCompression: true,
		}}
	}
	var p http.Protocols
	if proto == "h1" {
		p.SetHTTP1(true)
		return []*http.Client{mk(&p, callers)}
	}
	p.SetUnencryptedHTTP2(true)
	out := make([]*http.Client, conns)
	for i := range out {
		out[i] = mk(&p, 1)
	}
	return out
}

// load runs w over proto against target with cfg's callers: a warm-up,
// then the measured run, until cfg.duration passes or cfg.maxCalls calls
// are sent, each call bounded by the client's 30 s timeout. cpu, if not nil, reads the server's CPU time before and after.
func load(ctx context.Context, cfg *benchConfig, target *url.URL, w benchWorkload, proto, runID string, cpu func(context.Context) (time.Duration, bool)) (*benchResult, error) {
	hc := clients(proto, cfg.clients, cfg.conns)
	defer func() {
		for _, c := range hc {
			c.CloseIdleConnections()
		}
	}()
	endpoint := target.JoinPath(w.path).String()
	call := func(ctx context.Context, c *http.Client, object string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(w.body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if object != "" {
			req.Header.Set("Durable-Object-Name", object)
		}
		res, err := c.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		body, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		if err != nil {
			return err
		}
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", res.Status, bytes.TrimSpace(body))
		}
		return nil
	}
	object := func(c, i int) string {
		if w.object == nil {
			return ""
		}
		return w.object(runID, c, i)
	}

	// Warm-up: connections made, the object activated, caches filled.
	if cfg.warmup > 0 {
		wctx, cancel := context.WithTimeout(ctx, cfg.warmup)
		var wg sync.WaitGroup
		for c := range cfg.clients {
			wg.Go(func() {
				for i := 0; wctx.Err() == nil && i < cfg.maxCalls; i++ {
					call(wctx, hc[c%len(hc)], object(c, -1-i))
				}
			})
		}
		wg.Wait()
		cancel()
	}

	r := &benchResult{workload: w.name, protocol: proto, cpu: -1}
	before, cpuOK := time.Duration(0), false
	if cpu != nil {
		before, cpuOK = cpu(ctx)
	}
	// No call starts after the deadline; those under way finish and count,
	// and the run lasts until the last one has.
	deadline := time.Now().Add(cfg.duration)
	var sent atomic.Int64 // calls started, bounded by maxCalls
	lat := make([][]time.Duration, cfg.clients)
	var failed atomic.Int64
	var firstErr atomic.Pointer[error]
	start := time.Now()
	var wg sync.WaitGroup
	for c := range cfg.clients {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && time.Now().Before(deadline) && sent.Add(1) <= int64(cfg.maxCalls); i++ {
				t0 := time.Now()
				err := call(ctx, hc[c%len(hc)], object(c, i))
				if err != nil && ctx.Err() != nil {
					return // interrupted: not counted
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
					continue
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		})
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	if cpuOK {
		if after, ok := cpu(ctx); ok {
			r.cpu = after - before
		}
	}
	for _, l := range lat {
		r.latencies = append(r.latencies, l...)
	}
	slices.Sort(r.latencies)
	r.calls, r.errors = len(r.latencies), int(failed.Load())
	if p := firstErr.Load(); p != nil {
		r.firstErr = *p
	}
	return r, nil
}

// cpuReader reads a server's CPU time from the process_cpu_seconds_total
// of its /metrics (the Prometheus process collector's, which the example
// server registers).
type cpuReader struct {
	url    string
	client *http.Client
}

func newCPUReader(target *url.URL) *cpuReader {
	return &cpuReader{url: target.JoinPath("/metrics").String(), client: &http.Client{Timeout: 10 * time.Second}}
}

func (c *cpuReader) read(ctx context.Context) (time.Duration, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return 0, false
	}
	res, err := c.client.Do(req)
	if err != nil {
		return 0, false
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, false
	}
	sc := bufio.NewScanner(io.LimitReader(res.Body, 16<<20))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_cpu_seconds_total "); ok {
			s, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, false
			}
			return time.Duration(s * float64(time.Second)), true
		}
	}
	return 0, false
}

func printResults(w io.Writer, results []*benchResult, bare map[string]*benchResult) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tproto\tcalls\tcalls/s\tp50\tp90\tp99\tmax\tCPU/call\tvs bare\terrors\t")
	row := func(r *benchResult, ratio string) {
		cpu := "-"
		if r.cpu >= 0 && r.calls > 0 {
			cpu = fmt.Sprintf("%.1fµs", float64(r.cpu.Microseconds())/float64(r.calls))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%v\t%v\t%v\t%v\t%s\t%s\t%d\t\n", r.workload, r.protocol, r.calls, r.rate(),
			round(r.percentile(0.5)), round(r.percentile(0.9)), round(r.percentile(0.99)), round(r.percentile(1)), cpu, ratio, r.errors)
	}
	for _, proto := range []string{"h1", "h2c"} {
		if b := bare[proto]; b != nil {
			row(b, "100%")
		}
	}
	for _, r := range results {
		ratio := "-"
		if b := bare[r.protocol]; b != nil && b.rate() > 0 {
			ratio = fmt.Sprintf("%.0f%%", 100*r.rate()/b.rate())
		}
		row(r, ratio)
	}
	tw.Flush()
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= 10*time.Microsecond:
		return d.Round(time.Microsecond)
	}
	return d
}
