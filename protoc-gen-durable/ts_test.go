package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	durablev1 "github.com/durablego/durable/gen/durable/v1"
)

// tsGoldenCases returns the golden cases of lang=ts: those of Go, whose
// counter's golden file is the one committed under web/src/gen, and names,
// whose services protoc-gen-es must escape or rename.
func tsGoldenCases(t *testing.T) []goldenCase {
	var cases []goldenCase
	for _, tc := range goldenCases(t) {
		if tc.name == "counter" {
			tc.dir = "../web/src/gen"
		}
		cases = append(cases, tc)
	}

	// Object is a reserved name (Object$); Outer_Inner is taken by the shape
	// of the nested message Outer.Inner (Outer_Inner$); Transport and
	// IDService are names the file imports, aliased for it. No go_package.
	names := newFile("names/v1/names.proto", "test.names.v1", "")
	names.Options = nil
	addMessages(names, "Outer", "State")
	names.MessageType[0].NestedType = []*descriptorpb.DescriptorProto{{Name: proto.String("Inner")}}
	addService(names, "Object", &durablev1.ObjectOptions{State: "State"}, "Get")
	addService(names, "Outer_Inner", &durablev1.ObjectOptions{State: "test.names.v1.Outer.Inner"}, "Put")
	addService(names, "Transport", &durablev1.ObjectOptions{State: "State"}, "Send")
	addService(names, "IDService", &durablev1.ObjectOptions{State: "State", Binding: "IDS"}, "Mint")
	addComment(names, " Object has a comment that ends a JSDoc */ too early\n unless escaped.\n", 6, 0)
	return append(cases, goldenCase{"names", []*descriptorpb.FileDescriptorProto{names}, "testdata"})
}

// tsParam is the parameter of buf.gen.yaml's lang=ts plugin, with which
// the counter's golden file is the one committed under web/src/gen.
const tsParam = "lang=ts,target=ts"

func TestGoldenTS(t *testing.T) {
	t.Parallel()
	checkGolden(t, tsParam, tsGoldenCases(t), map[string][]string{
		"counter": {"examples/counter/v1/counter_durable.ts"},
		"chat":    {"chat/v1/chat_durable.ts"},
		"proxy":   {"proxy/v1/proxy_durable.ts"},
		"shop":    {"shop/v1/inventory_durable.ts"},
		"names":   {"names/v1/names_durable.ts"},
	})
}

// TestGoldenJS checks the default target, protoc-gen-es's: JavaScript and
// its declarations.
func TestGoldenJS(t *testing.T) {
	t.Parallel()
	var cases []goldenCase
	for _, tc := range tsGoldenCases(t) {
		if tc.name == "counter" || tc.name == "names" {
			tc.dir = "testdata"
			cases = append(cases, tc)
		}
	}
	want := map[string][]string{
		"counter": {"examples/counter/v1/counter_durable.js", "examples/counter/v1/counter_durable.d.ts"},
		"names":   {"names/v1/names_durable.js", "names/v1/names_durable.d.ts"},
	}
	checkGolden(t, "lang=ts", cases, want)
	checkGolden(t, "lang=ts,target=js+dts", cases, want)
	checkGolden(t, "lang=ts,target=dts+js+js", cases, map[string][]string{
		"counter": {"examples/counter/v1/counter_durable.d.ts", "examples/counter/v1/counter_durable.js"},
		"names":   {"names/v1/names_durable.d.ts", "names/v1/names_durable.js"},
	})
}

// TestTSOptions checks protoc-gen-es's parameters: import_extension and
// ts_nocheck change the output as they change protoc-gen-es's, the others
// are accepted and change nothing, and no file imports durable_pb, which
// the runtime package carries.
func TestTSOptions(t *testing.T) {
	t.Parallel()
	counter := tsGoldenCases(t)[0].files
	plain := run(t, request(t, tsParam, counter...))
	if plain.Error != nil || len(plain.File) != 1 {
		t.Fatalf("%s: error %q, %d files", tsParam, plain.GetError(), len(plain.File))
	}
	for param, want := range map[string]string{
		tsParam + ",import_extension=js":   `from "./counter_pb.js";`,
		tsParam + ",import_extension=.ts":  `from "./counter_pb.ts";`,
		tsParam + ",import_extension=none": `from "./counter_pb";`,
		"lang=ts,import_extension=js":      `from "./counter_pb.js";`,
		tsParam + ",ts_nocheck=true":       "\n// @ts-nocheck\n",
	} {
		resp := run(t, request(t, param, counter...))
		if resp.Error != nil || len(resp.File) == 0 || !strings.Contains(resp.File[0].GetContent(), want) {
			t.Errorf("%s: got error %q and files %v, want the first containing %q", param, resp.GetError(), resp.File, want)
		}
		for _, f := range resp.File {
			if strings.Contains(f.GetContent(), "durable_pb") {
				t.Errorf("%s: %s imports durable_pb", param, f.GetName())
			}
		}
	}
	if resp := run(t, request(t, "lang=ts,target=js,ts_nocheck=true", counter...)); strings.Contains(resp.File[0].GetContent(), "@ts-nocheck") {
		t.Errorf("ts_nocheck in JavaScript:\n%s", resp.File[0].GetContent())
	}
	for _, inert := range []string{
		"json_types=true", "valid_types=legacy_required", "erasable_syntax=true", "keep_empty_files=true",
		"elide_plugin_version=true", "map_imports=durable/v1/:@durablego/durable/gen",
		"rewrite_imports=./foo/**/*_pb.js:@scope/pkg", "bootstrap_wkt=false", "js_import_style=module", "ts_nocheck=false",
	} {
		resp := run(t, request(t, tsParam+","+inert, counter...))
		if resp.Error != nil || len(resp.File) != 1 || resp.File[0].GetContent() != plain.File[0].GetContent() {
			t.Errorf("%s: got error %q and %d files, want the output of %s", inert, resp.GetError(), len(resp.File), tsParam)
		}
	}
}

