package server_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/ncruces/go-sqlite3"

	"github.com/durablego/durable"
	durablev1 "github.com/durablego/durable/gen/durable/v1"
	counterv1 "github.com/durablego/durable/gen/examples/counter/v1"
	"github.com/durablego/durable/server"
)

// fillDir writes rows into the node database of a fresh data directory,
// with a server's schema, before any server runs on it: sql is a statement
// over the recursive table n(i), 1..count.
func fillDir(b *testing.B, count int, sql string) string {
	b.Helper()
	dir := b.TempDir()
	e := newEnvIn(b, dir)
	e.shutdown(b)
	c, err := sqlite3.Open(filepath.Join(dir, "objects.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.Exec(fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d) `, count) + sql); err != nil {
		b.Fatal(err)
	}
	return dir
}

// BenchmarkAdminListPage: a page of 1,000 objects of a class among
// 1,000,000 stored (catalog entries with names and states), over Connect on
// loopback: from the start, from a cursor in the middle, and by a name
// prefix.
func BenchmarkAdminListPage(b *testing.B) {
	const stored = 1_000_000
	dir := fillDir(b, stored, `INSERT INTO catalog (class, id, name, written_ms) SELECT 'Probe', randomblob(32), 'user-' || i, i FROM n`)
	e := newAdminEnvIn(b, dir)
	ctx := context.Background()
	middle, err := e.admin.ListObjects(ctx, connect.NewRequest(&durablev1.ListObjectsRequest{Class: "Probe", Limit: 1000}))
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		req  *durablev1.ListObjectsRequest
	}{
		{"first", &durablev1.ListObjectsRequest{Class: "Probe", Limit: 1000}},
		{"cursor", &durablev1.ListObjectsRequest{Class: "Probe", Limit: 1000, Cursor: middle.Msg.GetNextCursor()}},
		{"prefix", &durablev1.ListObjectsRequest{Class: "Probe", Limit: 1000, NamePrefix: "user-5"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res, err := e.admin.ListObjects(ctx, connect.NewRequest(c.req))
				if err != nil || len(res.Msg.GetObjects()) != 1000 {
					b.Fatalf("%d objects, %v", len(res.Msg.GetObjects()), err)
				}
			}
		})
	}
	if n := e.srv.ActiveObjects(); n != 0 {
		b.Fatalf("listing activated %d objects", n)
	}
}

// BenchmarkAdminGetState: reading one object's state as JSON over Connect
// on loopback, the object in memory.
func BenchmarkAdminGetState(b *testing.B) {
	e := newAdminEnvIn(b, b.TempDir())
	ctx := context.Background()
	if _, err := e.counters.Get(e.counters.IDFromName("c")).Increment(ctx, &counterv1.IncrementRequest{Amount: 1}); err != nil {
		b.Fatal(err)
	}
	req := connect.NewRequest(&durablev1.GetStateRequest{Object: byName("Counter", "c")})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.admin.GetState(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConnectUnaryAdminMounted is BenchmarkConnectUnary on a server
// with the admin service mounted: what mounting it costs ordinary calls.
func BenchmarkConnectUnaryAdminMounted(b *testing.B) { benchConnectUnary(b, server.WithAdmin()) }

// backupMiB is the size of BenchmarkBackupWhileServing's data directory:
// 256 MiB by default, -backup-mib 1024 for the 1 GB the operations issue
// names (filling it takes a minute).
var backupMiB = flag.Int("backup-mib", 256, "MiB of 4 KiB values in BenchmarkBackupWhileServing's data directory")

// BenchmarkBackupWhileServing backs up a data directory of -backup-mib MiB
// (its node database: 256 objects' 4 KiB values per MiB) while 64 callers
// increment counters chosen at random among 10,000, in process. It reports
// the backup's throughput, the callers' rate before, during and after the
// backups, and the loss of the rate during them against the mean of the
// rates before and after.
func BenchmarkBackupWhileServing(b *testing.B) {
	dir := fillDir(b, *backupMiB*256, `INSERT INTO kv (class, id, key, value) SELECT 'Bulk', randomblob(32), 'k', randomblob(4096) FROM n`)
	e := newEnvIn(b, dir)
	ids := make([]durable.ID, 10_000)
	for i := range ids {
		ids[i] = e.counters.IDFromName(fmt.Sprint("obj-", i))
	}
	var calls atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			ctx := context.Background()
			req := &counterv1.IncrementRequest{Amount: 1}
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := e.counters.Get(ids[rand.IntN(len(ids))]).Increment(ctx, req); err != nil {
					b.Error(err)
					return
				}
				calls.Add(1)
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	rate := func(d time.Duration) float64 {
		n0, t0 := calls.Load(), time.Now()
		time.Sleep(d) // a measurement window, not a synchronization
		return float64(calls.Load()-n0) / time.Since(t0).Seconds()
	}
	rate(time.Second) // warm up: objects activated
	before := rate(2 * time.Second)
	var bytes int64
	n0, t0 := calls.Load(), time.Now()
	b.ResetTimer()
	for i := range b.N {
		out := filepath.Join(b.TempDir(), fmt.Sprint(i))
		st, err := e.srv.Backup(context.Background(), out)
		if err != nil {
			b.Fatal(err)
		}
		bytes += st.Bytes
		os.RemoveAll(out)
	}
	elapsed := time.Since(t0)
	b.StopTimer()
	during := float64(calls.Load()-n0) / elapsed.Seconds()
	// The rate drifts as the load runs (the first seconds after warming
	// up are the fastest), so the loss is taken against the mean of the
	// windows before and after the backup, the one after as long as the
	// backup took.
	after := rate(elapsed)
	reference := (before + after) / 2
	b.ReportMetric(float64(bytes)/elapsed.Seconds()/1e6, "backup-MB/s")
	b.ReportMetric(before, "calls/s-before")
	b.ReportMetric(during, "calls/s-during")
	b.ReportMetric(after, "calls/s-after")
	b.ReportMetric(100*(reference-during)/reference, "loss-%")
}
