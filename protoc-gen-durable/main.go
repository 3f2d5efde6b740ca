// protoc-gen-durable is a plugin for the Protobuf compiler that generates the
// Go glue of Durable Objects. A service becomes an object class when it
// carries the option (durable.v1.object):
//
//	service ChatRoom {
//	  option (durable.v1.object) = {state: "ChatRoomState"};
//	  rpc Post(PostRequest) returns (PostResponse);
//	}
//
// It runs beside protoc-gen-go, whose output the glue uses, and usually
// protoc-gen-connect-go, whose output it does not need: the glue builds its
// Connect handlers and clients from the methods' descriptors, so
// protoc-gen-connect-go may run with any of its options (simple,
// package_suffix). With buf, your buf.gen.yaml will look like this:
//
//	version: v2
//	plugins:
//	  - local: protoc-gen-go
//	    out: gen
//	  - local: protoc-gen-connect-go
//	    out: gen
//	  - local: protoc-gen-durable
//	    out: gen
//
// For each file with at least one such service, it writes two files, each
// into a sub-package of the one holding the .pb.go files, as
// protoc-gen-connect-go does. If path/to/file.proto has the Go package foov1,
// the output goes to
//
//	gen/path/to/foov1durable/file.durable.go
//	gen/path/to/foov1durableclient/file.durable.go
//
// Package foov1durable is what a server imports: the interfaces to
// implement, Register and the in-process namespaces. Package
// foov1durableclient holds the remote side alone, which imports neither
// foov1durable nor package server: a program that only calls objects
// imports it and links none of the server's storage (SQLite), WebSockets,
// metrics or tracing. foov1durable declares the remote side's names as
// aliases, so a server that also calls objects remotely needs one import.
//
// Files without such a service produce no output. Services without the
// option are ignored; in a file that imports durable/v1/durable.proto, where
// a forgotten option is the likely cause, the plugin says so on its
// standard error (buf shows it) and goes on.
//
// # Generated code
//
// For the service ChatRoom above, package chatv1durableclient declares:
//
//   - ChatRoomClassName, ChatRoomBinding and ChatRoomURLSegment: the class
//     name "ChatRoom", the binding name "CHAT_ROOM" and the URL segment
//     "chat-room", and a ChatRoom<Method>Method constant per RPC;
//   - ChatRoomStub, the interface by which callers call one object;
//   - ChatRoomClient and NewChatRoomClient, a remote namespace whose stubs
//     call objects over Connect, gRPC or gRPC-Web.
//
// Package chatv1durable declares the same names, as aliases (constants,
// type aliases and a NewChatRoomClient that calls the other), and:
//
//   - ChatRoomObject, the live handle passed to every method:
//     durable.Object[*ChatRoomState];
//   - ChatRoom, the interface to implement, with one method per RPC;
//   - RegisterChatRoom, which registers an implementation with a
//     server.Server, mounts its Connect handlers and returns a
//     ChatRoomNamespace, whose stubs call objects in process.
//
// # Names
//
// The class name is the service name. The binding name is the service name
// in constant case (ChatRoom → CHAT_ROOM) unless the option's binding field
// sets it, and the URL segment is the service name in kebab case (ChatRoom →
// chat-room). Both split the name into words at underscores, at an upper-case
// letter after a lower-case letter or digit, and before the last upper-case
// letter of an acronym followed by a lower-case one: HTTPProxy → HTTP_PROXY
// and http-proxy. Digits stay with the word before them: Counter2Go →
// COUNTER2_GO and counter2-go.
//
// # Errors
//
// Generation fails, naming the file, the service and the problem, when a
// service with the option
//
//   - has no state, or a state that does not name a message declared in its
//     file or the files it imports (a name without dots is looked up in the
//     service's package; a name with dots is fully qualified);
//   - sets a binding that does not match [A-Z][A-Z0-9_]*;
//   - has a client-, server- or bidirectional-streaming RPC: objects support
//     unary RPCs only;
//   - has an RPC whose Go method name is ID, which the stubs declare, or
//     Init, Alarm, Fetch, WebSocketMessage, WebSocketClose or WebSocketError,
//     the names of the object hooks.
//
// # Parameters
//
// The plugin takes the parameters common to protogen plugins, such as
// paths=source_relative, and these:
//
//   - lang=go (the default) writes the Go glue above; lang=ts writes
//     TypeScript instead, described below.
//   - with lang=ts, protoc-gen-es's parameters, so that one opt list can
//     serve both plugins: target (ts, js, dts, joined with +; default
//     js+dts, as protoc-gen-es's) chooses the files written;
//     import_extension (none, the default, js or ts) the extension of the
//     import of protoc-gen-es's file; ts_nocheck=true adds // @ts-nocheck;
//     js_import_style must be module (the runtime is an ECMAScript module);
//     json_types, valid_types, erasable_syntax, keep_empty_files,
//     elide_plugin_version, map_imports, rewrite_imports and bootstrap_wkt
//     change nothing here.
//   - simple and package_suffix, protoc-gen-connect-go's parameters, are
//     accepted (and checked) so that one opt list can serve both plugins;
//     they change nothing here.
//
// protoc-gen-durable --version prints the version of the plugin, which is
// the version of the runtime it generates code for (durable.Version). The
// generated code refers to a constant of package durable that only a
// runtime new enough declares (durable.IsAtLeastVersion0_1_0), so a
// mismatch fails at compile time with a message that names it.
//
// # TypeScript
//
// With lang=ts the plugin runs beside protoc-gen-es (Connect-ES v2), into
// the same output directory, with the same target and import_extension:
//
//	plugins:
//	  # ...
//	  - local: protoc-gen-es
//	    out: src/gen
//	    opt: [target=ts, map_imports=durable/v1/:@durablego/durable/gen]
//	  - local: protoc-gen-durable
//	    out: src/gen
//	    opt: [lang=ts, target=ts]
//
// For path/to/file.proto it writes path/to/file_durable.ts (target=ts;
// file_durable.js and file_durable.d.ts for js+dts) beside protoc-gen-es's
// path/to/file_pb.ts. For the service ChatRoom it exports the constants
// ChatRoomClassName, ChatRoomBinding and ChatRoomURLSegment, and
//
//	createChatRoomNamespace(transport: Transport): Namespace<typeof ChatRoom>
//
// whose Namespace, from the runtime package @durablego/durable (web/durable
// in this repository), has idFromName, idFromString, newUniqueId,
// resolveName and get(id), the Connect-ES client of the service with the
// object's ID header set on every call. The file imports the service from
// file_pb and the rest from @durablego/durable and @connectrpc/connect: the
// runtime package carries the descriptor of durable.v1.IDService itself.
// protoc-gen-es's file_pb imports durable/v1/durable_pb, since file.proto
// imports durable/v1/durable.proto: map_imports above takes it from the
// package (@durablego/durable/gen/durable/v1/durable_pb.js); without it,
// generate durable/v1/durable.proto too (include_imports). Files need no
// go_package option for lang=ts; the errors above are the same.
package main

