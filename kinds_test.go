package durable_test

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/durablego/durable"
)

// kindOfSentinel returns the kind whose first sentinel is s.
func kindOfSentinel(t *testing.T, s error) durable.Kind {
	t.Helper()
	for _, k := range durable.Kinds() {
		if ss := k.Sentinels(); len(ss) > 0 && ss[0] == s {
			return k
		}
	}
	t.Fatalf("no kind has %v first", s)
	return ""
}

// tsCode is a Connect code as Connect-ES's Code enum names it.
func tsCode(c connect.Code) string {
	var b strings.Builder
	for _, w := range strings.Split(c.String(), "_") {
		b.WriteString(strings.ToUpper(w[:1]) + w[1:])
	}
	return "Code." + b.String()
}

// TestTypeScriptKindsAgree reads the TypeScript runtime's table of kinds
// (web/durable/src/index.ts) and checks that it has exactly the kinds of
// durable.Kind, each with the same code, HTTP status, method flag and the
// kinds its sentinels stand for.
func TestTypeScriptKindsAgree(t *testing.T) {
	src, err := os.ReadFile("web/durable/src/index.ts")
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(string(src), "export const durableErrorKinds = {")
	end := strings.Index(string(src), "} as const satisfies")
	if start < 0 || end < start {
		t.Fatal("no durableErrorKinds table in the TypeScript runtime")
	}
	row := regexp.MustCompile(`^\s*"([a-z-]+)": \{ code: (Code\.\w+), status: (\d+), method: (true|false), matches: \[([^\]]*)\] \},$`)
	got := map[durable.Kind]string{}
	var order []durable.Kind
	for _, line := range strings.Split(string(src[start:end]), "\n")[1:] {
		if strings.TrimSpace(line) == "" {
			continue
		}
		m := row.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unexpected line in durableErrorKinds: %q", line)
		}
		k := durable.Kind(m[1])
		got[k] = fmt.Sprintf("code %s, status %s, method %s, matches [%s]", m[2], m[3], m[4], m[5])
		order = append(order, k)
	}
	for _, k := range durable.Kinds() {
		var matches []string
		for _, s := range k.Sentinels() {
			matches = append(matches, fmt.Sprintf("%q", kindOfSentinel(t, s)))
		}
		want := fmt.Sprintf("code %s, status %d, method %t, matches [%s]", tsCode(k.Code()), k.HTTPStatus(), k.Method(), strings.Join(matches, ", "))
		if got[k] != want {
			t.Errorf("TypeScript kind %q: %s, want %s", k, got[k], want)
		}
	}
	if !slices.Equal(order, durable.Kinds()) {
		t.Errorf("TypeScript kinds %v, want %v in the order of durable.Kind", order, durable.Kinds())
	}
}

// TestKindTable: every kind's sentinels match its first sentinel's kind
// with KindOf, the precise ID sentinels match ErrInvalidID (wrapped, as
// Durable returns them), and no two kinds share a first sentinel.
func TestKindTable(t *testing.T) {
	seen := map[error]durable.Kind{}
	for _, k := range durable.Kinds() {
		if !k.Known() || k.Code() == 0 {
			t.Errorf("%q: known %v, code %v", k, k.Known(), k.Code())
		}
		ss := k.Sentinels()
		if k == durable.KindMethod {
			if len(ss) != 0 {
				t.Errorf("method has sentinels %v", ss)
			}
			continue
		}
		if prev, ok := seen[ss[0]]; ok {
			t.Errorf("%q and %q share the sentinel %v", prev, k, ss[0])
		}
		seen[ss[0]] = k
		wrapped := fmt.Errorf("detail: %w", ss[0])
		for _, s := range ss {
			if !errors.Is(wrapped, s) || !k.Matches(s) {
				t.Errorf("%q: an error wrapping %v does not match %v", k, ss[0], s)
			}
		}
		if !k.Method() && durable.KindOf(wrapped) != k {
			t.Errorf("KindOf(%v) = %q, want %q", wrapped, durable.KindOf(wrapped), k)
		}
	}
	for _, s := range []error{durable.ErrIDLength, durable.ErrIDNotHex, durable.ErrIDNamespace} {
		if !errors.Is(fmt.Errorf("x: %w", s), durable.ErrInvalidID) {
			t.Errorf("%v does not match ErrInvalidID", s)
		}
	}
	if durable.Kind("nope").Known() || durable.KindOf(errors.New("other")) != "" {
		t.Error("an unknown kind or error is known")
	}
}
