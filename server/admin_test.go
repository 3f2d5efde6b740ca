package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/ncruces/go-sqlite3"

	durablev1 "github.com/durablego/durable/gen/durable/v1"
	"github.com/durablego/durable/gen/durable/v1/durablev1connect"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/internal/probe"
	"github.com/durablego/durable/server"
)

// operatorGuard lets the operator's token through the admin door and
// every other request through the others.
func operatorGuard(_ context.Context, a *server.Access) error {
	if a.Kind != server.AccessAdmin {
		return nil
	}
	if a.Request.Header.Get("Authorization") == "Bearer operator" {
		return server.AllowAdmin
	}
	return connect.NewError(connect.CodeUnauthenticated, errors.New("operators only"))
}

// adminEnv is a served env with the admin service, the operator guard and
// the Ledger class (SQL) besides Counter and Probe.
type adminEnv struct {
	*env
	ledgers *durabletestv1durable.LedgerNamespace
	admin   durablev1connect.AdminServiceClient
}

func newAdminEnvIn(t testing.TB, dir string, opts ...server.Option) *adminEnv {
	t.Helper()
	e := newEnvIn(t, dir, append([]server.Option{server.WithAdmin(), server.WithGuard(operatorGuard)}, opts...)...)
	ledgers, err := durabletestv1durable.RegisterLedger(e.srv, probe.Ledger{})
	if err != nil {
		t.Fatal(err)
	}
	e.serve(t)
	return &adminEnv{env: e, ledgers: ledgers, admin: adminClient(e.url, "operator")}
}

// adminClient is a Connect client of the admin service with token as its
// bearer token.
func adminClient(url, token string) durablev1connect.AdminServiceClient {
	auth := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	})
	return durablev1connect.NewAdminServiceClient(http.DefaultClient, url, connect.WithInterceptors(auth))
}

func byName(class, name string) *durablev1.ObjectRef {
	return &durablev1.ObjectRef{Class: class, Ref: &durablev1.ObjectRef_Name{Name: name}}
}

func TestAdminRefusedUnlessTheGuardAllowsIt(t *testing.T) {
	ctx := context.Background()
	list := func(c durablev1connect.AdminServiceClient) connect.Code {
		_, err := c.ListClasses(ctx, connect.NewRequest(&durablev1.ListClassesRequest{}))
		return connect.CodeOf(err)
	}
	// Not mounted: the server has no such service.
	e := newEnv(t)
	e.serve(t)
	if got := list(adminClient(e.url, "operator")); got != connect.CodeUnimplemented {
		t.Errorf("without WithAdmin: %v, want unimplemented", got)
	}
	// Mounted without a guard: refused.
	e = newEnv(t, server.WithAdmin())
	e.serve(t)
	if got := list(adminClient(e.url, "operator")); got != connect.CodePermissionDenied {
		t.Errorf("without a guard: %v, want permission_denied", got)
	}
	// A guard that lets everything through with nil does not open it.
	e = newEnv(t, server.WithAdmin(), server.WithGuard(func(context.Context, *server.Access) error { return nil }))
	e.serve(t)
	if got := list(adminClient(e.url, "operator")); got != connect.CodePermissionDenied {
		t.Errorf("with a guard saying nil: %v, want permission_denied", got)
	}
	// The guard decides: its refusal, or AllowAdmin.
	a := newAdminEnvIn(t, t.TempDir())
	if got := list(adminClient(a.url, "user")); got != connect.CodeUnauthenticated {
		t.Errorf("refused by the guard: %v, want unauthenticated", got)
	}
	if _, err := a.admin.ListClasses(ctx, connect.NewRequest(&durablev1.ListClassesRequest{})); err != nil {
		t.Errorf("allowed by the guard: %v", err)
	}
	// AllowAdmin on another door lets that request through as nil does.
	e = newEnv(t, server.WithGuard(func(context.Context, *server.Access) error { return server.AllowAdmin }))
	e.serve(t)
	if _, err := e.counters.Get(e.counters.IDFromName("c")).GetValue(ctx, nil); err != nil {
		t.Errorf("in process: %v", err)
	}
}

