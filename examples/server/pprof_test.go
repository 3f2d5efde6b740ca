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

// loggedURL returns the address the server logged, the first group of re
// in its standard error.
func loggedURL(t *testing.T, p *process, re *regexp.Regexp) string {
	t.Helper()
	m := re.FindStringSubmatch(p.stderr.String())
	if m == nil {
		t.Fatalf("no address matching %s logged:\n%s", re, p.stderr)
	}
	return m[1]
}

// getBody GETs url and returns the status and the body.
func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestPprofAddr: with -pprof-addr, Go's runtime profiles are served there,
// and never on the public address.
func TestPprofAddr(t *testing.T) {
	p := start(t, t.TempDir(), "-pprof-addr", "127.0.0.1:0")
	url := loggedURL(t, p, pprofLine)
	if status, body := getBody(t, url+"goroutine?debug=1"); status != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
		t.Fatalf("GET %sgoroutine: %d %.200s", url, status, body)
	}
	if status, body := getBody(t, url+"heap?debug=1"); status != http.StatusOK || !strings.Contains(body, "heap profile:") {
		t.Fatalf("GET %sheap: %d %.200s", url, status, body)
	}
	if status, _ := getBody(t, p.url+"/debug/pprof/"); status == http.StatusOK {
		t.Fatalf("GET %s/debug/pprof/: %d, want it not served", p.url, status)
	}
}

// TestNoPprofByDefault: without -pprof-addr, no profiles anywhere.
func TestNoPprofByDefault(t *testing.T) {
	p := start(t, t.TempDir())
	if pprofLine.MatchString(p.stderr.String()) {
		t.Fatalf("profiles served without -pprof-addr:\n%s", p.stderr)
	}
	if status, _ := getBody(t, p.url+"/debug/pprof/"); status == http.StatusOK {
		t.Fatalf("GET /debug/pprof/: %d, want it not served", status)
	}
}
