// Package storage is an object's storage, as its methods see it: the
// key-value API (KV, Cloudflare's ctx.storage), the SQL API (SQL and
// Cursor, Cloudflare's ctx.storage.sql), the object's alarm, and the typed
// helpers GetProto, PutProto, GetJSON and PutJSON.
//
// A method reaches them as o.Storage and o.SQL of its durable.Object; they
// are valid only during the call they were passed to. A call reads its own
// writes, and its writes (state, key-value entries, SQL rows and the
// alarm) commit together when it succeeds, or not at all: the server
// answers the call only once they are durable (the output gate), and
// rolls them back when it fails. Transaction groups writes inside a call
// that must succeed or fail together.
//
// The limits (MaxKeySize, MaxValueSize, MaxSQLStatementSize, …) are
// Cloudflare's. Errors caused by what the caller asked match ErrInvalid;
// the others say what the storage could not do. Where the bytes live (one
// SQLite database per node, a file per SQL object, or etcd in cluster
// mode) is the server's business, not the object's.
package storage
