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
// output, and services without the option are ignored. The plugin takes the
// parameters common to protogen plugins, such as paths=source_relative, and
// no others.
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
package main

import (
	"errors"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

func main() {
	protogen.Options{}.Run(generate)
}

// generate writes the glue of every file to generate that has classes, or
// returns the errors of all the files that have invalid ones.
func generate(plugin *protogen.Plugin) error {
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
		if len(classes) > 0 {
			generateFile(plugin, file, classes)
		}
	}
	return errors.Join(errs...)
}