func TestAdminListsStoredObjectsWithoutActivatingThem(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := newAdminEnvIn(t, dir)
	for i := range 5 {
		if _, err := e.probes.Get(e.probes.IDFromName(fmt.Sprint("user-", i))).Add(ctx, &durabletestv1.AddRequest{Amount: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.probes.Get(e.probes.IDFromName("other")).Add(ctx, &durabletestv1.AddRequest{Amount: 1}); err != nil {
		t.Fatal(err)
	}
	// Only read: never stored, never listed.
	if _, err := e.probes.Get(e.probes.IDFromName("user-read")).Get(ctx, &durabletestv1.GetRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ledgers.Get(e.ledgers.IDFromName("book")).Record(ctx, &durabletestv1.RecordRequest{Key: "k"}); err != nil {
		t.Fatal(err)
	}
	e.shutdown(t)

	e = newAdminEnvIn(t, dir)
	classes, err := e.admin.ListClasses(ctx, connect.NewRequest(&durablev1.ListClassesRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*durablev1.ClassInfo{}
	for _, c := range classes.Msg.GetClasses() {
		got[c.GetName()] = c
	}
	if p := got["Probe"]; p.GetStoredObjects() != 6 || p.GetSql() || p.GetStateMessage() != "durabletest.v1.ProbeState" || !slices.Contains(p.GetHooks(), "Alarm") {
		t.Errorf("Probe: %v", p)
	}
	if l := got["Ledger"]; l.GetStoredObjects() != 1 || !l.GetSql() {
		t.Errorf("Ledger: %v", l)
	}
	// Pages of two by name prefix: 5 users in name order.
	var names []string
	cursor := ""
	for range 10 {
		page, err := e.admin.ListObjects(ctx, connect.NewRequest(&durablev1.ListObjectsRequest{Class: "Probe", NamePrefix: "user-", Limit: 2, Cursor: cursor}))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Msg.GetObjects() {
			names = append(names, o.GetName())
			if o.GetActive() || o.GetStorageBytes() == 0 || o.GetLastWriteMs() == 0 || o.GetId() != e.probes.IDFromName(o.GetName()).String() {
				t.Errorf("object %v", o)
			}
		}
		if cursor = page.Msg.GetNextCursor(); cursor == "" {
			break
		}
	}
	if want := "[user-0 user-1 user-2 user-3 user-4]"; fmt.Sprint(names) != want {
		t.Errorf("by prefix: %v, want %s", names, want)
	}
	ledgers, err := e.admin.ListObjects(ctx, connect.NewRequest(&durablev1.ListObjectsRequest{Class: "Ledger"}))
	if err != nil || len(ledgers.Msg.GetObjects()) != 1 || ledgers.Msg.GetObjects()[0].GetName() != "book" || ledgers.Msg.GetObjects()[0].GetStorageBytes() < 4096 {
		t.Fatalf("ledgers %v, %v", ledgers, err)
	}
	if n := e.srv.ActiveObjects(); n != 0 {
		t.Errorf("%d objects activated by listing", n)
	}
	// Bad input.
	for _, req := range []*durablev1.ListObjectsRequest{
		{Class: "Nope"}, {Class: "Probe", Cursor: "zz"}, {Class: "Probe", NamePrefix: "u", Cursor: "%%.00"},
	} {
		if _, err := e.admin.ListObjects(ctx, connect.NewRequest(req)); err == nil {
			t.Errorf("ListObjects(%v) succeeded", req)
		}
	}
}

func TestAdminStateAndKV(t *testing.T) {
	ctx := context.Background()
	e := newAdminEnvIn(t, t.TempDir())
	ledger := e.ledgers.Get(e.ledgers.IDFromName("book"))
	if _, err := ledger.Record(ctx, &durabletestv1.RecordRequest{Key: "a", Owner: "ann"}); err != nil {
		t.Fatal(err)
	}
	state, err := e.admin.GetState(ctx, connect.NewRequest(&durablev1.GetStateRequest{Object: byName("Ledger", "book")}))
	if err != nil {
		t.Fatal(err)
	}
	if j := strings.ReplaceAll(state.Msg.GetJson(), " ", ""); j != `{"entries":"1","owner":"ann"}` || state.Msg.GetType() != "durabletest.v1.LedgerState" {
		t.Errorf("state %s of %s", j, state.Msg.GetType())
	}
	if _, err := e.admin.GetState(ctx, connect.NewRequest(&durablev1.GetStateRequest{Object: byName("Ledger", "none")})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("state of an object never stored: %v", err)
	}
	// Replaced, validated as any state.
	if _, err := e.admin.ReplaceState(ctx, connect.NewRequest(&durablev1.ReplaceStateRequest{Object: byName("Ledger", "book"), Json: `{"owner":"bob","entries":"7"}`})); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`{"owner":"a name far over sixteen characters"}`, `{"nope":1}`, `not json`} {
		if _, err := e.admin.ReplaceState(ctx, connect.NewRequest(&durablev1.ReplaceStateRequest{Object: byName("Ledger", "book"), Json: bad})); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("ReplaceState(%s): %v, want invalid_argument", bad, err)
		}
	}
	// KV.
	if _, err := e.admin.PutKV(ctx, connect.NewRequest(&durablev1.PutKVRequest{Object: byName("Ledger", "book"), Key: "b", Value: []byte("vb")})); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.PutKV(ctx, connect.NewRequest(&durablev1.PutKVRequest{Object: byName("Ledger", "book"), Key: ""})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("PutKV of an empty key: %v", err)
	}
	if del, err := e.admin.DeleteKV(ctx, connect.NewRequest(&durablev1.DeleteKVRequest{Object: byName("Ledger", "book"), Key: "a"})); err != nil || !del.Msg.GetExisted() {
		t.Fatalf("DeleteKV: %v %v", del, err)
	}
	list, err := e.admin.ListKV(ctx, connect.NewRequest(&durablev1.ListKVRequest{Object: byName("Ledger", "book")}))
	if err != nil || len(list.Msg.GetEntries()) != 1 || list.Msg.GetEntries()[0].GetKey() != "b" {
		t.Fatalf("ListKV: %v %v", list, err)
	}
	if got, err := e.admin.GetKV(ctx, connect.NewRequest(&durablev1.GetKVRequest{Object: byName("Ledger", "book"), Key: "b"})); err != nil || string(got.Msg.GetValue()) != "vb" {
		t.Fatalf("GetKV: %v %v", got, err)
	}
	// The object's own calls see the operator's writes.
	read, err := ledger.Read(ctx, &durabletestv1.ReadRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if read.GetState().GetOwner() != "bob" || read.GetState().GetEntries() != 7 || fmt.Sprint(read.GetKeys()) != "[b]" {
		t.Errorf("the object reads %v", read)
	}
}

func TestAdminSQLIsReadOnly(t *testing.T) {
	ctx := context.Background()
	e := newAdminEnvIn(t, t.TempDir())
	ledger := e.ledgers.Get(e.ledgers.IDFromName("book"))
	for _, k := range []string{"x", "y"} {
		if _, err := ledger.Record(ctx, &durabletestv1.RecordRequest{Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	q := func(query string) (*connect.Response[durablev1.QuerySQLResponse], error) {
		return e.admin.QuerySQL(ctx, connect.NewRequest(&durablev1.QuerySQLRequest{Object: byName("Ledger", "book"), Query: query}))
	}
	res, err := q(`SELECT key, length(key) AS n FROM entries ORDER BY key`)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(res.Msg.GetColumns()) != "[key n]" || len(res.Msg.GetRows()) != 2 || res.Msg.GetRows()[1].GetValues()[0].GetStringValue() != "y" || res.Msg.GetRows()[1].GetValues()[1].GetNumberValue() != 1 {
		t.Errorf("result %v", res.Msg)
	}
	for _, bad := range []string{
		`DELETE FROM entries`, `CREATE TABLE t (a)`, `SELECT 1; DELETE FROM entries`, `SELECT * FROM _durable_kv`,
		`ATTACH DATABASE '/tmp/x' AS x`, ``,
	} {
		if _, err := q(bad); err == nil {
			t.Errorf("QuerySQL(%q) succeeded", bad)
		}
	}
	if read, err := ledger.Read(ctx, &durabletestv1.ReadRequest{}); err != nil || len(read.GetRows()) != 2 {
		t.Errorf("after the refused writes the ledger reads %v, %v", read, err)
	}
	if _, err := e.admin.QuerySQL(ctx, connect.NewRequest(&durablev1.QuerySQLRequest{Object: byName("Counter", "c"), Query: "SELECT 1"})); err == nil {
		t.Error("QuerySQL on a class without SQL succeeded")
	}
}

func TestAdminAlarm(t *testing.T) {
	ctx := context.Background()
	e := newAdminEnvIn(t, t.TempDir())
	e.probe.Alarms = make(chan probe.AlarmRun, 16)
	at := time.Now().Add(time.Hour).UnixMilli()
	if _, err := e.admin.SetAlarm(ctx, connect.NewRequest(&durablev1.SetAlarmRequest{Object: byName("Probe", "p"), AtMs: at})); err != nil {
		t.Fatal(err)
	}
	got, err := e.admin.GetAlarm(ctx, connect.NewRequest(&durablev1.GetAlarmRequest{Object: byName("Probe", "p")}))
	if err != nil || got.Msg.GetAtMs() != at {
		t.Fatalf("GetAlarm %v %v, want %d", got, err, at)
	}
	if _, err := e.admin.RunAlarm(ctx, connect.NewRequest(&durablev1.RunAlarmRequest{Object: byName("Probe", "p")})); err != nil {
		t.Fatal(err)
	}
	if run := e.nextRun(t); run.ID.Name() != "p" {
		t.Errorf("ran on %v", run.ID)
	}
	if s := e.probeState(t, "p"); s.GetAlarmRuns() != 1 {
		t.Errorf("alarm runs %d", s.GetAlarmRuns())
	}
	if _, err := e.admin.SetAlarm(ctx, connect.NewRequest(&durablev1.SetAlarmRequest{Object: byName("Probe", "p"), AtMs: at})); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.DeleteAlarm(ctx, connect.NewRequest(&durablev1.DeleteAlarmRequest{Object: byName("Probe", "p")})); err != nil {
		t.Fatal(err)
	}
	if got, err := e.admin.GetAlarm(ctx, connect.NewRequest(&durablev1.GetAlarmRequest{Object: byName("Probe", "p")})); err != nil || got.Msg.AtMs != nil {
		t.Fatalf("after DeleteAlarm: %v %v", got, err)
	}
	// Counter has no Alarm hook.
	if _, err := e.admin.SetAlarm(ctx, connect.NewRequest(&durablev1.SetAlarmRequest{Object: byName("Counter", "c"), AtMs: at})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Errorf("SetAlarm without a hook: %v", err)
	}
}

func TestAdminDeleteObject(t *testing.T) {
	ctx := context.Background()
	e := newAdminEnvIn(t, t.TempDir())
	p := e.probes.Get(e.probes.IDFromName("p"))
	if _, err := p.Put(ctx, &durabletestv1.PutRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	e.alarmAt(t, "p", time.Now().Add(time.Hour))
	del, err := e.admin.DeleteObject(ctx, connect.NewRequest(&durablev1.DeleteObjectRequest{Object: byName("Probe", "p")}))
	if err != nil || !del.Msg.GetExisted() {
		t.Fatalf("DeleteObject %v %v", del, err)
	}
	// A brand-new object: Init ran again, nothing of the old one is left.
	s := e.probeState(t, "p")
	if s.GetValue() != 0 || s.GetInitRuns() != 1 {
		t.Errorf("after deletion the object's state is %v", s)
	}
	list, err := p.List(ctx, &durabletestv1.ListRequest{})
	if err != nil || len(list.GetKeys()) != 0 {
		t.Errorf("after deletion the object lists %v, %v", list, err)
	}
	if at, _ := e.schedule(t, "p", &durabletestv1.ScheduleRequest{}); !at.IsZero() {
		t.Errorf("after deletion the alarm is %v", at)
	}
	objs, err := e.admin.ListObjects(ctx, connect.NewRequest(&durablev1.ListObjectsRequest{Class: "Probe"}))
	if err != nil || len(objs.Msg.GetObjects()) != 0 {
		t.Errorf("after deletion the class lists %v, %v", objs, err)
	}

	// An SQL object: its file goes.
	ledger := e.ledgers.Get(e.ledgers.IDFromName("book"))
	if _, err := ledger.Record(ctx, &durabletestv1.RecordRequest{Key: "a", Owner: "ann"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.DeleteObject(ctx, connect.NewRequest(&durablev1.DeleteObjectRequest{Object: byName("Ledger", "book")})); err != nil {
		t.Fatal(err)
	}
	read, err := ledger.Read(ctx, &durabletestv1.ReadRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if read.GetState().GetOwner() != "" || len(read.GetKeys())+len(read.GetRows()) != 0 {
		t.Errorf("after deletion the ledger reads %v", read)
	}
	files, _ := os.ReadDir(e.dir + "/sql/Ledger")
	for _, f := range files {
		t.Errorf("file %s left after deletion", f.Name())
	}
	// Deleting what does not exist is no error.
	if del, err := e.admin.DeleteObject(ctx, connect.NewRequest(&durablev1.DeleteObjectRequest{Object: byName("Ledger", "never")})); err != nil || del.Msg.GetExisted() {
		t.Errorf("DeleteObject of nothing: %v %v", del, err)
	}
}

// A data directory written before the catalog existed gets its objects
// listed at the first start: those of the node database and the SQL
// files, without their names until their next write by name.
func TestAdminListsObjectsWrittenBeforeTheCatalog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := newAdminEnvIn(t, dir)
	if _, err := e.ledgers.Get(e.ledgers.IDFromName("old-book")).Record(ctx, &durabletestv1.RecordRequest{Key: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.counters.Get(e.counters.IDFromName("old-counter")).Increment(ctx, &counterv1.IncrementRequest{Amount: 1}); err != nil {
		t.Fatal(err)
	}
	e.shutdown(t)
	c, err := sqlite3.Open(filepath.Join(dir, "objects.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(`DELETE FROM catalog; DELETE FROM meta WHERE key IN ('catalog', 'catalog_sql')`); err != nil {
		t.Fatal(err)
	}
	c.Close()

	e = newAdminEnvIn(t, dir)
	for _, class := range []string{"Ledger", "Counter"} {
		res, err := e.admin.ListObjects(ctx, connect.NewRequest(&durablev1.ListObjectsRequest{Class: class}))
		if err != nil || len(res.Msg.GetObjects()) != 1 || res.Msg.GetObjects()[0].GetName() != "" {
			t.Fatalf("%s: %v, %v", class, res, err)
		}
	}
	if _, err := e.ledgers.Get(e.ledgers.IDFromName("old-book")).Record(ctx, &durabletestv1.RecordRequest{Key: "b"}); err != nil {
		t.Fatal(err)
	}
	res, err := e.admin.ListObjects(ctx, connect.NewRequest(&durablev1.ListObjectsRequest{Class: "Ledger", NamePrefix: "old-"}))
	if err != nil || len(res.Msg.GetObjects()) != 1 || res.Msg.GetObjects()[0].GetName() != "old-book" {
		t.Fatalf("after a write by name: %v, %v", res, err)
	}
}

// A page of key-value entries stops past 1 MiB, however many the limit
// allows: 1,000 values of 128 KiB would make a response of 128 MiB.
func TestAdminListKVPageIsBoundedInBytes(t *testing.T) {
	ctx := context.Background()
	e := newAdminEnvIn(t, t.TempDir())
	big := make([]byte, 128<<10)
	for i := range 12 {
		if _, err := e.admin.PutKV(ctx, connect.NewRequest(&durablev1.PutKVRequest{Object: byName("Counter", "c"), Key: fmt.Sprint("k", i), Value: big})); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	after := ""
	for range 12 {
		res, err := e.admin.ListKV(ctx, connect.NewRequest(&durablev1.ListKVRequest{Object: byName("Counter", "c"), StartAfter: after, Limit: 1000}))
		if err != nil {
			t.Fatal(err)
		}
		n := len(res.Msg.GetEntries())
		if n == 0 {
			break
		}
		if n > 8 {
			t.Fatalf("a page of %d values of 128 KiB", n)
		}
		for _, en := range res.Msg.GetEntries() {
			keys = append(keys, en.GetKey())
		}
		after = keys[len(keys)-1]
	}
	if len(keys) != 12 {
		t.Errorf("paged through %d keys, want 12", len(keys))
	}
}

// Server.Backup refuses a directory that is not empty; the admin
// service's staging left by a crash is removed at the next start.
func TestBackupRefusesANonEmptyDirectoryAndStaleStagingGoes(t *testing.T) {
	dir := t.TempDir()
	e := newAdminEnvIn(t, dir)
	out := t.TempDir()
	if err := os.WriteFile(filepath.Join(out, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Backup(context.Background(), out); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("backup into a non-empty directory: %v", err)
	}
	e.shutdown(t)
	stale := filepath.Join(dir, ".backup-123")
	if err := os.MkdirAll(filepath.Join(stale, "sql"), 0o750); err != nil {
		t.Fatal(err)
	}
	newAdminEnvIn(t, dir)
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale staging still there: %v", err)
	}
}
