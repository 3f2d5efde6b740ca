package main

import (
	"bytes"
	"cmp"
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"

	"github.com/durablego/durable"
)

// The versions a new project pins in its go.mod: those scripts/generate.sh
// builds Durable's own code with (TestTemplateVersions holds them equal),
// and the Go version of Durable's go.mod, the least its users can have.
const (
	bufVersion = "v1.75.0"
	// protoc-gen-go's module.
	protobufVersion = "v1.36.12"
	// protoc-gen-connect-go's module.
	connectVersion = "v1.21.1"
	goVersion      = "1.26.8"
)

// durableModule is the module path of Durable, which -replace points at a
// checkout of.
const durableModule = "github.com/durablego/durable"

// templates is the new project: files ending in .tmpl are text/template
// templates of initData, written without the suffix; gitignore.tmpl
// becomes .gitignore; the rest is copied as it is.
//
//go:embed template
var templates embed.FS

// initData is what the templates are filled with.
type initData struct {
	Module  string // the new module's path
	Name    string // its last element, the command's name
	Replace string // the absolute path of a Durable checkout, or ""

	GoVersion, DurableVersion, BufVersion, ProtobufVersion, ConnectVersion string
}

// modulePath is what init accepts as a module path: slash-separated
// elements of letters, digits and ".-_~", the first in lower case, as the
// go command wants of a path it may one day fetch.
var modulePath = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*(/[A-Za-z0-9._~-]+)*$`)

func runInit(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	module := fs.String("module", "", "the new module's path (default: the directory's name)")
	replace := fs.String("replace", "", "a checkout of "+durableModule+" for go.mod to use in place of the published module")
	tidy := fs.Bool("tidy", true, "run go mod tidy in the new module (fills go.sum through the Go module proxy)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return errUsage
	}
	dir, err := filepath.Abs(cmp.Or(fs.Arg(0), "."))
	if err != nil {
		return err
	}
	d := initData{
		Module:          cmp.Or(*module, filepath.Base(dir)),
		GoVersion:       goVersion,
		DurableVersion:  "v" + durable.Version,
		BufVersion:      bufVersion,
		ProtobufVersion: protobufVersion,
		ConnectVersion:  connectVersion,
	}
	if !modulePath.MatchString(d.Module) || strings.Contains(d.Module, "..") {
		return fmt.Errorf("invalid module path %q: give one with -module, such as example.com/hello", d.Module)
	}
	d.Name = path.Base(d.Module)
	if *replace != "" {
		if d.Replace, err = checkout(*replace); err != nil {
			return err
		}
	}
	files, err := render(d)
	if err != nil {
		return err
	}
	if err := writeNew(dir, files); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "durable init: wrote module %s in %s\n", d.Module, dir)
	if *tidy {
		// -e: the imports of gen/ resolve only once buf has generated it;
		// every module they need is a dependency of Durable's already.
		if err := goCommand(ctx, e, dir, d.Module+"/gen/", "mod", "tidy", "-e"); err != nil {
			return err
		}
		if err := goCommand(ctx, e, filepath.Join(dir, "tools"), "", "mod", "tidy"); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.stdout, "next:\n  cd %s\n  %s\n  go test ./...\n  go run . -addr 127.0.0.1:8080\n", dir, generateCommand)
	return nil
}

// generateCommand generates a new project's code, from its directory.
const generateCommand = "go tool -modfile=tools/go.mod buf generate"

// goCommand runs the go command with args in dir. Its output goes to
// stderr, without the complaints about packages under expected (not "")
// when it succeeds: those of gen/, which does not exist yet.
func goCommand(ctx context.Context, e *env, dir, expected string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	var out bytes.Buffer
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &out, &out
	if err := cmd.Run(); err != nil {
		e.stderr.Write(out.Bytes())
		return fmt.Errorf("go %s in %s: %w (the files are written: run it again there)", strings.Join(args, " "), dir, err)
	}
	_, err := io.WriteString(e.stderr, withoutMentions(out.String(), expected))
	return err
}

// withoutMentions drops the lines of the go command's output that mention
// s, with the "go: P imports" line that leads one.
func withoutMentions(out, s string) string {
	if s == "" {
		return out
	}
	lines := strings.SplitAfter(out, "\n")
	var kept strings.Builder
	for i, l := range lines {
		next := i+1 < len(lines) && strings.HasPrefix(lines[i+1], "\t") && strings.Contains(lines[i+1], s)
		if strings.Contains(l, s) || (next && strings.HasSuffix(l, " imports\n")) {
			continue
		}
		kept.WriteString(l)
	}
	return kept.String()
}

// checkout returns the absolute path of dir after checking that it holds
// Durable's go.mod.
func checkout(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(abs, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("-replace %s: not a checkout of %s: %w", dir, durableModule, err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	if strings.TrimSpace(first) != "module "+durableModule {
		return "", fmt.Errorf("-replace %s: its go.mod is not the module %s", dir, durableModule)
	}
	return abs, nil
}

// render returns the project's files, by slash-separated path.
func render(d initData) (map[string][]byte, error) {
	files := make(map[string][]byte)
	err := fs.WalkDir(templates, "template", func(p string, ent fs.DirEntry, err error) error {
		if err != nil || ent.IsDir() {
			return err
		}
		b, err := templates.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "template/")
		if base, ok := strings.CutSuffix(name, ".tmpl"); ok {
			t, err := template.New(name).Option("missingkey=error").Parse(string(b))
			if err != nil {
				return err
			}
			var out bytes.Buffer
			if err := t.Execute(&out, d); err != nil {
				return err
			}
			name, b = base, out.Bytes()
			if name == "gitignore" {
				name = ".gitignore"
			}
		}
		files[name] = b
		return nil
	})
	return files, err
}

// errExists reports files init will not overwrite.
var errExists = errors.New("file exists")

// writeNew writes files under dir, creating directories as needed, and
// refuses to overwrite any file: if one exists, it writes none and names
// them all.
func writeNew(dir string, files map[string][]byte) error {
	var taken []string
	for name := range files {
		if _, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(name))); err == nil {
			taken = append(taken, name)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if len(taken) > 0 {
		slices.Sort(taken)
		return fmt.Errorf("%w in %s, not overwritten: %s (init a new directory, or move them away)", errExists, dir, strings.Join(taken, ", "))
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if err := writeFile(filepath.Join(dir, filepath.FromSlash(name)), files[name], os.O_EXCL); err != nil {
			return err
		}
	}
	return nil
}

// writeFile writes b at p, creating its directory; flag is os.O_EXCL to
// refuse an existing file (one created since it was checked for), or 0.
func writeFile(p string, b []byte, flag int) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|flag, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	return errors.Join(err, f.Close())
}
