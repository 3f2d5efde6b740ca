package server

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/durablego/durable"
	durablev1 "github.com/durablego/durable/gen/durable/v1"
	"github.com/durablego/durable/gen/durable/v1/durablev1connect"
	"github.com/durablego/durable/internal/engine"
	"github.com/durablego/durable/internal/objectkey"
	"github.com/durablego/durable/storage"
)

// WithAdmin mounts durable.v1.AdminService, the operator's service: list
// classes and stored objects, read and replace an object's state, its
// key-value entries and alarm, query an SQL object read-only, delete an
// object, back the data directory up. Default: not mounted.
//
// The admin door is shut unless the guard opens it explicitly: without
// WithGuard every admin call is refused (PermissionDenied), and a guard
// must return AllowAdmin for an Access of kind AccessAdmin to let it
// through. A guard's nil is not enough, so that a guard written to let
// every authenticated user call objects does not also hand them the
// operator's powers.
func WithAdmin() Option { return func(o *options) { o.admin = true } }

// AllowAdmin is what a Guard returns to let a call of the admin service
// through (see WithAdmin). Returned for any other kind, it allows that
// request as nil does.
var AllowAdmin = errors.New("server: the guard allows the admin service")

// errAdminNoGuard and errAdminNotAllowed refuse admin calls that no guard
// allowed explicitly.
var (
	errAdminNoGuard    = errors.New("the admin service needs a guard that allows it: server.WithGuard returning server.AllowAdmin for server.AccessAdmin")
	errAdminNotAllowed = errors.New("the guard did not allow the admin service (it must return server.AllowAdmin for server.AccessAdmin)")
)

// adminAllows reports whether the guard lets err through: AllowAdmin
// allows every door, nil every door but the admin one.
func adminAllows(kind AccessKind, err error) error {
	switch {
	case errors.Is(err, AllowAdmin):
		return nil
	case err == nil && kind == AccessAdmin:
		return errAdminNotAllowed
	}
	return err
}

// mountAdmin mounts the admin service behind its door.
func (s *Server) mountAdmin() {
	path, h := durablev1connect.NewAdminServiceHandler(&adminService{srv: s}, s.opts.handlerOptions...)
	errs := connect.NewErrorWriter(s.opts.handlerOptions...)
	door := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := errAdminNoGuard
		if s.opts.guard != nil {
			a := &Access{Kind: AccessAdmin, Method: r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:], Path: r.URL.Path, Request: r}
			err = adminAllows(AccessAdmin, s.opts.guard(r.Context(), a))
		}
		if err != nil {
			errs.Write(w, r, deniedError(err))
			return
		}
		h.ServeHTTP(w, r)
	})
	s.mux.Handle(path, capRPCBody(door, s.opts.net.maxRPCMessage))
	s.services = append(s.services, durablev1connect.AdminServiceName)
}

// adminClass is what the admin service needs of a class, whatever its
// state type.
type adminClass interface {
	stateType() protoreflect.MessageType
	hookNames() []string
	isActive(raw [32]byte) bool
	// adminCall runs fn on the object through its mailbox, as a call:
	// never beside another, its writes committed atomically when fn
	// returns nil and the state it leaves is valid, undone otherwise.
	adminCall(ctx context.Context, id durable.ID, fn func(ctx context.Context, o *adminObject) error) error
	runAlarmNow(ctx context.Context, id durable.ID) (bool, error) // run.go
	outOfMemory(ctx context.Context, raw [32]byte, fn func() error) error
}

// adminObject is an object as an admin call sees it.
type adminObject struct {
	ID      durable.ID
	State   proto.Message // replace it to replace the state
	Storage *engine.KV
	SQL     *engine.SQL
	// forget deletes the object entirely as part of the call.
	forget func(ctx context.Context) error
}

func (n *Namespace[S]) stateType() protoreflect.MessageType {
	return n.newState().ProtoReflect().Type()
}

func (n *Namespace[S]) hookNames() []string {
	var out []string
	for _, h := range []struct {
		name string
		has  bool
	}{{"Init", n.init != nil}, {"Alarm", n.alarm != nil}, {"Fetch", n.fetcher != nil},
		{"WebSocketMessage", n.wsMessage != nil}, {"WebSocketClose", n.wsClose != nil}, {"WebSocketError", n.wsError != nil}} {
		if h.has {
			out = append(out, h.name)
		}
	}
	return out
}

func (n *Namespace[S]) isActive(raw [32]byte) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.actors[raw] != nil
}

