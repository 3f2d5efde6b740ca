// Command durable creates Durable projects and operates Durable servers.
//
// Usage:
//
//	durable <command> [flags] [arguments]
//
// Run "durable help" for the list of commands and "durable <command> -h"
// for the flags of one. Each command lives in a file of its own; the table
// in commands lists them all.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/durablego/durable"
)

// command is one subcommand: its name, a line of usage and what it does.
type command struct {
	name    string
	args    string // the arguments after the flags, for the usage line
	summary string
	// run parses args with fs (already named after the command) and does
	// the work. Output for people goes to env.stdout, diagnostics to
	// env.stderr.
	run func(ctx context.Context, env *env, fs *flag.FlagSet, args []string) error
}

// env is what a command may touch of the process: its streams. Tests run
// commands with buffers in place of the real ones.
type env struct {
	stdout, stderr io.Writer
}

// commands is every subcommand, in the order "durable help" lists them.
func commands() []command {
	return append([]command{
		{name: "init", args: "[dir]", summary: "write a new Durable project: go.mod, buf files, an object, its server and its test", run: runInit},
		{name: "proto", args: "[dir]", summary: "write durable/v1/durable.proto, the options file, under dir (default proto-deps)", run: runProto},
		{name: "bench", args: "URL", summary: "load a running Durable server (the example server's classes) and a bare handler, and print rates, latencies and ratios", run: runBench},
		{name: "version", summary: "print the version of Durable this command was built from", run: runVersion},
	}, opsCommands()...) // the operator's, over the admin service: ops.go
}

// errUsage reports a command line that does not parse; main exits with 2.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &env{stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the process's exit code: 0 on
// success, 2 for a usage error, 1 for any other failure.
func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(e.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		args = []string{"version"}
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		fs := flag.NewFlagSet("durable "+c.name, flag.ContinueOnError)
		fs.SetOutput(e.stderr)
		usageShown := false // the flag package shows usage on a bad flag
		fs.Usage = func() {
			usageShown = true
			fmt.Fprintf(e.stderr, "usage: durable %s [flags] %s\n\n%s.\n", c.name, c.args, c.summary)
			fs.PrintDefaults()
		}
		err := c.run(ctx, e, fs, args[1:])
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case usageShown: // a flag that does not parse: the flag package said why
			return 2
		case errors.Is(err, errUsage):
			fs.Usage()
			return 2
		default:
			fmt.Fprintf(e.stderr, "durable %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(e.stderr, "durable: unknown command %q; run \"durable help\"\n", args[0])
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "durable %s: create Durable projects and operate Durable servers\n\nusage: durable <command> [flags] [arguments]\n\ncommands:\n", durable.Version)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
}

func runVersion(_ context.Context, e *env, fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return errUsage
	}
	_, err := fmt.Fprintf(e.stdout, "durable %s\n", durable.Version)
	return err
}
