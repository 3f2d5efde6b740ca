// Command connect is a plain connect-go client of the counter example, the
// baseline of TestRemoteOnlySize: it makes the call of the durable command
// beside it with protoc-gen-connect-go's client and the object's name in
// the Durable-Object-Name header.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"connectrpc.com/connect"

	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1connect"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: connect BASE-URL NAME")
		os.Exit(2)
	}
	counters := counterv1connect.NewCounterClient(http.DefaultClient, os.Args[1])
	req := connect.NewRequest(&counterv1.IncrementRequest{})
	req.Header().Set("Durable-Object-Name", os.Args[2])
	res, err := counters.Increment(context.Background(), req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(res.Msg.GetValue())
}
