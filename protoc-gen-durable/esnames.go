package main

import (
	"regexp"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// esReserved are the names protoc-gen-es escapes with a trailing "$", as
// safeIdentifier of @bufbuild/protoplugin 2.x does.
var esReserved = map[string]bool{}

func init() {
	for _, name := range strings.Fields(`
		break case catch class const continue debugger default delete do else
		export extends false finally for function if import in instanceof new
		null return super switch this throw true try typeof var void while with
		yield
		enum implements interface let package private protected public static
		Object
		bigint number boolean string object
		globalThis Uint8Array Partial`) {
		esReserved[name] = true
	}
}

// esSafe escapes name as protoc-gen-es does.
func esSafe(name string) string {
	if esReserved[name] {
		return name + "$"
	}
	return name
}

// esSalt is the suffix protoc-gen-es adds to the i-th candidate of a name
// that clashes: none, "$", "$1", "$2"…
func esSalt(i int) string {
	switch i {
	case 0:
		return ""
	case 1:
		return "$"
	}
	return "$" + strconv.Itoa(i-1)
}

var esFileNameInvalid = regexp.MustCompile(`[^a-zA-Z0-9_]+`)

// esServiceNames returns the names under which protoc-gen-es exports the
// descriptors of the services of file, following allNames of
// @bufbuild/protoplugin 2.x: first the shapes of messages and enums take
// their names, then the descriptors of the file, the messages and enums
// ("…Schema"), the services and the extensions, in that order, each taking
// the first candidate not yet taken.
func esServiceNames(file protoreflect.FileDescriptor) map[protoreflect.FullName]string {
	taken := map[string]bool{}
	take := func(ideal func(i int) string) string {
		for i := 0; ; i++ {
			if name := ideal(i); !taken[name] {
				taken[name] = true
				return name
			}
		}
	}
	pkg := string(file.Package())
	identifier := func(d protoreflect.Descriptor) string {
		name := string(d.FullName())
		if pkg != "" {
			name = strings.TrimPrefix(name, pkg+".")
		}
		return strings.ReplaceAll(name, ".", "_")
	}
	types := esNestedTypes(file)

	for _, d := range types {
		switch d.(type) {
		case protoreflect.MessageDescriptor, protoreflect.EnumDescriptor:
			take(func(i int) string { return esSafe(identifier(d) + esSalt(i)) })
		}
	}
	fileName := "file_" + esFileNameInvalid.ReplaceAllString(strings.TrimSuffix(file.Path(), ".proto"), "_")
	take(func(i int) string { return esSafe(fileName + esSalt(i)) })
	services := map[protoreflect.FullName]string{}
	for _, d := range types {
		switch d.(type) {
		case protoreflect.MessageDescriptor, protoreflect.EnumDescriptor:
			take(func(i int) string { return esSafe(identifier(d) + "Schema" + esSalt(i)) })
		case protoreflect.ServiceDescriptor:
			services[d.FullName()] = take(func(i int) string { return esSafe(identifier(d) + esSalt(i)) })
		default: // extensions
			take(func(i int) string { return esSafe(identifier(d) + esSalt(i)) })
		}
	}
	return services
}

// esNestedTypes lists the declarations of file in the order of nestedTypes
// of @bufbuild/protobuf/reflect: each message followed by its nested
// declarations (messages, recursively, then enums, then extensions), then
// the file's enums, services and extensions. Map entries have no place in it.
func esNestedTypes(file protoreflect.FileDescriptor) []protoreflect.Descriptor {
	var out []protoreflect.Descriptor
	var message func(m protoreflect.MessageDescriptor)
	message = func(m protoreflect.MessageDescriptor) {
		if m.IsMapEntry() {
			return
		}
		out = append(out, m)
		for i := range m.Messages().Len() {
			message(m.Messages().Get(i))
		}
		for i := range m.Enums().Len() {
			out = append(out, m.Enums().Get(i))
		}
		for i := range m.Extensions().Len() {
			out = append(out, m.Extensions().Get(i))
		}
	}
	for i := range file.Messages().Len() {
		message(file.Messages().Get(i))
	}
	for i := range file.Enums().Len() {
		out = append(out, file.Enums().Get(i))
	}
	for i := range file.Services().Len() {
		out = append(out, file.Services().Get(i))
	}
	for i := range file.Extensions().Len() {
		out = append(out, file.Extensions().Get(i))
	}
	return out
}
