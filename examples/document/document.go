// Package document implements the reference page's collaborative Document:
// the content and its version in the object's state, every version in the
// object's SQL history table, edits over WebSockets. The JSON it speaks is
// documented in proto/examples/document/v1/document.proto.
//
//	curl http://127.0.0.1:8080/objects/document/readme/
//	websocat 'ws://127.0.0.1:8080/objects/document/readme/?author=alice'
//	{"type":"edit","content":"Hello, world"}
package document

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/durablego/durable"
	documentv1 "github.com/durablego/durable/gen/examples/document/v1"
	"github.com/durablego/durable/gen/examples/document/v1/documentv1durable"
	"github.com/durablego/durable/websocket"
)

// Schema is the reference page's history table: one row per version.
const Schema = `
CREATE TABLE IF NOT EXISTS history (
	version INTEGER PRIMARY KEY,
	content TEXT,
	author TEXT,
	timestamp INTEGER
);
`

const (
	// DefaultLimit is how many versions GetHistory returns when the
	// request sets no limit.
	DefaultLimit = 10
	// DefaultAuthor is the author of an edit whose message names none,
	// sent on a socket that connected without ?author=.
	DefaultAuthor = "Anonymous"
)

// Document implements documentv1durable.Document with the Init, Fetch and
// WebSocketMessage hooks. Its Now field is the clock, time.Now when nil, so
// tests can control the history's timestamps.
type Document struct {
	Now func() time.Time
}

func (d Document) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

var (
	_ documentv1durable.Document                           = Document{}
	_ durable.Initializer[*documentv1.DocumentState]       = Document{}
	_ durable.Fetcher[*documentv1.DocumentState]           = Document{}
	_ durable.WebSocketMessager[*documentv1.DocumentState] = Document{}
)

// snapshot is the document as GET answers it.
type snapshot struct {
	Content string `json:"content"`
	Version int64  `json:"version"`
}

// stateMessage is what every socket receives after an edit, and a new
// socket on connect.
type stateMessage struct {
	Type string `json:"type"` // "state"
	snapshot
}

// problem answers a socket message the document cannot apply.
type problem struct {
	Type    string `json:"type"` // "error"
	Message string `json:"message"`
}

// edit is a socket message: {"type":"edit","content":"...","author":"..."}.
type edit struct {
	Type    string  `json:"type"`
	Content *string `json:"content"`
	Author  string  `json:"author"`
}

func encode(v any) []byte {
	b, _ := json.Marshal(v) // of strings and integers: cannot fail
	return b
}

// current is the state message of the document as it is now.
func current(o *documentv1durable.DocumentObject) []byte {
	return encode(stateMessage{"state", snapshot{o.State.GetContent(), o.State.GetVersion()}})
}

// Init creates the history table in a new document's database; the
// document starts empty, at version 0.
func (Document) Init(ctx context.Context, o *documentv1durable.DocumentObject) error {
	_, err := o.SQL.Exec(ctx, Schema)
	return err
}

// Fetch accepts a WebSocket upgrade, tagged with ?author= when it is set,
// and sends the new socket the current state; it answers GET with the
// content and version as JSON, and anything else with 404.
func (Document) Fetch(_ context.Context, o *documentv1durable.DocumentObject, w http.ResponseWriter, r *http.Request) {
	var tags []string
	if author := r.URL.Query().Get("author"); author != "" {
		tags = append(tags, author)
	}
	ws, err := o.Sockets.Accept(w, r, tags...)
	switch {
	case errors.Is(err, websocket.ErrNotUpgrade):
		if r.Method != http.MethodGet {
			http.Error(w, "Not Found", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(encode(snapshot{o.State.GetContent(), o.State.GetVersion()}))
	case err != nil: // 503 when the document has too many sockets or the server is shutting down
		code := http.StatusBadRequest // a tag over 256 characters
		if errors.Is(err, websocket.ErrTooManySockets) || errors.Is(err, websocket.ErrClosed) {
			code = http.StatusServiceUnavailable
		}
		http.Error(w, err.Error(), code)
	default:
		if err := ws.Send(current(o)); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}
}

// WebSocketMessage applies an edit: the content is replaced, the version
// bumped, the version recorded in the history table, and every socket
// receives the new state. A message that is not JSON, or an edit without
// content, is answered to its sender alone with an error and changes
// nothing; messages of other types are ignored.
func (d Document) WebSocketMessage(ctx context.Context, o *documentv1durable.DocumentObject, ws *websocket.Conn, msg websocket.Message) error {
	var e edit
	if err := json.Unmarshal(msg.Data, &e); err != nil {
		return ws.Send(encode(problem{"error", "invalid message: " + err.Error()}))
	}
	if e.Type != "edit" {
		return nil
	}
	if e.Content == nil {
		return ws.Send(encode(problem{"error", `an edit needs "content", the new content`}))
	}
	author := e.Author
	if author == "" {
		if tags := ws.Tags(); len(tags) > 0 {
			author = tags[0]
		} else {
			author = DefaultAuthor
		}
	}
	o.State.Content = *e.Content
	o.State.Version++
	if _, err := o.SQL.Exec(ctx, `INSERT INTO history (version, content, author, timestamp) VALUES (?, ?, ?, ?)`,
		o.State.Version, o.State.Content, author, d.now().UnixMilli()); err != nil {
		return err
	}
	o.Sockets.Broadcast(current(o))
	return nil
}

// GetContent returns the current content and version.
func (Document) GetContent(_ context.Context, o *documentv1durable.DocumentObject, _ *documentv1.GetContentRequest) (*documentv1.GetContentResponse, error) {
	return &documentv1.GetContentResponse{Content: o.State.GetContent(), Version: o.State.GetVersion()}, nil
}

// GetHistory returns the latest versions (DefaultLimit when the request
// sets no limit), newest first.
func (Document) GetHistory(ctx context.Context, o *documentv1durable.DocumentObject, req *documentv1.GetHistoryRequest) (*documentv1.GetHistoryResponse, error) {
	limit := int64(req.GetLimit())
	if limit == 0 {
		limit = DefaultLimit
	}
	c, err := o.SQL.Exec(ctx, `SELECT version, content, author, timestamp FROM history ORDER BY version DESC LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	res := &documentv1.GetHistoryResponse{}
	for c.Next() {
		r := &documentv1.Revision{}
		if err := c.Scan(&r.Version, &r.Content, &r.Author, &r.TimestampMs); err != nil {
			return nil, err
		}
		res.Revisions = append(res.Revisions, r)
	}
	return res, nil
}
