// Package chat implements the reference page's ChatRoom: a chat room over
// WebSockets, each socket tagged with its user's name, the last 1,000
// messages kept in the object's state. The JSON it speaks is documented in
// proto/examples/chat/v1/chat.proto.
//
// Unlike the reference page, the room bounds what a client can make it
// keep: a message's text is at most MaxTextBytes (a longer one is answered
// with {"type":"error",...}, and neither kept nor broadcast), a user name
// at most MaxUsername characters of UTF-8 (a longer or invalid one is
// refused with 400), and the kept messages at most MaxMessages and
// MaxHistoryBytes, oldest dropped first. The state thus stays near 1 MiB
// whatever the clients send.
//
// Try it with the example server and any WebSocket client:
//
//	websocat 'ws://127.0.0.1:8080/objects/chat-room/lobby/?username=alice'
//	{"type":"message","text":"hello"}
package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/durablego/durable"
	chatv1 "github.com/durablego/durable/gen/examples/chat/v1"
	"github.com/durablego/durable/gen/examples/chat/v1/chatv1durable"
	"github.com/durablego/durable/websocket"
)

// Limits of the room, as on the reference page.
const (
	// MaxMessages is how many messages the room keeps; older ones are
	// dropped.
	MaxMessages = 1000
	// HistorySize is how many of the latest messages a new socket receives.
	HistorySize = 50
	// DefaultLimit is how many messages GetRecentMessages returns when the
	// request sets no limit.
	DefaultLimit = 50
	// DefaultUsername is the name of a user who connects without
	// ?username=.
	DefaultUsername = "Anonymous"
	// MaxTextBytes caps a message's text, in bytes of UTF-8: 4 KiB, a
	// long paragraph, and about as much as chat services allow (Discord
	// 2,000 characters, Slack 4,000). A longer message is refused.
	MaxTextBytes = 4 << 10
	// MaxUsername caps a user name, in characters: the name is in every
	// message kept and broadcast.
	MaxUsername = 64
	// MaxHistoryBytes caps the kept messages, as encoded in the state:
	// with MaxTextBytes, 1,000 messages could take 4 MiB. 1 MiB keeps at
	// least 240 messages of the longest kind, and the state well under
	// the server's state cap.
	MaxHistoryBytes = 1 << 20
)

// maxFrameBytes is the longest client message worth decoding: a text of
// MaxTextBytes in JSON, each byte escaped as \u00XX, and the rest of the
// object. A longer one is refused without parsing it.
const maxFrameBytes = 6*MaxTextBytes + 1024

// ChatRoom implements chatv1durable.ChatRoom with the Fetch and WebSocket
// hooks. Its Now field is the clock, time.Now when nil, so tests can
// control the timestamps.
type ChatRoom struct {
	Now func() time.Time
}

func (c ChatRoom) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

var (
	_ chatv1durable.ChatRoom                       = ChatRoom{}
	_ durable.Fetcher[*chatv1.ChatState]           = ChatRoom{}
	_ durable.WebSocketMessager[*chatv1.ChatState] = ChatRoom{}
	_ durable.WebSocketCloser[*chatv1.ChatState]   = ChatRoom{}
)

// message is a ChatMessage as the clients see it.
type message struct {
	User      string `json:"user"`
	Text      string `json:"text"`
	Timestamp int64  `json:"timestamp"`
}

// history is the first message a new socket receives.
type history struct {
	Type     string    `json:"type"` // "history"
	Messages []message `json:"messages"`
}

// presence announces a user who joined or left.
type presence struct {
	Type      string `json:"type"` // "join" or "leave"
	User      string `json:"user"`
	Timestamp int64  `json:"timestamp"`
}

// posted is a message broadcast to the room.
type posted struct {
	Type string `json:"type"` // "message"
	message
}

// problem answers a client message the room cannot read.
type problem struct {
	Type    string `json:"type"` // "error"
	Message string `json:"message"`
}

// incoming is a message from a client.
type incoming struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

func encode(v any) []byte {
	b, _ := json.Marshal(v) // of strings and integers: cannot fail
	return b
}

// username is the user's name: a socket's first tag.
func username(ws *websocket.Conn) string {
	if tags := ws.Tags(); len(tags) > 0 {
		return tags[0]
	}
	return DefaultUsername
}

