//go:build ignore

// Command checkvalidate is run by generate.sh: it checks that the
// buf/validate/validate.proto our protos were compiled against describes
// exactly the buf/validate Go package that go.mod selects, the one whose
// rules protovalidate enforces at run time. They drift apart when
// buf.build/go/protovalidate is upgraded in go.mod without
// PROTOVALIDATE_VERSION in generate.sh, or the other way round.
//
//	go run scripts/checkvalidate.go IMAGE
//
// IMAGE is a buf image (a FileDescriptorSet) holding validate.proto.
package main

import (
	"fmt"
	"os"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
)

func main() {
	if err := check(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "checkvalidate:", err)
		os.Exit(1)
	}
}

func check(image string) error {
	b, err := os.ReadFile(image)
	if err != nil {
		return err
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(b, &set); err != nil {
		return fmt.Errorf("%s: %w", image, err)
	}
	name := validate.File_buf_validate_validate_proto.Path()
	want := protodesc.ToFileDescriptorProto(validate.File_buf_validate_validate_proto)
	for _, f := range set.GetFile() {
		if f.GetName() != name {
			continue
		}
		f.SourceCodeInfo = nil
		f.ProtoReflect().SetUnknown(nil) // buf's own image metadata
		if !proto.Equal(f, want) {
			return fmt.Errorf("the %s that buf compiled differs from the one in the Go package %s that go.mod selects: "+
				"set PROTOVALIDATE_VERSION in scripts/generate.sh to the github.com/bufbuild/protovalidate release that matches it",
				name, validate.File_buf_validate_validate_proto.Options().(*descriptorpb.FileOptions).GetGoPackage())
		}
		return nil
	}
	return fmt.Errorf("%s: no %s", image, name)
}
