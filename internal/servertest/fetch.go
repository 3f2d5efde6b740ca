package servertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/durablego/durable"
	"github.com/durablego/durable/examples/counter"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/server"
)

// fetchCounter is the example Counter with test routes in front of its
// Fetch.
type fetchCounter struct {
	counter.Counter
	// local and remote are the namespaces /self calls through; set after
	// registration.
	local  *counterv1durable.CounterNamespace
	remote *counterv1durable.CounterClient
	// /block signals entered, then waits for gate.
	entered, gate chan struct{}
}

// echo is what /echo/... answers: the request as the object saw it.
type echo struct {
	Method, Path, Query, Name, ID, Host, Body, Header string
	ContentLength                                     int64
}

func (f *fetchCounter) Fetch(ctx context.Context, o *counterv1durable.CounterObject, w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case strings.HasPrefix(p, "/echo/"):
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		b, _ := json.Marshal(echo{
			Method: r.Method, Path: p, Query: r.URL.RawQuery, Name: o.ID.Name(), ID: o.ID.String(),
			Host: r.Host, Body: string(body), Header: r.Header.Get("X-Test"), ContentLength: r.ContentLength,
		})
		w.Write(b)
	case p == "/fail": // writes, then answers 503: rolled back
		o.State.Value += 100
		if err := o.Storage.Put(ctx, "fail", []byte("kept?")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Test", "from Fetch")
		http.Error(w, "failing as asked", http.StatusServiceUnavailable)
	case p == "/block":
		f.entered <- struct{}{}
		<-f.gate
	case p == "/panic":
		o.State.Value += 100
		panic("fetch panicking as asked")
	case p == "/reject": // writes, then answers 429: committed
		o.State.Value++
		http.Error(w, "slow down", http.StatusTooManyRequests)
	case p == "/kv":
		_, ok, err := o.Storage.Get(ctx, "fail")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, ok)
	case p == "/self": // calls itself with r.Context(): must be refused
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://counter/", nil)
		var stub counterv1durable.CounterStub = f.local.Get(o.ID)
		if r.URL.Query().Has("remote") {
			stub = f.remote.Get(f.remote.IDFromName(o.ID.Name()))
		}
		res, err := stub.Fetch(r.Context(), req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		res.Body.Close()
		fmt.Fprint(w, res.StatusCode, " ", res.Header.Get(durable.HeaderError))
	default:
		f.Counter.Fetch(ctx, o, w, r)
	}
}

// newFetchEnv serves a server whose Counter class is a fetchCounter.
func newFetchEnv(t *testing.T, d Deployment, opts ...server.Option) (*env, *fetchCounter) {
	t.Helper()
	impl := &fetchCounter{entered: make(chan struct{}, 8), gate: make(chan struct{})}
	e := newEnvCounterOn(t, d.Storage(t), impl, opts...)
	e.serve(t)
	impl.local = e.counters
	impl.remote = counterv1durable.NewCounterClient(http.DefaultClient, e.url)
	return e, impl
}

// do sends a request to the server, with the header X-Test: header, and
// returns the status, the body and the header of the response.
func do(t *testing.T, method, url, body string) (int, string, http.Header) {
	t.Helper()
	status, b, h, err := request(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return status, b, h
}

// request is do returning its error, for goroutines other than the test's.
func request(method, url, body string) (int, string, http.Header, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("X-Test", "header")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, "", nil, err
	}
	return res.StatusCode, string(b), res.Header, nil
}

// doAsync sends a request without a body from another goroutine; the status
// of the response arrives on the channel (0 if the request failed, which
// fails t).
func doAsync(t *testing.T, method, url string) <-chan int {
	status := make(chan int, 1)
	go func() {
		s, _, _, err := request(method, url, "")
		if err != nil {
			t.Error(err)
		}
		status <- s
	}()
	return status
}