// Fetch accepts a WebSocket tagged with ?username= (DefaultUsername when
// absent or empty), sends it the last HistorySize messages and tells the
// other sockets that the user joined. Any other request is answered 426
// "Expected WebSocket", as on the reference page.
func (c ChatRoom) Fetch(_ context.Context, o *chatv1durable.ChatRoomObject, w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("username")
	if name == "" {
		name = DefaultUsername
	}
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > MaxUsername {
		http.Error(w, fmt.Sprintf("username: at most %d characters of UTF-8", MaxUsername), http.StatusBadRequest)
		return
	}
	ws, err := o.Sockets.Accept(w, r, name)
	if errors.Is(err, websocket.ErrNotUpgrade) {
		http.Error(w, "Expected WebSocket", http.StatusUpgradeRequired)
		return
	}
	if err != nil {
		refuse(w, err)
		return
	}
	msgs := o.State.GetMessages()
	h := history{Type: "history", Messages: make([]message, 0, HistorySize)}
	for _, m := range msgs[max(0, len(msgs)-HistorySize):] {
		h.Messages = append(h.Messages, toJSON(m))
	}
	if err := ws.Send(encode(h)); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	o.Sockets.Broadcast(encode(presence{"join", name, c.now().UnixMilli()}), websocket.Except(ws))
}

// errTooLong answers a message whose text is over MaxTextBytes.
var errTooLong = problem{"error", fmt.Sprintf("message too long: the text is at most %d bytes", MaxTextBytes)}

// WebSocketMessage handles {"type":"message","text":"..."}: the message is
// kept (the last MaxMessages, at most MaxHistoryBytes) and broadcast to
// every socket. Other types are ignored; a message that is not JSON, or
// whose text is over MaxTextBytes, is answered to its sender with
// {"type":"error","message":"..."}, and neither kept nor broadcast.
func (c ChatRoom) WebSocketMessage(_ context.Context, o *chatv1durable.ChatRoomObject, ws *websocket.Conn, msg websocket.Message) error {
	if len(msg.Data) > maxFrameBytes {
		return ws.Send(encode(errTooLong))
	}
	var in incoming
	if err := json.Unmarshal(msg.Data, &in); err != nil {
		return ws.Send(encode(problem{"error", "invalid message: " + err.Error()}))
	}
	if in.Type != "message" {
		return nil
	}
	if len(in.Text) > MaxTextBytes {
		return ws.Send(encode(errTooLong))
	}
	m := &chatv1.ChatMessage{User: username(ws), Text: in.Text, TimestampMs: c.now().UnixMilli()}
	o.State.Messages = keep(append(o.State.Messages, m))
	o.Sockets.Broadcast(encode(posted{"message", toJSON(m)}))
	return nil
}

// keep drops the oldest of msgs until at most MaxMessages remain, taking
// at most MaxHistoryBytes in the state.
func keep(msgs []*chatv1.ChatMessage) []*chatv1.ChatMessage {
	from, size := len(msgs), 0
	for from > 0 && len(msgs)-from < MaxMessages {
		// As encoded in ChatState: field 1, length-delimited.
		n := protowire.SizeTag(1) + protowire.SizeBytes(proto.Size(msgs[from-1]))
		if size+n > MaxHistoryBytes {
			break
		}
		size += n
		from--
	}
	return slices.Delete(msgs, 0, from)
}

// WebSocketClose tells the other sockets that the user left.
func (c ChatRoom) WebSocketClose(_ context.Context, o *chatv1durable.ChatRoomObject, ws *websocket.Conn, _ int, _ string, _ bool) error {
	o.Sockets.Broadcast(encode(presence{"leave", username(ws), c.now().UnixMilli()}), websocket.Except(ws))
	return nil
}

// GetOnlineUsers returns the first tag, the user's name, of every socket.
func (ChatRoom) GetOnlineUsers(_ context.Context, o *chatv1durable.ChatRoomObject, _ *chatv1.GetOnlineUsersRequest) (*chatv1.GetOnlineUsersResponse, error) {
	res := &chatv1.GetOnlineUsersResponse{}
	for _, ws := range o.Sockets.All() {
		res.Users = append(res.Users, username(ws))
	}
	return res, nil
}

// GetRecentMessages returns the latest messages (DefaultLimit when the
// request sets no limit), oldest first.
func (ChatRoom) GetRecentMessages(_ context.Context, o *chatv1durable.ChatRoomObject, req *chatv1.GetRecentMessagesRequest) (*chatv1.GetRecentMessagesResponse, error) {
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = DefaultLimit
	}
	msgs := o.State.GetMessages()
	res := &chatv1.GetRecentMessagesResponse{}
	for _, m := range msgs[max(0, len(msgs)-limit):] {
		// Copies: an in-process caller must not share the state's messages.
		res.Messages = append(res.Messages, proto.CloneOf(m))
	}
	return res, nil
}

// refuse answers an upgrade that Accept refused: 503 when the room is full
// (or the server is shutting down), 400 otherwise (a user name over 256
// characters).
func refuse(w http.ResponseWriter, err error) {
	code := http.StatusBadRequest
	if errors.Is(err, websocket.ErrTooManySockets) || errors.Is(err, websocket.ErrClosed) {
		code = http.StatusServiceUnavailable
	}
	http.Error(w, err.Error(), code)
}

func toJSON(m *chatv1.ChatMessage) message {
	return message{User: m.GetUser(), Text: m.GetText(), Timestamp: m.GetTimestampMs()}
}