// adminCall runs fn as a call of the object, through Run: the one way
// into a mailbox of in-process callers.
func (n *Namespace[S]) adminCall(ctx context.Context, id durable.ID, fn func(ctx context.Context, o *adminObject) error) error {
	_, key, err := n.resolve(id)
	if err != nil {
		return kindError(err)
	}
	return Run(ctx, n.srv, id, func(ctx context.Context, o *durable.Object[S]) error {
		ao := &adminObject{ID: o.ID, State: o.State, Storage: (*engine.KV)(o.Storage), SQL: (*engine.SQL)(o.SQL),
			forget: func(ctx context.Context) error { return n.forget(ctx, key, o) }}
		before := ao.State
		if err := fn(ctx, ao); err != nil {
			return err
		}
		if s, ok := ao.State.(S); ok && ao.State != before {
			o.State = s
		}
		return nil
	})
}

// forget deletes the object key entirely from inside a call on it: its
// sockets are closed (code 4000), its storage wiped, its state reset, and
// the next batch reloads it, so that the next call finds a new object
// (Init runs again). The calls behind it in the same batch run on the
// blank object, without Init.
func (n *Namespace[S]) forget(ctx context.Context, key objectkey.Key, o *durable.Object[S]) error {
	n.mu.RLock()
	a := n.actors[key.ID]
	n.mu.RUnlock()
	for _, ws := range o.Sockets.All() {
		ws.Close(4000, "object deleted by an operator")
	}
	if !n.class.SQL {
		// Wiped before the batch's own writes, in its transaction.
		if err := o.Storage.DeleteAll(ctx); err != nil {
			return err
		}
		a.store.Forget()
	} else {
		// The file goes with the batch's open transaction, which holds
		// only writes the deletion erases anyway.
		if err := a.store.Close(); err != nil {
			return err
		}
		if err := n.srv.ownDB.RemoveSQLFile(key.Class, key.ID); err != nil {
			return err
		}
		if err := n.srv.ownDB.DeleteObject(ctx, key.Class, key.ID); err != nil {
			return err
		}
		store, err := n.openStore(a)
		if err != nil {
			return err
		}
		a.store, o.Storage, o.SQL = store, (*storage.KV)(store.KV), (*storage.SQL)(store.SQL)
		if err := store.BeginCall(); err != nil { // the call's, which runBatch ends
			return err
		}
	}
	o.State = n.newState()
	a.last = nil // a blank state is no write: nothing is stored again
	// No catalog entry either, unless a later call of the batch writes.
	a.cat = catalogState{known: true, name: o.ID.Name(), written: time.Now().UnixMilli()}
	a.reload = true // the next batch finds a new object: Init runs
	return nil
}

// adminService implements durable.v1.AdminService.
type adminService struct{ srv *Server }

const (
	defaultAdminPage = 100
	maxAdminPage     = 1000
	defaultSQLRows   = 1000
	maxSQLRows       = 10_000
	maxKVPageBytes   = 1 << 20
)

func pageLimit(n int32, def, most int) int {
	if n <= 0 {
		return def
	}
	return min(int(n), most)
}

func (s *adminService) class(name string) (registeredClass, error) {
	ns, err := s.srv.lookup(name)
	if err != nil {
		return nil, kindError(err)
	}
	return ns, nil
}

// object resolves ref to its class and ID.
func (s *adminService) object(ref *durablev1.ObjectRef) (registeredClass, durable.ID, error) {
	ns, err := s.class(ref.GetClass())
	if err != nil {
		return nil, durable.ID{}, err
	}
	switch r := ref.GetRef().(type) {
	case *durablev1.ObjectRef_Name:
		return ns, ns.ids().FromName(r.Name), nil
	case *durablev1.ObjectRef_Id:
		id, err := ns.ids().FromString(r.Id)
		if err != nil {
			return nil, durable.ID{}, kindError(err)
		}
		return ns, id, nil
	}
	return nil, durable.ID{}, connect.NewError(connect.CodeInvalidArgument, errors.New("object: set name or id"))
}

// existing is object, refusing an object that is neither stored nor in
// memory, so that reading does not create one.
func (s *adminService) existing(ctx context.Context, ref *durablev1.ObjectRef) (registeredClass, durable.ID, error) {
	ns, id, err := s.object(ref)
	if err != nil {
		return nil, id, err
	}
	if ns.isActive(id.Bytes()) {
		return ns, id, nil
	}
	if _, found, err := s.srv.ownDB.CatalogEntry(ctx, ns.Class().Name, id.Bytes()); err != nil {
		return nil, id, connect.NewError(connect.CodeInternal, err)
	} else if !found {
		return nil, id, connect.NewError(connect.CodeNotFound, fmt.Errorf("no %s object %s is stored", ns.Class().Name, describe(id)))
	}
	return ns, id, nil
}

