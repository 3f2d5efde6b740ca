package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The process harness of the scenario tests: real etcd members and Durable
// nodes as separate processes on loopback addresses of their own, so that
// kill -9, SIGSTOP and SIGTERM act on them as on a deployment.

// etcdBinary builds the etcd server of the version the cluster module pins
// (as scripts/build-etcd.sh does) into the user's cache directory, once per
// version: the first build takes about a minute, the next runs reuse it.
func etcdBinary(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the scenarios build the etcd binary with the go command, which is not on PATH")
	}
	version := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "go.etcd.io/etcd/server/v3" {
				version = d.Version
			}
		}
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "durable-cluster-test")
	bin := filepath.Join(dir, "etcd-"+version)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	// Built under a temporary name and renamed: two test processes
	// building at once each rename a complete binary.
	tmp := fmt.Sprintf("%s.%d", bin, os.Getpid())
	out, err := exec.Command("go", "build", "-trimpath", "-o", tmp, "go.etcd.io/etcd/server/v3").CombinedOutput()
	if err != nil {
		t.Fatalf("build etcd %s: %v\n%s", version, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// loopback returns the address 127.0.0.{last} if this machine can bind it
// (Linux routes all of 127.0.0.0/8 to lo), else 127.0.0.1: then processes
// differ by port only.
func loopback(t *testing.T, last int) string {
	t.Helper()
	ip := fmt.Sprintf("127.0.0.%d", last)
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Logf("cannot bind %s (%v): using 127.0.0.1 with distinct ports", ip, err)
		return "127.0.0.1"
	}
	ln.Close()
	return ip
}

// freePort returns a port free on ip now.
func freePort(t *testing.T, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is a process the test started; it is killed at the test's end if
// it still runs.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when Wait returned
	err    error         // Wait's, once exited is closed
}

// spawn starts bin with args, its output in logPath.
func spawn(t *testing.T, logPath, bin string, args ...string) *proc {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", bin, err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

// kill sends SIGKILL (a stopped process dies too) and waits for the exit.
func (p *proc) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// signal sends sig to the process.
func (p *proc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits up to d for the process to exit and returns Wait's error.
func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(d):
		t.Fatalf("process %d still runs %v after it was told to stop", p.cmd.Process.Pid, d)
		return nil
	}
}

// running reports whether the process has not exited.
func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// etcdMember is one etcd server process.
type etcdMember struct {
	name, dir           string
	clientURL, peerURL  string
	bin, log, initial   string
	heartbeat, election time.Duration
	p                   *proc // nil while stopped
}

// etcdCluster is three etcd member processes on 127.0.0.11-13.
type etcdCluster struct {
	t       *testing.T
	members []*etcdMember
}

// startEtcd starts three members on 127.0.0.11-13 with short ticks (50 ms
// heartbeat, 500 ms election: short for tests, yet not so short that a
// loaded two-core machine elects for nothing) and waits for a leader.
func startEtcd(t *testing.T, bin, dir string) *etcdCluster {
	t.Helper()
	c := &etcdCluster{t: t}
	var initial []string
	for i := range 3 {
		ip := loopback(t, 11+i)
		m := &etcdMember{name: fmt.Sprintf("m%d", i+1), dir: filepath.Join(dir, fmt.Sprintf("etcd-m%d", i+1)),
			clientURL: "http://" + freePort(t, ip), peerURL: "http://" + freePort(t, ip),
			bin: bin, log: filepath.Join(dir, fmt.Sprintf("etcd-m%d.log", i+1)),
			heartbeat: 50 * time.Millisecond, election: 500 * time.Millisecond}
		initial = append(initial, m.name+"="+m.peerURL)
		c.members = append(c.members, m)
	}
	for _, m := range c.members {
		m.initial = strings.Join(initial, ",")
		m.start(t)
	}
	c.waitLeader(20 * time.Second)
	return c
}

// start starts the member on its data directory: a new cluster the first
// time, its old data (and membership) on a restart.
func (m *etcdMember) start(t *testing.T) {
	t.Helper()
	m.p = spawn(t, m.log, m.bin, "--name", m.name, "--data-dir", m.dir,
		"--listen-client-urls", m.clientURL, "--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", m.peerURL, "--initial-advertise-peer-urls", m.peerURL,
		"--initial-cluster", m.initial, "--initial-cluster-state", "new", "--initial-cluster-token", "scenarios",
		"--heartbeat-interval", fmt.Sprint(m.heartbeat.Milliseconds()), "--election-timeout", fmt.Sprint(m.election.Milliseconds()),
		"--log-level", "error")
}

// kill kills the member with SIGKILL.
func (m *etcdMember) kill() {
	if m.p != nil {
		m.p.kill()
		m.p = nil
	}
}

// Endpoints returns every member's client URL.
func (c *etcdCluster) Endpoints() []string {
	var e []string
	for _, m := range c.members {
		e = append(e, m.clientURL)
	}
	return e
}

// client returns an etcd client of every member, closed at the test's end.
func (c *etcdCluster) client() *clientv3.Client {
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// leader returns the member that is the leader, asking each running one;
// nil if none answers as leader.
func (c *etcdCluster) leader(cli *clientv3.Client) *etcdMember {
	for _, m := range c.members {
		if m.p == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := cli.Status(ctx, m.clientURL)
		cancel()
		if err == nil && st.Leader != 0 && st.Header.MemberId == st.Leader {
			return m
		}
	}
	return nil
}

// waitLeader polls until a running member reports itself leader.
func (c *etcdCluster) waitLeader(d time.Duration) *etcdMember {
	c.t.Helper()
	cli := c.client()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		if l := c.leader(cli); l != nil {
			return l
		}
		time.Sleep(50 * time.Millisecond) // polling the members' elections with a deadline
	}
	c.t.Fatalf("etcd elected no leader in %v", d)
	return nil
}

// durableNode is one durable-node process.
type durableNode struct {
	name, addr, data, log string
	p                     *proc
	stopped               bool // by SIGSTOP: the checks do not call through it
}

// url is the node's base URL.
func (n *durableNode) url() string { return "http://" + n.addr }

// nodeArgs are the flags every scenario node runs with: a 2 s lease, so
// that failover waits little, and Sessions idle after sessionIdle, so that
// their alarms fire within a scenario.
func nodeArgs(n *durableNode, etcd []string, cluster, secret string) []string {
	return []string{"-etcd", strings.Join(etcd, ","), "-cluster", cluster, "-node", n.name,
		"-addr", n.addr, "-secret-file", secret, "-ttl", scenarioTTL.String(), "-open-timeout", "60s",
		"-session-idle", sessionIdle.String(), "-data", n.data}
}

// metric scrapes the node's /metrics and returns the sum of the samples of
// the named metric (without labels, or every series of a histogram's
// _sum/_count); ok is false if the node does not answer.
func (n *durableNode) metric(name string) (float64, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.url()+"/metrics", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, false
	}
	sum := 0.0
	for line := range strings.SplitSeq(string(body), "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
			sum += v
		}
	}
	return sum, true
}

// isDialError reports whether err is a failure to connect to the node the
// call went to: then the request never left the client, and the call
// certainly did not happen.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
