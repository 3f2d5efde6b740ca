package servertest

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/durablego/durable/client"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
)

// testEmptyNameIsAnOrdinaryObject: as on Cloudflare, where idFromName("")
// is an object like any other, the object named "" is reachable in process
// and remotely, over every protocol and by Fetch, without the secret; it
// is one object, not the zero ID and not the object of another name.
func testEmptyNameIsAnOrdinaryObject(t *testing.T, d Deployment) {
	e, _ := newFetchEnv(t, d)
	ctx := context.Background()
	local := e.counters.Get(e.counters.IDFromName(""))
	if _, err := local.Increment(ctx, &counterv1.IncrementRequest{Amount: 1}); err != nil {
		t.Fatalf("in process: %v", err)
	}
	want := int64(1)
	for _, p := range protocols {
		counters := counterv1durable.NewCounterClient(h2cClient(), e.url, client.WithClientOptions(p.opts...))
		id := counters.IDFromName("")
		if id.IsZero() || !id.Named() || id.Resolved() {
			t.Fatalf("%s: IDFromName(\"\") without the secret: zero %v, named %v, resolved %v", p.name, id.IsZero(), id.Named(), id.Resolved())
		}
		want += 2
		r, err := counters.Get(id).Increment(ctx, &counterv1.IncrementRequest{Amount: 2})
		if err != nil || r.GetValue() != want {
			t.Fatalf("%s: remote Increment of the object named \"\": %d, %v; want %d", p.name, r.GetValue(), err, want)
		}
	}
	remotes := counterv1durable.NewCounterClient(http.DefaultClient, e.url)
	req, _ := http.NewRequest(http.MethodPost, "http://counter/increment", strings.NewReader(`{"amount": 10}`))
	res, err := remotes.Get(remotes.IDFromName("")).Fetch(ctx, req)
	if err != nil {
		t.Fatalf("remote Fetch of the object named \"\": %v", err)
	}
	res.Body.Close()
	if want += 10; res.StatusCode != http.StatusOK || counterValue(t, e, "") != want {
		t.Fatalf("remote Fetch: status %d, value %d; want 200 and %d", res.StatusCode, counterValue(t, e, ""), want)
	}
	resolved, err := remotes.ResolveName(ctx, "")
	if err != nil || resolved.String() != e.counters.IDFromName("").String() {
		t.Fatalf("ResolveName(\"\") = %s, %v; want %s", resolved, err, e.counters.IDFromName(""))
	}
	if got := counterValue(t, e, " "); got != 0 {
		t.Fatalf("the object named \" \" shares the empty name's value: %d", got)
	}
}
