package server_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"

	"github.com/durablego/durable/examples/analytics"
	"github.com/durablego/durable/examples/session"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	analyticsv1 "github.com/durablego/durable/gen/examples/analytics/v1"
	"github.com/durablego/durable/gen/examples/analytics/v1/analyticsv1durable"
	sessionv1 "github.com/durablego/durable/gen/examples/session/v1"
	"github.com/durablego/durable/gen/examples/session/v1/sessionv1durable"
	"github.com/durablego/durable/server"
)

// lazyEnv is a served env with, beside Counter and Probe (state and
// key-value, Init), the Ledger (SQL, Init), Analytics (SQL, Init) and
// Session (Init sets an alarm) classes, and remote clients for the SQL
// ones.
type lazyEnv struct {
	*env
	ledgers   *durabletestv1durable.LedgerClient
	analytics *analyticsv1durable.AnalyticsClient
	sessions  *sessionv1durable.SessionNamespace
}

func newLazyEnv(t *testing.T, dir string, opts ...server.Option) *lazyEnv {
	t.Helper()
	e := &lazyEnv{env: newEnvIn(t, dir, opts...)}
	registerLedger(t, e.env)
	if _, err := analyticsv1durable.RegisterAnalytics(e.srv, analytics.Analytics{}); err != nil {
		t.Fatal(err)
	}
	var err error
	if e.sessions, err = sessionv1durable.RegisterSession(e.srv, session.Session{}); err != nil {
		t.Fatal(err)
	}
	e.serve(t)
	e.ledgers = durabletestv1durable.NewLedgerClient(http.DefaultClient, e.url)
	e.analytics = analyticsv1durable.NewAnalyticsClient(h2cClient(), e.url)
	return e
}

// stored is what a data directory holds: the rows of the node database's
// tables and the SQL databases of objects.
type stored struct {
	objects, kv, alarms int
	sqlFiles            []string // relative to the data directory
}

func storedIn(t *testing.T, dir string) stored {
	t.Helper()
	c, err := sqlite3.OpenFlags(filepath.Join(dir, "objects.db"), sqlite3.OPEN_READONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var s stored
	for table, n := range map[string]*int{"objects": &s.objects, "kv": &s.kv, "alarms": &s.alarms} {
		stmt, _, err := c.Prepare(`SELECT count(*) FROM ` + table)
		if err != nil {
			t.Fatal(err)
		}
		if stmt.Step() {
			*n = stmt.ColumnInt(0)
		}
		stmt.Close()
	}
	filepath.WalkDir(filepath.Join(dir, "sql"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			s.sqlFiles = append(s.sqlFiles, rel)
		}
		return nil
	})
	return s
}

