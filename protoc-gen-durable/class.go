package main

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	durablev1 "github.com/durablego/durable/gen/durable/v1"
)

// reservedMethods are the Go method names an RPC may not take, and why.
var reservedMethods = map[string]string{
	"ID":               "the stub's ID method",
	"Init":             "the object hook Init",
	"Alarm":            "the object hook Alarm",
	"Fetch":            "the object hook Fetch",
	"WebSocketMessage": "the object hook WebSocketMessage",
	"WebSocketClose":   "the object hook WebSocketClose",
	"WebSocketError":   "the object hook WebSocketError",
}

// A class is a service that carries the option (durable.v1.object), checked
// and resolved.
type class struct {
	service *protogen.Service
	state   *protogen.Message
	binding string // constant-case binding name
	segment string // kebab-case URL segment
	sql     bool
}

// fileClasses returns the classes of the services of file that carry the
// option (durable.v1.object), in order, or the errors that keep any of them
// from being generated.
func fileClasses(plugin *protogen.Plugin, file *protogen.File) ([]*class, error) {
	var (
		scope   *protoregistry.Files
		classes []*class
		errs    []error
	)
	for _, service := range file.Services {
		if !proto.HasExtension(service.Desc.Options(), durablev1.E_Object) {
			continue
		}
		opts := proto.GetExtension(service.Desc.Options(), durablev1.E_Object).(*durablev1.ObjectOptions)
		if scope == nil {
			scope = visibleFiles(file.Desc)
		}
		c, err := newClass(plugin, scope, service, opts)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		classes = append(classes, c)
	}
	return classes, errors.Join(errs...)
}

// newClass checks service and its options, and resolves its state message in
// scope, the files its .proto file can see. Each of the errors it returns
// names the file and the service.
func newClass(plugin *protogen.Plugin, scope *protoregistry.Files, service *protogen.Service, opts *durablev1.ObjectOptions) (*class, error) {
	var errs []error
	fail := func(err error) {
		errs = append(errs, fmt.Errorf("%s: service %s: %w", service.Desc.ParentFile().Path(), service.Desc.FullName(), err))
	}
	state, err := resolveState(plugin, scope, service, opts.GetState())
	if err != nil {
		fail(err)
	}
	binding := opts.GetBinding()
	switch {
	case binding == "":
		binding = constantCase(string(service.Desc.Name()))
	case !validBinding.MatchString(binding):
		fail(fmt.Errorf("binding %q does not match %s", binding, validBinding))
	}
	for _, method := range service.Methods {
		if err := checkMethod(method); err != nil {
			fail(err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &class{
		service: service,
		state:   state,
		binding: binding,
		segment: kebabCase(string(service.Desc.Name())),
		sql:     opts.GetSql(),
	}, nil
}

// resolveState finds the message that the option's state field names. A
// name without dots is looked up in the service's package; a name with dots
// is fully qualified, with or without a leading dot.
func resolveState(plugin *protogen.Plugin, scope *protoregistry.Files, service *protogen.Service, state string) (*protogen.Message, error) {
	if state == "" {
		return nil, errors.New("option (durable.v1.object) has no state: name the message that holds the object's state")
	}
	name := protoreflect.FullName(strings.TrimPrefix(state, "."))
	if !strings.Contains(state, ".") {
		name = service.Desc.ParentFile().Package().Append(name.Name())
	}
	if !name.IsValid() {
		return nil, fmt.Errorf("state %q is not a valid message name", state)
	}
	d, err := scope.FindDescriptorByName(name)
	if err != nil {
		return nil, fmt.Errorf("state %q names no message: found no %s in %s or its imports", state, name, service.Desc.ParentFile().Path())
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return nil, fmt.Errorf("state %q names %s %s, not a message", state, kind(d), name)
	}
	if md.IsMapEntry() {
		return nil, fmt.Errorf("state %q names the entry of a map field, which has no Go type", state)
	}
	return findMessage(plugin.FilesByPath[md.ParentFile().Path()].Messages, name), nil
}

// checkMethod reports whether method can be a method of an object class.
func checkMethod(method *protogen.Method) error {
	client, server := method.Desc.IsStreamingClient(), method.Desc.IsStreamingServer()
	if client || server {
		streaming := "bidirectional"
		if !server {
			streaming = "client"
		} else if !client {
			streaming = "server"
		}
		return fmt.Errorf("rpc %s is %s-streaming: durable objects support unary RPCs only", method.Desc.Name(), streaming)
	}
	if hook, ok := reservedMethods[method.GoName]; ok {
		return fmt.Errorf("rpc %s: its Go method name %s is reserved, as it would collide with %s", method.Desc.Name(), method.GoName, hook)
	}
	return nil
}

// visibleFiles returns the files whose declarations file can refer to, as
// protoc resolves names: file itself, the files it imports, and the files
// those import publicly, transitively.
func visibleFiles(file protoreflect.FileDescriptor) *protoregistry.Files {
	files := new(protoregistry.Files)
	var visit func(fd protoreflect.FileDescriptor, publicOnly bool)
	visit = func(fd protoreflect.FileDescriptor, publicOnly bool) {
		if _, err := files.FindFileByPath(fd.Path()); err == nil {
			return
		}
		// Files compiled together cannot conflict, so this cannot fail.
		_ = files.RegisterFile(fd)
		imports := fd.Imports()
		for i := range imports.Len() {
			if imp := imports.Get(i); !publicOnly || imp.IsPublic {
				visit(imp.FileDescriptor, true)
			}
		}
	}
	visit(file, false)
	return files
}

// findMessage returns the message named name among msgs and their nested
// messages, or nil.
func findMessage(msgs []*protogen.Message, name protoreflect.FullName) *protogen.Message {
	for _, m := range msgs {
		if m.Desc.FullName() == name {
			return m
		}
		if found := findMessage(m.Messages, name); found != nil {
			return found
		}
	}
	return nil
}

// kind names the kind of d, which is not a message, with its article.
func kind(d protoreflect.Descriptor) string {
	switch d := d.(type) {
	case protoreflect.EnumDescriptor:
		return "the enum"
	case protoreflect.EnumValueDescriptor:
		return "the enum value"
	case protoreflect.ServiceDescriptor:
		return "the service"
	case protoreflect.MethodDescriptor:
		return "the rpc"
	case protoreflect.FieldDescriptor:
		if d.IsExtension() {
			return "the extension"
		}
		return "the field"
	case protoreflect.OneofDescriptor:
		return "the oneof"
	}
	return "the declaration"
}
