package exampletest

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
)

// SocketTimeout bounds every dial, read and write of a Socket: a message
// that does not come fails the test instead of hanging it.
const SocketTimeout = 10 * time.Second

// Socket is a WebSocket client of an example object, speaking JSON text
// messages. Its methods fail the test on any error, naming the socket.
type Socket struct {
	t    testing.TB
	Name string // in failure messages: the user or author it connects as
	Conn *gws.Conn
}

// Dial opens a WebSocket to u, an http:// URL (a base Serve returned plus
// a path and query), named name; it is closed when the test ends.
func Dial(t testing.TB, u, name string) *Socket {
	t.Helper()
	u = "ws" + strings.TrimPrefix(u, "http")
	d := gws.Dialer{HandshakeTimeout: SocketTimeout}
	conn, resp, err := d.Dial(u, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	resp.Body.Close()
	t.Cleanup(func() { conn.Close() })
	return &Socket{t: t, Name: name, Conn: conn}
}

// Next reads the next message, which must be a text message holding a
// JSON object of type typ ("type": typ), into v, a pointer to a struct
// with a Type field; a field v does not have fails the test, so v lists
// every field the object may send.
func (s *Socket) Next(typ string, v any) {
	s.t.Helper()
	s.Conn.SetReadDeadline(time.Now().Add(SocketTimeout))
	kind, data, err := s.Conn.ReadMessage()
	if err != nil {
		s.t.Fatalf("%s: read: %v", s.Name, err)
	}
	if kind != gws.TextMessage {
		s.t.Fatalf("%s: got a message of kind %d, want text", s.Name, kind)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		s.t.Fatalf("%s: message %s: %v", s.Name, data, err)
	}
	var head struct{ Type string }
	json.Unmarshal(data, &head) // decoded above: cannot fail
	if head.Type != typ {
		s.t.Fatalf("%s: got %s, want a %q message", s.Name, data, typ)
	}
}

// Write sends b as a text message.
func (s *Socket) Write(b []byte) {
	s.t.Helper()
	s.Conn.SetWriteDeadline(time.Now().Add(SocketTimeout))
	if err := s.Conn.WriteMessage(gws.TextMessage, b); err != nil {
		s.t.Fatalf("%s: write: %v", s.Name, err)
	}
}

// Send sends v as a JSON text message.
func (s *Socket) Send(v any) {
	s.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		s.t.Fatal(err)
	}
	s.Write(b)
}

// Close closes the socket cleanly, with a close frame of 1000 (normal
// closure) and reason "bye".
func (s *Socket) Close() {
	s.t.Helper()
	msg := gws.FormatCloseMessage(gws.CloseNormalClosure, "bye")
	if err := s.Conn.WriteControl(gws.CloseMessage, msg, time.Now().Add(SocketTimeout)); err != nil {
		s.t.Fatalf("%s: close: %v", s.Name, err)
	}
	s.Conn.Close()
}
