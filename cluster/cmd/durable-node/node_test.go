package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/durablego/durable/cluster/etcdtest"
	v1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
)

// buildNode builds this command once into a temporary directory.
func buildNode(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "durable-node")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startNode starts a node process; it is killed at the test's end.
func startNode(t *testing.T, bin string, etcd []string, name, addr, secret string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "-etcd", strings.Join(etcd, ","), "-cluster", "proc", "-node", name,
		"-addr", addr, "-secret-file", secret, "-ttl", "2s", "-open-timeout", "30s",
		"-data", filepath.Join(t.TempDir(), name))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	return cmd
}

// TestNodeKill9Failover: a node is killed with SIGKILL under a counter's
// increments; a second node process takes the partitions once the lease
// expires, and every acknowledged increment is in the value it reads.
func TestNodeKill9Failover(t *testing.T) {
	bin := buildNode(t)
	etcd := etcdtest.Start(t, 1).Endpoints()
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("a shared secret of thirty-two B."), 0o600); err != nil {
		t.Fatal(err)
	}
	addr1, addr2 := freeAddr(t), freeAddr(t)
	n1 := startNode(t, bin, etcd, "n1", addr1, secret)
	c1 := counterv1durable.NewCounterClient(http.DefaultClient, "http://"+addr1)
	ctx := t.Context()
	acked := int64(0)
	deadline := time.Now().Add(30 * time.Second)
	for acked < 50 && time.Now().Before(deadline) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := c1.Get(c1.IDFromName("c")).Increment(cctx, &v1.IncrementRequest{})
		cancel()
		if err == nil {
			acked++
		}
	}
	if acked < 50 {
		t.Fatalf("only %d increments acknowledged by the first node", acked)
	}
	if err := n1.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = n1.Process.Wait()
	killed := time.Now()
	startNode(t, bin, etcd, "n2", addr2, secret)
	c2 := counterv1durable.NewCounterClient(http.DefaultClient, "http://"+addr2)
	var got int64 = -1
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		res, err := c2.Get(c2.IDFromName("c")).GetValue(cctx, &v1.GetValueRequest{})
		cancel()
		if err == nil {
			got = res.GetValue()
			break
		}
		time.Sleep(50 * time.Millisecond) // polling a process's readiness with a deadline
	}
	t.Logf("failover: %v from kill -9 to the second node's first answer", time.Since(killed))
	if got < acked {
		t.Fatalf("value %d after failover, %d increments acknowledged: writes lost", got, acked)
	}
}

// TestNodeRefusesAnotherSecret: a node whose secret is not the one the
// cluster's store recorded exits with an error instead of serving.
func TestNodeRefusesAnotherSecret(t *testing.T) {
	bin := buildNode(t)
	etcd := etcdtest.Start(t, 1).Endpoints()
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	if err := os.WriteFile(a, []byte("the first secret, thirty-two B.."), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte("another secret, thirty-two B...."), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	n1 := startNode(t, bin, etcd, "n1", addr, a)
	c := counterv1durable.NewCounterClient(http.DefaultClient, "http://"+addr)
	ok := false
	for deadline := time.Now().Add(30 * time.Second); !ok && time.Now().Before(deadline); {
		cctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		_, err := c.Get(c.IDFromName("c")).Increment(cctx, &v1.IncrementRequest{})
		cancel()
		ok = err == nil
		if !ok {
			time.Sleep(50 * time.Millisecond) // polling a process's readiness with a deadline
		}
	}
	if !ok {
		t.Fatal("the first node never answered")
	}
	// SIGTERM: a graceful stop frees the partitions at once.
	if err := n1.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := n1.Wait(); err != nil {
		t.Fatalf("the first node's graceful stop: %v", err)
	}
	n2 := startNode(t, bin, etcd, "n2", freeAddr(t), b)
	done := make(chan error, 1)
	go func() { done <- n2.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a node with another secret exited without an error")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("a node with another secret is still running after 60 s")
	}
}
