package chat_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	gorilla "github.com/gorilla/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/durablego/durable/examples/chat"
	"github.com/durablego/durable/examples/internal/exampletest"
	chatv1 "github.com/durablego/durable/gen/examples/chat/v1"
	"github.com/durablego/durable/gen/examples/chat/v1/chatv1durable"
	"github.com/durablego/durable/server"
)

var (
	ctx = context.Background()
	t0  = time.UnixMilli(1_700_000_000_000)
)

type env struct {
	srv   *exampletest.Server
	ns    *chatv1durable.ChatRoomNamespace
	url   string // http://127.0.0.1:port
	clock *exampletest.Clock
}

func start(t *testing.T, opts ...server.Option) *env {
	t.Helper()
	e := &env{srv: exampletest.Start(t, t.TempDir(), opts...), clock: exampletest.NewClock(t0)}
	var err error
	if e.ns, err = chatv1durable.RegisterChatRoom(e.srv.Server, chat.ChatRoom{Now: e.clock.Now}); err != nil {
		t.Fatal(err)
	}
	e.url = e.srv.Serve(t)
	return e
}

// room is the URL path of a room.
func room(name string) string {
	return "/objects/" + chatv1durable.ChatRoomURLSegment + "/" + url.PathEscape(name) + "/"
}

// client is a WebSocket client of a room.
type client struct {
	*exampletest.Socket
	t *testing.T
}

// event is any message the room sends; DisallowUnknownFields checks that
// it sends no other field.
type event struct {
	Type      string    `json:"type"`
	User      string    `json:"user"`
	Text      string    `json:"text"`
	Timestamp int64     `json:"timestamp"`
	Messages  []message `json:"messages"`
	Message   string    `json:"message"`
}

type message struct {
	User      string `json:"user"`
	Text      string `json:"text"`
	Timestamp int64  `json:"timestamp"`
}

// connect opens a socket to the room as user (no ?username= when empty).
func (e *env) connect(t *testing.T, roomName, user string) *client {
	t.Helper()
	u := e.url + room(roomName)
	if user != "" {
		u += "?username=" + url.QueryEscape(user)
	}
	return &client{exampletest.Dial(t, u, user), t}
}

// next reads the next message, which must be of type typ.
func (c *client) next(typ string) event {
	c.t.Helper()
	var ev event
	c.Next(typ, &ev)
	return ev
}

func (c *client) say(text string) {
	c.t.Helper()
	c.Send(map[string]string{"type": "message", "text": text})
}

func (e *env) onlineUsers(t *testing.T, roomName string) []string {
	t.Helper()
	r, err := e.ns.Get(e.ns.IDFromName(roomName)).GetOnlineUsers(ctx, &chatv1.GetOnlineUsersRequest{})
	if err != nil {
		t.Fatalf("GetOnlineUsers: %v", err)
	}
	u := r.GetUsers()
	slices.Sort(u)
	return u
}

func (e *env) recent(t *testing.T, roomName string, limit int32) []*chatv1.ChatMessage {
	t.Helper()
	r, err := e.ns.Get(e.ns.IDFromName(roomName)).GetRecentMessages(ctx, &chatv1.GetRecentMessagesRequest{Limit: limit})
	if err != nil {
		t.Fatalf("GetRecentMessages: %v", err)
	}
	return r.GetMessages()
}

