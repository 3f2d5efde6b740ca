package document_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/durablego/durable/examples/document"
	"github.com/durablego/durable/examples/internal/exampletest"
	documentv1 "github.com/durablego/durable/gen/examples/document/v1"
	"github.com/durablego/durable/gen/examples/document/v1/documentv1durable"
)

var (
	ctx = context.Background()
	t0  = time.UnixMilli(1_700_000_000_000)
)

type env struct {
	srv   *exampletest.Server
	ns    *documentv1durable.DocumentNamespace
	url   string
	clock *exampletest.Clock
}

func start(t *testing.T, dir string) *env {
	t.Helper()
	e := &env{srv: exampletest.Start(t, dir), clock: exampletest.NewClock(t0)}
	var err error
	if e.ns, err = documentv1durable.RegisterDocument(e.srv.Server, document.Document{Now: e.clock.Now}); err != nil {
		t.Fatal(err)
	}
	e.url = e.srv.Serve(t)
	return e
}

func docPath(name string) string {
	return "/objects/" + documentv1durable.DocumentURLSegment + "/" + url.PathEscape(name) + "/"
}

// client is a WebSocket client of a document.
type client struct {
	*exampletest.Socket
	t *testing.T
}

// event is any message the document sends; DisallowUnknownFields checks
// that it sends no other field.
type event struct {
	Type    string `json:"type"`
	Content string `json:"content"`
	Version int64  `json:"version"`
	Message string `json:"message"`
}

// connect opens a socket to the document as author (no ?author= when
// empty) and reads the state it is sent first.
func (e *env) connect(t *testing.T, doc, author string) (*client, event) {
	t.Helper()
	u := e.url + docPath(doc)
	if author != "" {
		u += "?author=" + url.QueryEscape(author)
	}
	c := &client{exampletest.Dial(t, u, author), t}
	return c, c.next("state")
}

// next reads the next message, which must be of type typ.
func (c *client) next(typ string) event {
	c.t.Helper()
	var ev event
	c.Next(typ, &ev)
	return ev
}

func (c *client) edit(content, author string) {
	c.t.Helper()
	m := map[string]string{"type": "edit", "content": content}
	if author != "" {
		m["author"] = author
	}
	c.Send(m)
}

