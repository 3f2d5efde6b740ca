package etcdstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/durablego/durable/cluster/etcdstore"
	"github.com/durablego/durable/cluster/etcdtest"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/probe"
	"github.com/durablego/durable/server"
)

// TestMain lets the test binary run as a node process: a server on the
// etcd store, for the tests that kill one.
func TestMain(m *testing.M) {
	if endpoints := os.Getenv("DURABLE_ETCD_CHILD"); endpoints != "" {
		os.Exit(nodeChild(strings.Split(endpoints, ","), os.Getenv("DURABLE_ETCD_DIR")))
	}
	os.Exit(m.Run())
}

// alarmBase is the time the ledger load's alarms are set from: far ahead,
// so they never fire; an object's alarm is alarmBase plus its value.
var alarmBase = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)

// ledgerProbe makes each Put a ledger entry: the key, the value's
// increment and the alarm, all in one call.
func ledgerProbe() *probe.Probe {
	return &probe.Probe{OnPut: func(ctx context.Context, o *durabletestv1durable.ProbeObject) error {
		return o.SetAlarm(ctx, alarmBase.Add(time.Duration(o.State.Value)*time.Millisecond))
	}}
}

// nodeChild serves the Probe class on a store of the deployment "crash"
// and prints its URL; it runs until killed.
func nodeChild(endpoints []string, dir string) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "node child:", err); return 2 }
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := etcdstore.Open(ctx, cli, etcdstore.WithCluster("crash"), etcdstore.WithTTL(time.Second), etcdstore.WithLogger(quiet))
	if err != nil {
		return fail(err)
	}
	srv, err := server.New(server.WithStore(store), server.WithDataDir(dir), server.WithSecret(secret), server.WithLogger(quiet))
	if err != nil {
		return fail(err)
	}
	if _, err := durabletestv1durable.RegisterProbe(srv, ledgerProbe()); err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	fmt.Printf("URL http://%s\n", ln.Addr())
	return fail(srv.Serve(ln))
}

// startChild starts a node process and returns it with its URL.
func startChild(t *testing.T, endpoints []string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "DURABLE_ETCD_CHILD="+strings.Join(endpoints, ","), "DURABLE_ETCD_DIR="+t.TempDir())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "URL ") {
		t.Fatalf("node child did not start: %q, %v", line, err)
	}
	return cmd, strings.TrimSpace(strings.TrimPrefix(line, "URL "))
}

// ledger is the load: callers each append their own entries, one call at
// a time, to one of a few objects, and record every acknowledged key.
type ledger struct {
	mu    sync.Mutex
	acked map[string][]string // object name → keys acknowledged
	n     int
}

func newLedger() *ledger { return &ledger{acked: map[string][]string{}} }

func (l *ledger) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// run has callers call put until stop is closed or each made max calls;
// a caller goes on after an error (the node may be gone and back).
func (l *ledger) run(callers, max int, stop <-chan struct{}, put func(ctx context.Context, object, key string) error) *sync.WaitGroup {
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			object := fmt.Sprint("ledger-", c%4)
			for seq := range max {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("c%02d-%05d", c, seq)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := put(ctx, object, key)
				cancel()
				if err == nil {
					l.mu.Lock()
					l.acked[object] = append(l.acked[object], key)
					l.n++
					l.mu.Unlock()
				}
			}
		})
	}
	return &wg
}

// waitFor waits until the ledger has n acknowledgements, or fails after
// the deadline.
func (l *ledger) waitFor(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for l.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d calls acknowledged within %v", l.count(), n, within)
		}
		time.Sleep(5 * time.Millisecond) // polling the count; not a synchronization
	}
}

