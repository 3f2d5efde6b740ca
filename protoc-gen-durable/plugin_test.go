package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"

	durablev1 "github.com/durablego/durable/gen/durable/v1"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// A goldenCase is a set of .proto files to generate and the directory that
// holds the expected output, under the names the plugin gives it.
type goldenCase struct {
	name  string
	files []*descriptorpb.FileDescriptorProto
	dir   string
}

// goldenCases returns the golden cases, built afresh. The first is the
// counter example, whose golden file is the one committed under gen/.
func goldenCases(t *testing.T) []goldenCase {
	counter := protodesc.ToFileDescriptorProto(counterv1.File_examples_counter_v1_counter_proto)
	addSourceComments(t, counter, "../proto/examples/counter/v1/counter.proto")

	// A multi-word class with SQL, comments and a second class, beside a
	// service that is no class.
	chat := newFile("chat/v1/chat.proto", "test.chat.v1", "example.com/durabletest/gen/chat/v1;chatv1")
	addMessages(chat, "ChatRoomState", "LobbyState")
	addService(chat, "ChatRoom", &durablev1.ObjectOptions{State: "ChatRoomState", Sql: true}, "Post", "History")
	addComment(chat, " ChatRoom is one room of a chat.\n\n Its members post messages that everyone in the room reads.\n", 6, 0)
	addComment(chat, " Post appends a message to the room.\n", 6, 0, 2, 0)
	addComment(chat, " History returns the latest messages,\n newest first.\n", 6, 0, 2, 1)
	addService(chat, "Moderation", nil, "Ban")
	addService(chat, "Lobby", &durablev1.ObjectOptions{State: ".test.chat.v1.LobbyState"}, "ListRooms")

	// An acronym, a binding override and a nested state message.
	proxy := newFile("proxy/v1/proxy.proto", "test.proxy.v1", "example.com/durabletest/gen/proxy/v1;proxyv1")
	addMessages(proxy, "Proxy")
	proxy.MessageType[0].NestedType = []*descriptorpb.DescriptorProto{{Name: proto.String("Cache")}}
	addService(proxy, "HTTPProxy", &durablev1.ObjectOptions{State: "test.proxy.v1.Proxy.Cache", Binding: "PROXY"}, "Forward")

	// A state message of another file and Go package.
	ledger := newFile("common/v1/ledger.proto", "test.common.v1", "example.com/durabletest/gen/common/v1;commonv1")
	addMessages(ledger, "Ledger")
	inventory := newFile("shop/v1/inventory.proto", "test.shop.v1", "example.com/durabletest/gen/shop/v1;shopv1", ledger.GetName())
	addService(inventory, "Inventory", &durablev1.ObjectOptions{State: "test.common.v1.Ledger"}, "Reserve", "Release")

	return []goldenCase{
		{"counter", []*descriptorpb.FileDescriptorProto{counter}, "../gen"},
		{"chat", []*descriptorpb.FileDescriptorProto{chat}, "testdata"},
		{"proxy", []*descriptorpb.FileDescriptorProto{proxy}, "testdata"},
		{"shop", []*descriptorpb.FileDescriptorProto{ledger, inventory}, "testdata"},
	}
}

func TestGolden(t *testing.T) {
	t.Parallel()
	checkGolden(t, "paths=source_relative", goldenCases(t), map[string][]string{
		"counter": {"examples/counter/v1/counterv1durableclient/counter.durable.go", "examples/counter/v1/counterv1durable/counter.durable.go"},
		"chat":    {"chat/v1/chatv1durableclient/chat.durable.go", "chat/v1/chatv1durable/chat.durable.go"},
		"proxy":   {"proxy/v1/proxyv1durableclient/proxy.durable.go", "proxy/v1/proxyv1durable/proxy.durable.go"},
		"shop":    {"shop/v1/shopv1durableclient/inventory.durable.go", "shop/v1/shopv1durable/inventory.durable.go"},
	})
}

// checkGolden runs the plugin with param over each case and compares what
// it writes with the case's golden files (rewritten with -update); want
// names the files each case must produce.
func checkGolden(t *testing.T, param string, cases []goldenCase, want map[string][]string) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp := run(t, request(t, param, tc.files...))
			if resp.Error != nil {
				t.Fatalf("plugin error: %s", resp.GetError())
			}
			var names []string
			for _, f := range resp.File {
				names = append(names, f.GetName())
				golden := filepath.Join(tc.dir, filepath.FromSlash(f.GetName()))
				if *update {
					if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(golden, []byte(f.GetContent()), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				data, err := os.ReadFile(golden)
				if err != nil {
					t.Fatal(err)
				}
				if diff := firstDiff(string(data), f.GetContent()); diff != "" {
					t.Errorf("%s differs from the golden file (rerun with -update to rewrite it):\n%s", golden, diff)
				}
			}
			if strings.Join(names, " ") != strings.Join(want[tc.name], " ") {
				t.Errorf("generated %q, want %q", names, want[tc.name])
			}
		})
	}
}