// TestReadsOfNewObjectsLeaveNothing reads many never-written objects of
// each class with Init, in process and over Connect and gRPC: they see
// what Init built, and the data directory gets no row, no alarm and no
// file. Then a write to a few of them stores exactly those, with Init's
// writes (the session's alarm) committed alongside.
func TestReadsOfNewObjectsLeaveNothing(t *testing.T) {
	dir := t.TempDir()
	e := newLazyEnv(t, dir, server.WithIdleTimeout(time.Hour))
	ctx := context.Background()
	const n = 100
	inParallel(t, 4, n, func(i int) error {
		name := fmt.Sprint("read-", i)
		if r, err := e.probes.Get(e.probes.IDFromName(name)).Get(ctx, &durabletestv1.GetRequest{}); err != nil || r.GetState().GetInitRuns() != 1 {
			return fmt.Errorf("probe %s: %v %v", name, r, err)
		}
		if r, err := e.ledgers.Get(e.ledgers.IDFromName(name)).Read(ctx, &durabletestv1.ReadRequest{}); err != nil || len(r.GetRows()) != 0 {
			return fmt.Errorf("ledger %s: %v %v", name, r, err)
		}
		if r, err := e.analytics.Get(e.analytics.IDFromName(name)).GetEventCounts(ctx, &analyticsv1.GetEventCountsRequest{}); err != nil || len(r.GetCounts()) != 0 {
			return fmt.Errorf("analytics %s: %v %v", name, r, err)
		}
		if r, err := e.sessions.Get(e.sessions.IDFromName(name)).Peek(ctx, &sessionv1.PeekRequest{}); err != nil || r.GetAlarmAtMs() == 0 {
			return fmt.Errorf("session %s: Init's alarm is not visible: %v %v", name, r, err)
		}
		return nil
	})
	if e.srv.ActiveObjects() != 4*n {
		t.Fatalf("%d objects active, want %d", e.srv.ActiveObjects(), 4*n)
	}
	e.shutdown(t)
	if s := storedIn(t, dir); s.objects+s.kv+s.alarms != 0 || len(s.sqlFiles) != 0 {
		t.Fatalf("after reads only: %d objects, %d keys, %d alarms, files %v; want nothing", s.objects, s.kv, s.alarms, s.sqlFiles)
	}

	e = newLazyEnv(t, dir, server.WithIdleTimeout(time.Hour))
	for i := range 3 {
		name := fmt.Sprint("read-", i)
		if _, err := e.probes.Get(e.probes.IDFromName(name)).Add(ctx, &durabletestv1.AddRequest{Amount: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.ledgers.Get(e.ledgers.IDFromName(name)).Record(ctx, &durabletestv1.RecordRequest{Key: "k"}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.analytics.Get(e.analytics.IDFromName(name)).TrackEvent(ctx, &analyticsv1.TrackEventRequest{Name: "view"}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.sessions.Get(e.sessions.IDFromName(name)).SetData(ctx, &sessionv1.SetDataRequest{Key: "k", Value: "v"}); err != nil {
			t.Fatal(err)
		}
	}
	e.shutdown(t)
	s := storedIn(t, dir)
	if s.objects != 6 || s.alarms != 3 || len(s.sqlFiles) != 6 {
		// 3 probes and 3 sessions; the sessions' alarms, set by Init; 3
		// ledger and 3 analytics files.
		t.Fatalf("after writing 3 objects of each class: %d objects (want 6), %d alarms (want 3), files %v (want 6)", s.objects, s.alarms, s.sqlFiles)
	}
	for _, f := range s.sqlFiles {
		if !strings.HasSuffix(f, ".db") {
			t.Fatalf("file %s left beside the databases", f)
		}
	}

	// Init ran once for the written objects: they were stored with its
	// state.
	e = newLazyEnv(t, dir)
	if r, err := e.probes.Get(e.probes.IDFromName("read-0")).Get(ctx, &durabletestv1.GetRequest{}); err != nil || r.GetState().GetInitRuns() != 1 || r.GetState().GetValue() != 1 {
		t.Fatalf("probe after its first write: %v %v", r, err)
	}
	if r, err := e.ledgers.Get(e.ledgers.IDFromName("read-0")).Read(ctx, &durabletestv1.ReadRequest{}); err != nil || len(r.GetRows()) != 1 {
		t.Fatalf("ledger after its first write: %v %v", r, err)
	}
}

// openDatabases counts the descriptors this process holds on object
// databases under dir (the databases themselves, not their WAL files).
func openDatabases(t testing.TB, dir string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir) && strings.HasSuffix(target, ".db") {
			n++
		}
	}
	return n
}

// TestSQLFileBudget writes to many more SQL objects than the budget of
// open SQL files, with an idle timeout that evicts none: every call
// succeeds, the least recently used objects leave to make room, the
// server never counts more object databases open than the budget, and
// only the written objects have files. Reading them all again, which
// reopens each, stays within the budget too. Whenever the calls are done,
// the count agrees with the descriptors the process holds.
func TestSQLFileBudget(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts descriptors in /proc/self/fd")
	}
	dir := t.TempDir()
	const budget, objects = 50, 500
	e := newLazyEnv(t, dir, server.WithIdleTimeout(time.Hour), server.WithMaxOpenSQLFiles(budget))
	ctx := context.Background()
	sqlDir := filepath.Join(dir, "sql")
	over := func() error {
		if n := e.srv.OpenSQLFiles(); n > budget {
			return fmt.Errorf("%d object databases open, over the budget of %d", n, budget)
		}
		return nil
	}
	// Descriptors are read one by one and reused as databases close and
	// open, so they are compared with the count only when nothing moves.
	// A first write creates the file and lets it go (the object's next
	// call opens it): after the writes none need be open, after the reads
	// some are.
	agree := func(some bool) {
		t.Helper()
		eventually(t, "the descriptors agree with the count", func() bool {
			return openDatabases(t, sqlDir) == e.srv.OpenSQLFiles()
		})
		if n := e.srv.OpenSQLFiles(); n == 0 && some || n > budget {
			t.Fatalf("%d object databases open, want at most %d (and some: %v)", n, budget, some)
		}
	}
	inParallel(t, 8, objects, func(i int) error {
		if _, err := e.ledgers.Get(e.ledgers.IDFromName(fmt.Sprint("w", i))).Record(ctx, &durabletestv1.RecordRequest{Key: "k"}); err != nil {
			return err
		}
		if _, err := e.ledgers.Get(e.ledgers.IDFromName(fmt.Sprint("r", i))).Read(ctx, &durabletestv1.ReadRequest{}); err != nil {
			return err
		}
		return over()
	})
	if t.Failed() {
		return
	}
	agree(false)
	inParallel(t, 8, objects, func(i int) error {
		r, err := e.ledgers.Get(e.ledgers.IDFromName(fmt.Sprint("w", i))).Read(ctx, &durabletestv1.ReadRequest{})
		if err == nil && len(r.GetRows()) != 1 {
			err = fmt.Errorf("ledger w%d: rows %v, want its one", i, r.GetRows())
		}
		if err != nil {
			return err
		}
		return over()
	})
	agree(true)
	e.shutdown(t)
	if s := storedIn(t, dir); len(s.sqlFiles) != objects {
		t.Fatalf("%d files, want one for each of the %d written objects", len(s.sqlFiles), objects)
	}
}

// TestLimitsAtScale is the case, run on demand with the number of
// objects in DURABLE_SCALE (the issue used 20,000):
//
//	DURABLE_SCALE=20000 go test -run TestLimitsAtScale -v -timeout 30m ./server
//
// n reads of new Analytics objects, then n first writes to other distinct
// ones, over Connect with an idle timeout of 2 minutes (nothing is evicted
// for idleness) and the default budget of open SQL files: no call fails,
// and only the written objects have files.
func TestLimitsAtScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("DURABLE_SCALE"))
	if n <= 0 {
		t.Skip("set DURABLE_SCALE to the number of objects")
	}
	dir := t.TempDir()
	e := newLazyEnv(t, dir, server.WithIdleTimeout(2*time.Minute))
	ctx := context.Background()
	start := time.Now()
	inParallel(t, 8, n, func(i int) error {
		_, err := e.analytics.Get(e.analytics.IDFromName(fmt.Sprint("read-", i))).GetEventCounts(ctx, &analyticsv1.GetEventCountsRequest{})
		return err
	})
	t.Logf("%d reads of new objects in %v; %d objects active, %d SQL files open, resident %d MiB",
		n, time.Since(start), e.srv.ActiveObjects(), e.srv.OpenSQLFiles(), rssBytes(t)>>20)
	start = time.Now()
	inParallel(t, 8, n, func(i int) error {
		_, err := e.analytics.Get(e.analytics.IDFromName(fmt.Sprint("write-", i))).TrackEvent(ctx, &analyticsv1.TrackEventRequest{Name: "view"})
		return err
	})
	t.Logf("%d first writes in %v; %d objects active, %d SQL files open (budget %d), resident %d MiB",
		n, time.Since(start), e.srv.ActiveObjects(), e.srv.OpenSQLFiles(), e.srv.MaxOpenSQLFiles(), rssBytes(t)>>20)
	e.shutdown(t)
	if s := storedIn(t, dir); len(s.sqlFiles) != n || s.objects+s.kv+s.alarms != 0 {
		t.Fatalf("%d files (want %d), %d node rows (want 0)", len(s.sqlFiles), n, s.objects+s.kv+s.alarms)
	}
}
