package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	durablev1 "github.com/durablego/durable/gen/durable/v1"
	"github.com/durablego/durable/gen/durable/v1/durablev1connect"
	"github.com/durablego/durable/internal/probe"
)

// floodChild, run by TestMain when DURABLE_FLOOD_CHILD names dir, serves
// a server on dir with the default options on a loopback port, which it
// prints on standard output, until its standard input closes.
func floodChild(dir string) int {
	srv, _ := childProbes(dir, &probe.Probe{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println(ln.Addr())
	go srv.Serve(ln)
	io.Copy(io.Discard, os.Stdin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	return 0
}

// BenchmarkIdleConnectionFlood reproduces the flood against a
// server in a child process with the default limits and the descriptor
// limit of this machine: one client holds as many idle keep-alive
// connections as its own descriptor limit allows (DURABLE_FLOOD_CONNS,
// default 19,900, for a limit of 20,000), then a new client calls. It
// reports how long that call took, how many of the flood's connections the
// server closed to make room, and the server's resident set. Run it alone:
//
//	go test -run XXX -bench IdleConnectionFlood -benchtime 1x ./server
func BenchmarkIdleConnectionFlood(b *testing.B) {
	n := 19_900
	if s := os.Getenv("DURABLE_FLOOD_CONNS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	for b.Loop() {
		cmd := childCommand("DURABLE_FLOOD_CHILD=" + b.TempDir())
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		addr, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		url := "http://" + strings.TrimSpace(addr)
		conns := make([]*rawConn, 0, n)
		for range n {
			c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
			if err != nil {
				b.Logf("stopped at %d connections: %v", len(conns), err)
				break
			}
			rc := &rawConn{Conn: c, r: bufio.NewReader(c)}
			rc.roundTrip(b)
			conns = append(conns, rc)
		}
		start := time.Now()
		ids := durablev1connect.NewIDServiceClient(&http.Client{Transport: &http.Transport{}}, url)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err = ids.IDFromName(ctx, connect.NewRequest(&durablev1.IDFromNameRequest{Class: "Probe", Name: "new"}))
		cancel()
		elapsed := time.Since(start)
		if err != nil {
			b.Errorf("a new client after %d idle connections: %v", len(conns), err)
		}
		rss := childRSS(b, cmd.Process.Pid)
		closed := 0
		for _, c := range conns {
			c.SetReadDeadline(time.Now().Add(time.Millisecond))
			if _, err := c.r.ReadByte(); err != nil {
				if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
					closed++
				}
			}
			c.Close()
		}
		stdin.Close()
		cmd.Wait()
		b.ReportMetric(float64(len(conns)), "idle-conns")
		b.ReportMetric(float64(closed), "closed-by-server")
		b.ReportMetric(float64(elapsed.Microseconds())/1000, "new-call-ms")
		b.ReportMetric(rss/(1<<20), "server-rss-MiB")
	}
}

// childRSS returns the resident set of process pid, in bytes.
func childRSS(b *testing.B, pid int) float64 {
	rss, _ := statusField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS")
	return rss
}