func TestNoClasses(t *testing.T) {
	t.Parallel()
	f := newFile("plain/v1/plain.proto", "test.plain.v1", "example.com/durabletest/gen/plain/v1;plainv1")
	addService(f, "Plain", nil, "Do")
	resp := run(t, request(t, "paths=source_relative", f))
	if resp.Error != nil || len(resp.File) != 0 {
		t.Errorf("got error %q and %d files, want neither", resp.GetError(), len(resp.File))
	}
}

// TestGoldenWithConnectOptions: the options of protoc-gen-connect-go, given
// to this plugin too as one opt list would, are accepted and change nothing
// (TestCompileGolden compiles the result with that plugin's output).
func TestGoldenWithConnectOptions(t *testing.T) {
	t.Parallel()
	for _, param := range []string{"paths=source_relative,simple", "paths=source_relative,simple=true,package_suffix=rpc"} {
		checkGolden(t, param, goldenCases(t)[1:2], map[string][]string{"chat": {"chat/v1/chatv1durableclient/chat.durable.go", "chat/v1/chatv1durable/chat.durable.go"}})
	}
	for _, param := range []string{"simple=maybe", "package_suffix=not-an-identifier"} {
		if resp := run(t, request(t, param, goldenCases(t)[1].files...)); resp.Error == nil {
			t.Errorf("%s: accepted", param)
		}
	}
}

// TestForgottenOption: a service without the option in a file that imports
// durable/v1/durable.proto gets a note naming it; one in a file that does
// not is a plain Connect service and gets none.
func TestForgottenOption(t *testing.T) {
	t.Parallel()
	f := newFile("plain/v1/plain.proto", "test.plain.v1", "example.com/durabletest/gen/plain/v1;plainv1")
	addService(f, "Plain", nil, "Do")
	var notes strings.Builder
	resp := respond(request(t, "paths=source_relative", f), &notes)
	if resp.Error != nil || len(resp.File) != 0 {
		t.Fatalf("got error %q and %d files, want neither", resp.GetError(), len(resp.File))
	}
	if got := notes.String(); !strings.Contains(got, "plain/v1/plain.proto: service test.plain.v1.Plain has no (durable.v1.object) option") {
		t.Errorf("notes = %q, want one naming the file and the service", got)
	}

	f.Dependency = nil
	notes.Reset()
	if resp := respond(request(t, "paths=source_relative", f), &notes); resp.Error != nil || notes.Len() != 0 {
		t.Errorf("a file without the durable import: error %q, notes %q; want neither", resp.GetError(), notes.String())
	}
}

func TestImportPaths(t *testing.T) {
	t.Parallel()
	counter := protodesc.ToFileDescriptorProto(counterv1.File_examples_counter_v1_counter_proto)
	resp := run(t, request(t, "", counter))
	want := []string{
		"github.com/durablego/durable/gen/examples/counter/v1/counterv1durableclient/counter.durable.go",
		"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable/counter.durable.go",
	}
	var got []string
	for _, f := range resp.File {
		got = append(got, f.GetName())
	}
	if resp.Error != nil || !slices.Equal(got, want) {
		t.Fatalf("got error %q and files %q, want only %q", resp.GetError(), got, want)
	}
}

