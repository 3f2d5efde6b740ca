package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/grpchealth"
	"github.com/anishathalye/porcupine"
	"github.com/cespare/xxhash/v2"
	"github.com/gorilla/websocket"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/durablego/durable"
	"github.com/durablego/durable/cluster/etcdstore"
	chatv1durable "github.com/durablego/durable/gen/examples/chat/v1/chatv1durable"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	sessionv1 "github.com/durablego/durable/gen/examples/session/v1"
	"github.com/durablego/durable/gen/examples/session/v1/sessionv1durable"
)

// The scenario tests (cluster part 2): three etcd member processes and
// three durable-node processes on 127.0.0.x, a register load through every
// live node, and one fault per scenario under that load. Every scenario
// asserts that no acknowledged write is lost, that the register history is
// linearizable (porcupine), that no object was committed under two owners,
// that alarms set before the fault fire after it, and, where a partition
// moves, that its WebSockets close with 1012. Times (failover, handoff,
// rebalance) are logged as "scenario-metric" lines, never asserted.
//
// By default (go test ./...) a short subset runs; every scenario runs with
//
//	go test ./cmd/durable-node -run TestScenarios -v -timeout 30m -args -scenarios=all

var scenariosFlag = flag.String("scenarios", "short", `scenarios to run: "short" (kill9, sigterm, etcd-leader), "all", or a comma-separated list of names`)

const (
	scenarioTTL = 2 * time.Second // the nodes' -ttl
	sessionIdle = 4 * time.Second // the nodes' -session-idle: the alarms' delay
	secretText  = "a shared secret of thirty-two B."
	registers   = 12 // counters of the register load
	perRegister = 2  // concurrent clients of each
	callTimeout = 3 * time.Second
)

// scenario is one fault under load.
type scenario struct {
	name  string
	short bool // in the default subset
	run   func(t *testing.T, e *env)
}

var scenarios = []scenario{
	{"kill9", true, scenarioKill9},
	{"sigterm", true, scenarioSigterm},
	{"etcd-leader", true, scenarioEtcdLeader},
	{"sigstop", false, scenarioSigstop},
	{"join", false, scenarioJoin},
	{"restart", false, scenarioRestart},
	{"etcd-quorum", false, scenarioEtcdQuorum},
}

// TestScenarios runs the selected scenarios, each on a new etcd cluster
// and three new nodes.
func TestScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("process scenarios take minutes")
	}
	want := map[string]bool{}
	for s := range strings.SplitSeq(*scenariosFlag, ",") {
		want[strings.TrimSpace(s)] = true
	}
	etcdBin := etcdBinary(t)
	nodeBin := buildNode(t)
	for _, s := range scenarios {
		if !want["all"] && !want[s.name] && !(want["short"] && s.short) {
			continue
		}
		t.Run(s.name, func(t *testing.T) {
			e := newEnv(t, etcdBin, nodeBin, s.name)
			s.run(t, e)
			e.check(t)
		})
	}
}

// env is one scenario's deployment, load and records.
type env struct {
	t       *testing.T
	dir     string
	nodeBin string
	secret  string
	cluster string
	etcd    *etcdCluster
	cli     *clientv3.Client
	nodes   []*durableNode
	prefix  string

	start time.Time
	load  *load
	// callTimeout bounds the load's calls (default 3 s): sigstop sets it
	// longer than the stop, so that calls sent before it are answered
	// after the node wakes.
	callTimeout time.Duration

	// sessions are Sessions given data before the fault: their idle
	// alarms must delete the data after it.
	sessions []string
	// sockets are the chat sockets expected to close with 1012.
	sockets []*watchedSocket
}

