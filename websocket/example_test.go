package websocket_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	gorilla "github.com/gorilla/websocket"

	chatv1 "github.com/durablego/durable/gen/examples/chat/v1"
	"github.com/durablego/durable/gen/examples/chat/v1/chatv1durable"
	"github.com/durablego/durable/gen/examples/chat/v1/chatv1durableclient"
	"github.com/durablego/durable/server"
	"github.com/durablego/durable/websocket"
)

// room implements the ChatRoom class of examples/chat/v1 in a few lines:
// its Fetch accepts WebSockets tagged with the user and the team of the
// query, and a message goes to the sender's team, or to everyone when it
// starts with "/all ".
type room struct{}

func (room) Fetch(_ context.Context, o *chatv1durable.ChatRoomObject, w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	_, err := o.Sockets.Accept(w, r, q.Get("user"), "team:"+q.Get("team"))
	switch {
	case errors.Is(err, websocket.ErrNotUpgrade):
		http.Error(w, "Expected WebSocket", http.StatusUpgradeRequired)
	case errors.Is(err, websocket.ErrTooManySockets):
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	case err != nil: // an empty user, or a tag over the limits
		http.Error(w, err.Error(), http.StatusBadRequest)
	default:
		o.Sockets.SetAutoResponse("ping", "pong") // answered by the server, the object left asleep
	}
}

func (room) WebSocketMessage(_ context.Context, o *chatv1durable.ChatRoomObject, ws *websocket.Conn, msg websocket.Message) error {
	user, team := ws.Tags()[0], ws.Tags()[1]
	if text, ok := strings.CutPrefix(msg.Text(), "/all "); ok {
		o.Sockets.Broadcast([]byte(user+" to all: "+text), websocket.Except(ws))
		return nil
	}
	o.Sockets.Broadcast([]byte(user+" to "+team+": "+msg.Text()), websocket.Tag(team), websocket.Except(ws))
	return nil
}

// GetOnlineUsers lists the user of every open socket, in the order they
// were accepted.
func (room) GetOnlineUsers(_ context.Context, o *chatv1durable.ChatRoomObject, _ *chatv1.GetOnlineUsersRequest) (*chatv1.GetOnlineUsersResponse, error) {
	res := &chatv1.GetOnlineUsersResponse{}
	for _, ws := range o.Sockets.All() {
		res.Users = append(res.Users, ws.Tags()[0])
	}
	return res, nil
}

func (room) GetRecentMessages(context.Context, *chatv1durable.ChatRoomObject, *chatv1.GetRecentMessagesRequest) (*chatv1.GetRecentMessagesResponse, error) {
	return &chatv1.GetRecentMessagesResponse{}, nil // this room keeps no history
}

// serveRooms serves the room class on a loopback port and returns its URL
// and how to stop it.
func serveRooms() (url string, stop func()) {
	dir, _ := os.MkdirTemp("", "durable-example")
	srv, err := server.New(server.WithDataDir(dir))
	if err != nil {
		panic(err)
	}
	if _, err := chatv1durable.RegisterChatRoom(srv, room{}); err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() {
		srv.Shutdown(context.Background())
		os.RemoveAll(dir)
	}
}

// dial opens a WebSocket to the room named lobby, as user of team.
func dial(url, user, team string) *gorilla.Conn {
	ws := "ws" + strings.TrimPrefix(url, "http") + "/objects/" + chatv1durable.ChatRoomURLSegment + "/lobby/?user=" + user + "&team=" + team
	c, _, err := gorilla.DefaultDialer.Dial(ws, nil)
	if err != nil {
		panic(err)
	}
	return c
}

// read returns the next message on c.
func read(c *gorilla.Conn) string {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, msg, err := c.ReadMessage()
	if err != nil {
		panic(err)
	}
	return string(msg)
}

// Sockets accepted in Fetch with tags, and broadcast to by tag. The sends
// of a call reach each socket in the order the calls ran, so carol's first
// message shows that she got none of the red team's.
func Example() {
	url, stop := serveRooms()
	defer stop()
	alice, bob, carol := dial(url, "alice", "red"), dial(url, "bob", "red"), dial(url, "carol", "blue")
	defer alice.Close()
	defer bob.Close()
	defer carol.Close()

	rooms := chatv1durableclient.NewChatRoomClient(http.DefaultClient, url)
	online, err := rooms.Get(rooms.IDFromName("lobby")).GetOnlineUsers(context.Background(), &chatv1.GetOnlineUsersRequest{})
	fmt.Println(online.GetUsers(), err)

	alice.WriteMessage(gorilla.TextMessage, []byte("hi"))
	alice.WriteMessage(gorilla.TextMessage, []byte("/all lunch?"))
	fmt.Println("bob:", read(bob))
	fmt.Println("bob:", read(bob))
	fmt.Println("carol:", read(carol))
	// Output:
	// [alice bob carol] <nil>
	// bob: alice to team:red: hi
	// bob: alice to all: lunch?
	// carol: alice to all: lunch?
}

// The auto-response set in Fetch answers "ping" without a call to the
// object: keep-alives cost no activation.
func ExampleSockets_SetAutoResponse() {
	url, stop := serveRooms()
	defer stop()
	c := dial(url, "dave", "green")
	defer c.Close()
	c.WriteMessage(gorilla.TextMessage, []byte("ping"))
	fmt.Println(read(c))
	// Output:
	// pong
}