func describe(id durable.ID) string {
	if id.Name() != "" {
		return fmt.Sprintf("named %q", id.Name())
	}
	return id.String()
}

// call runs fn through the object's mailbox and maps its error as a
// call's.
func (s *adminService) call(ctx context.Context, method string, ns registeredClass, id durable.ID, fn func(ctx context.Context, o *adminObject) error) error {
	if err := ns.adminCall(ctx, id, fn); err != nil {
		return s.srv.toConnectError(ctx, err, ns.Class().Name, "Admin."+method, id)
	}
	return nil
}

func (s *adminService) ListClasses(ctx context.Context, _ *connect.Request[durablev1.ListClassesRequest]) (*connect.Response[durablev1.ListClassesResponse], error) {
	res := &durablev1.ListClassesResponse{}
	for _, name := range s.srv.Classes() {
		ns, err := s.class(name)
		if err != nil {
			continue // unregistered meanwhile: cannot happen today
		}
		count, err := s.srv.ownDB.CountCatalog(ctx, name)
		if err != nil {
			return nil, connect.NewError(connect.CodeInternal, err)
		}
		active, _, _ := ns.mailboxes()
		c := ns.Class()
		res.Classes = append(res.Classes, &durablev1.ClassInfo{
			Name: c.Name, Service: c.Service, Sql: c.SQL,
			StateMessage:  string(ns.stateType().Descriptor().FullName()),
			Hooks:         ns.hookNames(),
			StoredObjects: count, ActiveObjects: int64(active),
		})
	}
	return connect.NewResponse(res), nil
}

// Cursors of ListObjects: the last ID in hex, or, with a name prefix, the
// last name in base64url, a dot and the last ID.
func encodeCursor(e engine.CatalogEntry, byName bool) string {
	id := hex.EncodeToString(e.ID[:])
	if !byName {
		return id
	}
	return base64.RawURLEncoding.EncodeToString([]byte(e.Name)) + "." + id
}

func decodeCursor(c string, byName bool) (engine.CatalogEntry, error) {
	var e engine.CatalogEntry
	if c == "" {
		return e, nil
	}
	idPart := c
	if byName {
		name, rest, ok := strings.Cut(c, ".")
		b, err := base64.RawURLEncoding.DecodeString(name)
		if !ok || err != nil {
			return e, connect.NewError(connect.CodeInvalidArgument, errors.New("cursor: not one of ListObjects with this name_prefix"))
		}
		e.Name, idPart = string(b), rest
	}
	raw, err := hex.DecodeString(idPart)
	if err != nil || len(raw) != len(e.ID) {
		return e, connect.NewError(connect.CodeInvalidArgument, errors.New("cursor: not one of ListObjects"))
	}
	copy(e.ID[:], raw)
	return e, nil
}

func (s *adminService) ListObjects(ctx context.Context, req *connect.Request[durablev1.ListObjectsRequest]) (*connect.Response[durablev1.ListObjectsResponse], error) {
	ns, err := s.class(req.Msg.GetClass())
	if err != nil {
		return nil, err
	}
	byName := req.Msg.GetNamePrefix() != ""
	after, err := decodeCursor(req.Msg.GetCursor(), byName)
	if err != nil {
		return nil, err
	}
	limit := pageLimit(req.Msg.GetLimit(), defaultAdminPage, maxAdminPage)
	class := ns.Class()
	// One more than the page tells whether there is a next one.
	entries, err := s.srv.ownDB.ListCatalog(ctx, class.Name, engine.CatalogListOptions{NamePrefix: req.Msg.GetNamePrefix(), After: after, Limit: limit + 1})
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	res := &durablev1.ListObjectsResponse{}
	if len(entries) > limit {
		entries = entries[:limit]
		res.NextCursor = encodeCursor(entries[len(entries)-1], byName)
	}
	for _, e := range entries {
		info := &durablev1.ObjectInfo{
			Id:           durable.IDFromBytes(class.Name, e.ID, e.Name).String(),
			Name:         e.Name,
			LastWriteMs:  e.Written,
			StorageBytes: e.Size,
			Active:       ns.isActive(e.ID),
		}
		if class.SQL {
			if st, err := os.Stat(s.srv.ownDB.SQLPath(class.Name, e.ID)); err == nil {
				info.StorageBytes = st.Size()
			}
		}
		if e.HasAlarm {
			info.AlarmMs = &e.Alarm
		}
		res.Objects = append(res.Objects, info)
	}
	return connect.NewResponse(res), nil
}