import (
	"errors"
	"fmt"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"

	"github.com/durablego/durable"
	durablev1 "github.com/durablego/durable/gen/durable/v1"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Printf("%s %s\n", filepath.Base(os.Args[0]), durable.Version)
		return
	}
	if len(os.Args) > 1 {
		fmt.Fprintf(os.Stderr, "%s: unknown argument %q (this program is run by protoc or buf, not directly)\n", filepath.Base(os.Args[0]), os.Args[1])
		os.Exit(1)
	}
	if err := serve(os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", filepath.Base(os.Args[0]), err)
		os.Exit(1)
	}
}

// serve reads a code generator request from r and writes the response to w,
// and its notes for the user to notes.
func serve(r io.Reader, w, notes io.Writer) error {
	in, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	req := &pluginpb.CodeGeneratorRequest{}
	if err := proto.Unmarshal(in, req); err != nil {
		return err
	}
	out, err := proto.Marshal(respond(req, notes))
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// respond runs the plugin on req. Errors in the request, its parameters or
// its classes are reported in the response, as protoc expects; notes, which
// do not stop generation, go to notes.
func respond(req *pluginpb.CodeGeneratorRequest, notes io.Writer) *pluginpb.CodeGeneratorResponse {
	plugin, opts, err := newPlugin(req)
	if err != nil {
		return &pluginpb.CodeGeneratorResponse{Error: proto.String(err.Error())}
	}
	if err := generate(plugin, opts, notes); err != nil {
		plugin.Error(err)
	}
	return plugin.Response()
}

// options are the plugin's own parameters.
type options struct {
	lang string // "go" or "ts"
	// With lang=ts, as protoc-gen-es's parameters of the same names:
	targets         []string // target: targetTS, targetJS, targetDTS; default js+dts
	importExtension string   // import_extension: "", ".js" or ".ts"
	tsNocheck       bool     // ts_nocheck
	tsOnly          []string // the lang=ts parameters given, refused with lang=go
}

// esInert are protoc-gen-es's parameters that change nothing in this
// plugin's output, accepted with lang=ts so that one opt list can serve
// both plugins: the glue imports only the runtime package, Connect-ES and
// the service from protoc-gen-es's file beside it, and exports no message.
var esInert = map[string]bool{
	"json_types":           true,
	"valid_types":          true,
	"erasable_syntax":      true,
	"keep_empty_files":     true,
	"elide_plugin_version": true,
	"map_imports":          true,
	"rewrite_imports":      true,
	"bootstrap_wkt":        true,
}

// set sets the parameter name to value.
func (o *options) set(name, value string) error {
	switch name {
	case "lang":
		if value != "go" && value != "ts" {
			return fmt.Errorf("lang=%s: want lang=go or lang=ts", value)
		}
		o.lang = value
	case "target":
		o.tsOnly = append(o.tsOnly, name)
		o.targets = nil
		for _, t := range strings.Split(value, "+") {
			if tsTargetExtension[t] == "" {
				return fmt.Errorf("target=%s: want ts, js, dts or several joined with +, as protoc-gen-es's", value)
			}
			if !slices.Contains(o.targets, t) {
				o.targets = append(o.targets, t)
			}
		}
	case "ts_nocheck":
		o.tsOnly = append(o.tsOnly, name)
		b, err := strconv.ParseBool(value)
		if err != nil {
			return fmt.Errorf("ts_nocheck=%s: want true or false", value)
		}
		o.tsNocheck = b
	case "js_import_style":
		o.tsOnly = append(o.tsOnly, name)
		if value != "module" {
			return fmt.Errorf("js_import_style=%s: the glue and the @durablego/durable runtime are ECMAScript modules only (js_import_style=module)", value)
		}
	case "import_extension":
		o.tsOnly = append(o.tsOnly, name)
		switch strings.TrimPrefix(value, ".") {
		case "none", "":
			o.importExtension = ""
		case "js":
			o.importExtension = ".js"
		case "ts":
			o.importExtension = ".ts"
		default:
			return fmt.Errorf("import_extension=%s: want none, js or ts", value)
		}
	case "simple":
		// protoc-gen-connect-go's: the glue does not use that plugin's
		// code, so whatever it generates works. Accepted so that one opt
		// list can serve both plugins.
		if value != "" && value != "true" && value != "false" {
			return fmt.Errorf("simple=%s: want simple, simple=true or simple=false", value)
		}
	case "package_suffix":
		// protoc-gen-connect-go's, accepted for the same reason.
		if value != "" && !token.IsIdentifier(value) {
			return fmt.Errorf("package_suffix %q is not a valid Go identifier", value)
		}
	default:
		if esInert[name] {
			o.tsOnly = append(o.tsOnly, name)
			return nil
		}
		return fmt.Errorf("unknown parameter %q: protoc-gen-durable takes lang, simple, package_suffix, protogen's own and, with lang=ts, protoc-gen-es's", name)
	}
	return nil
}

// newPlugin parses the parameters of req and returns the plugin that
// answers it. With lang=ts, files without a Go package get a placeholder
// one, so that protogen accepts them: their Go names are never used.
func newPlugin(req *pluginpb.CodeGeneratorRequest) (*protogen.Plugin, *options, error) {
	opts := &options{lang: "go", targets: []string{targetJS, targetDTS}}
	if isTS(req.GetParameter()) {
		req = proto.CloneOf(req)
		params := []string{req.GetParameter()}
		for _, f := range req.GetProtoFile() {
			if f.GetOptions().GetGoPackage() == "" {
				params = append(params, "M"+f.GetName()+"=durable.invalid/ts/"+strings.TrimSuffix(f.GetName(), ".proto"))
			}
		}
		req.Parameter = proto.String(strings.Join(params, ","))
	}
	plugin, err := protogen.Options{ParamFunc: opts.set}.New(req)
	if err != nil {
		return nil, nil, err
	}
	if opts.lang != "ts" && len(opts.tsOnly) > 0 {
		return nil, nil, fmt.Errorf("%s applies to lang=ts only", opts.tsOnly[0])
	}
	return plugin, opts, nil
}

// isTS reports whether the parameter string param asks for lang=ts.
func isTS(param string) bool {
	for _, p := range strings.Split(param, ",") {
		if strings.TrimSpace(p) == "lang=ts" {
			return true
		}
	}
	return false
}

// generate writes the glue of every file to generate that has classes, in
// the language opts ask for, or returns the errors of all the files that have
// invalid ones. It tells notes of the services that look like classes whose
// option was forgotten.
func generate(plugin *protogen.Plugin, opts *options, notes io.Writer) error {
	plugin.SupportedFeatures = uint64(pluginpb.CodeGeneratorResponse_FEATURE_PROTO3_OPTIONAL) |
		uint64(pluginpb.CodeGeneratorResponse_FEATURE_SUPPORTS_EDITIONS)
	plugin.SupportedEditionsMinimum = descriptorpb.Edition_EDITION_PROTO2
	plugin.SupportedEditionsMaximum = descriptorpb.Edition_EDITION_2024
	var errs []error
	for _, file := range plugin.Files {
		if !file.Generate {
			continue
		}
		forgotten(notes, file)
		classes, err := fileClasses(plugin, file)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(classes) == 0 {
			continue
		}
		if opts.lang == "ts" {
			generateTSFile(plugin, file, classes, opts)
		} else {
			generateFile(plugin, file, classes)
		}
	}
	return errors.Join(errs...)
}

// durableProto is the file that declares the (durable.v1.object) option.
const durableProto = "durable/v1/durable.proto"

// forgotten writes a note to notes for each service of file without the
// (durable.v1.object) option when file imports the option's file: there a
// service without it is more likely a class whose option was forgotten than
// a plain Connect service, and generating nothing would say nothing.
func forgotten(notes io.Writer, file *protogen.File) {
	imports := file.Desc.Imports()
	if imports.Len() == 0 {
		return
	}
	found := false
	for i := range imports.Len() {
		found = found || imports.Get(i).Path() == durableProto
	}
	if !found {
		return
	}
	for _, service := range file.Services {
		if !proto.HasExtension(service.Desc.Options(), durablev1.E_Object) {
			fmt.Fprintf(notes, "protoc-gen-durable: %s: service %s has no (durable.v1.object) option, so it is not an object class and gets no Durable glue; add `option (durable.v1.object) = {state: \"...\"};` if it should be one\n",
				file.Desc.Path(), service.Desc.FullName())
		}
	}
}