func TestParameterErrors(t *testing.T) {
	t.Parallel()
	counter := tsGoldenCases(t)[0].files
	for param, want := range map[string]string{
		"lang=rust":                               "lang=rust: want lang=go or lang=ts",
		"lang=ts,import_extension=mjs":            "import_extension=mjs: want none, js or ts",
		"lang=ts,target=cjs":                      "target=cjs: want ts, js, dts",
		"lang=ts,target=":                         "target=: want ts, js, dts",
		"lang=ts,target=ts+":                      "target=ts+: want ts, js, dts",
		"lang=ts,ts_nocheck=maybe":                "ts_nocheck=maybe: want true or false",
		"lang=ts,js_import_style=legacy_commonjs": "js_import_style=legacy_commonjs: the glue and the @durablego/durable runtime are ECMAScript modules only",
		"lang=ts,include_imports=true":            `unknown parameter "include_imports"`,
		"import_extension=js":                     "import_extension applies to lang=ts only",
		"target=ts":                               "target applies to lang=ts only",
		"paths=source_relative,json_types=true":   "json_types applies to lang=ts only",
		"lang=go,ts_nocheck=true":                 "ts_nocheck applies to lang=ts only",
	} {
		if msg := run(t, request(t, param, counter...)).GetError(); !strings.Contains(msg, want) {
			t.Errorf("%s: got error %q, want one containing %q", param, msg, want)
		}
	}
	// Go output needs a Go package; TypeScript output does not.
	f := newFile("plain/v1/plain.proto", "test.plain.v1", "")
	f.Options = nil
	addMessages(f, "State")
	addService(f, "Plain", &durablev1.ObjectOptions{State: "State"}, "Do")
	if msg := run(t, request(t, "", f)).GetError(); !strings.Contains(msg, "Go import path") {
		t.Errorf("lang=go without go_package: got error %q", msg)
	}
	if resp := run(t, request(t, tsParam, f)); resp.Error != nil || len(resp.File) != 1 {
		t.Errorf("lang=ts without go_package: got error %q and %d files", resp.GetError(), len(resp.File))
	}
}

func TestErrorsTS(t *testing.T) {
	t.Parallel()
	room, hidden := errorCaseFiles()
	room.Service[0].Method[0].ServerStreaming = proto.Bool(true)
	msg := run(t, request(t, tsParam, hidden, room)).GetError()
	const want = "room/v1/room.proto: service test.room.v1.Room: rpc Say is server-streaming"
	if !strings.HasPrefix(msg, want) {
		t.Errorf("got error %q, want %q", msg, want)
	}
}

// TestCompileTS type-checks the TypeScript output of the golden cases with
// the output of protoc-gen-es and the runtime package's sources, with web/'s own
// protoc-gen-es and tsc (npm ci in web/ installs them; the test is skipped
// without them). The names case checks that the plugin imports the
// services under the names protoc-gen-es gives them.
func TestCompileTS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs protoc-gen-es and tsc")
	}
	t.Parallel()
	web, tools := webTools(t, "protoc-gen-es", "tsc")
	protocGenES, tsc := tools[0], tools[1]

	out := t.TempDir()
	if err := os.Symlink(filepath.Join(web, "node_modules"), filepath.Join(out, "node_modules")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tsGoldenCases(t) {
		req := request(t, tsParam, tc.files...)
		esReq := proto.CloneOf(req)
		esReq.Parameter = proto.String("target=ts")
		esReq.FileToGenerate = append(esReq.FileToGenerate, durablev1.File_durable_v1_durable_proto.Path())
		writeResponses(t, tc.name, filepath.Join(out, tc.name), runBinary(t, protocGenES, esReq), run(t, req))
	}
	tsconfig := `{
  "compilerOptions": {
    "target": "es2022", "module": "esnext", "moduleResolution": "bundler",
    "lib": ["es2022", "dom"], "types": [], "strict": true, "noEmit": true,
    "isolatedModules": true, "verbatimModuleSyntax": true, "skipLibCheck": true,
    "paths": {"@durablego/durable": ["` + filepath.ToSlash(filepath.Join(web, "durable", "src", "index.ts")) + `"]}
  },
  "include": ["*/**/*.ts"]
}`
	if err := os.WriteFile(filepath.Join(out, "tsconfig.json"), []byte(tsconfig), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tsc, "-p", filepath.Join(out, "tsconfig.json"))
	cmd.Dir = out
	if data, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tsc: %v\n%s", err, data)
	}
	// The names case's services under the names protoc-gen-es gave them.
	data, err := os.ReadFile(filepath.Join(out, "names", "names", "v1", "names_durable.ts"))
	if err != nil {
		t.Fatal(err)
	}
	const want = `import { Object$, Outer_Inner$, Transport, IDService } from "./names_pb";`
	if !strings.Contains(string(data), want) {
		t.Errorf("names_durable.ts does not contain %s:\n%s", want, data)
	}
}

// webTools returns the absolute path of web/ and those of the named
// programs of web/node_modules/.bin, and skips t without them or without
// node and npm on PATH.
func webTools(t *testing.T, names ...string) (string, []string) {
	t.Helper()
	web, err := filepath.Abs("../web")
	if err != nil {
		t.Fatal(err)
	}
	var tools []string
	for _, name := range names {
		tool := filepath.Join(web, "node_modules", ".bin", name)
		if _, err := os.Stat(tool); err != nil {
			t.Skipf("no %s: run npm ci in web/", tool)
		}
		tools = append(tools, tool)
	}
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skip(err)
		}
	}
	return web, tools
}
