package servertest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/durablego/durable"
	durablev1 "github.com/durablego/durable/gen/durable/v1"
	"github.com/durablego/durable/gen/durable/v1/durablev1connect"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1connect"
	"github.com/durablego/durable/server"
)

// increment is an IncrementRequest of amount 1 padded with an unknown
// field of zeros to exactly size bytes: it compresses to almost nothing,
// and the object ignores the padding.
func increment(size int) *counterv1.IncrementRequest {
	m := &counterv1.IncrementRequest{Amount: 1}
	base := proto.Size(m)
	for pad := max(0, size-base-12); pad <= size; pad++ {
		unknown := protowire.AppendBytes(protowire.AppendTag(nil, 1000, protowire.BytesType), make([]byte, pad))
		if base+len(unknown) == size {
			m.ProtoReflect().SetUnknown(unknown)
			return m
		}
	}
	panic(fmt.Sprintf("no padding makes %d bytes", size))
}

// rpcCaller calls Counter.Increment on the object "limits" in one protocol,
// gzipped or not, and returns the call's Connect code (0 for success) and
// message.
type rpcCaller func(t *testing.T, req *counterv1.IncrementRequest, gzipped bool) (connect.Code, string)

// rpcCallers returns a caller for each protocol, each with its own real
// client: connect-go in the Connect, gRPC and gRPC-Web protocols, and
// google.golang.org/grpc.
func rpcCallers(t *testing.T, url string) map[string]rpcCaller {
	t.Helper()
	viaConnect := func(hc connect.HTTPClient, opts ...connect.ClientOption) rpcCaller {
		plain := counterv1connect.NewCounterClient(hc, url, opts...)
		gzipped := counterv1connect.NewCounterClient(hc, url, append(opts, connect.WithSendGzip())...)
		return func(t *testing.T, msg *counterv1.IncrementRequest, gz bool) (connect.Code, string) {
			c := plain
			if gz {
				c = gzipped
			}
			req := connect.NewRequest(msg)
			req.Header().Set(durable.HeaderObjectName, "limits")
			if _, err := c.Increment(context.Background(), req); err != nil {
				return connect.CodeOf(err), err.Error()
			}
			return 0, ""
		}
	}
	conn := grpcConn(t, url)
	return map[string]rpcCaller{
		"connect":      viaConnect(http.DefaultClient),
		"connect-grpc": viaConnect(h2cClient(), connect.WithGRPC()),
		"grpc-web":     viaConnect(http.DefaultClient, connect.WithGRPCWeb()),
		"grpc-go": func(t *testing.T, msg *counterv1.IncrementRequest, gz bool) (connect.Code, string) {
			ctx := metadata.AppendToOutgoingContext(context.Background(), "durable-object-name", "limits")
			var opts []grpc.CallOption
			if gz {
				opts = append(opts, grpc.UseCompressor(grpcgzip.Name))
			}
			err := conn.Invoke(ctx, counterv1connect.CounterIncrementProcedure, msg, &counterv1.IncrementResponse{}, opts...)
			return connect.Code(status.Code(err)), status.Convert(err).Message()
		},
	}
}

// testRPCMessageLimit sends, in every protocol, messages at the limit
// (accepted, plain or gzipped), one byte over it (refused) and gzip bombs
// that inflate to 16 times the limit (refused without inflating them:
// the error is the server's own decompression bound); the server answers
// a normal call after each.
func testRPCMessageLimit(t *testing.T, d Deployment) {
	const limit = 1 << 20
	e := newEnv(t, d, server.WithMaxRPCMessageSize(limit))
	e.serve(t)
	atLimit, over, bomb := increment(limit), increment(limit+1), increment(16*limit)
	small := &counterv1.IncrementRequest{Amount: 1}
	for name, call := range rpcCallers(t, e.url) {
		t.Run(name, func(t *testing.T) {
			for _, gz := range []bool{false, true} {
				if code, msg := call(t, atLimit, gz); code != 0 {
					t.Errorf("gzip %v: a message of exactly the limit: %v %s, want success", gz, code, msg)
				}
			}
			if code, msg := call(t, over, false); code != connect.CodeResourceExhausted {
				t.Errorf("a message one byte over the limit: %v %s, want ResourceExhausted", code, msg)
			}
			code, msg := call(t, bomb, true)
			if code != connect.CodeResourceExhausted || !strings.Contains(msg, "inflates to more than") {
				t.Errorf("a gzip bomb: %v %s, want ResourceExhausted from the server's bound on decompression", code, msg)
			}
			if code, msg := call(t, small, false); code != 0 {
				t.Errorf("a normal call after them: %v %s", code, msg)
			}
		})
	}
}