// counterValue is the value of the counter named name.
func counterValue(t *testing.T, e *env, name string) int64 {
	t.Helper()
	res, err := e.counters.Get(e.counters.IDFromName(name)).GetValue(context.Background(), &counterv1.GetValueRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return res.GetValue()
}

func testFetchRoutes(t *testing.T, d Deployment) {
	e, _ := newFetchEnv(t, d)
	byName := e.url + "/objects/counter/a%2Fb" // the name "a/b"

	status, body, h := do(t, http.MethodPost, byName+"/increment", `{"amount": 5}`)
	if status != http.StatusOK || body != `{"value":5}` || h.Get("Content-Type") != "application/json" {
		t.Fatalf("POST /increment = %d %q (%s), want 200 {\"value\":5} as JSON", status, body, h.Get("Content-Type"))
	}
	if got := counterValue(t, e, "a/b"); got != 5 {
		t.Fatalf("GetValue after the Fetch = %d, want 5: its write is committed", got)
	}
	if status, body, _ = do(t, http.MethodPost, byName+"/increment", ""); status != http.StatusOK || body != `{"value":6}` {
		t.Fatalf("POST /increment without a body = %d %q, want {\"value\":6}", status, body)
	}

	id := e.counters.IDFromName("a/b").String()
	for _, url := range []string{byName + "/", byName, e.url + "/objects-by-id/counter/" + id + "/"} {
		status, body, _ := do(t, http.MethodGet, url, "")
		var got struct{ Value, Timestamp int64 }
		if err := json.Unmarshal([]byte(body), &got); status != http.StatusOK || err != nil || got.Value != 6 || got.Timestamp == 0 {
			t.Errorf("GET %s = %d %q, want value 6 and a timestamp", url, status, body)
		}
	}
	if status, body, h = do(t, http.MethodGet, byName+"/nothing", ""); status != http.StatusNotFound || body != "Not Found\n" || h.Get(durable.HeaderError) != "" {
		t.Errorf("GET /nothing = %d %q (kind %q), want the object's own 404", status, body, h.Get(durable.HeaderError))
	}

	// The object sees /{rest...}, unescaped, and the query string.
	status, body, _ = do(t, http.MethodPut, e.url+"/objects/counter/echo%20me/echo/x%20y/z?q=1&r=a+b", "payload")
	want := echo{Method: "PUT", Path: "/echo/x y/z", Query: "q=1&r=a+b", Name: "echo me",
		ID: e.counters.IDFromName("echo me").String(), Host: strings.TrimPrefix(e.url, "http://"),
		Body: "payload", Header: "header", ContentLength: 7}
	var got echo
	if err := json.Unmarshal([]byte(body), &got); status != http.StatusOK || err != nil || got != want {
		t.Errorf("echo by name = %d %s\nwant %+v", status, body, want)
	}
	// An object addressed only by ID does not know its name.
	id = e.counters.IDFromName("by ID only").String()
	status, body, _ = do(t, http.MethodGet, e.url+"/objects-by-id/counter/"+id+"/echo/?a", "")
	want = echo{Method: "GET", Path: "/echo/", Query: "a", ID: id, Host: want.Host, Header: "header"}
	got = echo{}
	if err := json.Unmarshal([]byte(body), &got); status != http.StatusOK || err != nil || got != want {
		t.Errorf("echo by ID = %d %s\nwant %+v", status, body, want)
	}
}

func testFetchRouteErrors(t *testing.T, d Deployment) {
	e, _ := newFetchEnv(t, d)
	probeID := e.probes.IDFromName("x").String()
	for _, tc := range []struct {
		name, path string
		status     int
		kind       string
		says       []string
	}{
		{"unknown class", "/objects/nope/x/", 404, "class-not-found",
			[]string{"/objects/nope/", "/objects/counter/ (Counter)", "/objects/probe/ (Probe)"}},
		{"unknown class by ID", "/objects-by-id/nope/x/", 404, "class-not-found",
			[]string{"/objects-by-id/counter/ (Counter)", "/objects-by-id/probe/ (Probe)"}},
		{"no object", "/objects/counter/", 404, "", []string{"/objects/counter/{name}/"}},
		{"no Fetch hook", "/objects/probe/x/", 404, "no-fetch", []string{"class Probe has no Fetch hook"}},
		{"no Fetch hook by ID", "/objects-by-id/probe/" + probeID + "/", 404, "no-fetch", []string{"Probe"}},
		{"short ID", "/objects-by-id/counter/abc/", 400, "id-length", []string{"64 hexadecimal characters, got 3"}},
		{"ID not hex", "/objects-by-id/counter/" + strings.Repeat("g", 64) + "/", 400, "id-not-hex", []string{"hexadecimal"}},
		{"upper-case ID", "/objects-by-id/counter/" + strings.ToUpper(e.counters.IDFromName("x").String()) + "/", 400, "id-not-hex", []string{"hexadecimal"}},
		{"ID of another class", "/objects-by-id/counter/" + probeID + "/", 400, "id-namespace", []string{"minted for class Probe"}},
	} {
		status, body, h := do(t, http.MethodGet, e.url+tc.path, "")
		if status != tc.status || h.Get(durable.HeaderError) != tc.kind {
			t.Errorf("%s: GET %s = %d (kind %q) %q, want %d (kind %q)", tc.name, tc.path, status, h.Get(durable.HeaderError), body, tc.status, tc.kind)
		}
		for _, s := range tc.says {
			if !strings.Contains(body, s) {
				t.Errorf("%s: the answer %q does not say %q", tc.name, body, s)
			}
		}
	}
}

func testFetchBodyLimit(t *testing.T, d Deployment) {
	e, _ := newFetchEnv(t, d, server.WithMaxRequestBody(16))
	url := e.url + "/objects/counter/limited/increment"
	if status, body, _ := do(t, http.MethodPost, url, `{"amount":12345}`); status != http.StatusOK || body != `{"value":12345}` {
		t.Fatalf("a body of exactly the limit = %d %q", status, body)
	}
	status, body, h := do(t, http.MethodPost, url, `{"amount": 12345}`)
	if status != http.StatusRequestEntityTooLarge || h.Get(durable.HeaderError) != "too-large" || !strings.Contains(body, "limit of 16 bytes") {
		t.Errorf("a body one byte over the limit = %d (kind %q) %q, want 413", status, h.Get(durable.HeaderError), body)
	}
	// Without a Content-Length (chunked), the limit holds while reading.
	req, _ := http.NewRequest(http.MethodPost, url, io.MultiReader(strings.NewReader(`{"amount": `), strings.NewReader(`12345}`)))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if req.ContentLength != 0 || len(req.TransferEncoding) != 0 || res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a chunked body over the limit = %d (request length %d), want 413", res.StatusCode, req.ContentLength)
	}
	// In process too.
	in, _ := http.NewRequest(http.MethodPost, "http://counter/increment", strings.NewReader(`{"amount": 12345}`))
	res, err = e.counters.Get(e.counters.IDFromName("limited")).Fetch(context.Background(), in)
	if err != nil || res.StatusCode != http.StatusRequestEntityTooLarge || res.Header.Get(durable.HeaderError) != "too-large" {
		t.Errorf("in process, a body over the limit = %v, %v; want 413", res, err)
	}
	if got := counterValue(t, e, "limited"); got != 12345 {
		t.Errorf("value = %d, want 12345: refused bodies change nothing", got)
	}
}

