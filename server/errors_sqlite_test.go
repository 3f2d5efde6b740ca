package server_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"github.com/durablego/durable"
	"github.com/durablego/durable/client"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	"github.com/durablego/durable/server"
)

// TestInternalErrorHidesPaths: an object whose SQL file cannot be opened
// (a file stands where its class's directory should be) fails remote calls
// with Internal and a generic message with an identifier, never a server
// path, and the server logs that identifier with the full cause; in
// process the error has the full cause.
func TestInternalErrorHidesPaths(t *testing.T) {
	logs, logOpt := capturedLog()
	e := newEnv(t, logOpt)
	ledgers := registerLedger(t, e)
	e.serve(t)
	ctx := context.Background()
	if err := os.MkdirAll(filepath.Join(e.dir, "sql"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "sql", "Ledger"), []byte("in the way"), 0o644); err != nil {
		t.Fatal(err)
	}
	internal := kindCase{name: "unopenable SQL file", kind: durable.KindInternal, code: connect.CodeInternal,
		sentinels: []error{durable.ErrInternal}, rpc: true}
	for _, p := range protocols {
		l := durabletestv1durable.NewLedgerClient(h2cClient(), e.url, client.WithClientOptions(p.opts...))
		_, err := l.Get(l.IDFromName("x")).Record(ctx, &durabletestv1.RecordRequest{Key: "k"})
		internal.check(t, p.name, err)
		internal.checkWire(t, p.name, err)
		if err == nil {
			continue
		}
		msg := err.Error()
		ref := errorRef(msg)
		if ref == "" || strings.Contains(msg, "/") || strings.Contains(msg, e.dir) {
			t.Errorf("%s: remote message %q, want a generic one with an error id and no path", p.name, msg)
		} else if line := logs.line("level=ERROR", "error_id="+ref, "class=Ledger", "method=Record"); !strings.Contains(line, e.dir) {
			t.Errorf("%s: log line for error_id=%s is %q, want one with the full cause", p.name, ref, line)
		}
	}
	_, err := ledgers.Get(ledgers.IDFromName("x")).Record(ctx, &durabletestv1.RecordRequest{Key: "k"})
	internal.check(t, "in process", err)
	if err != nil && !strings.Contains(err.Error(), e.dir) {
		t.Errorf("in process: %q, want the full cause", err)
	}
}

// logBuffer is a log sink the server's goroutines may write to at once.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// line returns the log line that has every one of parts, or "".
func (l *logBuffer) line(parts ...string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
lines:
	for _, line := range strings.Split(l.b.String(), "\n") {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue lines
			}
		}
		return line
	}
	return ""
}

// capturedLog is a server option logging at every level to the returned
// buffer.
func capturedLog() (*logBuffer, server.Option) {
	l := &logBuffer{}
	return l, server.WithLogger(slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})))
}

// errorRef returns the identifier of a generic message, or "".
func errorRef(msg string) string {
	m := regexp.MustCompile(`error id ([0-9a-f]{16})`).FindStringSubmatch(msg)
	if m == nil {
		return ""
	}
	return m[1]
}

// kindCase is a failure to cause in process and over each protocol, with
// what it must be on both sides.
type kindCase struct {
	name      string
	kind      durable.Kind // the Durable-Error sent; "" when the client refuses before sending
	cause     durable.Kind // the Durable-Error-Cause sent, for kind "method"
	code      connect.Code
	sentinels []error
	rpc       bool // an *RPCError on both sides
	local     func(ctx context.Context) error
	remote    func(ctx context.Context, opts []connect.ClientOption) error
}

// check asserts what every error of c must be, wherever it comes from.
func (c *kindCase) check(t *testing.T, where string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: %s succeeded", c.name, where)
		return
	}
	if got := connect.CodeOf(err); got != c.code {
		t.Errorf("%s: %s: code %v, want %v: %v", c.name, where, got, c.code, err)
	}
	for _, s := range c.sentinels {
		if !errors.Is(err, s) {
			t.Errorf("%s: %s: %v does not match %v", c.name, where, err, s)
		}
	}
	var rpc *durable.RPCError
	if errors.As(err, &rpc) != c.rpc {
		t.Errorf("%s: %s: %T is an *RPCError: %v, want %v", c.name, where, err, !c.rpc, c.rpc)
	}
	if c.kind != "" && durable.KindOf(err) != c.kind {
		t.Errorf("%s: %s: KindOf = %q, want %q", c.name, where, durable.KindOf(err), c.kind)
	}
}

// checkWire asserts the kind the server sent, and that its code is the
// table's.
func (c *kindCase) checkWire(t *testing.T, where string, err error) {
	t.Helper()
	var ce *connect.Error
	if c.kind == "" || !errors.As(err, &ce) {
		return
	}
	if got := durable.Kind(ce.Meta().Get(durable.HeaderError)); got != c.kind {
		t.Errorf("%s: %s: kind %q sent, want %q", c.name, where, got, c.kind)
	}
	if got := durable.Kind(ce.Meta().Get(durable.HeaderErrorCause)); got != c.cause {
		t.Errorf("%s: %s: cause %q sent, want %q", c.name, where, got, c.cause)
	}
	if c.kind != durable.KindMethod && ce.Code() != c.kind.Code() {
		t.Errorf("%s: %s: code %v, but the table's for %s is %v", c.name, where, ce.Code(), c.kind, c.kind.Code())
	}
}

// protocols are the three wire protocols every remote test runs over.
var protocols = []struct {
	name string
	opts []connect.ClientOption
}{
	{"connect", nil},
	{"grpc", []connect.ClientOption{connect.WithGRPC()}},
	{"grpc-web", []connect.ClientOption{connect.WithGRPCWeb()}},
}