func newEnv(t *testing.T, etcdBin, nodeBin, name string) *env {
	dir := t.TempDir()
	e := &env{t: t, dir: dir, nodeBin: nodeBin, cluster: "scen-" + name, start: time.Now(), callTimeout: callTimeout}
	e.prefix = "/durable/" + e.cluster + "/"
	e.secret = filepath.Join(dir, "secret")
	if err := os.WriteFile(e.secret, []byte(secretText), 0o600); err != nil {
		t.Fatal(err)
	}
	e.etcd = startEtcd(t, etcdBin, dir)
	e.cli = e.etcd.client()
	for i := range 3 {
		e.addNode(t, i)
	}
	e.waitBalanced(t, e.names(), 60*time.Second)
	t.Cleanup(func() { // before t.TempDir's cleanup removes dir
		if t.Failed() {
			keepLogs(t, dir)
		}
	})
	return e
}

// addNode starts node i (n{i+1} on 127.0.0.{21+i}) and waits until it
// answers.
func (e *env) addNode(t *testing.T, i int) *durableNode {
	t.Helper()
	n := &durableNode{name: fmt.Sprintf("n%d", i+1), addr: freePort(t, loopback(t, 21+i)),
		data: filepath.Join(e.dir, fmt.Sprintf("n%d", i+1)), log: filepath.Join(e.dir, fmt.Sprintf("n%d.log", i+1))}
	e.nodes = append(e.nodes, n)
	e.startNode(t, n)
	return n
}

// startNode (re)starts n's process on its address and data directory.
func (e *env) startNode(t *testing.T, n *durableNode) {
	t.Helper()
	n.p = spawn(t, n.log, e.nodeBin, nodeArgs(n, e.etcd.Endpoints(), e.cluster, e.secret)...)
	c := counterv1durable.NewCounterClient(http.DefaultClient, n.url())
	for deadline := time.Now().Add(60 * time.Second); ; {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		_, err := c.Get(c.IDFromName("probe")).GetValue(ctx, &counterv1.GetValueRequest{})
		cancel()
		if err == nil {
			return
		}
		if !n.p.running() || time.Now().After(deadline) {
			t.Fatalf("%s never answered: %v (log %s)", n.name, err, n.log)
		}
		time.Sleep(50 * time.Millisecond) // polling a process's readiness with a deadline
	}
}

// names returns the names of the nodes whose processes run (and are not
// stopped by SIGSTOP).
func (e *env) names() []string {
	var s []string
	for _, n := range e.nodes {
		if n.p.running() && !n.stopped {
			s = append(s, n.name)
		}
	}
	return s
}

// owners reads every partition's owner from etcd ("" if free).
func (e *env) owners(ctx context.Context) ([]string, error) {
	resp, err := e.cli.Get(ctx, e.prefix+"parts/", clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	o := make([]string, etcdstore.Partitions)
	for _, kv := range resp.Kvs {
		var p int
		if _, err := fmt.Sscanf(strings.TrimPrefix(string(kv.Key), e.prefix+"parts/"), "%x", &p); err == nil && p < len(o) {
			o[p] = string(kv.Value)
		}
	}
	return o, nil
}

// desired is the rendezvous owner of partition p among names: the test's
// own rendering of cluster/node's rule (xxhash of the name, a zero byte
// and the partition's two bytes; the highest wins, ties to the smaller
// name), an oracle independent of the nodes' tables.
func desired(names []string, p int) string {
	var best string
	var top uint64
	for _, n := range names {
		var d xxhash.Digest
		d.Reset()
		d.WriteString(n)
		d.Write([]byte{0, byte(p >> 8), byte(p)})
		if s := d.Sum64(); best == "" || s > top || (s == top && n < best) {
			best, top = n, s
		}
	}
	return best
}

// waitBalanced polls etcd until every partition is owned by its desired
// owner among names, and returns how long that took.
func (e *env) waitBalanced(t *testing.T, names []string, d time.Duration) time.Duration {
	t.Helper()
	begin := time.Now()
	wrong := -1
	for deadline := begin.Add(d); time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		o, err := e.owners(ctx)
		cancel()
		if err == nil {
			wrong = 0
			for p, owner := range o {
				if owner != desired(names, p) {
					wrong++
				}
			}
			if wrong == 0 {
				return time.Since(begin)
			}
		}
		time.Sleep(50 * time.Millisecond) // polling etcd's owner keys with a deadline
	}
	t.Fatalf("after %v, %d partitions are not owned by their desired node among %v", d, wrong, names)
	return 0
}

