package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"

	"github.com/durablego/durable/server"
)

// raiseFileLimit raises the soft limit on open files to need (and the hard
// one, when allowed), or skips: each process of BenchmarkWebSocket10k holds
// one end of 10,000 sockets.
func raiseFileLimit(t testing.TB, need uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skip(err)
	}
	if lim.Cur >= need {
		return
	}
	lim.Cur = need
	if lim.Max < need {
		lim.Max = need // needs privileges (root, or CAP_SYS_RESOURCE)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < need {
		t.Skipf("open-file limit %d, need %d: %v", lim.Cur, need, err)
	}
}

// memory returns the heap and stack memory in use after a garbage
// collection.
func memory() (heap, stacks uint64) {
	m := memStats()
	return m.HeapInuse, m.StackInuse
}

// BenchmarkWebSocket10k holds 10,000 sockets open on one object and
// reports the server's memory per socket (heap and stacks, and resident
// memory); each iteration then broadcasts a 100-byte message to all of
// them (one object call, "tag all ...") and waits until the last client
// has it. 9,999 clients run in a child process (this test binary, running
// TestWebSocketBenchClients), because the machine's hard limit of 20,000
// open files does not hold both ends of 10,000 sockets in one process; the
// benchmark holds the 10,000th, which sends the broadcasts. Run with
// -benchtime 20x, or 100x for a p99 that is not the maximum.
func BenchmarkWebSocket10k(b *testing.B) {
	const n = 10_000
	raiseFileLimit(b, n+1000)
	e := newSockEnv(b, server.WithIdleTimeout(time.Minute))
	u := e.wsURL("big", "tags=all")

	heapBefore, stacksBefore := memory()
	rssBefore := residentMiB(b)
	child, expect := startClients(b, "TestWebSocketBenchClients", "DURABLE_WS_CLIENTS_URL="+u, "DURABLE_WS_CLIENTS="+strconv.Itoa(n-1))
	expect("ready")
	clientMem, _ := strconv.ParseFloat(strings.TrimSpace(expect("client-heap+stack-B/socket")), 64)
	sender, _, err := gorilla.DefaultDialer.Dial(u, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer sender.Close()
	if got := e.srv.QueuedCalls("SocketProbe", e.ns.IDFromName("big")); got != 0 {
		b.Logf("%d calls queued", got)
	}
	heapAfter, stacksAfter := memory()
	serverMem := float64(heapAfter+stacksAfter-heapBefore-stacksBefore) / n
	serverStacks := float64(stacksAfter-stacksBefore) / n
	serverRSS := (residentMiB(b) - rssBefore) * (1 << 20) / n

	msg := "tag all " + strings.Repeat("x", 100)
	var lat []time.Duration
	serverCPU, clientCPU := processCPU(os.Getpid()), processCPU(child.Process.Pid)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := sender.WriteMessage(gorilla.TextMessage, []byte(msg)); err != nil {
			b.Fatal(err)
		}
		if _, _, err := sender.ReadMessage(); err != nil {
			b.Fatal(err)
		}
		expect("got")
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	serverCPU = processCPU(os.Getpid()) - serverCPU
	clientCPU = processCPU(child.Process.Pid) - clientCPU
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "broadcast-p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "broadcast-p99-ms")
	b.ReportMetric(serverCPU.Seconds()*1000/float64(b.N), "server-cpu-ms/op")
	b.ReportMetric(clientCPU.Seconds()*1000/float64(b.N), "client-cpu-ms/op")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "broadcast-max-ms")
	b.ReportMetric(serverMem, "server-heap+stack-B/socket")
	b.ReportMetric(serverStacks, "server-stack-B/socket")
	b.ReportMetric(serverRSS, "server-rss-B/socket")
	b.ReportMetric(clientMem, "client-heap+stack-B/socket")
}

// startClients runs the client process of a broadcast benchmark: this test
// binary running the test named test, with env added to its environment.
// expect reads its output up to a line with a prefix and returns the rest;
// the process ends when the benchmark does.
func startClients(b *testing.B, test string, env ...string) (child *exec.Cmd, expect func(prefix string) string) {
	args := []string{os.Args[0], "-test.run=^" + test + "$", "-test.v"}
	// For profiling: DURABLE_WS_CLIENTS_FLAGS adds test flags to the client
	// process (-test.cpuprofile=…), DURABLE_WS_CLIENTS_CPUS pins it with
	// taskset (run the benchmark itself under taskset on the other cores).
	args = append(args, strings.Fields(os.Getenv("DURABLE_WS_CLIENTS_FLAGS"))...)
	if cpus := os.Getenv("DURABLE_WS_CLIENTS_CPUS"); cpus != "" {
		args = append([]string{"taskset", "-c", cpus}, args...)
	}
	child = exec.Command(args[0], args[1:]...)
	child.Env = append(os.Environ(), env...)
	child.Stderr = os.Stderr
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); child.Wait() })
	lines := bufio.NewScanner(stdout)
	expect = func(prefix string) string {
		for lines.Scan() {
			if rest, ok := strings.CutPrefix(lines.Text(), prefix); ok {
				return rest
			}
		}
		b.Fatalf("the client process ended before %q: %v", prefix, lines.Err())
		return ""
	}
	return child, expect
}

