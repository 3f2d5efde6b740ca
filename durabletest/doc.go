// Package durabletest tests Durable Objects against a real server: what
// Cloudflare's vitest-pool-workers gives its users (runInDurableObject,
// runDurableObjectAlarm, isolated storage per test, listing IDs), in Go.
//
// New starts a server on t.TempDir() for one test, shut down by
// t.Cleanup, so every test has storage of its own. Register classes on it
// with the generated Register functions and call objects in process
// through the namespaces they return, or remotely through the generated
// clients at URL with Client (a real loopback port, HTTP/1.1 and h2c):
//
//	ts := durabletest.New(t)
//	counters, err := counterv1durable.RegisterCounter(ts.Server, counter.Counter{})
//	remote := counterv1durable.NewCounterClient(ts.Client(), ts.URL())
//
// Run runs a function inside an object, through its mailbox and committed
// like a call, to set up or inspect its state, storage and SQL; RunAlarm
// runs an object's alarm now, whatever its time; ObjectIDs lists the
// objects of a class that exist. Everything is real: SQLite files, the
// mailbox, group commit, the alarm scheduler, HTTP on loopback.
//
// # Time
//
// Objects read the time with time.Now, and the alarm scheduler and idle
// eviction wait with timers; none of it needs a clock of Durable's own.
// Inside a testing/synctest bubble time is fake, and it moves as soon as
// every goroutine of the bubble is blocked, so a test waits thirty minutes
// for an alarm in a few milliseconds of real time:
//
//	synctest.Test(t, func(t *testing.T) {
//		ts := durabletest.New(t, server.WithIdleTimeout(10*time.Second))
//		sessions, _ := sessionv1durable.RegisterSession(ts.Server, session.Session{})
//		s := sessions.Get(sessions.IDFromName("alice"))
//		s.Touch(ctx, &sessionv1.TouchRequest{})   // sets an alarm 30 minutes ahead
//		time.Sleep(31 * time.Minute)              // fake time: returns at once
//		synctest.Wait()                           // the alarm has run, the object left memory
//	})
//
// The server works inside a bubble when created there (New inside the
// function given to synctest.Test): its storage goroutines, the SQLite
// (WebAssembly) runtime, the mailboxes, the alarm scheduler and eviction
// all block on the bubble's channels and timers. Use the in-process
// namespaces there, not URL: a bubble has no network, and a goroutine
// waiting on a socket is not blocked in synctest's sense, so time would
// stand still. A goroutine inside a file system call is running, not
// blocked: synctest.Wait waits for SQLite's writes, and fake time does not
// move during them. TestSynctestAlarm and TestSynctestIdleEviction are the
// proof, under -race.
package durabletest