// testRPCMessageLimitDefault checks the default, 4 MiB: a message of 4 MiB
// is accepted, one byte more is not, and neither is a plain body of 64 MiB,
// nor hand-made Connect and gRPC bodies of 290 KB of gzip that inflate to
// 256 MiB, as in the issue; the server answers a normal call after them.
func testRPCMessageLimitDefault(t *testing.T, d Deployment) {
	e := newEnv(t, d)
	e.serve(t)
	call := rpcCallers(t, e.url)["connect"]
	if code, msg := call(t, increment(server.DefaultMaxRPCMessageSize), false); code != 0 {
		t.Errorf("a message of 4 MiB: %v %s, want success", code, msg)
	}
	if code, msg := call(t, increment(server.DefaultMaxRPCMessageSize+1), false); code != connect.CodeResourceExhausted {
		t.Errorf("a message of 4 MiB and a byte: %v %s, want ResourceExhausted", code, msg)
	}
	// The server stops reading the plain body a little past the limit and
	// closes the connection, rather than reading all 64 MiB to keep it.
	code, msg, closed := rawConnectClose(t, e.url, bytes.Repeat([]byte{0}, 64<<20), false)
	if code != connect.CodeResourceExhausted || !closed {
		t.Errorf("a plain body of 64 MiB: %v %s, connection closed %v; want ResourceExhausted and closed", code, msg, closed)
	}
	bomb := gzipBomb(256)
	if code, msg := rawConnect(t, e.url, bomb, true); code != connect.CodeResourceExhausted {
		t.Errorf("Connect, %d bytes of gzip inflating to 256 MiB: %v %s, want ResourceExhausted", len(bomb), code, msg)
	}
	if code, msg := rawGRPC(t, e.url, bomb); code != connect.CodeResourceExhausted {
		t.Errorf("gRPC, %d bytes of gzip inflating to 256 MiB: %v %s, want ResourceExhausted", len(bomb), code, msg)
	}
	if code, msg := call(t, &counterv1.IncrementRequest{Amount: 1}, false); code != 0 {
		t.Errorf("a normal call after them: %v %s", code, msg)
	}
}

// testRPCMessageLimitEveryHandler checks that the limit holds for the
// handlers the server builds itself: the ID service, health and
// reflection.
func testRPCMessageLimitEveryHandler(t *testing.T, d Deployment) {
	const limit = 64 << 10
	e := newEnv(t, d, server.WithMaxRPCMessageSize(limit))
	e.serve(t)
	long := strings.Repeat("x", limit)

	ids := durablev1connect.NewIDServiceClient(http.DefaultClient, e.url)
	_, err := ids.IDFromName(context.Background(), connect.NewRequest(&durablev1.IDFromNameRequest{Class: "Counter", Name: long}))
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("ID service: %v, want ResourceExhausted", err)
	}
	if _, err := ids.IDFromName(context.Background(), connect.NewRequest(&durablev1.IDFromNameRequest{Class: "Counter", Name: "x"})); err != nil {
		t.Errorf("ID service, a short name: %v", err)
	}

	conn := grpcConn(t, e.url)
	_, err = healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: long})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("health: %v, want ResourceExhausted", err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{Host: long}); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("reflection: %v, want ResourceExhausted", err)
	}
}

// gzipBomb returns mib concatenated gzip members of 1 MiB of zeros each:
// a body that inflates to mib MiB (gzip readers read every member).
func gzipBomb(mib int) []byte {
	var member bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
	zw.Write(make([]byte, 1<<20))
	zw.Close()
	return bytes.Repeat(member.Bytes(), mib)
}

// rawConnect posts body to Counter.Increment as a Connect unary request
// over HTTP/1.1, gzipped (Content-Encoding) or not, and returns the code
// of the answer.
func rawConnect(t *testing.T, url string, body []byte, gzipped bool) (connect.Code, string) {
	t.Helper()
	code, msg, _ := rawConnectClose(t, url, body, gzipped)
	return code, msg
}

// rawConnectClose is rawConnect, also reporting whether the server closes
// the connection after its answer.
func rawConnectClose(t *testing.T, url string, body []byte, gzipped bool) (connect.Code, string, bool) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+counterv1connect.CounterIncrementProcedure, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/proto")
	req.Header.Set(durable.HeaderObjectName, "limits")
	if gzipped {
		req.Header.Set("Content-Encoding", "gzip")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	code, msg := connectCode(t, res.StatusCode, b)
	return code, msg, res.Close
}

// rawGRPC posts compressed as one gzipped gRPC message (grpc-encoding:
// gzip) to Counter.Increment over h2c, and returns its grpc-status.
func rawGRPC(t *testing.T, url string, compressed []byte) (connect.Code, string) {
	t.Helper()
	body := make([]byte, 5, 5+len(compressed))
	body[0] = 1 // compressed
	binary.BigEndian.PutUint32(body[1:], uint32(len(compressed)))
	body = append(body, compressed...)
	req, _ := http.NewRequest(http.MethodPost, url+counterv1connect.CounterIncrementProcedure, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Grpc-Encoding", "gzip")
	req.Header.Set("Te", "trailers")
	req.Header.Set(durable.HeaderObjectName, "limits")
	res, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	io.Copy(io.Discard, res.Body)
	st := res.Trailer.Get("Grpc-Status")
	if st == "" {
		st = res.Header.Get("Grpc-Status") // trailers-only
	}
	var code int
	fmt.Sscan(st, &code)
	msg := res.Trailer.Get("Grpc-Message") + res.Header.Get("Grpc-Message")
	return connect.Code(code), msg
}

// connectCode decodes a Connect unary error answer.
func connectCode(t testing.TB, status int, body []byte) (connect.Code, string) {
	t.Helper()
	if status == http.StatusOK {
		return 0, ""
	}
	var wire struct{ Code, Message string }
	if err := json.Unmarshal(body, &wire); err != nil {
		t.Fatalf("HTTP %d %q: %v", status, body, err)
	}
	var c connect.Code
	if err := c.UnmarshalText([]byte(wire.Code)); err != nil {
		t.Fatalf("HTTP %d %q: %v", status, body, err)
	}
	return c, wire.Message
}
