package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/pluginpb"

	"github.com/durablego/durable"
)

// TestCompileGen type-checks and vets the committed generated code, the
// counter's golden file among it, against this checkout's server and client.
func TestCompileGen(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go tool")
	}
	t.Parallel()
	goTool(t, "..", "GOWORK=off", "vet", "./gen/...")
}

// TestCompileGolden compiles the output of the golden cases other than the
// counter with the code protoc-gen-go and protoc-gen-connect-go generate for
// them, in a module of their own that a workspace joins to this one: once
// with protoc-gen-connect-go's defaults, once with each of its options that
// change what it generates (simple, package_suffix), passed to both
// plugins as one opt list would.
func TestCompileGolden(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go tool")
	}
	t.Parallel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	goTool(t, root, "", "build", "-o", bin+string(filepath.Separator),
		"google.golang.org/protobuf/cmd/protoc-gen-go",
		"connectrpc.com/connect/cmd/protoc-gen-connect-go")
	for _, connectParams := range []string{"", ",simple", ",package_suffix=rpc", ",package_suffix="} {
		t.Run("connect"+connectParams, func(t *testing.T) {
			t.Parallel()
			compileGolden(t, root, bin, "paths=source_relative", "paths=source_relative"+connectParams)
		})
	}
}

// compileGolden generates the golden cases, protoc-gen-go's code with
// goParam, protoc-gen-connect-go's and ours with connectParam, and vets the
// result against the module at root.
func compileGolden(t *testing.T, root, bin, goParam, connectParam string) {
	out := t.TempDir()
	for _, tc := range goldenCases(t) {
		if tc.name == "counter" {
			continue // its Go packages live in this module; see TestCompileGen
		}
		req := request(t, connectParam, tc.files...)
		writeResponses(t, tc.name, out,
			runBinary(t, filepath.Join(bin, "protoc-gen-go"), request(t, goParam, tc.files...)),
			runBinary(t, filepath.Join(bin, "protoc-gen-connect-go"), req),
			run(t, req))
	}
	if err := os.WriteFile(filepath.Join(out, "go.mod"), []byte("module example.com/durabletest/gen\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	work := "GOWORK=" + filepath.Join(out, "go.work")
	goTool(t, out, work, "work", "init", ".", root)
	goTool(t, out, work, "vet", "./...")
	// The remote packages stand alone: none imports the server side.
	var remote []string
	for _, pkg := range strings.Fields(command(t, t.Context(), out, []string{work}, goBinary(t), "list", "./...")) {
		if strings.HasSuffix(pkg, clientPackageSuffix) {
			remote = append(remote, pkg)
		}
	}
	if len(remote) != 3 {
		t.Fatalf("generated the %s packages %q, want one per case", clientPackageSuffix, remote)
	}
	for _, dep := range strings.Fields(command(t, t.Context(), out, []string{work}, goBinary(t), append([]string{"list", "-deps"}, remote...)...)) {
		if inTree(dep, serverOnly) || strings.HasSuffix(dep, "v1"+packageSuffix) {
			t.Errorf("the %s packages import %s", clientPackageSuffix, dep)
		}
	}
}

// writeResponses writes the files of responses, plugins' responses for the
// case name, under dir, and fails t if one of them is an error.
func writeResponses(t *testing.T, name, dir string, responses ...*pluginpb.CodeGeneratorResponse) {
	t.Helper()
	for _, resp := range responses {
		if resp.Error != nil {
			t.Fatalf("%s: %s", name, resp.GetError())
		}
		for _, f := range resp.File {
			path := filepath.Join(dir, filepath.FromSlash(f.GetName()))
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(f.GetContent()), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// runBinary runs the plugin at path on req.
func runBinary(t *testing.T, path string, req *pluginpb.CodeGeneratorRequest) *pluginpb.CodeGeneratorResponse {
	t.Helper()
	in, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path)
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stderr = os.Stderr
	data, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	resp := &pluginpb.CodeGeneratorResponse{}
	if err := proto.Unmarshal(data, resp); err != nil {
		t.Fatal(err)
	}
	return resp
}

// goTool runs the go command with args in dir, with the environment
// variable env set unless it is empty, and fails t on error.
func goTool(t *testing.T, dir, env string, args ...string) {
	t.Helper()
	path, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool: ", err)
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Env = os.Environ()
	if env != "" {
		cmd.Env = append(cmd.Env, env)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %v in %s: %v\n%s", args, dir, err, out)
	}
}

// TestVersion: the plugin answers --version with the runtime's version, as
// protoc-gen-go and protoc-gen-connect-go do.
func TestVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go tool")
	}
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "protoc-gen-durable")
	goTool(t, ".", "", "build", "-o", bin, ".")
	out, err := exec.Command(bin, "--version").Output()
	if want := "protoc-gen-durable " + durable.Version + "\n"; err != nil || string(out) != want {
		t.Fatalf("--version: %q, %v; want %q", out, err, want)
	}
}