func TestPublicImport(t *testing.T) {
	t.Parallel()
	ledger := newFile("common/v1/ledger.proto", "test.common.v1", "example.com/durabletest/gen/common/v1;commonv1")
	addMessages(ledger, "Ledger")
	forward := newFile("common/v1/forward.proto", "test.common.v1", "example.com/durabletest/gen/common/v1;commonv1", ledger.GetName())
	forward.PublicDependency = []int32{1} // ledger.proto, after durable.proto
	shop := newFile("shop/v1/shop.proto", "test.shop.v1", "example.com/durabletest/gen/shop/v1;shopv1", forward.GetName())
	addService(shop, "Shop", &durablev1.ObjectOptions{State: "test.common.v1.Ledger"}, "Buy")
	resp := run(t, request(t, "paths=source_relative", ledger, forward, shop))
	if resp.Error != nil {
		t.Fatalf("plugin error: %s", resp.GetError())
	}
	if len(resp.File) != 2 || !strings.Contains(resp.File[1].GetContent(), "durable.Object[*v1.Ledger]") {
		t.Errorf("the state is not the publicly imported Ledger:\n%v", resp.File)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	type errorCase struct {
		name string
		edit func(f *descriptorpb.FileDescriptorProto)
		want string
	}
	tests := []errorCase{
		{
			name: "no state",
			edit: func(f *descriptorpb.FileDescriptorProto) { setOptions(f, &durablev1.ObjectOptions{}) },
			want: "has no state",
		},
		{
			name: "missing state",
			edit: func(f *descriptorpb.FileDescriptorProto) { setOptions(f, &durablev1.ObjectOptions{State: "Nope"}) },
			want: `state "Nope" names no message: found no test.room.v1.Nope in room/v1/room.proto or its imports`,
		},
		{
			name: "missing qualified state",
			edit: func(f *descriptorpb.FileDescriptorProto) {
				setOptions(f, &durablev1.ObjectOptions{State: ".test.other.v1.RoomState"})
			},
			want: "found no test.other.v1.RoomState in room/v1/room.proto or its imports",
		},
		{
			name: "state not imported",
			edit: func(f *descriptorpb.FileDescriptorProto) { setOptions(f, &durablev1.ObjectOptions{State: "Hidden"}) },
			want: "found no test.room.v1.Hidden in room/v1/room.proto or its imports",
		},
		{
			name: "invalid state name",
			edit: func(f *descriptorpb.FileDescriptorProto) {
				setOptions(f, &durablev1.ObjectOptions{State: "test..RoomState"})
			},
			want: `state "test..RoomState" is not a valid message name`,
		},
		{
			name: "enum state",
			edit: func(f *descriptorpb.FileDescriptorProto) { setOptions(f, &durablev1.ObjectOptions{State: "Color"}) },
			want: `state "Color" names the enum test.room.v1.Color, not a message`,
		},
		{
			name: "service state",
			edit: func(f *descriptorpb.FileDescriptorProto) { setOptions(f, &durablev1.ObjectOptions{State: "Room"}) },
			want: `state "Room" names the service test.room.v1.Room, not a message`,
		},
		{
			name: "field state",
			edit: func(f *descriptorpb.FileDescriptorProto) {
				setOptions(f, &durablev1.ObjectOptions{State: "test.room.v1.RoomState.tags"})
			},
			want: "names the field test.room.v1.RoomState.tags, not a message",
		},
		{
			name: "map entry state",
			edit: func(f *descriptorpb.FileDescriptorProto) {
				setOptions(f, &durablev1.ObjectOptions{State: "test.room.v1.RoomState.TagsEntry"})
			},
			want: "names the entry of a map field, which has no Go type",
		},
		{
			name: "invalid binding",
			edit: func(f *descriptorpb.FileDescriptorProto) {
				setOptions(f, &durablev1.ObjectOptions{State: "RoomState", Binding: "chat-room"})
			},
			want: `binding "chat-room" does not match ^[A-Z][A-Z0-9_]*$`,
		},
		{
			name: "client streaming",
			edit: func(f *descriptorpb.FileDescriptorProto) { f.Service[0].Method[0].ClientStreaming = proto.Bool(true) },
			want: "rpc Say is client-streaming: durable objects support unary RPCs only",
		},
		{
			name: "server streaming",
			edit: func(f *descriptorpb.FileDescriptorProto) { f.Service[0].Method[0].ServerStreaming = proto.Bool(true) },
			want: "rpc Say is server-streaming: durable objects support unary RPCs only",
		},
		{
			name: "bidi streaming",
			edit: func(f *descriptorpb.FileDescriptorProto) {
				f.Service[0].Method[0].ClientStreaming = proto.Bool(true)
				f.Service[0].Method[0].ServerStreaming = proto.Bool(true)
			},
			want: "rpc Say is bidirectional-streaming: durable objects support unary RPCs only",
		},
		{
			name: "ID",
			edit: func(f *descriptorpb.FileDescriptorProto) { f.Service[0].Method[0].Name = proto.String("ID") },
			want: "rpc ID: its Go method name ID is reserved, as it would collide with the stub's ID method",
		},
	}
	for _, hook := range []string{"Init", "Alarm", "Fetch", "WebSocketMessage", "WebSocketClose", "WebSocketError"} {
		tests = append(tests, errorCase{
			name: hook,
			edit: func(f *descriptorpb.FileDescriptorProto) { f.Service[0].Method[0].Name = proto.String(hook) },
			want: "its Go method name " + hook + " is reserved, as it would collide with the object hook " + hook,
		})
	}
	tests = append(tests, errorCase{
		name: "snake-case hook",
		edit: func(f *descriptorpb.FileDescriptorProto) {
			f.Service[0].Method[0].Name = proto.String("web_socket_close")
		},
		want: "rpc web_socket_close: its Go method name WebSocketClose is reserved",
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			room, hidden := errorCaseFiles()
			tt.edit(room)
			resp := run(t, request(t, "paths=source_relative", hidden, room))
			msg := resp.GetError()
			if !strings.HasPrefix(msg, "room/v1/room.proto: service test.room.v1.Room: ") || !strings.Contains(msg, tt.want) {
				t.Errorf("got error %q, want one about room/v1/room.proto, service test.room.v1.Room, containing %q", msg, tt.want)
			}
			if len(resp.File) != 0 {
				t.Errorf("got %d files with the error", len(resp.File))
			}
		})
	}

	// The valid base case generates.
	room, hidden := errorCaseFiles()
	if resp := run(t, request(t, "paths=source_relative", hidden, room)); resp.Error != nil || len(resp.File) != 2 {
		t.Errorf("base case: got error %q and %d files, want 2 files (the remote and the local package)", resp.GetError(), len(resp.File))
	}
}