func TestTwoClientsChat(t *testing.T) {
	e := start(t)

	alice := e.connect(t, "lobby", "alice")
	if h := alice.next("history"); len(h.Messages) != 0 {
		t.Fatalf("history of a new room = %v, want none", h.Messages)
	}
	if u := e.onlineUsers(t, "lobby"); !slices.Equal(u, []string{"alice"}) {
		t.Fatalf("GetOnlineUsers = %q, want [alice]", u)
	}

	e.clock.Advance(time.Second)
	bob := e.connect(t, "lobby", "bob")
	if h := bob.next("history"); len(h.Messages) != 0 {
		t.Fatalf("bob's history = %v, want none", h.Messages)
	}
	if j := alice.next("join"); j.User != "bob" || j.Timestamp != e.clock.Now().UnixMilli() {
		t.Fatalf("alice got join %+v, want bob at %d", j, e.clock.Now().UnixMilli())
	}
	if u := e.onlineUsers(t, "lobby"); !slices.Equal(u, []string{"alice", "bob"}) {
		t.Fatalf("GetOnlineUsers = %q, want [alice bob]", u)
	}

	// A message reaches everyone, its sender included.
	e.clock.Advance(time.Second)
	alice.say("hello, bob")
	want := message{User: "alice", Text: "hello, bob", Timestamp: e.clock.Now().UnixMilli()}
	for _, c := range []*client{alice, bob} {
		m := c.next("message")
		if got := (message{m.User, m.Text, m.Timestamp}); got != want {
			t.Fatalf("%s got %+v, want %+v", c.Name, got, want)
		}
	}
	e.clock.Advance(time.Second)
	bob.say("hi alice")
	for _, c := range []*client{alice, bob} {
		if m := c.next("message"); m.User != "bob" || m.Text != "hi alice" {
			t.Fatalf("%s got %+v, want bob's hi alice", c.Name, m)
		}
	}

	// Bob leaves: Alice hears of it, and only she is online.
	e.clock.Advance(time.Second)
	bob.Close()
	if l := alice.next("leave"); l.User != "bob" || l.Timestamp != e.clock.Now().UnixMilli() {
		t.Fatalf("alice got leave %+v, want bob at %d", l, e.clock.Now().UnixMilli())
	}
	if u := e.onlineUsers(t, "lobby"); !slices.Equal(u, []string{"alice"}) {
		t.Fatalf("GetOnlineUsers after bob left = %q, want [alice]", u)
	}

	// Carol joins and gets the history; the room kept both messages.
	carol := e.connect(t, "lobby", "carol")
	h := carol.next("history")
	if len(h.Messages) != 2 || h.Messages[0] != want || h.Messages[1].User != "bob" {
		t.Fatalf("carol's history = %+v, want alice's then bob's message", h.Messages)
	}
	if j := alice.next("join"); j.User != "carol" {
		t.Fatalf("alice got join %+v, want carol", j)
	}
	msgs := e.recent(t, "lobby", 0)
	if len(msgs) != 2 || msgs[0].GetUser() != "alice" || msgs[0].GetText() != "hello, bob" ||
		msgs[0].GetTimestampMs() != want.Timestamp || msgs[1].GetUser() != "bob" {
		t.Fatalf("GetRecentMessages = %v, want alice's then bob's message", msgs)
	}

	// Rooms are separate objects.
	other := e.connect(t, "other", "")
	if h := other.next("history"); len(h.Messages) != 0 {
		t.Fatalf("history of another room = %v, want none", h.Messages)
	}
	if u := e.onlineUsers(t, "other"); !slices.Equal(u, []string{chat.DefaultUsername}) {
		t.Fatalf("GetOnlineUsers of the other room = %q, want [%s]", u, chat.DefaultUsername)
	}
}

// TestHibernation lets the room leave memory while its sockets stay open:
// with one object in memory at most, a call to another room evicts it, and
// the next message reactivates it with its messages and its sockets' tags.
func TestHibernation(t *testing.T) {
	e := start(t, server.WithMaxActiveObjects(1))
	alice := e.connect(t, "lobby", "alice")
	alice.next("history")
	bob := e.connect(t, "lobby", "bob")
	bob.next("history")
	alice.next("join")
	alice.say("before")
	alice.next("message")
	bob.next("message")

	e.recent(t, "elsewhere", 0) // activates another room: the lobby leaves memory

	bob.say("after")
	for _, c := range []*client{alice, bob} {
		if m := c.next("message"); m.User != "bob" || m.Text != "after" {
			t.Fatalf("%s got %+v, want bob's message after the eviction", c.Name, m)
		}
	}
	if u := e.onlineUsers(t, "lobby"); !slices.Equal(u, []string{"alice", "bob"}) {
		t.Fatalf("GetOnlineUsers after the eviction = %q, want [alice bob]", u)
	}
	e.recent(t, "elsewhere", 0)
	bob.Close()
	if l := alice.next("leave"); l.User != "bob" {
		t.Fatalf("alice got leave %+v, want bob", l)
	}
	if m := e.recent(t, "lobby", 0); len(m) != 2 || m[0].GetText() != "before" || m[1].GetText() != "after" {
		t.Fatalf("GetRecentMessages = %v, want before and after", m)
	}
}