func (e *env) get(t *testing.T, doc string) (int, string) {
	t.Helper()
	resp, err := http.Get(e.url + docPath(doc))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (e *env) history(t *testing.T, doc string, limit int32) []*documentv1.Revision {
	t.Helper()
	r, err := e.ns.Get(e.ns.IDFromName(doc)).GetHistory(ctx, &documentv1.GetHistoryRequest{Limit: limit})
	if err != nil {
		t.Fatalf("GetHistory: %v", err)
	}
	return r.GetRevisions()
}

func revisions(rs []*documentv1.Revision) string {
	var s []string
	for _, r := range rs {
		s = append(s, fmt.Sprintf("%d:%q:%s@%d", r.GetVersion(), r.GetContent(), r.GetAuthor(), r.GetTimestampMs()-t0.UnixMilli()))
	}
	return strings.Join(s, " ")
}

func TestTwoEditors(t *testing.T) {
	e := start(t, t.TempDir())

	if code, body := e.get(t, "readme"); code != http.StatusOK || body != `{"content":"","version":0}` {
		t.Fatalf("GET of a new document: %d %s", code, body)
	}

	alice, s := e.connect(t, "readme", "alice")
	if s.Content != "" || s.Version != 0 {
		t.Fatalf("alice's first state %+v, want empty at version 0", s)
	}
	alice.edit("Hello", "")
	if s := alice.next("state"); s.Content != "Hello" || s.Version != 1 {
		t.Fatalf("alice got %+v, want Hello at version 1", s)
	}

	bob, s := e.connect(t, "readme", "bob")
	if s.Content != "Hello" || s.Version != 1 {
		t.Fatalf("bob's first state %+v, want Hello at version 1", s)
	}

	// An edit by one reaches both.
	e.clock.Advance(time.Second)
	bob.edit("Hello, world", "")
	for _, c := range []*client{alice, bob} {
		if s := c.next("state"); s.Content != "Hello, world" || s.Version != 2 {
			t.Fatalf("%s got %+v, want Hello, world at version 2", c.Name, s)
		}
	}
	// The message's author wins over the socket's.
	e.clock.Advance(time.Second)
	alice.edit("Hello, world!", "Alice Liddell")
	for _, c := range []*client{alice, bob} {
		if s := c.next("state"); s.Content != "Hello, world!" || s.Version != 3 {
			t.Fatalf("%s got %+v, want Hello, world! at version 3", c.Name, s)
		}
	}

	if code, body := e.get(t, "readme"); code != http.StatusOK || body != `{"content":"Hello, world!","version":3}` {
		t.Fatalf("GET: %d %s", code, body)
	}
	c, err := e.ns.Get(e.ns.IDFromName("readme")).GetContent(ctx, &documentv1.GetContentRequest{})
	if err != nil || c.GetContent() != "Hello, world!" || c.GetVersion() != 3 {
		t.Fatalf("GetContent = %v, %v; want Hello, world! at version 3", c, err)
	}
	want := `3:"Hello, world!":Alice Liddell@2000 2:"Hello, world":bob@1000 1:"Hello":alice@0`
	if h := revisions(e.history(t, "readme", 0)); h != want {
		t.Fatalf("GetHistory = %s\nwant %s", h, want)
	}
	if h := revisions(e.history(t, "readme", 1)); h != `3:"Hello, world!":Alice Liddell@2000` {
		t.Fatalf("GetHistory{limit: 1} = %s", h)
	}

	// Documents are separate objects; a socket without ?author= edits as
	// Anonymous.
	anon, s := e.connect(t, "other", "")
	if s.Version != 0 {
		t.Fatalf("another document's state %+v, want version 0", s)
	}
	anon.edit("x", "")
	anon.next("state")
	if h := revisions(e.history(t, "other", 0)); h != `1:"x":`+document.DefaultAuthor+`@2000` {
		t.Fatalf("GetHistory of the other document = %s", h)
	}
}

func TestHistoryLimitAndRestart(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir)
	c, _ := e.connect(t, "log", "alice")
	const n = document.DefaultLimit + 3
	for i := 1; i <= n; i++ {
		c.edit(fmt.Sprint("v", i), "")
	}
	for i := 1; i <= n; i++ {
		if s := c.next("state"); s.Version != int64(i) || s.Content != fmt.Sprint("v", i) {
			t.Fatalf("state %+v, want v%d at version %d: one client's edits in order", s, i, i)
		}
	}
	h := e.history(t, "log", 0)
	if len(h) != document.DefaultLimit || h[0].GetVersion() != n || h[len(h)-1].GetVersion() != n-document.DefaultLimit+1 {
		t.Fatalf("GetHistory{} = %s, want the latest %d, newest first", revisions(h), document.DefaultLimit)
	}
	_, err := e.ns.Get(e.ns.IDFromName("log")).GetHistory(ctx, &documentv1.GetHistoryRequest{Limit: -1})
	exampletest.WantError(t, "GetHistory{limit: -1}", err, connect.CodeInvalidArgument, "limit")

	c.Conn.Close()
	e.srv.Shutdown(t)
	e = start(t, dir)
	if code, body := e.get(t, "log"); code != http.StatusOK || body != fmt.Sprintf(`{"content":"v%d","version":%d}`, n, n) {
		t.Fatalf("GET after restart: %d %s", code, body)
	}
	if h := e.history(t, "log", 1000); len(h) != n {
		t.Fatalf("GetHistory after restart has %d versions, want %d", len(h), n)
	}
}

func TestBadRequests(t *testing.T) {
	e := start(t, t.TempDir())
	resp, err := http.Post(e.url+docPath("readme"), "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("POST: %d, want 404", resp.StatusCode)
	}

	c, _ := e.connect(t, "readme", "alice")
	c.Write([]byte("{"))
	if ev := c.next("error"); !strings.Contains(ev.Message, "invalid message") {
		t.Fatalf("error %q, want invalid message", ev.Message)
	}
	c.Write([]byte(`{"type":"edit"}`))
	if ev := c.next("error"); !strings.Contains(ev.Message, "content") {
		t.Fatalf("error %q, want it to name content", ev.Message)
	}
	c.Write([]byte(`{"type":"cursor","position":3}`)) // ignored
	c.edit("", "")                                    // empty content is content
	if s := c.next("state"); s.Content != "" || s.Version != 1 {
		t.Fatalf("state %+v, want empty at version 1", s)
	}
	if h := e.history(t, "readme", 0); len(h) != 1 {
		t.Fatalf("GetHistory = %s, want the one edit", revisions(h))
	}
}
