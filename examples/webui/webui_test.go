package webui_test

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/durablego/durable/client"
	"github.com/durablego/durable/examples/counter"
	"github.com/durablego/durable/examples/internal/exampletest"
	"github.com/durablego/durable/examples/webui"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
)

// serve runs a real server with the Counter and the page mounted as the
// example server mounts it, and returns its base URL.
func serve(t *testing.T) string {
	t.Helper()
	srv := exampletest.Start(t, t.TempDir())
	if _, err := counterv1durable.RegisterCounter(srv.Server, counter.Counter{}); err != nil {
		t.Fatal(err)
	}
	webui.Mount(srv.Server)
	return srv.Serve(t)
}

func get(t *testing.T, url string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(body)
}

var assetRef = regexp.MustCompile(`(?:src|href)="(/assets/[^"]+)"`)

func TestServesPageAndAssets(t *testing.T) {
	base := serve(t)

	res, body := get(t, base+"/", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %s", res.Status)
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("GET /: Content-Type %q", ct)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("GET /: Cache-Control %q, want no-cache", cc)
	}
	for _, testid := range []string{"counter-increment", "chat-connect", "document-content"} {
		if !strings.Contains(body, `data-testid="`+testid+`"`) {
			t.Errorf("GET /: the page has no %s", testid)
		}
	}

	// The index revalidates: the same ETag is a 304.
	etag := res.Header.Get("ETag")
	if etag == "" {
		t.Fatal("GET /: no ETag")
	}
	if res, _ := get(t, base+"/", http.Header{"If-None-Match": {etag}}); res.StatusCode != http.StatusNotModified {
		t.Errorf("GET / with its ETag: %s, want 304", res.Status)
	}

	// Every asset the index names is served, cached for good.
	refs := assetRef.FindAllStringSubmatch(body, -1)
	if len(refs) < 2 {
		t.Fatalf("GET /: want a script and a style sheet under /assets/, found %v", refs)
	}
	wantType := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
	for _, ref := range refs {
		res, body := get(t, base+ref[1], nil)
		if res.StatusCode != http.StatusOK || body == "" {
			t.Errorf("GET %s: %s, %d bytes", ref[1], res.Status, len(body))
			continue
		}
		if cc := res.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("GET %s: Cache-Control %q, want immutable", ref[1], cc)
		}
		ext := ref[1][strings.LastIndex(ref[1], "."):]
		if want, ok := wantType[ext]; ok && res.Header.Get("Content-Type") != want {
			t.Errorf("GET %s: Content-Type %q, want %q", ref[1], res.Header.Get("Content-Type"), want)
		}
	}

	// Nothing else of the embedded tree leaks: only what the index names
	// and what is under assets/.
	err := fs.WalkDir(webui.FS(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path == "index.html" {
			return err
		}
		if !strings.HasPrefix(path, "assets/") {
			t.Errorf("dist/%s is outside assets/ and is not served", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	for _, path := range []string{"/assets/nope.js", "/assets/"} {
		if res, _ := get(t, base+path, nil); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", path, res.Status)
		}
	}
}

// The page's routes leave the server's own alone: Connect and gRPC-Web
// calls, the objects' Fetch routes, and the answer to unknown procedures.
func TestServerRoutesStillWork(t *testing.T) {
	base := serve(t)
	ctx := context.Background()

	connectCounters := counterv1durable.NewCounterClient(http.DefaultClient, base)
	res, err := connectCounters.Get(connectCounters.IDFromName("page")).Increment(ctx, &counterv1.IncrementRequest{Amount: 2})
	if err != nil || res.GetValue() != 2 {
		t.Fatalf("Increment over Connect: %v, %v", res, err)
	}
	grpcWebCounters := counterv1durable.NewCounterClient(http.DefaultClient, base, client.WithClientOptions(connect.WithGRPCWeb()))
	res, err = grpcWebCounters.Get(grpcWebCounters.IDFromName("page")).Increment(ctx, &counterv1.IncrementRequest{Amount: 1})
	if err != nil || res.GetValue() != 3 {
		t.Fatalf("Increment over gRPC-Web: %v, %v", res, err)
	}

	resp, body := get(t, base+"/objects/counter/page/", nil)
	var got struct{ Value int64 }
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil || got.Value != 3 {
		t.Errorf("GET /objects/counter/page/: %s %s", resp.Status, body)
	}

	// An RPC to a service the server does not have is still the server's
	// Unimplemented, not the page.
	resp, err = http.Post(base+"/examples.nope.v1.Nope/Call", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	unknown, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusNotImplemented || !strings.Contains(string(unknown), "unimplemented") {
		t.Errorf("POST to an unknown procedure: %s %s", resp.Status, unknown)
	}
	// POST / is not the page either.
	resp, err = http.Post(base+"/", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("POST / answered the page")
	}
}