func testFetchFailureRollsBack(t *testing.T, d Deployment) {
	e, _ := newFetchEnv(t, d)
	base := e.url + "/objects/counter/fails"
	do(t, http.MethodPost, base+"/increment", `{"amount": 7}`)

	status, body, h := do(t, http.MethodPost, base+"/fail", "")
	if status != http.StatusServiceUnavailable || body != "failing as asked\n" || h.Get("X-Test") != "from Fetch" || h.Get(durable.HeaderError) != "" {
		t.Errorf("/fail = %d %q (X-Test %q, kind %q), want the object's own 503", status, body, h.Get("X-Test"), h.Get(durable.HeaderError))
	}
	status, body, h = do(t, http.MethodPost, base+"/panic", "")
	// A panic is a failure inside the call that the remote caller learns
	// nothing of but an identifier: the panic value may hold internals.
	if status != http.StatusInternalServerError || h.Get(durable.HeaderError) != "internal" ||
		!strings.HasPrefix(body, "internal error (error id ") || strings.Contains(body, "panicking") {
		t.Errorf("/panic = %d %q (kind %q), want 500 of kind internal with a generic message", status, body, h.Get(durable.HeaderError))
	}
	if got := counterValue(t, e, "fails"); got != 7 {
		t.Errorf("value after a 503 and a panic = %d, want 7: their writes are rolled back", got)
	}
	if _, body, _ := do(t, http.MethodGet, base+"/kv", ""); body != "false" {
		t.Errorf("the key the 503 put is there: %q", body)
	}

	// A 4xx commits.
	if status, _, _ := do(t, http.MethodPost, base+"/reject", ""); status != http.StatusTooManyRequests {
		t.Errorf("/reject = %d, want 429", status)
	}
	if got := counterValue(t, e, "fails"); got != 8 {
		t.Errorf("value after a 429 = %d, want 8: its write is committed", got)
	}

	// In process, the same answers.
	stub := e.counters.Get(e.counters.IDFromName("fails"))
	for path, want := range map[string]int{"/fail": 503, "/panic": 500} {
		req, _ := http.NewRequest(http.MethodPost, "http://counter"+path, nil)
		res, err := stub.Fetch(context.Background(), req)
		if err != nil || res.StatusCode != want {
			t.Errorf("in process, %s = %v, %v; want %d", path, res, err, want)
		}
	}
	if got := counterValue(t, e, "fails"); got != 8 {
		t.Errorf("value = %d, want 8", got)
	}
}

