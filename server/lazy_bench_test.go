package server_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/server"
)

// BenchmarkNewSQLObjectFirstWrite: each iteration activates a new Ledger
// object (SQL, Init creates a table) and records one entry, its first
// write, which creates its database file. In process, one caller: the
// cost a new SQL object's first call pays.
func BenchmarkNewSQLObjectFirstWrite(b *testing.B) {
	e := newEnv(b, server.WithIdleTimeout(time.Hour))
	ledgers := registerLedger(b, e)
	ctx := context.Background()
	b.ReportAllocs()
	start := time.Now()
	for i := range b.N {
		if _, err := ledgers.Get(ledgers.IDFromName(fmt.Sprint("new-", i))).Record(ctx, &durabletestv1.RecordRequest{Key: "k"}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "objects/s")
}

// BenchmarkNewSQLObjectRead: each iteration activates a new Ledger object
// and reads it, which writes nothing.
func BenchmarkNewSQLObjectRead(b *testing.B) {
	e := newEnv(b, server.WithIdleTimeout(time.Hour))
	ledgers := registerLedger(b, e)
	ctx := context.Background()
	b.ReportAllocs()
	start := time.Now()
	for i := range b.N {
		if _, err := ledgers.Get(ledgers.IDFromName(fmt.Sprint("read-", i))).Read(ctx, &durabletestv1.ReadRequest{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "objects/s")
}

// rssBytes returns the process's resident memory, from /proc.
func rssBytes(tb testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		tb.Skip("no /proc/self/statm:", err)
	}
	pages, err := strconv.ParseInt(strings.Fields(string(b))[1], 10, 64)
	if err != nil {
		tb.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}

// BenchmarkSQLOutOfMemoryEvicted measures the resident memory left after
// 12 SQL objects each ran a query past their connection's memory limit
// (256 MiB) and were evicted, against a control of 12 objects whose query
// used 100 MiB and succeeded: the rss-MB-after metric of "oom" should be
// within 100 MB of "control". Each iteration is one round of 12 objects.
func BenchmarkSQLOutOfMemoryEvicted(b *testing.B) {
	for _, c := range []struct {
		name, query string
	}{
		{"control", `SELECT length(randomblob(100 << 20))`},
		{"oom", `SELECT length(printf('%.*c', 400 << 20, 'x'))`},
	} {
		b.Run(c.name, func(b *testing.B) {
			e := newEnv(b, server.WithIdleTimeout(time.Millisecond))
			r := newSQLRunner(b, e)
			ctx := context.Background()
			for i := range b.N {
				for j := range 12 {
					err := r.run(ctx, fmt.Sprint(c.name, i, "-", j), c.query, false)
					if (err != nil) != (c.name == "oom") {
						b.Fatalf("%s: %v", c.query, err)
					}
				}
				eventually(b, "the objects leave memory", func() bool { return e.srv.ActiveObjects() == 0 })
			}
			b.StopTimer()
			runtime.GC()
			b.ReportMetric(float64(rssBytes(b))/(1<<20), "rss-MB-after")
		})
	}
}
