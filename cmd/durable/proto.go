package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

// optionsFile is where the options file lives in a new project, and under
// the directory "durable proto" is given.
const optionsFile = "durable/v1/durable.proto"

// defaultProtoDir is the directory of buf.yaml's second module in a new
// project, where "durable proto" writes by default.
const defaultProtoDir = "proto-deps"

func runProto(_ context.Context, e *env, fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return errUsage
	}
	dir := defaultProtoDir
	if fs.NArg() == 1 {
		dir = fs.Arg(0)
	}
	b, err := templates.ReadFile("template/" + defaultProtoDir + "/" + optionsFile)
	if err != nil {
		return err
	}
	p := filepath.Join(dir, filepath.FromSlash(optionsFile))
	old, err := os.ReadFile(p)
	switch {
	case err == nil && bytes.Equal(old, b):
		_, err = fmt.Fprintf(e.stdout, "durable proto: %s is up to date\n", p)
		return err
	case err != nil && !os.IsNotExist(err):
		return err
	}
	// Replaced when it differs: the file must be the one of the runtime
	// the project builds with, and it is Durable's, not the project's.
	if err := writeFile(p, b, 0); err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "durable proto: wrote %s; import it as %q\n", p, optionsFile)
	return err
}
