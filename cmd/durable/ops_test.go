package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/durablego/durable/durabletest"
	"github.com/durablego/durable/examples/counter"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/internal/probe"
	"github.com/durablego/durable/server"
)

// opsServer serves a real server on loopback with the admin service, whose
// guard wants the token "op", and the Counter, Probe and Ledger classes.
type opsServer struct {
	url      string
	dir      string
	counters *counterv1durable.CounterNamespace
	probes   *durabletestv1durable.ProbeNamespace
	ledgers  *durabletestv1durable.LedgerNamespace
}

func newOpsServer(t *testing.T, opts ...server.Option) *opsServer {
	t.Helper()
	guard := func(_ context.Context, a *server.Access) error {
		if a.Kind == server.AccessAdmin && a.Request.Header.Get("Authorization") == "Bearer op" {
			return server.AllowAdmin
		}
		if a.Kind == server.AccessAdmin {
			return errors.New("operators only")
		}
		return nil
	}
	ts := durabletest.New(t, append([]server.Option{server.WithGuard(guard)}, opts...)...)
	srv := ts.Server
	s := &opsServer{dir: ts.Dir}
	var err error
	if s.counters, err = counterv1durable.RegisterCounter(srv, counter.Counter{}); err != nil {
		t.Fatal(err)
	}
	if s.probes, err = durabletestv1durable.RegisterProbe(srv, &probe.Probe{Gate: make(chan struct{})}); err != nil {
		t.Fatal(err)
	}
	if s.ledgers, err = durabletestv1durable.RegisterLedger(srv, probe.Ledger{}); err != nil {
		t.Fatal(err)
	}
	s.url = ts.URL()
	return s
}

// ops runs an operator subcommand against s with the operator's token.
func (s *opsServer) ops(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return runCmd(t, append([]string{args[0], "--url", s.url, "--token", "op"}, args[1:]...)...)
}

func TestOpsCommands(t *testing.T) {
	ctx := context.Background()
	s := newOpsServer(t, server.WithAdmin())
	for _, name := range []string{"alpha", "beta"} {
		if _, err := s.counters.Get(s.counters.IDFromName(name)).Increment(ctx, &counterv1.IncrementRequest{Amount: 3}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.ledgers.Get(s.ledgers.IDFromName("book")).Record(ctx, &durabletestv1.RecordRequest{Key: "row-1"}); err != nil {
		t.Fatal(err)
	}
	check := func(want int, substr string, args ...string) string {
		t.Helper()
		code, out, errOut := s.ops(t, args...)
		if code != want || !strings.Contains(out+errOut, substr) {
			t.Errorf("durable %v: exit %d, stdout %q, stderr %q; want exit %d and %q", args, code, out, errOut, want, substr)
		}
		return out
	}
	check(0, "Counter", "classes")
	out := check(0, "STORED", "classes")
	if !strings.Contains(out, "Ledger") || !strings.Contains(out, "yes") {
		t.Errorf("classes: %q", out)
	}
	var classes struct {
		Classes []struct {
			Name          string `json:"name"`
			StoredObjects string `json:"storedObjects"`
		} `json:"classes"`
	}
	if err := json.Unmarshal([]byte(check(0, "", "classes", "--json")), &classes); err != nil {
		t.Fatal(err)
	}
	for _, c := range classes.Classes {
		if c.Name == "Counter" && c.StoredObjects != "2" {
			t.Errorf("--json: Counter stores %s", c.StoredObjects)
		}
	}
	out = check(0, "alpha", "ls", "--prefix", "al", "Counter")
	if strings.Contains(out, "beta") {
		t.Errorf("ls --prefix al: %q", out)
	}
	check(0, `"value": "3"`, "get", "Counter", "alpha")
	check(0, `"value": "3"`, "get", "Counter", s.counters.IDFromName("alpha").String())
	check(1, "not_found", "get", "Counter", "nobody")
	check(0, "", "kv", "Counter", "alpha", "put", "greeting", "hello")
	check(0, "hello", "kv", "Counter", "alpha", "get", "greeting")
	check(0, "greeting", "kv", "Counter", "alpha")
	check(0, "", "kv", "Counter", "alpha", "delete", "greeting")
	check(1, `no key "greeting"`, "kv", "Counter", "alpha", "get", "greeting")
	check(2, "usage", "kv", "Counter", "alpha", "frob")
	check(0, "row-1", "sql", "Ledger", "book", "SELECT key FROM entries")
	check(1, "invalid_argument", "sql", "Ledger", "book", "DELETE FROM entries")
	check(1, "failed_precondition", "alarm", "Counter", "alpha", "set", "+1h")
	check(0, "", "alarm", "Probe", "p", "set", "2099-01-02T03:04:05Z")
	check(0, "2099-01-02T03:04:05Z", "alarm", "Probe", "p")
	check(0, "", "alarm", "Probe", "p", "delete")
	check(0, "no alarm", "alarm", "Probe", "p", "get")
	check(1, "TIME", "alarm", "Probe", "p", "set", "tomorrow")
	check(0, "", "rm", "Counter", "beta")
	check(0, "nothing deleted", "rm", "Counter", "beta")
	if out := check(0, "alpha", "ls", "Counter"); strings.Contains(out, "beta") {
		t.Errorf("ls after rm: %q", out)
	}
}

func TestOpsClearErrors(t *testing.T) {
	// No admin service.
	s := newOpsServer(t)
	code, _, errOut := s.ops(t, "classes")
	if code != 1 || !strings.Contains(errOut, "has no admin service") {
		t.Errorf("no admin service: exit %d, %q", code, errOut)
	}
	// Refused: no token, a wrong one.
	s = newOpsServer(t, server.WithAdmin())
	for _, args := range [][]string{{"classes", "--url", s.url}, {"classes", "--url", s.url, "--token", "nope"}} {
		code, _, errOut := runCmd(t, args...)
		if code != 1 || !strings.Contains(errOut, "refused the admin call") {
			t.Errorf("%v: exit %d, %q", args, code, errOut)
		}
	}
	// Nobody listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	code, _, errOut = runCmd(t, "classes", "--url", url)
	if code != 1 || !strings.Contains(errOut, "cannot reach the server") {
		t.Errorf("nobody listening: exit %d, %q", code, errOut)
	}
	// Usage.
	if code, _, _ := runCmd(t, "get", "--url", url, "OnlyClass"); code != 2 {
		t.Errorf("get with one argument: exit %d", code)
	}
	// Backup into a non-empty directory.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "x"), nil, 0o600)
	if code, _, errOut := runCmd(t, "backup", "--url", url, dir); code != 1 || !strings.Contains(errOut, "not empty") {
		t.Errorf("backup into a non-empty directory: exit %d, %q", code, errOut)
	}
}

// The token of the environment is used, and never printed by -h.
func TestOpsTokenFromTheEnvironmentIsNotPrinted(t *testing.T) {
	s := newOpsServer(t, server.WithAdmin())
	t.Setenv("DURABLE_TOKEN", "op")
	if code, _, errOut := runCmd(t, "classes", "-h"); code != 0 || strings.Contains(errOut, "op\"") {
		t.Errorf("-h: exit %d, %q", code, errOut)
	}
	if code, out, errOut := runCmd(t, "classes", "--url", s.url); code != 0 || !strings.Contains(out, "Counter") {
		t.Errorf("with DURABLE_TOKEN: exit %d, %q %q", code, out, errOut)
	}
}
