// Command durable is a remote-only client of the counter example built on
// the generated package counterv1durableclient: it increments the counter
// named by its second argument on the server at its first and prints the
// new value. TestRemoteOnlySize compares its binary with that of the plain
// connect-go client beside it, which makes the same call.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"

	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durableclient"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: durable BASE-URL NAME")
		os.Exit(2)
	}
	counters := counterv1durableclient.NewCounterClient(http.DefaultClient, os.Args[1])
	res, err := counters.Get(counters.IDFromName(os.Args[2])).Increment(context.Background(), &counterv1.IncrementRequest{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(res.GetValue())
}