func TestHistoryAndLimits(t *testing.T) {
	e := start(t)
	alice := e.connect(t, "busy", "alice")
	alice.next("history")

	// More than the room keeps, sent back to back before reading any:
	// the broadcasts wait for the socket (a burst past melody's buffer of
	// 256 messages is not dropped).
	const n = chat.MaxMessages + 5
	for i := range n {
		alice.say(fmt.Sprint("m", i))
	}
	for i := range n {
		if m := alice.next("message"); m.Text != fmt.Sprint("m", i) {
			t.Fatalf("message %d = %q, want m%d: one client's messages in order", i, m.Text, i)
		}
	}

	bob := e.connect(t, "busy", "bob")
	h := bob.next("history")
	if len(h.Messages) != chat.HistorySize || h.Messages[0].Text != fmt.Sprint("m", n-chat.HistorySize) || h.Messages[chat.HistorySize-1].Text != fmt.Sprint("m", n-1) {
		t.Fatalf("history has %d messages, from %q; want the last %d", len(h.Messages), h.Messages[0].Text, chat.HistorySize)
	}
	if m := e.recent(t, "busy", 0); len(m) != chat.DefaultLimit || m[len(m)-1].GetText() != fmt.Sprint("m", n-1) {
		t.Fatalf("GetRecentMessages{} returned %d messages, want the last %d", len(m), chat.DefaultLimit)
	}
	if m := e.recent(t, "busy", 3); len(m) != 3 || m[0].GetText() != fmt.Sprint("m", n-3) || m[2].GetText() != fmt.Sprint("m", n-1) {
		t.Fatalf("GetRecentMessages{limit: 3} = %v, want the last three", m)
	}
	m := e.recent(t, "busy", chat.MaxMessages)
	if len(m) != chat.MaxMessages || m[0].GetText() != fmt.Sprint("m", n-chat.MaxMessages) {
		t.Fatalf("GetRecentMessages{limit: %d} returned %d messages from %q; want the room's last %d", chat.MaxMessages, len(m), m[0].GetText(), chat.MaxMessages)
	}

	_, err := e.ns.Get(e.ns.IDFromName("busy")).GetRecentMessages(ctx, &chatv1.GetRecentMessagesRequest{Limit: chat.MaxMessages + 1})
	exampletest.WantError(t, "GetRecentMessages{limit: 1001}", err, connect.CodeInvalidArgument, "limit")
}

func TestInvalidAndUnknownMessages(t *testing.T) {
	e := start(t)
	alice := e.connect(t, "lobby", "alice")
	alice.next("history")

	alice.Write([]byte("not json"))
	if ev := alice.next("error"); !strings.Contains(ev.Message, "invalid message") {
		t.Fatalf("error message %q, want it to say invalid message", ev.Message)
	}
	alice.Send(map[string]string{"type": "typing"}) // ignored
	alice.say("still here")
	if m := alice.next("message"); m.Text != "still here" {
		t.Fatalf("got %+v, want the message after the ignored ones", m)
	}
	if m := e.recent(t, "lobby", 0); len(m) != 1 {
		t.Fatalf("GetRecentMessages = %v, want only the one message", m)
	}
}

func TestNotAnUpgrade(t *testing.T) {
	e := start(t)
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		req, err := http.NewRequest(method, e.url+room("lobby")+"?username=alice", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUpgradeRequired || strings.TrimSpace(string(body)) != "Expected WebSocket" {
			t.Fatalf("%s without an upgrade: %d %q, want 426 Expected WebSocket", method, resp.StatusCode, body)
		}
	}
	if u := e.onlineUsers(t, "lobby"); len(u) != 0 {
		t.Fatalf("GetOnlineUsers = %q, want nobody", u)
	}
}

// TestRemoteClient reaches the room's RPCs over the network, as any
// Connect client would.
func TestRemoteClient(t *testing.T) {
	e := start(t)
	alice := e.connect(t, "lobby", "alice")
	alice.next("history")
	alice.say("hi")
	alice.next("message")

	remote := chatv1durable.NewChatRoomClient(http.DefaultClient, e.url)
	stub := remote.Get(remote.IDFromName("lobby"))
	u, err := stub.GetOnlineUsers(ctx, &chatv1.GetOnlineUsersRequest{})
	if err != nil || !slices.Equal(u.GetUsers(), []string{"alice"}) {
		t.Fatalf("remote GetOnlineUsers = %v, %v; want [alice]", u.GetUsers(), err)
	}
	m, err := stub.GetRecentMessages(ctx, &chatv1.GetRecentMessagesRequest{})
	if err != nil || len(m.GetMessages()) != 1 || m.GetMessages()[0].GetText() != "hi" {
		t.Fatalf("remote GetRecentMessages = %v, %v; want the one message", m.GetMessages(), err)
	}
}

