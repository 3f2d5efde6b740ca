package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/durablego/durable"
)

// runCmd runs a command line as main does and returns its exit code and
// output streams.
func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), &env{stdout: &out, stderr: &errOut}, args)
	return code, out.String(), errOut.String()
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, _ := runCmd(t, args...)
		if code != 0 || strings.TrimSpace(out) != "durable "+durable.Version {
			t.Errorf("%v: exit %d, output %q", args, code, out)
		}
	}
}

func TestUnknownCommandIsUsageError(t *testing.T) {
	code, _, errOut := runCmd(t, "frobnicate")
	if code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestExtraArgumentIsUsageError(t *testing.T) {
	code, _, errOut := runCmd(t, "version", "extra")
	if code != 2 || !strings.Contains(errOut, "usage: durable version") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestUnknownFlagIsUsageError(t *testing.T) {
	code, _, errOut := runCmd(t, "version", "-frobnicate")
	if code != 2 || !strings.Contains(errOut, "flag provided but not defined: -frobnicate") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
