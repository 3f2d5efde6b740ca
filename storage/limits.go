package storage

import "github.com/durablego/durable/internal/engine"

// Limits on key-value storage, as Cloudflare sets them.
const (
	// MaxKeySize is the largest key, in bytes of UTF-8, of a class without
	// SQL.
	MaxKeySize = engine.MaxKeySize
	// MaxValueSize is the largest value, in bytes, of a class without SQL.
	MaxValueSize = engine.MaxValueSize
	// MaxSQLEntrySize is the largest key and value together, in bytes, of
	// a class with SQL, which has no other limit on keys or values.
	MaxSQLEntrySize = engine.MaxSQLEntrySize
	// MaxKeysPerCall is the most keys one GetMany, PutMany or DeleteMany
	// call takes.
	MaxKeysPerCall = engine.MaxKeysPerCall
	// DefaultMaxSQLSize is the default cap on an object's SQL database
	// (server.WithMaxSQLSize sets another).
	DefaultMaxSQLSize = engine.DefaultMaxSQLSize
)

// Limits on an object's SQL, Cloudflare's, applied as its runtime applies
// them. A statement over one fails with an error matching ErrSQLLimit.
const (
	// MaxSQLStatementSize is the longest statement, in bytes.
	MaxSQLStatementSize = engine.MaxSQLStatementSize
	// MaxSQLColumns is the most columns of a table, an index, a result or
	// an ORDER BY or GROUP BY.
	MaxSQLColumns = engine.MaxSQLColumns
	// MaxSQLParameters is the most bound parameters of a statement.
	MaxSQLParameters = engine.MaxSQLParameters
	// MaxSQLPatternSize is the longest LIKE or GLOB pattern, in bytes.
	MaxSQLPatternSize = engine.MaxSQLPatternSize
	// MaxSQLCompoundTerms is the most SELECTs a compound SELECT joins.
	MaxSQLCompoundTerms = engine.MaxSQLCompoundTerms
	// MaxSQLValueSize is the largest string, blob or table row the
	// object's SQL may make, in bytes.
	MaxSQLValueSize = engine.MaxSQLValueSize
	// DefaultMaxResultSize is the cap on the rows one Exec returns, in
	// bytes of their values.
	DefaultMaxResultSize = engine.DefaultMaxResultSize
)

// Durability chooses what an acknowledged write survives
// (server.WithDurability).
type Durability int

const (
	// CrashSafe writes survive the process being killed (WAL with
	// synchronous=NORMAL). The default.
	CrashSafe Durability = Durability(engine.CrashSafe)
	// PowerSafe writes also survive power loss or an OS crash
	// (synchronous=FULL: an fsync per commit).
	PowerSafe Durability = Durability(engine.PowerSafe)
)
