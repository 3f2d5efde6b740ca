package storage_test

// An object's storage is reached from its methods, as o.Storage and o.SQL.
// These examples reach it with server.Run, which runs a function inside an
// object as one of its calls, so that each example is one function; a
// method's body would read the same.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/durablego/durable/examples/counter"
	"github.com/durablego/durable/examples/document"
	"github.com/durablego/durable/gen/examples/counter/v1/counterv1durable"
	"github.com/durablego/durable/gen/examples/document/v1/documentv1durable"
	"github.com/durablego/durable/server"
	"github.com/durablego/durable/storage"
)

// openServer returns a server on a temporary directory with the Counter
// class and the Document class (declared with sql: true), and how to close
// it.
func openServer() (*server.Server, *counterv1durable.CounterNamespace, *documentv1durable.DocumentNamespace, func()) {
	dir, _ := os.MkdirTemp("", "durable-example")
	srv, err := server.New(server.WithDataDir(dir))
	if err != nil {
		panic(err)
	}
	counters, err := counterv1durable.RegisterCounter(srv, counter.Counter{})
	if err != nil {
		panic(err)
	}
	documents, err := documentv1durable.RegisterDocument(srv, document.Document{})
	if err != nil {
		panic(err)
	}
	return srv, counters, documents, func() {
		srv.Shutdown(context.Background())
		os.RemoveAll(dir)
	}
}

// Put and Get: a call reads its own writes, which commit when it returns
// nil, with the object's state; later calls see them.
func ExampleKV() {
	srv, counters, _, stop := openServer()
	defer stop()
	ctx := context.Background()
	id := counters.IDFromName("user-123")

	server.Run(ctx, srv, id, func(ctx context.Context, o *counterv1durable.CounterObject) error {
		if err := o.Storage.Put(ctx, "greeting", []byte("hello")); err != nil {
			return err
		}
		v, ok, err := o.Storage.Get(ctx, "greeting")
		fmt.Println(string(v), ok, err)
		return nil
	})
	server.Run(ctx, srv, id, func(ctx context.Context, o *counterv1durable.CounterObject) error {
		v, ok, _ := o.Storage.Get(ctx, "greeting")
		_, missing, _ := o.Storage.Get(ctx, "farewell")
		fmt.Println(string(v), ok, missing)
		return nil
	})
	// Output:
	// hello true <nil>
	// hello true false
}

// List returns entries in key order: those with a prefix, from a key on, at
// most a number of them, or the other way round.
func ExampleKV_List() {
	srv, counters, _, stop := openServer()
	defer stop()
	server.Run(context.Background(), srv, counters.IDFromName("user-123"), func(ctx context.Context, o *counterv1durable.CounterObject) error {
		o.Storage.PutMany(ctx, map[string][]byte{
			"item:apple": []byte("3"), "item:banana": []byte("5"), "item:cherry": []byte("7"), "note": []byte("x"),
		})
		for _, opts := range []storage.ListOptions{
			{Prefix: "item:"},
			{Prefix: "item:", StartAfter: "item:apple", Limit: 1},
			{Prefix: "item:", Reverse: true, Limit: 2},
		} {
			entries, err := o.Storage.List(ctx, opts)
			if err != nil {
				return err
			}
			var listed []string
			for _, e := range entries {
				listed = append(listed, e.Key+"="+string(e.Value))
			}
			fmt.Println(strings.Join(listed, " "))
		}
		return nil
	})
	// Output:
	// item:apple=3 item:banana=5 item:cherry=7
	// item:banana=5
	// item:cherry=7 item:banana=5
}

// A Transaction undoes part of a call: its writes are kept when its
// function returns nil and undone when it returns an error, while the rest
// of the call's writes stay.
func ExampleKV_Transaction() {
	srv, counters, _, stop := openServer()
	defer stop()
	ctx := context.Background()
	id := counters.IDFromName("user-123")
	errInsufficient := errors.New("insufficient balance")

	server.Run(ctx, srv, id, func(ctx context.Context, o *counterv1durable.CounterObject) error {
		storage.PutJSON(ctx, o.Storage, "balance", 10)
		err := o.Storage.Transaction(ctx, func(tx *storage.KV) error {
			balance, _, _ := storage.GetJSON[int](ctx, tx, "balance")
			storage.PutJSON(ctx, tx, "balance", balance-25)
			if balance < 25 {
				return errInsufficient // undoes the Put above
			}
			return nil
		})
		fmt.Println(errors.Is(err, errInsufficient))
		return o.Storage.Put(ctx, "last-attempt", []byte("refused"))
	})
	server.Run(ctx, srv, id, func(ctx context.Context, o *counterv1durable.CounterObject) error {
		balance, _, _ := storage.GetJSON[int](ctx, o.Storage, "balance")
		last, _, _ := o.Storage.Get(ctx, "last-attempt")
		fmt.Println(balance, string(last))
		return nil
	})
	// Output:
	// true
	// 10 refused
}

// An object of a class declared with sql: true has an SQLite database of
// its own. Its statements commit with the call's other writes.
func ExampleSQL_Exec() {
	srv, _, documents, stop := openServer()
	defer stop()
	server.Run(context.Background(), srv, documents.IDFromName("readme"), func(ctx context.Context, o *documentv1durable.DocumentObject) error {
		_, err := o.SQL.Exec(ctx, `
			CREATE TABLE IF NOT EXISTS comments (id INTEGER PRIMARY KEY, author TEXT, body TEXT);
			INSERT INTO comments (author, body) VALUES (?, ?)`, "alice", "Looks good")
		if err != nil {
			return err
		}
		o.SQL.Exec(ctx, `INSERT INTO comments (author, body) VALUES (?, ?)`, "bob", "Ship it")

		rows, err := o.SQL.Exec(ctx, `SELECT id, author, body FROM comments ORDER BY id`)
		if err != nil {
			return err
		}
		for _, row := range rows.All() {
			fmt.Println(row)
		}

		var n int64
		count, _ := o.SQL.Exec(ctx, `SELECT count(*) FROM comments WHERE author = ?`, "bob")
		for count.Next() {
			count.Scan(&n)
		}
		fmt.Println(n)
		return nil
	})
	// Output:
	// map[author:alice body:Looks good id:1]
	// map[author:bob body:Ship it id:2]
	// 1
}
