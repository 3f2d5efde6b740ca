package server_test

import (
	"bytes"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/durablego/durable"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1connect"
	"github.com/durablego/durable/server"
)

// zeros is an endless (or n-byte) body of zeros that counts what was read
// of it.
type zeros struct {
	left int64 // < 0: endless
	read atomic.Int64
}

func (z *zeros) Read(p []byte) (int, error) {
	if z.left == 0 {
		return 0, io.EOF
	}
	if z.left > 0 && int64(len(p)) > z.left {
		p = p[:z.left]
	}
	clear(p)
	if z.left > 0 {
		z.left -= int64(len(p))
	}
	z.read.Add(int64(len(p)))
	return len(p), nil
}

// answer is what a refusal looked like to the client.
type answer struct {
	status int
	kind   string // Durable-Error
	body   string // the error's JSON, for Connect
}

// TestBodyLimitsThroughAForwarder: requests over the server's body limits
// are refused the same through a node that forwards them as by their
// owner directly: an RPC message over 4 MiB, a gzip bomb (a small body
// that inflates to 64 MiB), a Fetch body over 32 MiB, over HTTP/1.1 and
// h2c; and an endless body, which the forwarder stops reading soon after
// the owner refuses it rather than buffering it.
func TestBodyLimitsThroughAForwarder(t *testing.T) {
	_, nodes := newCluster(t, 2, 1)
	rpc := "/" + durabletestv1connect.ProbeName + "/Add"
	bomb := gzipBomb(64)
	type request struct {
		name   string
		path   string
		header map[string]string
		body   func() io.Reader
		length int64 // -1: unknown (chunked)
	}
	proto := map[string]string{"Content-Type": "application/proto", durable.HeaderObjectName: "limits"}
	gz := map[string]string{"Content-Type": "application/proto", "Content-Encoding": "gzip", durable.HeaderObjectName: "limits"}
	fixed := func(n int64) func() io.Reader { return func() io.Reader { return &zeros{left: n} } }
	requests := []request{
		{"RPC over 4 MiB", rpc, proto, fixed(server.DefaultMaxRPCMessageSize + 1024), server.DefaultMaxRPCMessageSize + 1024},
		{"RPC over 4 MiB, chunked", rpc, proto, fixed(server.DefaultMaxRPCMessageSize + 1024), -1},
		{"gzip bomb", rpc, gz, func() io.Reader { return bytes.NewReader(bomb) }, int64(len(bomb))},
		{"Fetch over 32 MiB", "/objects/counter/limits/increment", map[string]string{"Content-Type": "application/json"}, fixed(server.DefaultMaxRequestBody + 1024), server.DefaultMaxRequestBody + 1024},
	}
	send := func(hc *http.Client, base string, q request) answer {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, base+q.path, q.body())
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = q.length
		for k, v := range q.header {
			req.Header.Set(k, v)
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s to %s: %v", q.name, base, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		a := answer{status: res.StatusCode, kind: res.Header.Get(durable.HeaderError)}
		if q.path == rpc {
			a.body = string(b)
		}
		return a
	}
	for _, c := range []struct {
		name string
		hc   *http.Client
	}{{"HTTP/1.1", &http.Client{}}, {"h2c", h2cClient()}} {
		for _, q := range requests {
			direct := send(c.hc, nodes[1].url, q)
			forwarded := send(c.hc, nodes[0].url, q)
			if direct.status < 400 {
				t.Errorf("%s, %s: the owner answered %d; want a refusal", c.name, q.name, direct.status)
			}
			if forwarded != direct {
				t.Errorf("%s, %s: through the forwarder %+v; directly %+v", c.name, q.name, forwarded, direct)
			}
		}
	}
	if got := nodes[0].srv.ActiveObjects() + nodes[1].srv.ActiveObjects(); got != 0 {
		t.Errorf("%d objects activated by refused requests", got)
	}

	// An endless body: the owner refuses it at the limit, and the
	// forwarder stops reading it; it holds no more than its replay buffer
	// meanwhile.
	hc := h2cClient()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	body := &zeros{left: -1}
	req, _ := http.NewRequest(http.MethodPost, nodes[0].url+rpc, body)
	for k, v := range proto {
		req.Header.Set(k, v)
	}
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	runtime.ReadMemStats(&after)
	if res.StatusCode < 400 {
		t.Fatalf("endless body: status %d; want a refusal", res.StatusCode)
	}
	// Loopback moves a GiB in about a second: 1 GiB would mean the
	// forwarder read on after the refusal.
	if n := body.read.Load(); n > 64<<20 {
		t.Errorf("the endless body was read for %d MiB; the owner's limit is 4 MiB", n>>20)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("an endless body allocated %d MiB (client, forwarder and owner)", alloc>>20)
	}
	t.Logf("endless body: status %d, read %d KiB, %d KiB allocated", res.StatusCode, body.read.Load()>>10, (after.TotalAlloc-before.TotalAlloc)>>10)
}

// TestNotOwnerRetryOfALargeBody: a 3 MiB body through a stale node is
// retried at the owner after the not-owner answer, although the forwarder
// keeps only 2 MiB of a body to send again: the answering node's router
// refused it before reading it.
func TestNotOwnerRetryOfALargeBody(t *testing.T) {
	_, nodes := newCluster(t, 3, 2)
	for _, c := range []struct {
		name string
		hc   *http.Client
	}{{"HTTP/1.1", &http.Client{}}, {"h2c", h2cClient()}} {
		nodes[0].place.staleTo = 1
		nodes[0].place.stale.Store(1)
		body := `{"amount":3}` + strings.Repeat(" ", 3<<20)
		res, err := c.hc.Post(nodes[0].url+"/objects/counter/large-retry/increment", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || !strings.Contains(string(b), `"value"`) {
			t.Fatalf("%s: a 3 MiB body through a stale node: %d %q (Durable-Error %q)", c.name, res.StatusCode, b, res.Header.Get(durable.HeaderError))
		}
	}
	if nodes[1].srv.ActiveObjects() != 0 || nodes[2].srv.ActiveObjects() != 1 {
		t.Fatalf("active: node 1 %d, node 2 %d; want 0 and 1", nodes[1].srv.ActiveObjects(), nodes[2].srv.ActiveObjects())
	}
}
