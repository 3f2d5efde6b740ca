// protoc-gen-durable is a plugin for the Protobuf compiler that generates the
// Go glue of Durable Objects. A service becomes an object class when it
// carries the option (durable.v1.object):
//
//	service ChatRoom {
//	  option (durable.v1.object) = {state: "ChatRoomState"};
//	  rpc Post(PostRequest) returns (PostResponse);
//	}
//
// It runs beside protoc-gen-go and protoc-gen-connect-go, whose output the
// glue uses. With buf, your buf.gen.yaml will look like this:
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
// For each file with at least one such service, it writes one file into a
// sub-package of the one holding the .pb.go files, as protoc-gen-connect-go
// does. If path/to/file.proto has the Go package foov1, the output goes to
//
//	gen/path/to/foov1durable/file.durable.go
//
// and imports package foov1connect, which protoc-gen-connect-go writes with
// its default package_suffix. Files without such a service produce no
// output, and services without the option are ignored.
//
// # Generated code
//
// For the service ChatRoom above, the file declares:
//
//   - ChatRoomClassName, ChatRoomBinding and ChatRoomURLSegment: the class
//     name "ChatRoom", the binding name "CHAT_ROOM" and the URL segment
//     "chat-room";
//   - ChatRoomObject, the live handle passed to every method:
//     durable.Object[*ChatRoomState];
//   - ChatRoom, the interface to implement, with one method per RPC;
//   - ChatRoomStub, the interface by which callers call one object;
//   - RegisterChatRoom, which registers an implementation with a
//     server.Server, mounts its Connect handlers and returns a
//     ChatRoomNamespace, whose stubs call objects in process;
//   - ChatRoomClient and NewChatRoomClient, a remote namespace whose stubs
//     call objects over Connect, gRPC or gRPC-Web.
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
//   - import_extension=none (the default), js or ts: with lang=ts, the
//     extension of the relative imports of protoc-gen-es output, as
//     protoc-gen-es's own parameter of that name; set both the same.
//
// # TypeScript
//
// With lang=ts the plugin runs beside protoc-gen-es (target=ts, Connect-ES
// v2), into the same output directory:
//
//	plugins:
//	  # ...
//	  - local: protoc-gen-es
//	    out: web/src/gen
//	    opt: target=ts
//	    include_imports: true
//	  - local: protoc-gen-durable
//	    out: web/src/gen
//	    opt: lang=ts
//
// For path/to/file.proto it writes path/to/file_durable.ts beside
// protoc-gen-es's path/to/file_pb.ts. For the service ChatRoom it exports
// the constants ChatRoomClassName, ChatRoomBinding and ChatRoomURLSegment,
// and
//
//	createChatRoomNamespace(transport: Transport): Namespace<typeof ChatRoom>
//
// whose Namespace, from the runtime package @durablego/durable (web/durable
// in this repository), has idFromName, idFromString, newUniqueId,
// resolveName and get(id), the Connect-ES client of the service with the
// object's ID header set on every call. The file imports the descriptor of
// durable.v1.IDService from durable/v1/durable_pb in the same output
// directory: protoc-gen-es writes it when durable/v1/durable.proto is
// generated or include_imports is set. Files need no go_package option
// for lang=ts; the errors above are the same.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

func main() {
	if len(os.Args) > 1 {
		fmt.Fprintf(os.Stderr, "%s: unknown argument %q (this program is run by protoc or buf, not directly)\n", filepath.Base(os.Args[0]), os.Args[1])
		os.Exit(1)
	}
	if err := serve(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", filepath.Base(os.Args[0]), err)
		os.Exit(1)
	}
}

// serve reads a code generator request from r and writes the response to w.
func serve(r io.Reader, w io.Writer) error {
	in, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	req := &pluginpb.CodeGeneratorRequest{}
	if err := proto.Unmarshal(in, req); err != nil {
		return err
	}
	out, err := proto.Marshal(respond(req))
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// respond runs the plugin on req. Errors in the request, its parameters or
// its classes are reported in the response, as protoc expects.
func respond(req *pluginpb.CodeGeneratorRequest) *pluginpb.CodeGeneratorResponse {
	plugin, opts, err := newPlugin(req)
	if err != nil {
		return &pluginpb.CodeGeneratorResponse{Error: proto.String(err.Error())}
	}
	if err := generate(plugin, opts); err != nil {
		plugin.Error(err)
	}
	return plugin.Response()
}

// options are the plugin's own parameters.
type options struct {
	lang            string // "go" or "ts"
	importExtension string // with lang=ts: "", ".js" or ".ts"
}

// set sets the parameter name to value.
func (o *options) set(name, value string) error {
	switch name {
	case "lang":
		if value != "go" && value != "ts" {
			return fmt.Errorf("lang=%s: want lang=go or lang=ts", value)
		}
		o.lang = value
	case "import_extension":
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
	default:
		return fmt.Errorf("unknown parameter %q: protoc-gen-durable takes lang, import_extension and protogen's own", name)
	}
	return nil
}

// newPlugin parses the parameters of req and returns the plugin that
// answers it. With lang=ts, files without a Go package get a placeholder
// one, so that protogen accepts them: their Go names are never used.
func newPlugin(req *pluginpb.CodeGeneratorRequest) (*protogen.Plugin, *options, error) {
	opts := &options{lang: "go"}
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
	if opts.lang != "ts" && opts.importExtension != "" {
		return nil, nil, errors.New("import_extension applies to lang=ts only")
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
// invalid ones.
func generate(plugin *protogen.Plugin, opts *options) error {
	plugin.SupportedFeatures = uint64(pluginpb.CodeGeneratorResponse_FEATURE_PROTO3_OPTIONAL) |
		uint64(pluginpb.CodeGeneratorResponse_FEATURE_SUPPORTS_EDITIONS)
	plugin.SupportedEditionsMinimum = descriptorpb.Edition_EDITION_PROTO2
	plugin.SupportedEditionsMaximum = descriptorpb.Edition_EDITION_2024
	var errs []error
	for _, file := range plugin.Files {
		if !file.Generate {
			continue
		}
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
