package main

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// serverOnly are the packages, and the modules' package trees, that a
// program calling objects only remotely must not import: the server and
// what it brings (metrics, tracing, the validator and its CEL, gRPC's own
// runtime). The messages of buf/validate/validate.proto are not among them:
// the .pb.go files of protos with validation rules import them.
var serverOnly = []string{
	"github.com/durablego/durable/server",
	"github.com/prometheus",
	"go.opentelemetry.io",
	"connectrpc.com/otelconnect",
	"buf.build/go/protovalidate",
	"cel.dev",
	"google.golang.org/grpc",
}

// inTree reports whether pkg is one of roots or below one of them.
func inTree(pkg string, roots []string) bool {
	for _, r := range roots {
		if pkg == r || strings.HasPrefix(pkg, r+"/") {
			return true
		}
	}
	return false
}

// goList runs go list with args in the module's root and returns the
// import paths it prints.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	return strings.Fields(command(t, t.Context(), "..", []string{"GOWORK=off"}, goBinary(t), append([]string{"list"}, args...)...))
}

// goBinary returns the path of the go command, or skips t without one.
func goBinary(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool: ", err)
	}
	return path
}

// TestRemoteOnlyImports: every generated <pkg>durableclient package of gen/
// imports neither its <pkg>durable sibling nor any package of the server
// side, and nothing that the runtime's own client side (packages durable
// and client), connect and the .pb.go package do not already import.
func TestRemoteOnlyImports(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go tool")
	}
	t.Parallel()
	var remote, local, base []string
	for _, pkg := range goList(t, "./gen/...") {
		if strings.HasSuffix(pkg, clientPackageSuffix) {
			remote = append(remote, pkg)
			local = append(local, strings.TrimSuffix(pkg, clientPackageSuffix)+packageSuffix)
			base = append(base, path.Dir(pkg)) // the .pb.go package
		}
	}
	if len(remote) < 10 {
		t.Fatalf("found %d %s packages in gen/: %q", len(remote), clientPackageSuffix, remote)
	}
	deps := goList(t, append([]string{"-deps"}, remote...)...)
	runtime := goList(t, append([]string{"-deps", "github.com/durablego/durable", "github.com/durablego/durable/client", "connectrpc.com/connect"}, base...)...)
	for _, dep := range deps {
		switch {
		case inTree(dep, serverOnly):
			t.Errorf("the %s packages import %s", clientPackageSuffix, dep)
		case slices.Contains(local, dep):
			t.Errorf("the %s packages import the local glue %s", clientPackageSuffix, dep)
		case !slices.Contains(runtime, dep) && !slices.Contains(remote, dep):
			t.Errorf("the %s packages import %s, which the runtime's client side does not", clientPackageSuffix, dep)
		}
	}
	// Package durable (Object's fields, the WebSocket hooks, the error
	// kinds) imports storage and websocket, so SQLite and melody are in the
	// package graph; TestRemoteOnlySize checks that of them only package
	// initializers are linked.
	var through []string
	for _, dep := range deps {
		if inTree(dep, []string{"github.com/ncruces", "github.com/olahol/melody"}) {
			through = append(through, dep)
		}
	}
	t.Logf("in the package graph through package durable: %q", through)
}

// linkedOnlyByServer are the prefixes of the symbols that a remote-only
// client's binary must not hold: the server's code, SQLite's engine and
// its WebAssembly, and what the server alone imports.
var linkedOnlyByServer = []string{
	"github.com/durablego/durable/server.",
	"github.com/ncruces/go-sqlite3.",
	"github.com/ncruces/go-sqlite3-wasm",
	"github.com/prometheus/",
	"go.opentelemetry.io/",
	"connectrpc.com/otelconnect.",
	"buf.build/go/protovalidate.",
	"cel.dev/",
	"google.golang.org/grpc.",
	"google.golang.org/grpc/",
}

// TestRemoteOnlySize builds testdata/remoteonly/durable, a client of the
// counter that imports only counterv1durableclient, and
// testdata/remoteonly/connect, a plain connect-go client making the same
// call, and compares their sizes: the remote-only client is within 25% of
// the plain one (issue 14: it was 21.4 MB against 12.4 MB with
// counterv1durable) and its symbol table holds none of the server's code.
// Both then call a real server on loopback, the same object.
func TestRemoteOnlySize(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go tool")
	}
	t.Parallel()
	goPath := goBinary(t)
	bin := t.TempDir()
	sizes := map[string]int64{}
	for _, name := range []string{"durable", "connect"} {
		out := filepath.Join(bin, name)
		command(t, t.Context(), "..", []string{"GOWORK=off"}, goPath, "build", "-o", out, "./protoc-gen-durable/testdata/remoteonly/"+name)
		info, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		sizes[name] = info.Size()
	}
	ratio := float64(sizes["durable"]) / float64(sizes["connect"])
	t.Logf("remote-only durable client %d bytes, plain connect-go client %d bytes: %.3f×", sizes["durable"], sizes["connect"], ratio)
	if ratio > 1.25 {
		t.Errorf("the remote-only client is %.3f× the plain connect-go one, want at most 1.25×", ratio)
	}

	var linked []string
	for _, line := range strings.Split(command(t, t.Context(), "", nil, goPath, "tool", "nm", filepath.Join(bin, "durable")), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 3 {
			continue
		}
		symbol := fields[len(fields)-1]
		for _, prefix := range linkedOnlyByServer {
			if strings.HasPrefix(symbol, prefix) {
				linked = append(linked, symbol)
			}
		}
	}
	if len(linked) > 0 {
		t.Errorf("the remote-only client links %d symbols of the server side, such as %q", len(linked), linked[:min(len(linked), 10)])
	}

	url, _ := serveCounters(t)
	for i, name := range []string{"durable", "connect"} {
		got := strings.TrimSpace(command(t, t.Context(), "", nil, filepath.Join(bin, name), url, "remote-only"))
		if want := []string{"1", "2"}[i]; got != want {
			t.Errorf("%s client: the counter is %q, want %q", name, got, want)
		}
	}
}