func (s *adminService) GetState(ctx context.Context, req *connect.Request[durablev1.GetStateRequest]) (*connect.Response[durablev1.GetStateResponse], error) {
	ns, id, err := s.existing(ctx, req.Msg.GetObject())
	if err != nil {
		return nil, err
	}
	var enc []byte
	err = s.call(ctx, "GetState", ns, id, func(_ context.Context, o *adminObject) error {
		enc, err = protojson.Marshal(o.State)
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&durablev1.GetStateResponse{Json: string(enc), Type: string(ns.stateType().Descriptor().FullName()), Id: id.String()}), nil
}

func (s *adminService) ReplaceState(ctx context.Context, req *connect.Request[durablev1.ReplaceStateRequest]) (*connect.Response[durablev1.ReplaceStateResponse], error) {
	ns, id, err := s.object(req.Msg.GetObject())
	if err != nil {
		return nil, err
	}
	state := ns.stateType().New().Interface()
	if err := protojson.Unmarshal([]byte(req.Msg.GetJson()), state); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("json is not a %s: %w", state.ProtoReflect().Descriptor().FullName(), err))
	}
	var enc []byte
	err = s.call(ctx, "ReplaceState", ns, id, func(_ context.Context, o *adminObject) error {
		o.State = state // validated after the call, as any call's state
		enc, err = protojson.Marshal(state)
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&durablev1.ReplaceStateResponse{Json: string(enc)}), nil
}

