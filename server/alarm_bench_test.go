package server_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/probe"
	"github.com/durablego/durable/server"
)

// BenchmarkAlarmLateness schedules 10,000 alarms on 10,000 objects, due
// spread over one second, lets the objects leave memory, and reports how
// late the handlers start: p50 and p99. Run it with -benchtime 1x.
func BenchmarkAlarmLateness(b *testing.B) {
	const n = 10_000
	for range b.N {
		b.StopTimer()
		e := newEnv(b, server.WithIdleTimeout(200*time.Millisecond))
		e.probe.Alarms = make(chan probe.AlarmRun, n)
		start := time.Now().Add(3 * time.Second)
		inParallel(b, 64, n, func(i int) error {
			at := start.Add(time.Duration(i) * time.Second / n)
			_, err := e.schedule(b, fmt.Sprint("late-", i), &durabletestv1.ScheduleRequest{AtMs: at.UnixMilli()})
			return err
		})
		if time.Now().After(start) {
			b.Fatalf("scheduling took longer than the lead time")
		}
		b.StartTimer()
		late := make([]time.Duration, 0, n)
		for range n {
			r := e.nextRun(b)
			late = append(late, r.Started.Sub(r.Info.ScheduledTime))
		}
		b.StopTimer()
		slices.Sort(late)
		b.ReportMetric(float64(late[n/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(late[n*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(late[n-1].Microseconds())/1000, "max-ms")
		e.shutdown(b)
	}
}

// BenchmarkSetAlarm: 64 callers set alarms an hour ahead on objects chosen
// at random among 10,000: the scheduling throughput.
func BenchmarkSetAlarm(b *testing.B) {
	e := newEnv(b)
	b.SetParallelism(parallelism())
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			id := e.probes.IDFromName(fmt.Sprint("alarm-", rand.IntN(10_000)))
			at := time.Now().Add(time.Hour + time.Duration(rand.IntN(3600))*time.Second)
			if _, err := e.probes.Get(id).Schedule(ctx, &durabletestv1.ScheduleRequest{AtMs: at.UnixMilli()}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, start)
}

// BenchmarkMillionAlarmsMemory seeds the node database with 1,000,000
// alarms spread over the next day, starts a server on it, and reports its
// resident memory and the alarms its scheduler holds. Run with -benchtime 1x.
func BenchmarkMillionAlarmsMemory(b *testing.B) {
	n := millionAlarms
	dir := b.TempDir()
	db, err := engine.Open(filepath.Join(dir, "objects.db"))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	inParallel(b, 32, n, func(i int) error {
		var id [32]byte
		copy(id[:], strconv.Itoa(i))
		st := db.Store("Probe", id)
		st.HandleAlarms(nil)
		st.BeginCall()
		// Spread over the day, from a minute ahead: past the horizon of all
		// but the first few hundred.
		offset := time.Minute + time.Duration(int64(i)*int64(24*time.Hour/time.Millisecond)/int64(n))*time.Millisecond
		st.KV.SetAlarm(ctx, now.Add(offset))
		st.EndCall(true)
		done := make(chan error, 1)
		st.Commit(nil, false, nil, func(err error) { done <- err })
		return <-done
	})
	b.Logf("seeded %d alarms in %v", n, time.Since(now))
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	before := residentMiB(b)

	for range b.N {
		e := newEnvIn(b, dir)
		eventually(b, "the scheduler has loaded what is due soon", func() bool { return e.srv.PendingAlarms() > 0 })
		runtime.GC()
		b.ReportMetric(residentMiB(b), "rss-MiB")
		b.ReportMetric(residentMiB(b)-before, "rss-delta-MiB")
		b.ReportMetric(float64(e.srv.PendingAlarms()), "alarms-in-memory")
		e.shutdown(b)
	}
}

// residentMiB reads the process's resident set size.
func residentMiB(b testing.TB) float64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skip("no /proc/self/status on this system")
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb / 1024
		}
	}
	b.Fatal("no VmRSS line")
	return 0
}

// millionAlarms is how many alarms BenchmarkMillionAlarmsMemory seeds.
var millionAlarms = 1_000_000
