package main

import (
	"bytes"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestEmbeddedOptionsMatch: the options file init and proto write is
// proto/durable/v1/durable.proto, byte for byte (go:embed cannot reach
// outside cmd/durable, so the command keeps a copy).
func TestEmbeddedOptionsMatch(t *testing.T) {
	want, err := os.ReadFile("../../proto/durable/v1/durable.proto")
	if err != nil {
		t.Fatal(err)
	}
	got, err := templates.ReadFile("template/proto-deps/durable/v1/durable.proto")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("cmd/durable/template/proto-deps/durable/v1/durable.proto differs from proto/durable/v1/durable.proto: copy it over")
	}
}

// TestTemplateVersions: a new project pins the buf, protoc-gen-go and
// protoc-gen-connect-go that scripts/generate.sh generates Durable's own
// code with, and the Go version of Durable's go.mod.
func TestTemplateVersions(t *testing.T) {
	script, err := os.ReadFile("../../scripts/generate.sh")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"BUF_VERSION":                   bufVersion,
		"PROTOC_GEN_GO_VERSION":         protobufVersion,
		"PROTOC_GEN_CONNECT_GO_VERSION": connectVersion,
	} {
		m := regexp.MustCompile(`(?m)^` + name + `=(\S+)$`).FindSubmatch(script)
		if m == nil || string(m[1]) != want {
			t.Errorf("scripts/generate.sh sets %s to %q; the template pins %s", name, m, want)
		}
	}
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod); m == nil || string(m[1]) != goVersion {
		t.Errorf("go.mod says go %q; the template says %s", m, goVersion)
	}
}

// TestInitWritesProject writes a project without running the go command
// and checks its files: every one of them, go.mod's pins and tools, the
// module path in the templates, Go files that parse. The whole path, from
// init to a served call, is scripts/newproject.sh, run by CI.
func TestInitWritesProject(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hello")
	code, out, errOut := runCmd(t, "init", "-tidy=false", "-module", "example.com/hello", "-replace", "../..", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "go tool -modfile=tools/go.mod buf generate") {
		t.Errorf("output does not give the next steps: %q", out)
	}
	var files []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return err
	})
	slices.Sort(files)
	want := []string{".gitignore", "buf.gen.yaml", "buf.yaml", "counter/counter.go", "counter/counter_test.go",
		"go.mod", "main.go", "proto-deps/durable/v1/durable.proto", "proto/counter/v1/counter.proto", "tools/go.mod"}
	slices.Sort(want)
	if !slices.Equal(files, want) {
		t.Fatalf("files %v, want %v", files, want)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	abs, _ := filepath.Abs("../..")
	for _, want := range []string{
		"module example.com/hello\n", "go " + goVersion + "\n",
		"connectrpc.com/connect " + connectVersion, "google.golang.org/protobuf " + protobufVersion,
		"\tconnectrpc.com/connect/cmd/protoc-gen-connect-go\n", "\tgithub.com/durablego/durable/protoc-gen-durable\n",
		"\tgoogle.golang.org/protobuf/cmd/protoc-gen-go\n", "replace github.com/durablego/durable => " + abs + "\n",
	} {
		if !strings.Contains(read("go.mod"), want) {
			t.Errorf("go.mod lacks %q:\n%s", want, read("go.mod"))
		}
	}
	if tools := read("tools/go.mod"); !strings.Contains(tools, "tool github.com/bufbuild/buf/cmd/buf\n") || !strings.Contains(tools, "github.com/bufbuild/buf "+bufVersion) {
		t.Errorf("tools/go.mod does not pin buf %s:\n%s", bufVersion, tools)
	}
	if !strings.Contains(read("buf.gen.yaml"), "local: [go, tool, protoc-gen-durable]") {
		t.Errorf("buf.gen.yaml does not run the plugins as tools:\n%s", read("buf.gen.yaml"))
	}
	if !strings.Contains(read("proto/counter/v1/counter.proto"), `option go_package = "example.com/hello/gen/counter/v1;counterv1";`) {
		t.Errorf("counter.proto's go_package is not under the module")
	}
	embedded, _ := templates.ReadFile("template/proto-deps/durable/v1/durable.proto")
	if read("proto-deps/durable/v1/durable.proto") != string(embedded) {
		t.Errorf("the options file is not the embedded one")
	}
	for _, name := range []string{"main.go", "counter/counter.go", "counter/counter_test.go"} {
		if _, err := parser.ParseFile(token.NewFileSet(), name, read(name), parser.AllErrors); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if strings.Contains(read(name), "{{") {
			t.Errorf("%s: an unfilled template", name)
		}
	}
}

// TestInitRefusesToOverwrite: with a file of the project already there,
// init fails naming it and writes nothing at all.
func TestInitRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCmd(t, "init", "-tidy=false", dir)
	if code != 1 || !strings.Contains(errOut, "file exists") || !strings.Contains(errOut, "main.go") {
		t.Fatalf("exit %d, stderr %q; want 1 and main.go named", code, errOut)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("init wrote files beside the one it refused to overwrite: %v", entries)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "main.go")); string(b) != "package main\n" {
		t.Fatalf("main.go changed: %q", b)
	}
}

// TestInitBadInputs: an invalid module path, a -replace that is not a
// Durable checkout and extra arguments are clear errors, and write nothing.
func TestInitBadInputs(t *testing.T) {
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "go.mod"), []byte("module example.com/other\n"), 0o644)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"-module", "Has Space"}, 1, `invalid module path "Has Space"`},
		{[]string{"-module", "example.com/../x"}, 1, "invalid module path"},
		{[]string{"-module", "/abs"}, 1, "invalid module path"},
		{[]string{"-replace", filepath.Join(other, "missing")}, 1, "not a checkout of github.com/durablego/durable"},
		{[]string{"-replace", other}, 1, "is not the module github.com/durablego/durable"},
	} {
		dir := t.TempDir()
		code, _, errOut := runCmd(t, append(append([]string{"init", "-tidy=false"}, tc.args...), dir)...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.code, tc.msg)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("%v: wrote %v", tc.args, entries)
		}
	}
	if code, _, errOut := runCmd(t, "init", "-tidy=false", t.TempDir(), "extra"); code != 2 || !strings.Contains(errOut, "usage: durable init") {
		t.Errorf("two directories: exit %d, stderr %q", code, errOut)
	}
}

// TestProto writes the options file, finds it up to date the second time
// and replaces a copy that differs (an older Durable's).
func TestProto(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "durable", "v1", "durable.proto")
	want, _ := templates.ReadFile("template/proto-deps/durable/v1/durable.proto")
	for i, wantOut := range []string{"wrote", "up to date", "wrote"} {
		code, out, errOut := runCmd(t, "proto", dir)
		if code != 0 || !strings.Contains(out, wantOut) {
			t.Fatalf("run %d: exit %d, stdout %q, stderr %q; want %q", i, code, out, errOut, wantOut)
		}
		if got, _ := os.ReadFile(p); !bytes.Equal(got, want) {
			t.Fatalf("run %d: the file is not the embedded options file", i)
		}
		if i == 1 {
			os.WriteFile(p, []byte("// old\n"), 0o644)
		}
	}
	if code, _, _ := runCmd(t, "proto", dir, "extra"); code != 2 {
		t.Errorf("two directories: exit %d, want 2", code)
	}
}
