package server_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"

	"github.com/durablego/durable"
	"github.com/durablego/durable/client"
	durabletestv1 "github.com/durablego/durable/gen/durabletest/v1"
	"github.com/durablego/durable/gen/durabletest/v1/durabletestv1durable"
	"github.com/durablego/durable/internal/probe"
)

// TestSQLObjectDeleteAllAndLimitsRemotely: through a real server and a
// remote client, DeleteAll of an object with SQL deletes its rows and
// tables with its keys (the state stays), and a statement over one of
// Cloudflare's SQL limits fails the call with InvalidArgument, undoing it.
func TestSQLObjectDeleteAllAndLimitsRemotely(t *testing.T) {
	e := newEnv(t)
	var action atomic.Pointer[string]
	none := ""
	action.Store(&none)
	_, err := durabletestv1durable.RegisterLedger(e.srv, probe.Ledger{OnRecord: func(ctx context.Context, o *durabletestv1durable.LedgerObject) error {
		switch *action.Load() {
		case "wipe":
			if err := o.Storage.DeleteAll(ctx); err != nil {
				return err
			}
			// Gone with the database: what Init made.
			if _, err := o.SQL.Exec(ctx, `SELECT count(*) FROM entries`); err == nil || !strings.Contains(err.Error(), "no such table") {
				return errors.New("the table survived DeleteAll")
			}
			_, err := o.SQL.Exec(ctx, `CREATE TABLE entries (key TEXT PRIMARY KEY)`)
			return err
		case "limit":
			_, err := o.SQL.Exec(ctx, `SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5 UNION SELECT 6`)
			return err
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	e.serve(t)
	ctx := context.Background()
	for _, p := range protocols {
		ledgers := durabletestv1durable.NewLedgerClient(h2cClient(), e.url, client.WithClientOptions(p.opts...))
		l := ledgers.Get(ledgers.IDFromName("wiped-" + p.name))
		record := func(key, what string) error {
			action.Store(&what)
			defer action.Store(&none)
			_, err := l.Record(ctx, &durabletestv1.RecordRequest{Key: key})
			return err
		}
		readAll := func() *durabletestv1.ReadResponse {
			t.Helper()
			r, err := l.Read(ctx, &durabletestv1.ReadRequest{})
			if err != nil {
				t.Fatalf("%s: Read: %v", p.name, err)
			}
			return r
		}
		for _, k := range []string{"a", "b"} {
			if err := record(k, ""); err != nil {
				t.Fatalf("%s: Record %s: %v", p.name, k, err)
			}
		}
		err := record("c", "limit")
		var rpc *durable.RPCError
		if !errors.As(err, &rpc) || rpc.Code != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "compound SELECT") {
			t.Errorf("%s: a compound SELECT of 6 terms: %v, want InvalidArgument naming the limit", p.name, err)
		}
		if r := readAll(); !slices.Equal(r.GetRows(), []string{"a", "b"}) || !slices.Equal(r.GetKeys(), []string{"a", "b"}) {
			t.Errorf("%s: after the refused call: rows %v, keys %v", p.name, r.GetRows(), r.GetKeys())
		}
		if err := record("w", "wipe"); err != nil {
			t.Fatalf("%s: Record with DeleteAll: %v", p.name, err)
		}
		if r := readAll(); len(r.GetRows()) != 0 || len(r.GetKeys()) != 0 || r.GetState().GetEntries() != 3 {
			t.Errorf("%s: after DeleteAll: rows %v, keys %v, entries %d; want nothing but the state's 3", p.name, r.GetRows(), r.GetKeys(), r.GetState().GetEntries())
		}
	}
}
