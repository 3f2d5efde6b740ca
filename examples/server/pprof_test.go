package main

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

var pprofLine = regexp.MustCompile(`pprof=(http://127\.0\.0\.1:\d+/debug/pprof/)`)

// TestPprofAddr: with -pprof-addr, Go's runtime profiles are served there,
// and never on the public address.
func TestPprofAddr(t *testing.T) {
	p := start(t, t.TempDir(), "-pprof-addr", "127.0.0.1:0")
	m := pprofLine.FindStringSubmatch(p.stderr.String())
	if m == nil {
		t.Fatalf("no profiling address logged:\n%s", p.stderr)
	}
	get := func(url string) (int, string) {
		res, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if status, body := get(m[1] + "goroutine?debug=1"); status != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
		t.Fatalf("GET %sgoroutine: %d %.200s", m[1], status, body)
	}
	if status, body := get(m[1] + "heap?debug=1"); status != http.StatusOK || !strings.Contains(body, "heap profile:") {
		t.Fatalf("GET %sheap: %d %.200s", m[1], status, body)
	}
	if status, _ := get(p.url + "/debug/pprof/"); status == http.StatusOK {
		t.Fatalf("GET %s/debug/pprof/: %d, want it not served", p.url, status)
	}
}

// TestNoPprofByDefault: without -pprof-addr, no profiles anywhere.
func TestNoPprofByDefault(t *testing.T) {
	p := start(t, t.TempDir())
	if pprofLine.MatchString(p.stderr.String()) {
		t.Fatalf("profiles served without -pprof-addr:\n%s", p.stderr)
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Get(p.url + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode == http.StatusOK {
		t.Fatalf("GET /debug/pprof/: %d, want it not served", res.StatusCode)
	}
}
