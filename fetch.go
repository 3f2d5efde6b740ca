package durable

import (
	"context"
	"net/http"

	"google.golang.org/protobuf/proto"
)

// Fetcher is the optional hook an implementation satisfies to serve plain
// HTTP, Cloudflare's fetch(request). RPC methods are the preferred path:
// they are typed and cheaper. Fetch is for what has to be HTTP (a browser,
// curl, a webhook).
//
// The server routes /objects/{class-segment}/{name}/{rest...} and
// /objects-by-id/{class-segment}/{id}/{rest...} to it, and stubs have a
// Fetch method. The request r sees /{rest...} as its URL path, with the
// query string; its body has been read in full (up to the server's limit,
// server.WithMaxRequestBody) before the call was queued, and r.Context()
// is ctx.
//
// Fetch runs through the object's mailbox like any call: never beside
// another call of the same object. Its writes (state, key-value, SQL,
// alarm) commit atomically, and the response is buffered and sent only
// once they are durable (the output gate). Like w and r, the handle is
// only valid until Fetch returns; w does not support Flush or Hijack.
//
// Fetch fails, and every write it made is undone, when it panics (the
// client gets 500) or when it answers with a status of 500 or more, as
// http.Error(w, msg, http.StatusInternalServerError) does (the client
// gets that response). Any other status, 4xx included, commits: a rate
// limiter may record a request it refuses with 429.
type Fetcher[S proto.Message] interface {
	Fetch(ctx context.Context, o *Object[S], w http.ResponseWriter, r *http.Request)
}

// Path prefixes of the HTTP routes to an object's Fetch hook. A request to
// FetchByNamePrefix + "counter/user-123/increment" reaches the Counter
// object named "user-123" (the name path-escaped, so it may hold any
// character) with the path "/increment"; one to FetchByIDPrefix +
// "counter/" + id.String() + "/increment" reaches the object with that ID.
//
// IDs have a prefix of their own because any string is a valid name: a
// marker inside the /objects/ route ("id:…") would make the names that
// start with it unreachable. "objects-by-id" holds a hyphen, so it can
// never be the path of a Connect or gRPC service either.
const (
	FetchByNamePrefix = "/objects/"
	FetchByIDPrefix   = "/objects-by-id/"
)