func testFetchStubs(t *testing.T, d Deployment) {
	e, _ := newFetchEnv(t, d)
	ctx := context.Background()
	post := func(amount string) *http.Request {
		req, _ := http.NewRequest(http.MethodPost, "http://counter/increment", strings.NewReader(`{"amount": `+amount+`}`))
		return req
	}
	get, _ := http.NewRequest(http.MethodGet, "http://counter/", nil)
	read := func(res *http.Response, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(res.StatusCode, " ", string(b))
	}

	local := e.counters.Get(e.counters.IDFromName("stubbed"))
	if got := read(local.Fetch(ctx, post("5"))); got != `200 {"value":5}` {
		t.Errorf("in-process Fetch POST /increment = %s", got)
	}
	remotes := counterv1durable.NewCounterClient(http.DefaultClient, e.url)
	if got := read(remotes.Get(remotes.IDFromName("stubbed")).Fetch(ctx, post("3"))); got != `200 {"value":8}` {
		t.Errorf("remote Fetch POST /increment by name = %s", got)
	}
	resolved, err := remotes.ResolveName(ctx, "stubbed")
	if err != nil {
		t.Fatal(err)
	}
	if got := read(remotes.Get(resolved).Fetch(ctx, get)); !strings.HasPrefix(got, `200 {"value":8,"timestamp":`) {
		t.Errorf("remote Fetch GET / by ID = %s", got)
	}
	if got := read(local.Fetch(ctx, get)); !strings.HasPrefix(got, `200 {"value":8,"timestamp":`) {
		t.Errorf("in-process Fetch GET / = %s", got)
	}

	// Names the router would take for path elements.
	for _, name := range []string{".", "..", "a/../b", "?#%"} {
		req, _ := http.NewRequest(http.MethodGet, "http://counter/echo/", nil)
		got := read(remotes.Get(remotes.IDFromName(name)).Fetch(ctx, req))
		if !strings.Contains(got, fmt.Sprintf(`"Name":%q`, name)) {
			t.Errorf("remote Fetch to the object named %q reached %s", name, got)
		}
	}

	// A class without Fetch: 404 both ways.
	res, err := e.probes.Get(e.probes.IDFromName("p")).Fetch(ctx, get)
	if err != nil || res.StatusCode != http.StatusNotFound || res.Header.Get(durable.HeaderError) != "no-fetch" {
		t.Errorf("in-process Fetch on a class without the hook = %v, %v; want 404", res, err)
	}
	probes := durabletestv1durable.NewProbeClient(http.DefaultClient, e.url)
	if got := read(probes.Get(probes.IDFromName("p")).Fetch(ctx, get)); !strings.HasPrefix(got, "404 durable: class Probe has no Fetch hook") {
		t.Errorf("remote Fetch on a class without the hook = %s", got)
	}

	// An ended context is the error.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := local.Fetch(cancelled, get); err == nil {
		t.Error("in-process Fetch with a cancelled context succeeded")
	}
}

