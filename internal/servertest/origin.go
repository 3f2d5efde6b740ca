package servertest

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	gorilla "github.com/gorilla/websocket"

	"github.com/durablego/durable"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1connect"
	"github.com/durablego/durable/server"
)

// browserPost sends what a page's form or fetch(…, {mode: "no-cors"})
// sends: a POST with a text/plain body, no preflight, and the browser's
// headers h.
func browserPost(t *testing.T, url string, h http.Header) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"amount": 1}`))
	req.Header = h.Clone()
	req.Header.Set("Content-Type", "text/plain")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, res.Header
}

// dialOrigin opens a WebSocket with the header Origin: origin (none if
// empty), and returns the status of the handshake's answer.
func dialOrigin(t *testing.T, e *env, origin string) int {
	t.Helper()
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	c, res, err := gorilla.DefaultDialer.Dial("ws"+strings.TrimPrefix(e.url, "http")+"/objects/socket-probe/room/", h)
	if err == nil {
		defer c.Close()
		if got := ask(t, c, "echo hi"); got != "hi" {
			t.Fatalf("echo: %q", got)
		}
		return res.StatusCode
	}
	if res == nil {
		t.Fatalf("dial: %v", err)
	}
	if res.StatusCode == http.StatusForbidden && res.Header.Get(durable.HeaderError) != string(durable.KindCrossOrigin) {
		t.Fatalf("403 without the kind %q: %v", string(durable.KindCrossOrigin), res.Header)
	}
	return res.StatusCode
}

// testCrossOriginRefusedByDefault: a page of another origin can neither
// post to an object's Fetch route (no preflight is needed for text/plain)
// nor open a WebSocket, with Origin: null too; the server's own origin,
// programs that send no Origin and safe GETs are unaffected.
func testCrossOriginRefusedByDefault(t *testing.T, d Deployment) {
	e := newSockEnv(t, d).env
	self := e.url // the Origin of the server's own pages
	url := e.url + "/objects/counter/victim/increment"
	for _, c := range []struct {
		name string
		h    http.Header
		want int
	}{
		{"evil origin", http.Header{"Origin": {"http://evil.example"}}, http.StatusForbidden},
		{"null origin", http.Header{"Origin": {"null"}}, http.StatusForbidden},
		{"cross-site fetch metadata", http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"http://evil.example"}}, http.StatusForbidden},
		{"same-site fetch metadata", http.Header{"Sec-Fetch-Site": {"same-site"}, "Origin": {"http://sub.127.0.0.1.example"}}, http.StatusForbidden},
		{"own origin", http.Header{"Origin": {self}}, http.StatusOK},
		{"same-origin fetch metadata", http.Header{"Sec-Fetch-Site": {"same-origin"}, "Origin": {self}}, http.StatusOK},
		{"no origin (not a browser)", http.Header{}, http.StatusOK},
	} {
		status, h := browserPost(t, url, c.h)
		if status != c.want {
			t.Errorf("%s: %d, want %d", c.name, status, c.want)
		}
		if status == http.StatusForbidden && h.Get(durable.HeaderError) != string(durable.KindCrossOrigin) {
			t.Errorf("%s: kind %q, want %q", c.name, h.Get(durable.HeaderError), string(durable.KindCrossOrigin))
		}
	}
	if v := counterValue(t, e, "victim"); v != 3 { // the three allowed posts
		t.Fatalf("counter at %d, want 3", v)
	}
	// A GET that is not an upgrade is safe: answered (the browser keeps
	// the answer from the page without CORS).
	req, _ := http.NewRequest(http.MethodGet, e.url+"/objects/counter/victim/", nil)
	req.Header.Set("Origin", "http://evil.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("cross-origin GET: %d, want 200", res.StatusCode)
	}

	for origin, want := range map[string]int{
		"http://evil.example": http.StatusForbidden,
		"null":                http.StatusForbidden,
		self:                  http.StatusSwitchingProtocols,
		"":                    http.StatusSwitchingProtocols,
	} {
		if got := dialOrigin(t, e, origin); got != want {
			t.Errorf("WebSocket from %q: %d, want %d", origin, got, want)
		}
	}
}

// testTrustedOrigins: a listed origin may post and open WebSockets; the
// others are still refused.
func testTrustedOrigins(t *testing.T, d Deployment) {
	e := newSockEnv(t, d, server.WithTrustedOrigins("http://app.example")).env
	url := e.url + "/objects/counter/c/increment"
	for origin, want := range map[string]int{"http://app.example": http.StatusOK, "http://evil.example": http.StatusForbidden, "https://app.example": http.StatusForbidden} {
		if status, _ := browserPost(t, url, http.Header{"Origin": {origin}, "Sec-Fetch-Site": {"cross-site"}}); status != want {
			t.Errorf("POST from %s: %d, want %d", origin, status, want)
		}
	}
	if got := dialOrigin(t, e, "http://app.example"); got != http.StatusSwitchingProtocols {
		t.Errorf("WebSocket from the trusted origin: %d", got)
	}
	if got := dialOrigin(t, e, "http://evil.example"); got != http.StatusForbidden {
		t.Errorf("WebSocket from another origin: %d", got)
	}
}

// testOriginOptionsRefuseMalformed: New fails on an origin that is not
// scheme://host[:port], and on "null".
func testOriginOptionsRefuseMalformed(t *testing.T, d Deployment) {
	for _, bad := range []string{"app.example", "http://app.example/", "http://app.example/path", "*", "null", "http://"} {
		for name, opt := range map[string]server.Option{"WithTrustedOrigins": server.WithTrustedOrigins(bad), "WithCORS": server.WithCORS(bad)} {
			srv, err := newServer(t, d, opt)
			if err == nil {
				srv.Shutdown(context.Background())
				t.Errorf("%s(%q): New succeeded", name, bad)
			}
		}
	}
}

// preflight sends the CORS preflight of a Connect call from a page of
// origin, and returns the answer's status and header.
func preflight(t *testing.T, url, origin string) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodOptions, url, nil)
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", http.MethodPost)
	// Lower case and sorted, as browsers send them.
	req.Header.Set("Access-Control-Request-Headers", "connect-protocol-version,content-type,durable-object-name")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode, res.Header
}

// testCORS: off by default (a preflight is not allowed); with WithCORS, a
// listed origin's preflight is answered with the Durable headers allowed,
// its call gets Access-Control-Allow-Origin and may read Durable-Error,
// and another origin's preflight is not allowed.
func testCORS(t *testing.T, d Deployment) {
	rpc := counterv1connect.CounterIncrementProcedure
	off := newEnv(t, d)
	off.serve(t)
	if status, h := preflight(t, off.url+rpc, "http://app.example"); status/100 == 2 || h.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight without WithCORS: %d %v, want no CORS", status, h)
	}

	e := newEnv(t, d, server.WithCORS("http://app.example"))
	e.serve(t)
	status, h := preflight(t, e.url+rpc, "http://app.example")
	allowed := strings.Split(strings.ToLower(h.Get("Access-Control-Allow-Headers")), ",")
	if status/100 != 2 || h.Get("Access-Control-Allow-Origin") != "http://app.example" || !slices.Contains(allowed, "durable-object-name") {
		t.Fatalf("preflight from the listed origin: %d %v", status, h)
	}
	if status, h := preflight(t, e.url+rpc, "http://evil.example"); h.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin: %d %v, want no Access-Control-Allow-Origin", status, h)
	}

	call := func(body string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, e.url+rpc, strings.NewReader(body))
		req.Header.Set("Origin", "http://app.example")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(durable.HeaderObjectName, "cors")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	if res := call(`{"amount": 2}`); res.StatusCode != http.StatusOK || res.Header.Get("Access-Control-Allow-Origin") != "http://app.example" {
		t.Fatalf("call: %d %v", res.StatusCode, res.Header)
	}
	res := call(`{"amount": "not a number"}`)
	exposed := strings.Split(strings.ToLower(res.Header.Get("Access-Control-Expose-Headers")), ", ")
	if res.StatusCode != http.StatusBadRequest || !slices.Contains(exposed, strings.ToLower(durable.HeaderError)) {
		t.Fatalf("failing call: %d, exposes %v, want %s", res.StatusCode, exposed, durable.HeaderError)
	}
	// The CORS origin is trusted by the Fetch routes too.
	if status, _ := browserPost(t, e.url+"/objects/counter/cors/increment", http.Header{"Origin": {"http://app.example"}, "Sec-Fetch-Site": {"cross-site"}}); status != http.StatusOK {
		t.Fatalf("Fetch POST from the CORS origin: %d", status)
	}
	if v := counterValue(t, e, "cors"); v != 3 {
		t.Fatalf("counter at %d, want 3", v)
	}
}