// check reads every object of the ledger through stubs: each acknowledged
// key is there, and the object's value and alarm agree with its keys
// (every call wrote a key, one to the value and the alarm, or nothing).
func (l *ledger) check(t *testing.T, get func(object string) durabletestv1durable.ProbeStub) {
	t.Helper()
	ctx := context.Background()
	l.mu.Lock()
	defer l.mu.Unlock()
	for object, acked := range l.acked {
		stub := get(object)
		list, err := stub.List(ctx, &durabletestv1.ListRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range acked {
			if _, ok := slices.BinarySearch(list.GetKeys(), k); !ok {
				t.Fatalf("%s: acknowledged key %s lost (%d keys stored, %d acknowledged)", object, k, len(list.GetKeys()), len(acked))
			}
		}
		g, err := stub.Get(ctx, &durabletestv1.GetRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if v := g.GetState().GetValue(); v != int64(len(list.GetKeys())) {
			t.Fatalf("%s: value %d but %d keys: half a call was kept", object, v, len(list.GetKeys()))
		}
		a, err := stub.Schedule(ctx, &durabletestv1.ScheduleRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if want := alarmBase.Add(time.Duration(len(list.GetKeys())) * time.Millisecond).UnixMilli(); a.GetAtMs() != want {
			t.Fatalf("%s: alarm %d, want %d for %d keys: half a call was kept", object, a.GetAtMs(), want, len(list.GetKeys()))
		}
	}
}

// TestKillNodeUnderLoad kills a node process (kill -9) while 16 callers
// append to four ledger objects over Connect, starts another node on the
// same etcd (it takes the partitions once the dead one's lease expires),
// and checks that every acknowledged call is there and none is half there.
func TestKillNodeUnderLoad(t *testing.T) {
	c := etcdtest.Start(t, 1)
	child, url := startChild(t, c.Endpoints())
	probes := durabletestv1durable.NewProbeClient(h2cClient(), url)
	l := newLedger()
	stop := make(chan struct{})
	wg := l.run(16, 1000, stop, func(ctx context.Context, object, key string) error {
		_, err := probes.Get(probes.IDFromName(object)).Put(ctx, &durabletestv1.PutRequest{Key: key, Value: []byte("v")})
		return err
	})
	l.waitFor(t, 200, 60*time.Second)
	if err := child.Process.Kill(); err != nil { // SIGKILL, mid-load
		t.Fatal(err)
	}
	child.Wait()
	close(stop)
	wg.Wait()
	acked := l.count()

	_, url2 := startChild(t, c.Endpoints())
	probes2 := durabletestv1durable.NewProbeClient(h2cClient(), url2)
	l.check(t, func(object string) durabletestv1durable.ProbeStub { return probes2.Get(probes2.IDFromName(object)) })
	t.Logf("%d calls acknowledged before the kill, all present after restart", acked)
}

// TestEtcdLeaderKilledUnderLoad kills the etcd leader of three embedded
// members while 16 callers append to ledger objects in process: writes
// pause for the election and resume, and every acknowledged call is
// there afterwards, read through a fresh server and store.
func TestEtcdLeaderKilledUnderLoad(t *testing.T) {
	c := etcdtest.Start(t, 3)
	cli := c.Client(t)
	n := startNodeWith(t, cli, "leader", ledgerProbe(), etcdstore.WithTTL(2*time.Second))
	l := newLedger()
	stop := make(chan struct{})
	var failed sync.Map
	wg := l.run(16, 1000, stop, func(ctx context.Context, object, key string) error {
		_, err := n.probes.Get(n.probes.IDFromName(object)).Put(ctx, &durabletestv1.PutRequest{Key: key, Value: []byte("v")})
		if err != nil {
			failed.Store(key, err)
		}
		return err
	})
	l.waitFor(t, 100, 60*time.Second)
	leader := c.Leader()
	killed := time.Now()
	c.Kill(leader)
	before := l.count()
	t.Logf("leader killed in %v", time.Since(killed))
	l.waitFor(t, before+100, 60*time.Second) // writes resume
	t.Logf("100 more acknowledged %v after the kill", time.Since(killed))
	close(stop)
	wg.Wait()
	var errs []error
	failed.Range(func(_, v any) bool { errs = append(errs, v.(error)); return true })
	t.Logf("killed leader m%d after %d acknowledgements; %d in all; %d calls failed (%v)", leader+1, before, l.count(), len(errs), errors.Join(errs...))
	n.stop(t)

	n2 := startNodeWith(t, cli, "leader", ledgerProbe())
	l.check(t, func(object string) durabletestv1durable.ProbeStub { return n2.probes.Get(n2.probes.IDFromName(object)) })
}

// TestPausedNodeIsFenced stops a node process (SIGSTOP) past its lease,
// lets a second node take the partitions and write, then resumes the
// first (SIGCONT): its late call is refused and its caller told, and the
// second node's data stands.
func TestPausedNodeIsFenced(t *testing.T) {
	ctx := context.Background()
	c := etcdtest.Start(t, 1)
	a, urlA := startChild(t, c.Endpoints())
	probesA := durabletestv1durable.NewProbeClient(h2cClient(), urlA)
	stubA := probesA.Get(probesA.IDFromName("paused"))
	if _, err := stubA.Put(ctx, &durabletestv1.PutRequest{Key: "a1", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if err := a.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// b starts once a's lease has expired and it holds every partition.
	_, urlB := startChild(t, c.Endpoints())
	probesB := durabletestv1durable.NewProbeClient(h2cClient(), urlB)
	stubB := probesB.Get(probesB.IDFromName("paused"))
	if _, err := stubB.Put(ctx, &durabletestv1.PutRequest{Key: "b1", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if err := a.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// a still holds the object in memory, and believes nothing changed
	// until it looks: its late call must fail.
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := stubA.Put(cctx, &durabletestv1.PutRequest{Key: "late", Value: []byte("v")})
	if connect.CodeOf(err) != connect.CodeUnavailable || !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("late call of the resumed node = %v, want Unavailable matching engine.ErrUnavailable", err)
	}
	list, err := stubB.List(ctx, &durabletestv1.ListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(list.GetKeys(), ","); got != "a1,b1" {
		t.Fatalf("keys %q, want a1,b1: the resumed node wrote", got)
	}
}