// metric logs a time in a line that scripts can grep:
// "scenario-metric scenario=kill9 name=failover_s value=2.41".
func metric(t *testing.T, name string, d time.Duration) {
	t.Logf("scenario-metric scenario=%s name=%s value=%.3f", strings.TrimPrefix(t.Name(), "TestScenarios/"), name, d.Seconds())
}

// --- the register load ---

// regInput is a register operation: an increment by one or a read.
type regInput struct {
	reg int
	inc bool
}

// regOutput is what the operation returned: the counter's value after it
// (increment) or the value read; unknown when the call failed or timed
// out, so that it may or may not have happened.
type regOutput struct {
	value   int64
	unknown bool
}

// load runs clients of the registers through the live nodes and records
// every operation.
type load struct {
	e      *env
	via    atomic.Pointer[[]string] // base URLs the clients call through
	stop   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	ops    []porcupine.Operation
	acked  [registers][]int64 // values acknowledged increments returned
	failed atomic.Int64
	dialed atomic.Int64   // failed to connect: certainly not executed
	errs   map[string]int // failures by message (under mu), for the log
	// draining holds the base URLs whose health says NOT_SERVING: the
	// clients avoid them, as a load balancer would.
	draining atomic.Pointer[map[string]bool]
}

// startLoad starts the clients through every running node.
func (e *env) startLoad(t *testing.T) {
	l := &load{e: e, stop: make(chan struct{}), errs: map[string]int{}}
	l.route(e.urls())
	l.draining.Store(&map[string]bool{})
	e.load = l
	l.wg.Go(func() { l.watchHealth(t.Context()) })
	for r := range registers {
		for c := range perRegister {
			l.wg.Go(func() { l.client(t.Context(), r, c) })
		}
	}
	t.Cleanup(l.halt)
}

// urls returns the base URLs of the running nodes (not stopped).
func (e *env) urls() []string {
	var s []string
	for _, n := range e.nodes {
		if n.p.running() && !n.stopped {
			s = append(s, n.url())
		}
	}
	return s
}

// route sets the nodes the clients call through.
func (l *load) route(urls []string) { l.via.Store(&urls) }

// serving returns the nodes to call through: those route set, less the
// ones draining, unless every one is.
func (l *load) serving() []string {
	via := *l.via.Load()
	draining := *l.draining.Load()
	var live []string
	for _, u := range via {
		if !draining[u] {
			live = append(live, u)
		}
	}
	if len(live) == 0 {
		return via
	}
	return live
}

// watchHealth asks every routed node's health service every 100 ms
// whether it serves, as a load balancer's health checks do, and has the
// clients avoid those answering NOT_SERVING (a node in its drain grace)
// until one answers SERVING again. A node that does not answer keeps its
// mark: one that never said NOT_SERVING (killed, paused) is still called,
// for that is what those faults test.
func (l *load) watchHealth(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		was := *l.draining.Load()
		draining := map[string]bool{}
		for _, u := range *l.via.Load() {
			if serving, ok := healthOf(ctx, u); ok {
				draining[u] = !serving
			} else {
				draining[u] = was[u]
			}
		}
		l.draining.Store(&draining)
	}
}

// healthOf asks the node at base whether it serves; ok is false when it
// does not answer.
func healthOf(ctx context.Context, base string) (serving, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	res, err := grpchealth.NewClient(http.DefaultClient, base).Check(ctx, &grpchealth.CheckRequest{})
	if err != nil {
		return false, false
	}
	return res.Status != grpchealth.StatusNotServing, true
}