func TestErrorsJoined(t *testing.T) {
	t.Parallel()
	room, hidden := errorCaseFiles()
	setOptions(room, &durablev1.ObjectOptions{Binding: "x"})
	room.Service[0].Method[0].Name = proto.String("Fetch")
	msg := run(t, request(t, "paths=source_relative", hidden, room)).GetError()
	const prefix = "room/v1/room.proto: service test.room.v1.Room: "
	want := prefix + "option (durable.v1.object) has no state: name the message that holds the object's state\n" +
		prefix + `binding "x" does not match ^[A-Z][A-Z0-9_]*$` + "\n" +
		prefix + "rpc Fetch: its Go method name Fetch is reserved, as it would collide with the object hook Fetch"
	if msg != want {
		t.Errorf("got error\n%s\nwant\n%s", msg, want)
	}
}

// errorCaseFiles returns a valid file whose service Room the error cases
// break, and a file of the same package that it does not import.
func errorCaseFiles() (room, hidden *descriptorpb.FileDescriptorProto) {
	room = newFile("room/v1/room.proto", "test.room.v1", "example.com/durabletest/gen/room/v1;roomv1")
	addMessages(room, "RoomState")
	state := room.MessageType[0]
	state.NestedType = []*descriptorpb.DescriptorProto{{
		Name: proto.String("TagsEntry"),
		Field: []*descriptorpb.FieldDescriptorProto{
			{Name: proto.String("key"), JsonName: proto.String("key"), Number: proto.Int32(1), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()},
			{Name: proto.String("value"), JsonName: proto.String("value"), Number: proto.Int32(2), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()},
		},
		Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
	}}
	state.Field = []*descriptorpb.FieldDescriptorProto{{
		Name:     proto.String("tags"),
		JsonName: proto.String("tags"),
		Number:   proto.Int32(1),
		Label:    descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum(),
		Type:     descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(),
		TypeName: proto.String(".test.room.v1.RoomState.TagsEntry"),
	}}
	room.EnumType = []*descriptorpb.EnumDescriptorProto{{
		Name:  proto.String("Color"),
		Value: []*descriptorpb.EnumValueDescriptorProto{{Name: proto.String("COLOR_UNSPECIFIED"), Number: proto.Int32(0)}},
	}}
	addService(room, "Room", &durablev1.ObjectOptions{State: "RoomState"}, "Say")

	hidden = newFile("room/v1/hidden.proto", "test.room.v1", "example.com/durabletest/gen/room/v1;roomv1")
	addMessages(hidden, "Hidden")
	return room, hidden
}

// setOptions sets the option (durable.v1.object) of the first service of f.
func setOptions(f *descriptorpb.FileDescriptorProto, opts *durablev1.ObjectOptions) {
	proto.SetExtension(f.Service[0].Options, durablev1.E_Object, opts)
}

// newFile returns a proto3 file that imports durable/v1/durable.proto and
// the files deps.
func newFile(path, pkg, goPackage string, deps ...string) *descriptorpb.FileDescriptorProto {
	return &descriptorpb.FileDescriptorProto{
		Name:           proto.String(path),
		Package:        proto.String(pkg),
		Dependency:     append([]string{durablev1.File_durable_v1_durable_proto.Path()}, deps...),
		Options:        &descriptorpb.FileOptions{GoPackage: proto.String(goPackage)},
		SourceCodeInfo: &descriptorpb.SourceCodeInfo{},
		Syntax:         proto.String("proto3"),
	}
}

