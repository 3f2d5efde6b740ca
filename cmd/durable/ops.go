package main

// The operator's subcommands: each talks to a running server's
// durable.v1.AdminService (server.WithAdmin) at --url.

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	durablev1 "github.com/durablego/durable/gen/durable/v1"
	"github.com/durablego/durable/gen/durable/v1/durablev1connect"
)

// opsCommands are the operator's subcommands, for the table in main.go.
func opsCommands() []command {
	return []command{
		{name: "classes", summary: "list a server's classes and how many objects each stores", run: runClasses},
		{name: "ls", args: "CLASS", summary: "list the stored objects of a class", run: runLs},
		{name: "get", args: "CLASS NAME|ID", summary: "print an object's state as JSON", run: runGet},
		{name: "kv", args: "CLASS NAME|ID [list [PREFIX] | get KEY | put KEY VALUE | delete KEY]", summary: "list, read and write an object's key-value entries", run: runKV},
		{name: "sql", args: `CLASS NAME|ID "SELECT ..."`, summary: "run a read-only SQL query on an SQL object", run: runSQL},
		{name: "alarm", args: "CLASS NAME|ID [get | set TIME | delete | run]", summary: "read, set, delete or run an object's alarm", run: runAlarm},
		{name: "rm", args: "CLASS NAME|ID", summary: "delete an object entirely", run: runRm},
		{name: "backup", args: "DIR", summary: "copy a running server's data directory, consistently, into DIR", run: runBackup},
	}
}

// ops is what every operator subcommand shares: the server, the
// credentials, the output format.
type ops struct {
	url, token string
	json, id   bool
	e          *env
	admin      durablev1connect.AdminServiceClient
}

// opsFlags adds the shared flags to fs.
func opsFlags(fs *flag.FlagSet) *ops {
	o := &ops{}
	fs.StringVar(&o.url, "url", envOr("DURABLE_URL", "http://127.0.0.1:8080"), "the server's base URL ($DURABLE_URL if set)")
	// The environment is read in parse, not here: a default is printed by
	// -h, and a token must not be.
	fs.StringVar(&o.token, "token", "", "a bearer token for the server's guard (default $DURABLE_TOKEN)")
	fs.BoolVar(&o.json, "json", false, "print JSON for scripts instead of tables")
	fs.BoolVar(&o.id, "id", false, "read the object argument as an ID, never as a name")
	return o
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// parse parses args, checks that between least and most positional
// arguments remain (most < 0: no bound), and connects.
func (o *ops) parse(e *env, fs *flag.FlagSet, args []string, least, most int) ([]string, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() < least || most >= 0 && fs.NArg() > most {
		return nil, errUsage
	}
	o.e = e
	if o.token == "" {
		o.token = os.Getenv("DURABLE_TOKEN")
	}
	var interceptors []connect.Interceptor
	if o.token != "" {
		interceptors = append(interceptors, connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
				req.Header().Set("Authorization", "Bearer "+o.token)
				return next(ctx, req)
			}
		}), streamAuth(o.token))
	}
	o.admin = durablev1connect.NewAdminServiceClient(http.DefaultClient, strings.TrimRight(o.url, "/"), connect.WithInterceptors(interceptors...))
	return fs.Args(), nil
}

// streamAuth sets the bearer token on streaming calls (Backup).
type streamAuth string

func (t streamAuth) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc { return next }
func (t streamAuth) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		c := next(ctx, spec)
		c.RequestHeader().Set("Authorization", "Bearer "+string(t))
		return c
	}
}
func (t streamAuth) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// ref is the object CLASS and NAME|ID address: an ID when it is one (64
// hex digits) or --id is set, else a name.
func (o *ops) ref(class, obj string) *durablev1.ObjectRef {
	if _, err := hex.DecodeString(obj); o.id || (len(obj) == 64 && err == nil && strings.ToLower(obj) == obj) {
		return &durablev1.ObjectRef{Class: class, Ref: &durablev1.ObjectRef_Id{Id: obj}}
	}
	return &durablev1.ObjectRef{Class: class, Ref: &durablev1.ObjectRef_Name{Name: obj}}
}