// client is one client of register r: increments and reads, each through
// the next node in turn. A failed call is recorded as an operation of
// unknown outcome (porcupine's convention: it returns at the end of the
// history, so it may take effect at any time after its call, or never);
// the client then pauses, so that a fault adds a few such operations, not
// hundreds (each one widens the checker's search).
func (l *load) client(ctx context.Context, r, c int) {
	name := fmt.Sprint("reg-", r)
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		default:
		}
		via := l.serving()
		base := via[(r+c+i)%len(via)]
		cl := counterv1durable.NewCounterClient(http.DefaultClient, base)
		obj := cl.Get(cl.IDFromName(name))
		in := regInput{reg: r, inc: i%4 != 3}
		cctx, cancel := context.WithTimeout(ctx, l.e.callTimeout)
		call := time.Now()
		var v int64
		var err error
		if in.inc {
			var res *counterv1.IncrementResponse
			if res, err = obj.Increment(cctx, &counterv1.IncrementRequest{Amount: 1}); err == nil {
				v = res.GetValue()
			}
		} else {
			var res *counterv1.GetValueResponse
			if res, err = obj.GetValue(cctx, &counterv1.GetValueRequest{}); err == nil {
				v = res.GetValue()
			}
		}
		ret := time.Now()
		cancel()
		if ctx.Err() != nil {
			return
		}
		l.record(c, in, call, ret, v, err)
		if err != nil {
			select {
			case <-l.stop:
				return
			case <-time.After(300 * time.Millisecond): // pacing after a failure, not synchronization
			}
		} else {
			time.Sleep(20 * time.Millisecond) // pacing: about 40 calls/s per client
		}
	}
}

// record adds one operation to the history.
func (l *load) record(client int, in regInput, call, ret time.Time, v int64, err error) {
	op := porcupine.Operation{ClientId: in.reg*perRegister + client, Input: in,
		Call: call.Sub(l.e.start).Nanoseconds(), Return: ret.Sub(l.e.start).Nanoseconds(), Output: regOutput{value: v}}
	if err != nil {
		l.failed.Add(1)
		l.mu.Lock()
		l.errs[errorClass(err)]++
		l.mu.Unlock()
		if isDialError(err) || !in.inc {
			// Never sent, or a read: neither can have changed the register.
			l.dialed.Add(1)
			return
		}
		op.Output, op.Return = regOutput{unknown: true}, math.MaxInt64
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, op)
	if err == nil && in.inc {
		l.acked[in.reg] = append(l.acked[in.reg], v)
	}
}

// halt stops the clients and waits for them.
func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// registerModel is a fetch-and-add register per counter: an increment
// returns the value after it, a read the current value; an operation of
// unknown outcome matches any output.
var registerModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[int][]porcupine.Operation{}
		for _, op := range h {
			r := op.Input.(regInput).reg
			by[r] = append(by[r], op)
		}
		var out [][]porcupine.Operation
		for r := range registers {
			if len(by[r]) > 0 {
				out = append(out, by[r])
			}
		}
		return out
	},
	Init: func() any { return int64(0) },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(int64), input.(regInput), output.(regOutput)
		if in.inc {
			return out.unknown || out.value == s+1, s + 1
		}
		return out.unknown || out.value == s, s
	},
	Hash: func(state any) uint64 { return uint64(state.(int64)) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		res := fmt.Sprint(out.value)
		if out.unknown {
			res = "?"
		}
		if in.inc {
			return fmt.Sprintf("inc(reg-%d) -> %s", in.reg, res)
		}
		return fmt.Sprintf("get(reg-%d) -> %s", in.reg, res)
	},
}

// warm runs the load for d with every node up: the faults come under load.
func (e *env) warm(d time.Duration) {
	select {
	case <-time.After(d): // letting the load run: the scenario's duration, not synchronization
	case <-e.t.Context().Done():
	}
}

// --- alarms and sockets ---

// onNode returns n names of class objects whose partitions owner owns now
// (from etcd's owner keys).
func (e *env) onNode(t *testing.T, class, prefix, owner string, n int) []string {
	t.Helper()
	return e.pick(t, class, prefix, n, func(_ int, o string) bool { return o == owner })
}