// processCPU returns the user and system CPU time process pid has used, from
// /proc/PID/stat (in clock ticks of 10 ms: measure over many broadcasts).
func processCPU(pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	_, rest, _ := strings.Cut(string(stat), ") ") // the name may hold spaces
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// TestWebSocketBenchClients is the client process of
// BenchmarkWebSocket10k; it skips unless run by it.
func TestWebSocketBenchClients(t *testing.T) {
	u, n := os.Getenv("DURABLE_WS_CLIENTS_URL"), os.Getenv("DURABLE_WS_CLIENTS")
	if u == "" {
		t.Skip("run by BenchmarkWebSocket10k")
	}
	count, _ := strconv.Atoi(n)
	raiseFileLimit(t, uint64(count)+1000)
	dialer := &gorilla.Dialer{ReadBufferSize: 1024, WriteBufferSize: 1024, WriteBufferPool: &sync.Pool{}}
	heapBefore, stacksBefore := memory()
	conns := make([]*gorilla.Conn, count)
	inParallel(t, 32, count, func(i int) (err error) {
		conns[i], _, err = dialer.Dial(u, nil)
		return err
	})
	if t.Failed() {
		return
	}
	var got atomic.Int64
	var out sync.Mutex
	for _, c := range conns {
		go func() {
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
				if got.Add(1)%int64(count) == 0 {
					out.Lock()
					fmt.Println("got")
					out.Unlock()
				}
			}
		}()
	}
	heapAfter, stacksAfter := memory()
	mem := float64(heapAfter+stacksAfter-heapBefore-stacksBefore) / float64(count)
	fmt.Println("ready")
	fmt.Printf("client-heap+stack-B/socket %.0f\n", mem)
	io.Copy(io.Discard, os.Stdin) // until the benchmark is done
	for _, c := range conns {
		c.Close()
	}
}

// BenchmarkWebSocketRoundTrip measures a message's round trip through the
// object: the client sends "echo", the object's WebSocketMessage sends it
// back once the call committed.
func BenchmarkWebSocketRoundTrip(b *testing.B) {
	e := newSockEnv(b)
	c := e.dial(b, "rtt", "")
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		if err := c.WriteMessage(gorilla.TextMessage, fmt.Appendf(nil, "echo %d", i)); err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.ReadMessage(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportLatencies(b, lat)
}

// BenchmarkWebSocketBareWrites10k is the transport's floor for
// BenchmarkWebSocket10k's broadcast: the same 100-byte text frame, encoded
// once, written to 10,000 plain loopback TCP connections by GOMAXPROCS
// goroutines, each writing its share in turn (no goroutine per socket, no
// deadline per write, no framing per socket), until the last client (in a
// child process, TestWebSocketBareClients) has read it. What a broadcast
// costs beyond this is Durable's and melody's; this much is the kernel's.
// Run with -benchtime 100x.
func BenchmarkWebSocketBareWrites10k(b *testing.B) {
	const n = 10_000
	raiseFileLimit(b, n+1000)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	child, expect := startClients(b, "TestWebSocketBareClients", "DURABLE_WS_BARE_ADDR="+ln.Addr().String(), "DURABLE_WS_CLIENTS="+strconv.Itoa(n))
	conns := make([]net.Conn, n)
	for i := range conns {
		if conns[i], err = ln.Accept(); err != nil {
			b.Fatal(err)
		}
		defer conns[i].Close()
	}
	expect("ready")
	frame := append([]byte{0x81, 100}, strings.Repeat("x", 100)...) // FIN, text, unmasked, 100 bytes
	writers := runtime.GOMAXPROCS(0)
	var lat []time.Duration
	serverCPU, clientCPU := processCPU(os.Getpid()), processCPU(child.Process.Pid)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := w; i < n; i += writers {
					if _, err := conns[i].Write(frame); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		expect("got")
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	serverCPU = processCPU(os.Getpid()) - serverCPU
	clientCPU = processCPU(child.Process.Pid) - clientCPU
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "broadcast-p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "broadcast-p99-ms")
	b.ReportMetric(serverCPU.Seconds()*1000/float64(b.N), "server-cpu-ms/op")
	b.ReportMetric(clientCPU.Seconds()*1000/float64(b.N), "client-cpu-ms/op")
}

// TestWebSocketBareClients is the client process of
// BenchmarkWebSocketBareWrites10k; it skips unless run by it. Each
// connection reads whole frames, and "got" is printed each time every
// connection has one more.
func TestWebSocketBareClients(t *testing.T) {
	addr, n := os.Getenv("DURABLE_WS_BARE_ADDR"), os.Getenv("DURABLE_WS_CLIENTS")
	if addr == "" {
		t.Skip("run by BenchmarkWebSocketBareWrites10k")
	}
	count, _ := strconv.Atoi(n)
	raiseFileLimit(t, uint64(count)+1000)
	conns := make([]net.Conn, count)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	var got atomic.Int64
	var out sync.Mutex
	for _, c := range conns {
		go func() {
			buf := make([]byte, 102)
			for {
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				if got.Add(1)%int64(count) == 0 {
					out.Lock()
					fmt.Println("got")
					out.Unlock()
				}
			}
		}()
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin) // until the benchmark is done
	for _, c := range conns {
		c.Close()
	}
}