// testFetchReentrant: a Fetch that calls its own object's Fetch, in
// process or over HTTP, gets 508 Loop Detected instead of a deadlock.
func testFetchReentrant(t *testing.T, d Deployment) {
	e, _ := newFetchEnv(t, d)
	for _, path := range []string{"/self", "/self?remote"} {
		status, body, _ := do(t, http.MethodGet, e.url+"/objects/counter/loop"+path, "")
		if status != http.StatusOK || body != "508 reentrant" {
			t.Errorf("%s = %d %q, want the nested call refused with 508", path, status, body)
		}
	}
}

// testFetchSerializedWithRPC: increments through the HTTP route, the
// in-process stub's Fetch and RPC, all at once on one object, add up
// exactly: Fetch runs through the mailbox like any call.
func testFetchSerializedWithRPC(t *testing.T, d Deployment) {
	e, _ := newFetchEnv(t, d)
	const workers, each = 8, 25
	stub := e.counters.Get(e.counters.IDFromName("shared"))
	url := e.url + "/objects/counter/shared/increment"
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				status, _, _, err := request(http.MethodPost, url, `{"amount": 1}`)
				if err != nil {
					t.Error(err)
					return
				}
				if status != http.StatusOK {
					t.Errorf("POST = %d", status)
				}
			}
		})
		wg.Go(func() {
			for range each {
				req, _ := http.NewRequest(http.MethodPost, "http://counter/increment", bytes.NewReader([]byte(`{"amount": 1}`)))
				if res, err := stub.Fetch(context.Background(), req); err != nil || res.StatusCode != http.StatusOK {
					t.Errorf("in-process Fetch = %v, %v", res, err)
				}
			}
		})
		wg.Go(func() {
			for range each {
				if _, err := stub.Increment(context.Background(), &counterv1.IncrementRequest{Amount: 1}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if got := counterValue(t, e, "shared"); got != 3*workers*each {
		t.Errorf("value = %d, want %d", got, 3*workers*each)
	}
}

// testFetchDurable: what a Fetch acknowledged is there after a restart.
func testFetchDurable(t *testing.T, d Deployment) {
	st := d.Storage(t)
	e := newEnvOn(t, st)
	e.serve(t)
	if status, body, _ := do(t, http.MethodPost, e.url+"/objects/counter/kept/increment", `{"amount": 4}`); status != http.StatusOK {
		t.Fatalf("POST = %d %q", status, body)
	}
	e.shutdown(t)
	if got := counterValue(t, newEnvOn(t, st), "kept"); got != 4 {
		t.Errorf("value after a restart = %d, want 4", got)
	}
}

// testFetchOverloaded fills an object's mailbox behind a blocked Fetch: the
// next request is refused at once with 503 and the "overloaded" kind.
func testFetchOverloaded(t *testing.T, d Deployment) {
	e, impl := newFetchEnv(t, d, server.WithMailboxSize(1))
	url := e.url + durable.FetchByNamePrefix + "counter/busy"
	blocked := doAsync(t, http.MethodGet, url+"/block")
	<-impl.entered
	queued := doAsync(t, http.MethodPost, url+"/increment")
	eventually(t, "one request is queued", func() bool { return e.srv.QueuedCalls("Counter", e.counters.IDFromName("busy")) == 1 })

	status, body, header := do(t, http.MethodPost, url+"/increment", "")
	if status != http.StatusServiceUnavailable || header.Get(durable.HeaderError) != "overloaded" || !strings.Contains(body, "overloaded") {
		t.Fatalf("a request to a full mailbox: %d %q %q", status, header.Get(durable.HeaderError), body)
	}
	close(impl.gate)
	if s := <-blocked; s != http.StatusOK {
		t.Fatalf("the blocked request: %d", s)
	}
	if s := <-queued; s != http.StatusOK {
		t.Fatalf("the queued request: %d", s)
	}
	if v := counterValue(t, e, "busy"); v != 1 {
		t.Fatalf("value %d, want 1: only the queued increment ran", v)
	}
}