// pick returns n names of class objects whose partition p and its owner
// now satisfy ok.
func (e *env) pick(t *testing.T, class, prefix string, n int, ok func(p int, owner string) bool) []string {
	t.Helper()
	o, err := e.owners(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := 0; len(names) < n && i < 10000; i++ {
		name := fmt.Sprintf("%s-%d", prefix, i)
		if p := partitionOfName(class, name); ok(p, o[p]) {
			names = append(names, name)
		}
	}
	if len(names) < n {
		t.Fatalf("found only %d fitting %s names", len(names), class)
	}
	return names
}

// setAlarms gives data to four Sessions on owner's partitions (their idle
// alarms, due sessionIdle later, then delete it) through another node.
func (e *env) setAlarms(t *testing.T, owner string, through *durableNode) {
	t.Helper()
	e.setAlarmsOn(t, e.onNode(t, "Session", "session", owner, 4), through)
}

// setAlarmsOn gives data to the named Sessions through a node.
func (e *env) setAlarmsOn(t *testing.T, sessions []string, through *durableNode) {
	t.Helper()
	e.sessions = sessions
	c := sessionv1durable.NewSessionClient(http.DefaultClient, through.url())
	for _, s := range e.sessions {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, err := c.Get(c.IDFromName(s)).SetData(ctx, &sessionv1.SetDataRequest{Key: "k", Value: "v"})
		cancel()
		if err != nil {
			t.Fatalf("session %s: SetData: %v", s, err)
		}
	}
}

// checkAlarms polls, through the running nodes, until every Session of
// setAlarms has lost its data: its alarm fired.
func (e *env) checkAlarms(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(sessionIdle + 60*time.Second)
	for _, s := range e.sessions {
		for i := 0; ; i++ {
			urls := e.urls()
			c := sessionv1durable.NewSessionClient(http.DefaultClient, urls[i%len(urls)])
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			res, err := c.Get(c.IDFromName(s)).Peek(ctx, &sessionv1.PeekRequest{})
			cancel()
			if err == nil && len(res.GetSession().GetData()) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("session %s still holds %v (err %v): its alarm, set before the fault, never fired", s, res.GetSession().GetData(), err)
				break
			}
			time.Sleep(100 * time.Millisecond) // polling the alarm's effect with a deadline
		}
	}
}

// watchedSocket is a chat socket whose close code is recorded.
type watchedSocket struct {
	room, via string
	code      chan int // the close code, or -1 for another error
}

// openSockets connects to two chat rooms on owner's partitions: one
// directly to owner, one through the node via (proxied).
func (e *env) openSockets(t *testing.T, owner, via *durableNode) {
	t.Helper()
	e.openSocketsTo(t, e.onNode(t, "ChatRoom", "room", owner.name, 2), owner, via)
}

// openSocketsTo connects to rooms[0] directly at owner and to rooms[1]
// through via.
func (e *env) openSocketsTo(t *testing.T, rooms []string, owner, via *durableNode) {
	t.Helper()
	for i, base := range []string{owner.url(), via.url()} {
		ws := &watchedSocket{room: rooms[i], via: base, code: make(chan int, 1)}
		conn := dialRoom(t, base, ws.room)
		go func() {
			defer conn.Close()
			for {
				if _, _, err := conn.ReadMessage(); err != nil {
					var ce *websocket.CloseError
					if errors.As(err, &ce) {
						ws.code <- ce.Code
					} else {
						ws.code <- -1
					}
					return
				}
			}
		}()
		e.sockets = append(e.sockets, ws)
	}
}

// dialRoom opens a WebSocket to a chat room through the node at base and
// reads its history message.
func dialRoom(t *testing.T, base, room string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, res, err := d.DialContext(t.Context(), roomURL(base, room, "alice"), nil)
	if err != nil {
		if res != nil {
			err = fmt.Errorf("%w (HTTP %d)", err, res.StatusCode)
		}
		t.Fatalf("WebSocket to %s through %s: %v", room, base, err)
	}
	if _, _, err := conn.ReadMessage(); err != nil {
		t.Fatalf("WebSocket to %s: no history message: %v", room, err)
	}
	return conn
}