func (s *adminService) ListKV(ctx context.Context, req *connect.Request[durablev1.ListKVRequest]) (*connect.Response[durablev1.ListKVResponse], error) {
	ns, id, err := s.existing(ctx, req.Msg.GetObject())
	if err != nil {
		return nil, err
	}
	res := &durablev1.ListKVResponse{}
	err = s.call(ctx, "ListKV", ns, id, func(ctx context.Context, o *adminObject) error {
		entries, err := o.Storage.List(ctx, engine.ListOptions{Prefix: req.Msg.GetPrefix(), StartAfter: req.Msg.GetStartAfter(),
			Limit: pageLimit(req.Msg.GetLimit(), defaultAdminPage, maxAdminPage)})
		size := 0
		for _, e := range entries {
			// A page of 1,000 values of 128 KiB would pass every message
			// limit: the page ends past maxKVPageBytes (at least one entry).
			if size += len(e.Key) + len(e.Value); size > maxKVPageBytes && len(res.Entries) > 0 {
				break
			}
			res.Entries = append(res.Entries, &durablev1.KVEntry{Key: e.Key, Value: e.Value})
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(res), nil
}

func (s *adminService) GetKV(ctx context.Context, req *connect.Request[durablev1.GetKVRequest]) (*connect.Response[durablev1.GetKVResponse], error) {
	ns, id, err := s.existing(ctx, req.Msg.GetObject())
	if err != nil {
		return nil, err
	}
	res := &durablev1.GetKVResponse{}
	err = s.call(ctx, "GetKV", ns, id, func(ctx context.Context, o *adminObject) error {
		res.Value, res.Found, err = o.Storage.Get(ctx, req.Msg.GetKey())
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(res), nil
}

func (s *adminService) PutKV(ctx context.Context, req *connect.Request[durablev1.PutKVRequest]) (*connect.Response[durablev1.PutKVResponse], error) {
	ns, id, err := s.object(req.Msg.GetObject())
	if err != nil {
		return nil, err
	}
	err = s.call(ctx, "PutKV", ns, id, func(ctx context.Context, o *adminObject) error {
		return o.Storage.Put(ctx, req.Msg.GetKey(), req.Msg.GetValue())
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&durablev1.PutKVResponse{}), nil
}

func (s *adminService) DeleteKV(ctx context.Context, req *connect.Request[durablev1.DeleteKVRequest]) (*connect.Response[durablev1.DeleteKVResponse], error) {
	ns, id, err := s.existing(ctx, req.Msg.GetObject())
	if err != nil {
		return nil, err
	}
	res := &durablev1.DeleteKVResponse{}
	err = s.call(ctx, "DeleteKV", ns, id, func(ctx context.Context, o *adminObject) error {
		res.Existed, err = o.Storage.Delete(ctx, req.Msg.GetKey())
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(res), nil
}

func (s *adminService) QuerySQL(ctx context.Context, req *connect.Request[durablev1.QuerySQLRequest]) (*connect.Response[durablev1.QuerySQLResponse], error) {
	ns, id, err := s.existing(ctx, req.Msg.GetObject())
	if err != nil {
		return nil, err
	}
	if !ns.Class().SQL {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("class %s has no SQL database", ns.Class().Name))
	}
	limit := pageLimit(req.Msg.GetLimit(), defaultSQLRows, maxSQLRows)
	res := &durablev1.QuerySQLResponse{}
	err = s.call(ctx, "QuerySQL", ns, id, func(ctx context.Context, o *adminObject) error {
		cur, err := o.SQL.Query(ctx, req.Msg.GetQuery())
		if err != nil {
			return err
		}
		res.Columns = cur.Columns()
		for cur.Next() {
			if len(res.Rows) == limit {
				res.Truncated = true
				break
			}
			row := &durablev1.SQLRow{}
			for _, v := range cur.Values() {
				row.Values = append(row.Values, sqlValue(v))
			}
			res.Rows = append(res.Rows, row)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(res), nil
}

// sqlValue is an SQL value as JSON: a blob is base64, an integer a number
// (exact up to 2^53).
func sqlValue(v any) *structpb.Value {
	switch v := v.(type) {
	case nil:
		return structpb.NewNullValue()
	case int64:
		return structpb.NewNumberValue(float64(v))
	case float64:
		return structpb.NewNumberValue(v)
	case string:
		return structpb.NewStringValue(v)
	case []byte:
		return structpb.NewStringValue(base64.StdEncoding.EncodeToString(v))
	}
	return structpb.NewStringValue(fmt.Sprint(v))
}

func (s *adminService) GetAlarm(ctx context.Context, req *connect.Request[durablev1.GetAlarmRequest]) (*connect.Response[durablev1.GetAlarmResponse], error) {
	ns, id, err := s.existing(ctx, req.Msg.GetObject())
	if err != nil {
		return nil, err
	}
	res := &durablev1.GetAlarmResponse{}
	err = s.call(ctx, "GetAlarm", ns, id, func(ctx context.Context, o *adminObject) error {
		at, ok, err := o.Storage.GetAlarm(ctx)
		if ok {
			ms := at.UnixMilli()
			res.AtMs = &ms
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(res), nil
}

func (s *adminService) SetAlarm(ctx context.Context, req *connect.Request[durablev1.SetAlarmRequest]) (*connect.Response[durablev1.SetAlarmResponse], error) {
	ns, id, err := s.object(req.Msg.GetObject())
	if err != nil {
		return nil, err
	}
	err = s.call(ctx, "SetAlarm", ns, id, func(ctx context.Context, o *adminObject) error {
		return o.Storage.SetAlarm(ctx, time.UnixMilli(req.Msg.GetAtMs()))
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&durablev1.SetAlarmResponse{}), nil
}

func (s *adminService) DeleteAlarm(ctx context.Context, req *connect.Request[durablev1.DeleteAlarmRequest]) (*connect.Response[durablev1.DeleteAlarmResponse], error) {
	ns, id, err := s.existing(ctx, req.Msg.GetObject())
	if err != nil {
		return nil, err
	}
	err = s.call(ctx, "DeleteAlarm", ns, id, func(ctx context.Context, o *adminObject) error {
		return o.Storage.DeleteAlarm(ctx)
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&durablev1.DeleteAlarmResponse{}), nil
}

func (s *adminService) RunAlarm(ctx context.Context, req *connect.Request[durablev1.RunAlarmRequest]) (*connect.Response[durablev1.RunAlarmResponse], error) {
	ns, id, err := s.existing(ctx, req.Msg.GetObject())
	if err != nil {
		return nil, err
	}
	ran, err := ns.runAlarmNow(ctx, id)
	if err != nil {
		return nil, s.srv.toConnectError(ctx, err, ns.Class().Name, "Admin.RunAlarm", id)
	}
	if !ran {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("the %s object %s has no alarm to run: set one first", ns.Class().Name, describe(id)))
	}
	return connect.NewResponse(&durablev1.RunAlarmResponse{}), nil
}

func (s *adminService) DeleteObject(ctx context.Context, req *connect.Request[durablev1.DeleteObjectRequest]) (*connect.Response[durablev1.DeleteObjectResponse], error) {
	ns, id, err := s.object(req.Msg.GetObject())
	if err != nil {
		return nil, err
	}
	_, stored, err := s.srv.ownDB.CatalogEntry(ctx, ns.Class().Name, id.Bytes())
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	if !stored && !ns.isActive(id.Bytes()) {
		return connect.NewResponse(&durablev1.DeleteObjectResponse{}), nil
	}
	// In memory but never stored, it may still hold sockets to close.
	err = s.call(ctx, "DeleteObject", ns, id, func(ctx context.Context, o *adminObject) error {
		return o.forget(ctx)
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&durablev1.DeleteObjectResponse{Existed: stored}), nil
}
