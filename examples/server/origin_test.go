package main

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
)

// browserRequest sends a request as a page of origin would, and returns
// the answer's status and header.
func browserRequest(t *testing.T, method, url, origin string, h http.Header) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(`{"amount": 1}`))
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Origin", origin)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, res.Header
}

// TestAllowOriginFlag: without -allow-origin, a page of another origin can
// neither post to a Fetch route, nor open a WebSocket, nor get a CORS
// preflight allowed; with the origin listed, it can do all three, and
// another origin still cannot.
func TestAllowOriginFlag(t *testing.T) {
	app, evil := "http://app.example", "http://evil.example"
	check := func(t *testing.T, p *process, origin string, allowed bool) {
		t.Helper()
		status, _ := browserRequest(t, http.MethodPost, p.url+"/objects/counter/flag/increment", origin, http.Header{"Content-Type": {"text/plain"}})
		if (status == http.StatusOK) != allowed {
			t.Errorf("Fetch POST from %s: %d, allowed %v", origin, status, allowed)
		}
		_, h := browserRequest(t, http.MethodOptions, p.url+"/examples.counter.v1.Counter/Increment", origin, http.Header{
			"Access-Control-Request-Method":  {"POST"},
			"Access-Control-Request-Headers": {"connect-protocol-version,content-type,durable-object-name"},
		})
		if (h.Get("Access-Control-Allow-Origin") == origin) != allowed {
			t.Errorf("preflight from %s: %v, allowed %v", origin, h, allowed)
		}
		c, res, err := gorilla.DefaultDialer.Dial("ws"+strings.TrimPrefix(p.url, "http")+"/objects/chat-room/flag/websocket?name=t", http.Header{"Origin": {origin}})
		if err == nil {
			c.Close()
		}
		if (err == nil) != allowed || (err != nil && (res == nil || res.StatusCode != http.StatusForbidden)) {
			t.Errorf("WebSocket from %s: %v, allowed %v", origin, err, allowed)
		}
	}
	t.Run("default", func(t *testing.T) {
		p := start(t, t.TempDir())
		check(t, p, app, false)
	})
	t.Run("listed", func(t *testing.T) {
		p := start(t, t.TempDir(), "-allow-origin", app+",http://other.example", "-allow-origin", "http://third.example")
		check(t, p, app, true)
		check(t, p, "http://third.example", true)
		check(t, p, evil, false)
	})
}

var metricsLine = regexp.MustCompile(`metrics=(http://127\.0\.0\.1:\d+/metrics)`)

// TestMetricsAddr: with -metrics-addr, /metrics is served there and no
// longer on the public address.
func TestMetricsAddr(t *testing.T) {
	p := start(t, t.TempDir(), "-metrics-addr", "127.0.0.1:0")
	url := loggedURL(t, p, metricsLine)
	if status, body := getBody(t, url); status != http.StatusOK || !strings.Contains(body, "durable_active_objects") {
		t.Fatalf("GET %s: %d %.200s", url, status, body)
	}
	if status, _ := getBody(t, p.url+"/metrics"); status == http.StatusOK {
		t.Fatalf("GET %s/metrics: %d, want it not served", p.url, status)
	}
}
