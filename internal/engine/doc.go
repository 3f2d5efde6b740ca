// Package engine persists the objects of a Durable server in embedded
// SQLite (github.com/ncruces/go-sqlite3).
//
// # Layout
//
// Opening an SQLite file costs milliseconds and hundreds of kilobytes, and a
// commit tens of microseconds, so a file per object with a commit per call
// could reach neither fast cold activation nor tens of thousands of
// persisted calls a second. A node therefore keeps the state of all objects
// of classes without SQL in one database, [DB], whose single writer
// goroutine commits the writes of many calls, of many objects, in one
// transaction (group commit); reads go through a small pool of read-only
// connections, which WAL mode lets run beside the writer.
//
// # New objects
//
// An object exists once it stores something, as on Cloudflare. What the
// server's Init hook writes is held in memory (Store.Initialized) and
// committed with the first batch that writes anything else; an object that
// is only read leaves no row. A new SQL object's database is opened in
// memory (no file, no descriptor) and written to disk by its first write,
// whole: its bytes into a new file (one a FilePool made ahead, if any), then
// a rename, so a crash leaves either no file or a complete one. Open databases on disk can
// be bounded with a FileLimiter.
//
// # Durability
//
// A [Batch] is acknowledged only after its transaction has committed, and
// the server answers a call only after the batch holding its writes is
// acknowledged: the output gate. With the default [CrashSafe] durability
// (WAL, synchronous=NORMAL) an acknowledged write survives the process
// being killed; [PowerSafe] (synchronous=FULL) also survives power loss, at
// the price of an fsync per commit.
package engine