// roomURL is the WebSocket URL of a chat room through the node at base.
func roomURL(base, room, user string) string {
	return "ws" + strings.TrimPrefix(base, "http") + "/objects/" + chatv1durable.ChatRoomURLSegment + "/" + url.PathEscape(room) + "/?username=" + url.QueryEscape(user)
}

// checkSockets asserts that every watched socket closed with 1012 and
// that its room accepts a new socket through a running node.
func (e *env) checkSockets(t *testing.T) {
	t.Helper()
	for _, ws := range e.sockets {
		select {
		case code := <-ws.code:
			if code != websocket.CloseServiceRestart {
				t.Errorf("socket to %s through %s closed with %d, want 1012 (service restart) on a move", ws.room, ws.via, code)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("socket to %s through %s still open 30 s after its partition moved", ws.room, ws.via)
			continue
		}
		urls := e.urls()
		var conn *websocket.Conn
		for deadline := time.Now().Add(20 * time.Second); conn == nil; {
			c, _, err := (&websocket.Dialer{HandshakeTimeout: 5 * time.Second}).DialContext(t.Context(), roomURL(urls[0], ws.room, "bob"), nil)
			if err == nil {
				conn = c
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("cannot reconnect to %s through %s: %v", ws.room, urls[0], err)
				break
			}
			time.Sleep(100 * time.Millisecond) // polling a reconnect with a deadline
		}
		if conn != nil {
			conn.Close()
		}
	}
}

// --- the checks every scenario makes ---

// check stops the load and makes every scenario's assertions.
func (e *env) check(t *testing.T) {
	t.Helper()
	if e.load == nil {
		t.Fatal("the scenario ran no load")
	}
	e.load.halt()
	finals := e.finalReads(t)
	l := e.load
	l.mu.Lock()
	defer l.mu.Unlock()
	ok := 0
	for _, a := range l.acked {
		ok += len(a)
	}
	t.Logf("load: %d operations recorded, %d increments acknowledged, %d calls failed (%d never sent or reads)", len(l.ops), ok, l.failed.Load(), l.dialed.Load())
	for msg, n := range l.errs {
		t.Logf("failed %d times: %s", n, msg)
	}
	if ok == 0 {
		t.Fatal("no increment was acknowledged: the scenario ran without load")
	}
	// Zero acknowledged writes lost: each counter holds at least as many
	// increments as were acknowledged, and at least the highest value an
	// acknowledged increment returned.
	for r, a := range l.acked {
		if len(a) == 0 {
			continue
		}
		if finals[r] < int64(len(a)) || finals[r] < slices.Max(a) {
			t.Errorf("reg-%d = %d, but %d increments were acknowledged, up to %d: acknowledged writes lost", r, finals[r], len(a), slices.Max(a))
		}
		// Two owners executing the same counter from their own copies
		// would acknowledge the same value twice.
		s := slices.Clone(a)
		slices.Sort(s)
		for i := 1; i < len(s); i++ {
			if s[i] == s[i-1] {
				t.Errorf("reg-%d: two acknowledged increments both returned %d: the counter ran under two owners", r, s[i])
				break
			}
		}
	}
	res, info := porcupine.CheckOperationsVerbose(registerModel, l.ops, 2*time.Minute)
	switch res {
	case porcupine.Ok:
	case porcupine.Illegal:
		path := filepath.Join(os.TempDir(), strings.ReplaceAll(t.Name(), "/", "-")+"-history.html")
		if err := porcupine.VisualizePath(registerModel, info, path); err == nil {
			t.Logf("the history is visualized in %s", path)
		}
		t.Errorf("the register history (%d operations) is not linearizable", len(l.ops))
	default:
		t.Errorf("porcupine could not decide in 2 minutes whether the history (%d operations) is linearizable", len(l.ops))
	}
	e.checkCommits(t)
	e.checkAlarms(t)
	e.checkSockets(t)
	for _, n := range e.nodes {
		if v, ok := n.metric("durable_cluster_fence_rejections_total"); ok && v > 0 {
			t.Logf("%s: %v partitions lost to a failed fence", n.name, v)
		}
	}
}

// finalReads reads every register through the running nodes (retrying
// while a partition is still in flight) and records the reads in the
// history.
func (e *env) finalReads(t *testing.T) [registers]int64 {
	t.Helper()
	var out [registers]int64
	for r := range registers {
		for i := 0; ; i++ {
			urls := e.urls()
			c := counterv1durable.NewCounterClient(http.DefaultClient, urls[i%len(urls)])
			ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
			call := time.Now()
			res, err := c.Get(c.IDFromName(fmt.Sprint("reg-", r))).GetValue(ctx, &counterv1.GetValueRequest{})
			ret := time.Now()
			cancel()
			if err == nil {
				out[r] = res.GetValue()
				e.load.record(perRegister, regInput{reg: r}, call, ret, out[r], nil)
				break
			}
			if i >= 100 {
				t.Fatalf("reg-%d cannot be read after the scenario: %v", r, err)
			}
			time.Sleep(100 * time.Millisecond) // polling a partition's recovery with a deadline
		}
	}
	return out
}

// checkCommits replays etcd's history of the deployment (the store never
// compacts it) and asserts, from outside the nodes, that no object was
// committed under two owners: every write to an object's keys (and to the
// alarm index) happened
// while its partition's owner key existed (the fence every commit
// compares), and the committed values of each register only grow: a
// second owner committing from its own copy would write a value again or
// a smaller one.
func (e *env) checkCommits(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// A key of the test's own marks the history's end: the replay stops
	// at its revision.
	end, err := e.cli.Put(ctx, e.prefix+"scenario-end", "")
	if err != nil {
		t.Fatalf("etcd: %v", err)
	}
	until := end.Header.Revision
	type span struct{ from, to int64 } // owner key's create and delete revisions (to 0: still held)
	spans := make([][]span, etcdstore.Partitions)
	counterSpace := durable.NewIDSpace("Counter", []byte(secretText))
	regKeys := map[string]int{}
	for r := range registers {
		id := counterSpace.FromName(fmt.Sprint("reg-", r)).Bytes()
		regKeys[fmt.Sprintf("%so/%04x/Counter/%x/s", e.prefix, etcdstore.Partition(id), id)] = r
	}
	last := map[int]*mvccpb.KeyValue{}
	writes, outside, resent := 0, 0, 0
	wch := e.cli.Watch(ctx, e.prefix, clientv3.WithPrefix(), clientv3.WithRev(1))
	done := false
	for !done {
		wr, ok := <-wch
		if !ok || wr.Err() != nil {
			t.Fatalf("replaying etcd's history: %v", wr.Err())
		}
		for _, ev := range wr.Events {
			key := string(ev.Kv.Key)
			rev := ev.Kv.ModRevision
			switch {
			case strings.HasPrefix(key, e.prefix+"parts/"):
				var p int
				fmt.Sscanf(strings.TrimPrefix(key, e.prefix+"parts/"), "%x", &p)
				if ev.Type == mvccpb.PUT && ev.Kv.CreateRevision == rev {
					spans[p] = append(spans[p], span{from: rev})
				} else if ev.Type == mvccpb.DELETE && len(spans[p]) > 0 {
					spans[p][len(spans[p])-1].to = rev
				}
			case strings.HasPrefix(key, e.prefix+"o/") || strings.HasPrefix(key, e.prefix+"al/"):
				// An object's keys, or its partition's alarm index.
				writes++
				var p int
				fmt.Sscanf(key[strings.IndexByte(key[len(e.prefix):], '/')+len(e.prefix)+1:], "%x", &p)
				s := spans[p]
				if len(s) == 0 || s[len(s)-1].to != 0 && s[len(s)-1].to <= rev || s[len(s)-1].from >= rev {
					outside++
					if outside <= 3 {
						t.Errorf("%s written at revision %d while partition %d had no owner key", key, rev, p)
					}
				}
				if r, ok := regKeys[key]; ok && ev.Type == mvccpb.PUT {
					var st counterv1.CounterState
					if err := proto.Unmarshal(ev.Kv.Value, &st); err != nil {
						t.Fatalf("reg-%d's state at revision %d: %v", r, rev, err)
					}
					var prev counterv1.CounterState
					if kv := last[r]; kv != nil {
						_ = proto.Unmarshal(kv.Value, &prev) // read before
					}
					switch {
					case last[r] != nil && bytes.Equal(last[r].Value, ev.Kv.Value):
						// The same bytes, timestamp included: a lane sent
						// its transaction again after an answer it did not
						// get (etcdstore's retry), not another owner.
						resent++
					case st.GetValue() <= prev.GetValue():
						t.Errorf("reg-%d committed %d at revision %d after %d at %d: two owners committed it", r, st.GetValue(), rev, prev.GetValue(), last[r].ModRevision)
					}
					last[r] = ev.Kv
				}
			}
			if rev >= until {
				done = true
			}
		}
	}
	if outside > 0 {
		t.Errorf("%d of %d object writes happened outside their partition's ownership", outside, writes)
	}
	t.Logf("etcd history: %d object writes, each under its partition's owner key; registers' committed values only grew (%d identical re-sent states)", writes, resent)
}

// partitionOfName is the partition of the object of class named name, its
// ID derived with the cluster's secret as every node derives it.
func partitionOfName(class, name string) int {
	return etcdstore.Partition(durable.NewIDSpace(class, []byte(secretText)).FromName(name).Bytes())
}

// keepLogs copies the processes' logs of a failed scenario out of its
// temporary directory, which the test's cleanup removes.
func keepLogs(t *testing.T, dir string) {
	keep, err := os.MkdirTemp("", "durable-scenario-logs-")
	if err != nil {
		t.Logf("cannot keep the logs: %v", err)
		return
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, l := range logs {
		if b, err := os.ReadFile(l); err == nil {
			_ = os.WriteFile(filepath.Join(keep, filepath.Base(l)), b, 0o600)
		}
	}
	t.Logf("the processes' logs are kept in %s", keep)
}

// errorClass is err's message without what varies between calls (ports),
// to count failures by kind.
func errorClass(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "127.0.0."); i >= 0 {
		if j := strings.IndexAny(msg[i:], " \"),"); j > 0 {
			msg = msg[:i] + "{addr}" + msg[i+j:]
		}
	}
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}

// TestRegisterModelRejectsSplitBrain checks the scenarios' checker itself:
// two increments acknowledged with the same value (two owners) or a read
// that misses an acknowledged increment are not linearizable; an increment
// of unknown outcome may have happened or not.
func TestRegisterModelRejectsSplitBrain(t *testing.T) {
	op := func(c int, inc bool, call, ret, v int64, unknown bool) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: regInput{inc: inc}, Call: call, Return: ret, Output: regOutput{value: v, unknown: unknown}}
	}
	for _, tc := range []struct {
		name string
		h    []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"sequential", []porcupine.Operation{op(0, true, 0, 1, 1, false), op(1, true, 2, 3, 2, false), op(0, false, 4, 5, 2, false)}, porcupine.Ok},
		{"the same value twice", []porcupine.Operation{op(0, true, 0, 3, 1, false), op(1, true, 1, 2, 1, false)}, porcupine.Illegal},
		{"a lost increment", []porcupine.Operation{op(0, true, 0, 1, 1, false), op(1, false, 2, 3, 0, false)}, porcupine.Illegal},
		{"unknown, then seen", []porcupine.Operation{op(0, true, 0, math.MaxInt64, 0, true), op(1, true, 2, 3, 2, false)}, porcupine.Ok},
		{"unknown, never seen", []porcupine.Operation{op(0, true, 0, math.MaxInt64, 0, true), op(1, true, 2, 3, 1, false), op(1, false, 4, 5, 1, false)}, porcupine.Ok},
	} {
		if got := porcupine.CheckOperationsTimeout(registerModel, tc.h, 10*time.Second); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