// TestLongMessages: a text over MaxTextBytes is answered with an error to
// its sender, and neither kept nor broadcast; one of MaxTextBytes is
// both. The count is in bytes of UTF-8, not characters. Six 8 MiB
// messages, which once grew the state until SQLite ran out of memory, are
// refused too, and the room goes on.
func TestLongMessages(t *testing.T) {
	e := start(t)
	alice := e.connect(t, "lobby", "alice")
	alice.next("history")
	bob := e.connect(t, "lobby", "bob")
	bob.next("history")
	alice.next("join")

	tooLong := func(text string) {
		t.Helper()
		alice.say(text)
		if ev := alice.next("error"); !strings.Contains(ev.Message, "too long") {
			t.Fatalf("error message %q, want it to say too long", ev.Message)
		}
	}
	tooLong(strings.Repeat("x", chat.MaxTextBytes+1))
	tooLong(strings.Repeat("é", chat.MaxTextBytes/2+1)) // 2 bytes each
	longest := strings.Repeat("y", chat.MaxTextBytes)
	alice.say(longest)
	for _, c := range []*client{alice, bob} {
		if m := c.next("message"); m.Text != longest {
			t.Fatalf("%s got %d bytes, want the message of %d", c.Name, len(m.Text), len(longest))
		}
	}
	huge := strings.Repeat("z", 8<<20)
	for range 6 {
		tooLong(huge)
	}
	alice.say("still here")
	if m := bob.next("message"); m.Text != "still here" {
		t.Fatalf("bob got %.40q, want the message after the refused ones: none of them was broadcast", m.Text)
	}
	alice.next("message")
	m := e.recent(t, "lobby", chat.MaxMessages)
	if len(m) != 2 || m[0].GetText() != longest || m[1].GetText() != "still here" {
		t.Fatalf("GetRecentMessages has %d messages, want the longest and still here", len(m))
	}
}

// TestHistoryBoundedInBytes: messages of the longest text are kept only as
// long as they fit in MaxHistoryBytes, the newest; the oldest are dropped
// first, long before MaxMessages.
func TestHistoryBoundedInBytes(t *testing.T) {
	e := start(t)
	alice := e.connect(t, "lobby", "alice")
	alice.next("history")
	const n = 300 // 1.2 MiB of text
	text := func(i int) string { return fmt.Sprintf("%04d%s", i, strings.Repeat("w", chat.MaxTextBytes-4)) }
	for i := range n {
		alice.say(text(i))
		if m := alice.next("message"); m.Text != text(i) {
			t.Fatalf("message %d: got %.10q", i, m.Text)
		}
	}
	kept := e.recent(t, "lobby", chat.MaxMessages)
	size := proto.Size(&chatv1.ChatState{Messages: kept})
	if size > chat.MaxHistoryBytes {
		t.Fatalf("the room keeps %d messages, %d bytes encoded: over %d", len(kept), size, chat.MaxHistoryBytes)
	}
	if len(kept) == 0 || len(kept) >= n {
		t.Fatalf("the room keeps %d messages of %d", len(kept), n)
	}
	for i, m := range kept {
		if want := text(n - len(kept) + i); m.GetText() != want {
			t.Fatalf("kept message %d: %.10q, want %.10q: the newest, in order", i, m.GetText(), want)
		}
	}
	one := proto.Size(&chatv1.ChatState{Messages: kept[:1]})
	if size+one <= chat.MaxHistoryBytes {
		t.Fatalf("the room keeps %d bytes: one more message of %d bytes would have fit", size, one)
	}
}

// TestUsernames: a user name of MaxUsername characters is accepted (and
// shown whole); a longer one, or one that is not UTF-8 (which the state,
// a protobuf message, could not store), is refused with 400.
func TestUsernames(t *testing.T) {
	e := start(t)
	longest := strings.Repeat("é", chat.MaxUsername)
	c := e.connect(t, "lobby", longest)
	c.next("history")
	c.say("hi")
	if m := c.next("message"); m.User != longest {
		t.Fatalf("user %q, want %q", m.User, longest)
	}
	for _, q := range []string{url.QueryEscape(longest + "é"), "%FF%FE"} {
		u := "ws" + strings.TrimPrefix(e.url, "http") + room("lobby") + "?username=" + q
		conn, resp, err := gorilla.DefaultDialer.Dial(u, nil)
		if err == nil {
			conn.Close()
		}
		if resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("username %.20s…: %v, want 400", q, err)
		}
	}
	if u := e.onlineUsers(t, "lobby"); !slices.Equal(u, []string{longest}) {
		t.Fatalf("GetOnlineUsers = %q, want only the accepted user", u)
	}
}