// explain turns an RPC error into one that tells the operator what to do.
func (o *ops) explain(err error) error {
	var ce *connect.Error
	var ne net.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ne) || errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("cannot reach the server at %s: %w", o.url, err)
	case !errors.As(err, &ce):
		return err
	case ce.Code() == connect.CodeUnimplemented && strings.Contains(ce.Message(), "AdminService"),
		ce.Code() == connect.CodeUnimplemented && ce.Message() == "":
		return fmt.Errorf("the server at %s has no admin service: start it with server.WithAdmin (the example server: -admin)", o.url)
	case ce.Code() == connect.CodePermissionDenied, ce.Code() == connect.CodeUnauthenticated:
		return fmt.Errorf("the server at %s refused the admin call (%s): %s; pass the operator's token with --token or DURABLE_TOKEN", o.url, ce.Code(), ce.Message())
	}
	return fmt.Errorf("%s: %s", ce.Code(), ce.Message())
}

// printJSON prints m as protojson, for --json.
func (o *ops) printJSON(m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(o.e.stdout, "%s\n", b)
	return err
}

// table prints rows under header, aligned.
func (o *ops) table(header []string, rows [][]string) error {
	w := tabwriter.NewWriter(o.e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	return w.Flush()
}

func millis(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}

func runClasses(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	o := opsFlags(fs)
	if _, err := o.parse(e, fs, args, 0, 0); err != nil {
		return err
	}
	res, err := o.admin.ListClasses(ctx, connect.NewRequest(&durablev1.ListClassesRequest{}))
	if err != nil {
		return o.explain(err)
	}
	if o.json {
		return o.printJSON(res.Msg)
	}
	var rows [][]string
	for _, c := range res.Msg.GetClasses() {
		sql := "no"
		if c.GetSql() {
			sql = "yes"
		}
		rows = append(rows, []string{c.GetName(), c.GetStateMessage(), sql, fmt.Sprint(c.GetStoredObjects()), fmt.Sprint(c.GetActiveObjects()), strings.Join(c.GetHooks(), ",")})
	}
	return o.table([]string{"CLASS", "STATE", "SQL", "STORED", "ACTIVE", "HOOKS"}, rows)
}

func runLs(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	o := opsFlags(fs)
	prefix := fs.String("prefix", "", "list the objects whose name starts with it, in name order")
	limit := fs.Int("limit", 100, "list at most this many objects")
	cursor := fs.String("cursor", "", "continue a listing from the cursor it printed")
	rest, err := o.parse(e, fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *limit < 1 {
		return errUsage
	}
	out := &durablev1.ListObjectsResponse{NextCursor: *cursor}
	for len(out.Objects) < *limit {
		page, err := o.admin.ListObjects(ctx, connect.NewRequest(&durablev1.ListObjectsRequest{
			Class: rest[0], NamePrefix: *prefix, Cursor: out.NextCursor, Limit: int32(min(*limit-len(out.Objects), 1000)),
		}))
		if err != nil {
			return o.explain(err)
		}
		out.Objects = append(out.Objects, page.Msg.GetObjects()...)
		if out.NextCursor = page.Msg.GetNextCursor(); out.NextCursor == "" {
			break
		}
	}
	if o.json {
		return o.printJSON(out)
	}
	var rows [][]string
	for _, obj := range out.GetObjects() {
		alarm, active := "-", "no"
		if obj.AlarmMs != nil {
			alarm = millis(obj.GetAlarmMs())
		}
		if obj.GetActive() {
			active = "yes"
		}
		name := obj.GetName()
		if name == "" {
			name = "-"
		}
		rows = append(rows, []string{obj.GetId(), name, millis(obj.GetLastWriteMs()), fmt.Sprint(obj.GetStorageBytes()), alarm, active})
	}
	if err := o.table([]string{"ID", "NAME", "LAST WRITE", "BYTES", "ALARM", "ACTIVE"}, rows); err != nil {
		return err
	}
	if out.NextCursor != "" {
		fmt.Fprintf(e.stderr, "more: durable ls --cursor %s %s\n", out.NextCursor, rest[0])
	}
	return nil
}

func runGet(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	o := opsFlags(fs)
	rest, err := o.parse(e, fs, args, 2, 2)
	if err != nil {
		return err
	}
	res, err := o.admin.GetState(ctx, connect.NewRequest(&durablev1.GetStateRequest{Object: o.ref(rest[0], rest[1])}))
	if err != nil {
		return o.explain(err)
	}
	if o.json {
		return o.printJSON(res.Msg)
	}
	var pretty any
	if err := json.Unmarshal([]byte(res.Msg.GetJson()), &pretty); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(pretty, "", "  ")
	_, err = fmt.Fprintf(e.stdout, "%s\n", b)
	return err
}

func runKV(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	o := opsFlags(fs)
	limit := fs.Int("limit", 100, "list at most this many entries (at most 1000)")
	rest, err := o.parse(e, fs, args, 2, -1)
	if err != nil {
		return err
	}
	ref := o.ref(rest[0], rest[1])
	op := append(rest[2:], "list")[0]
	operands := rest[min(3, len(rest)):]
	switch {
	case op == "list" && len(operands) <= 1:
		prefix := ""
		if len(operands) == 1 {
			prefix = operands[0]
		}
		res, err := o.admin.ListKV(ctx, connect.NewRequest(&durablev1.ListKVRequest{Object: ref, Prefix: prefix, Limit: int32(*limit)}))
		if err != nil {
			return o.explain(err)
		}
		if o.json {
			return o.printJSON(res.Msg)
		}
		var rows [][]string
		for _, en := range res.Msg.GetEntries() {
			rows = append(rows, []string{en.GetKey(), fmt.Sprint(len(en.GetValue())), printable(en.GetValue())})
		}
		return o.table([]string{"KEY", "BYTES", "VALUE"}, rows)
	case op == "get" && len(operands) == 1:
		res, err := o.admin.GetKV(ctx, connect.NewRequest(&durablev1.GetKVRequest{Object: ref, Key: operands[0]}))
		if err != nil {
			return o.explain(err)
		}
		if o.json {
			return o.printJSON(res.Msg)
		}
		if !res.Msg.GetFound() {
			return fmt.Errorf("no key %q", operands[0])
		}
		_, err = e.stdout.Write(res.Msg.GetValue())
		return err
	case op == "put" && len(operands) == 2:
		_, err := o.admin.PutKV(ctx, connect.NewRequest(&durablev1.PutKVRequest{Object: ref, Key: operands[0], Value: []byte(operands[1])}))
		return o.explain(err)
	case op == "delete" && len(operands) == 1:
		res, err := o.admin.DeleteKV(ctx, connect.NewRequest(&durablev1.DeleteKVRequest{Object: ref, Key: operands[0]}))
		if err != nil {
			return o.explain(err)
		}
		if o.json {
			return o.printJSON(res.Msg)
		}
		if !res.Msg.GetExisted() {
			fmt.Fprintf(e.stderr, "no key %q\n", operands[0])
		}
		return nil
	}
	return errUsage
}

// printable is a value for a table: its text if it is short printable
// UTF-8, else its length's worth of hex, cut.
func printable(v []byte) string {
	s := string(v)
	if strings.ToValidUTF8(s, "\uFFFD") == s && !strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		if len(s) > 60 {
			return s[:57] + "..."
		}
		return s
	}
	h := hex.EncodeToString(v)
	if len(h) > 60 {
		h = h[:57] + "..."
	}
	return "0x" + h
}

func runSQL(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	o := opsFlags(fs)
	limit := fs.Int("limit", 1000, "return at most this many rows (at most 10000)")
	rest, err := o.parse(e, fs, args, 3, 3)
	if err != nil {
		return err
	}
	res, err := o.admin.QuerySQL(ctx, connect.NewRequest(&durablev1.QuerySQLRequest{Object: o.ref(rest[0], rest[1]), Query: rest[2], Limit: int32(*limit)}))
	if err != nil {
		return o.explain(err)
	}
	if o.json {
		return o.printJSON(res.Msg)
	}
	var rows [][]string
	for _, r := range res.Msg.GetRows() {
		var cells []string
		for _, v := range r.GetValues() {
			b, _ := protojson.Marshal(v)
			cells = append(cells, strings.Trim(string(b), `"`))
		}
		rows = append(rows, cells)
	}
	if err := o.table(res.Msg.GetColumns(), rows); err != nil {
		return err
	}
	if res.Msg.GetTruncated() {
		fmt.Fprintf(e.stderr, "more rows than --limit %d\n", *limit)
	}
	return nil
}

// alarmTime parses TIME: RFC 3339, or a duration from now ("+90s").
func alarmTime(s string) (time.Time, error) {
	if d, ok := strings.CutPrefix(s, "+"); ok {
		dd, err := time.ParseDuration(d)
		return time.Now().Add(dd), err
	}
	return time.Parse(time.RFC3339, s)
}

func runAlarm(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	o := opsFlags(fs)
	rest, err := o.parse(e, fs, args, 2, -1)
	if err != nil {
		return err
	}
	ref := o.ref(rest[0], rest[1])
	op := append(rest[2:], "get")[0]
	operands := rest[min(3, len(rest)):]
	switch {
	case op == "get" && len(operands) == 0:
		res, err := o.admin.GetAlarm(ctx, connect.NewRequest(&durablev1.GetAlarmRequest{Object: ref}))
		if err != nil {
			return o.explain(err)
		}
		if o.json {
			return o.printJSON(res.Msg)
		}
		if res.Msg.AtMs == nil {
			_, err = fmt.Fprintln(e.stdout, "no alarm")
			return err
		}
		_, err = fmt.Fprintln(e.stdout, time.UnixMilli(res.Msg.GetAtMs()).UTC().Format(time.RFC3339Nano))
		return err
	case op == "set" && len(operands) == 1:
		at, err := alarmTime(operands[0])
		if err != nil {
			return fmt.Errorf("TIME: RFC 3339 (2026-01-02T15:04:05Z) or +DURATION (+90s): %w", err)
		}
		_, err = o.admin.SetAlarm(ctx, connect.NewRequest(&durablev1.SetAlarmRequest{Object: ref, AtMs: at.UnixMilli()}))
		return o.explain(err)
	case op == "delete" && len(operands) == 0:
		_, err := o.admin.DeleteAlarm(ctx, connect.NewRequest(&durablev1.DeleteAlarmRequest{Object: ref}))
		return o.explain(err)
	case op == "run" && len(operands) == 0:
		_, err := o.admin.RunAlarm(ctx, connect.NewRequest(&durablev1.RunAlarmRequest{Object: ref}))
		return o.explain(err)
	}
	return errUsage
}

func runRm(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	o := opsFlags(fs)
	rest, err := o.parse(e, fs, args, 2, 2)
	if err != nil {
		return err
	}
	res, err := o.admin.DeleteObject(ctx, connect.NewRequest(&durablev1.DeleteObjectRequest{Object: o.ref(rest[0], rest[1])}))
	if err != nil {
		return o.explain(err)
	}
	if o.json {
		return o.printJSON(res.Msg)
	}
	if !res.Msg.GetExisted() {
		fmt.Fprintf(e.stderr, "no such object: nothing deleted\n")
	}
	return nil
}

// runBackup writes the files the server streams under DIR, which must be
// empty or absent: a directory a server can be started on (with the
// secret, which is not part of the backup: copy it yourself).
func runBackup(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	o := opsFlags(fs)
	rest, err := o.parse(e, fs, args, 1, 1)
	if err != nil {
		return err
	}
	dir := rest[0]
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is not empty: back up into a new directory", dir)
	}
	stream, err := o.admin.Backup(ctx, connect.NewRequest(&durablev1.BackupRequest{}))
	if err != nil {
		return o.explain(err)
	}
	defer stream.Close()
	var f *os.File
	var files, bytes int64
	closeFile := func() error {
		if f == nil {
			return nil
		}
		err := f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		f = nil
		return err
	}
	current := ""
	for stream.Receive() {
		msg := stream.Msg()
		if msg.GetPath() != current {
			if err := closeFile(); err != nil {
				return err
			}
			path, err := backupPath(dir, msg.GetPath())
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
				return err
			}
			if f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
				return err
			}
			current = msg.GetPath()
			files++
		}
		n, err := f.Write(msg.GetData())
		bytes += int64(n)
		if err != nil {
			return err
		}
	}
	if err := stream.Err(); err != nil {
		closeFile()
		return o.explain(err)
	}
	if err := closeFile(); err != nil {
		return err
	}
	if o.json {
		return json.NewEncoder(e.stdout).Encode(map[string]int64{"files": files, "bytes": bytes})
	}
	_, err = fmt.Fprintf(e.stdout, "backed up %d files, %d bytes, into %s\n", files, bytes, dir)
	return err
}

// backupPath is where the file the server calls rel goes under dir; a
// path that would leave dir is refused.
func backupPath(dir, rel string) (string, error) {
	if rel == "" || !filepath.IsLocal(filepath.FromSlash(rel)) {
		return "", fmt.Errorf("the server sent a file path outside the backup: %q", rel)
	}
	return filepath.Join(dir, filepath.FromSlash(rel)), nil
}