// addMessages adds empty messages to f.
func addMessages(f *descriptorpb.FileDescriptorProto, names ...string) {
	for _, name := range names {
		f.MessageType = append(f.MessageType, &descriptorpb.DescriptorProto{Name: proto.String(name)})
	}
}

// addService adds to f a service with the option (durable.v1.object) set to
// opts, unless nil, and a unary rpc for each name in rpcs, taking the
// message <rpc>Request and returning the message <rpc>Response, which it
// adds too.
func addService(f *descriptorpb.FileDescriptorProto, name string, opts *durablev1.ObjectOptions, rpcs ...string) {
	service := &descriptorpb.ServiceDescriptorProto{Name: proto.String(name), Options: &descriptorpb.ServiceOptions{}}
	if opts != nil {
		proto.SetExtension(service.Options, durablev1.E_Object, opts)
	}
	for _, rpc := range rpcs {
		addMessages(f, rpc+"Request", rpc+"Response")
		service.Method = append(service.Method, &descriptorpb.MethodDescriptorProto{
			Name:       proto.String(rpc),
			InputType:  proto.String("." + f.GetPackage() + "." + rpc + "Request"),
			OutputType: proto.String("." + f.GetPackage() + "." + rpc + "Response"),
		})
	}
	f.Service = append(f.Service, service)
}

// addComment gives the declaration of f at path the leading comment text,
// as protoc records it: each line without its "//".
func addComment(f *descriptorpb.FileDescriptorProto, text string, path ...int32) {
	f.SourceCodeInfo.Location = append(f.SourceCodeInfo.Location, &descriptorpb.SourceCodeInfo_Location{
		Path:            path,
		Span:            []int32{0, 0, 0},
		LeadingComments: proto.String(text),
	})
}

// addSourceComments gives the services and rpcs of f the leading comments
// they have in the .proto source file at path: the run of "//" lines right
// above their declaration. Generated descriptors carry no comments.
func addSourceComments(t *testing.T, f *descriptorpb.FileDescriptorProto, path string) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	leading := func(decl string) string {
		for i, line := range lines {
			if !strings.HasPrefix(strings.TrimSpace(line), decl) {
				continue
			}
			var text string
			for j := i - 1; j >= 0; j-- {
				comment, ok := strings.CutPrefix(strings.TrimSpace(lines[j]), "//")
				if !ok {
					break
				}
				text = comment + "\n" + text
			}
			return text
		}
		t.Fatalf("%s: no %q", path, decl)
		return ""
	}
	f.SourceCodeInfo = &descriptorpb.SourceCodeInfo{}
	for i, service := range f.Service {
		if text := leading("service " + service.GetName() + " "); text != "" {
			addComment(f, text, 6, int32(i))
		}
		for j, method := range service.Method {
			if text := leading("rpc " + method.GetName() + "("); text != "" {
				addComment(f, text, 6, int32(i), 2, int32(j))
			}
		}
	}
}

// request returns the request protoc would send to generate files with the
// parameter param, after a trip through the wire format.
func request(t *testing.T, param string, files ...*descriptorpb.FileDescriptorProto) *pluginpb.CodeGeneratorRequest {
	t.Helper()
	req := &pluginpb.CodeGeneratorRequest{
		Parameter: proto.String(param),
		ProtoFile: []*descriptorpb.FileDescriptorProto{
			protodesc.ToFileDescriptorProto(descriptorpb.File_google_protobuf_descriptor_proto),
			protodesc.ToFileDescriptorProto(durablev1.File_durable_v1_durable_proto),
		},
	}
	for _, f := range files {
		req.FileToGenerate = append(req.FileToGenerate, f.GetName())
		req.ProtoFile = append(req.ProtoFile, f)
	}
	data, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	req = &pluginpb.CodeGeneratorRequest{}
	if err := proto.Unmarshal(data, req); err != nil {
		t.Fatal(err)
	}
	return req
}

// run runs the plugin on req as main does.
func run(t *testing.T, req *pluginpb.CodeGeneratorRequest) *pluginpb.CodeGeneratorResponse {
	t.Helper()
	return respond(req, io.Discard)
}

// firstDiff describes the first line where got differs from want, or
// returns "" if they are equal.
func firstDiff(want, got string) string {
	if want == got {
		return ""
	}
	wantLines, gotLines := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range max(len(wantLines), len(gotLines)) {
		var w, g string
		if i < len(wantLines) {
			w = wantLines[i]
		}
		if i < len(gotLines) {
			g = gotLines[i]
		}
		if w != g {
			return fmt.Sprintf("line %d:\nwant %q\ngot  %q", i+1, w, g)
		}
	}
	return "" // unreachable: equal lines make equal texts
}
