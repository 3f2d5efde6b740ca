package preferences_test

import (
	"context"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/durablego/durable/examples/internal/exampletest"
	"github.com/durablego/durable/examples/preferences"
	preferencesv1 "github.com/durablego/durable/gen/examples/preferences/v1"
	"github.com/durablego/durable/gen/examples/preferences/v1/preferencesv1durable"
)

var ctx = context.Background()

func start(t *testing.T, dir string) (*exampletest.Server, *preferencesv1durable.PreferencesNamespace) {
	t.Helper()
	srv := exampletest.Start(t, dir)
	ns, err := preferencesv1durable.RegisterPreferences(srv.Server, preferences.Preferences{})
	if err != nil {
		t.Fatal(err)
	}
	return srv, ns
}

func value(t *testing.T, v any) *structpb.Value {
	t.Helper()
	pv, err := structpb.NewValue(v)
	if err != nil {
		t.Fatal(err)
	}
	return pv
}

func set(t *testing.T, p preferencesv1durable.PreferencesStub, key string, v *structpb.Value) {
	t.Helper()
	if _, err := p.SetPreference(ctx, &preferencesv1.SetPreferenceRequest{Key: key, Value: v}); err != nil {
		t.Fatalf("SetPreference %q: %v", key, err)
	}
}

func getAll(t *testing.T, p preferencesv1durable.PreferencesStub) map[string]*structpb.Value {
	t.Helper()
	r, err := p.GetAllPreferences(ctx, &preferencesv1.GetAllPreferencesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return r.GetPreferences()
}

func wantPreference(t *testing.T, p preferencesv1durable.PreferencesStub, key string, want *structpb.Value) {
	t.Helper()
	r, err := p.GetPreference(ctx, &preferencesv1.GetPreferenceRequest{Key: key})
	if err != nil {
		t.Fatalf("GetPreference %q: %v", key, err)
	}
	if want == nil {
		if r.GetFound() || r.GetValue() != nil {
			t.Fatalf("GetPreference %q = %v, found %v; want not found", key, r.GetValue(), r.GetFound())
		}
		return
	}
	if !r.GetFound() || !proto.Equal(r.GetValue(), want) {
		t.Fatalf("GetPreference %q = %v, found %v; want %v", key, r.GetValue(), r.GetFound(), want)
	}
}

func TestSetGetAllClear(t *testing.T) {
	_, prefs := start(t, t.TempDir())
	p := prefs.Get(prefs.IDFromName("user-123"))

	wantPreference(t, p, "theme", nil)
	if all := getAll(t, p); len(all) != 0 {
		t.Fatalf("GetAllPreferences of a new object = %v, want none", all)
	}

	want := map[string]*structpb.Value{
		"theme":         value(t, "dark"),
		"fontSize":      value(t, 14.5),
		"notifications": value(t, map[string]any{"email": true, "sms": false}),
		"languages":     value(t, []any{"en", "fr"}),
		"nothing":       structpb.NewNullValue(),
		// A key that itself looks like a storage key keeps its full name.
		"pref:nested": value(t, "x"),
	}
	for k, v := range want {
		set(t, p, k, v)
	}
	for k, v := range want {
		wantPreference(t, p, k, v)
	}

	// Setting again replaces.
	set(t, p, "theme", value(t, "light"))
	want["theme"] = value(t, "light")
	wantPreference(t, p, "theme", want["theme"])

	all := getAll(t, p)
	if len(all) != len(want) {
		t.Fatalf("GetAllPreferences = %v, want %d entries", all, len(want))
	}
	for k, v := range want {
		if !proto.Equal(all[k], v) {
			t.Errorf("GetAllPreferences[%q] = %v, want %v", k, all[k], v)
		}
	}

	// Another user's preferences are separate, and survive the clear.
	other := prefs.Get(prefs.IDFromName("user-456"))
	set(t, other, "theme", value(t, "blue"))

	r, err := p.ClearPreferences(ctx, &preferencesv1.ClearPreferencesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetCleared() != int64(len(want)) {
		t.Fatalf("ClearPreferences cleared %d, want %d", r.GetCleared(), len(want))
	}
	if all := getAll(t, p); len(all) != 0 {
		t.Fatalf("GetAllPreferences after clear = %v, want none", all)
	}
	wantPreference(t, p, "theme", nil)
	if r, err := p.ClearPreferences(ctx, &preferencesv1.ClearPreferencesRequest{}); err != nil || r.GetCleared() != 0 {
		t.Fatalf("second ClearPreferences: cleared %d, err %v; want 0, nil", r.GetCleared(), err)
	}
	wantPreference(t, other, "theme", value(t, "blue"))
}

func TestPreferencesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	srv, prefs := start(t, dir)
	set(t, prefs.Get(prefs.IDFromName("u")), "theme", value(t, "dark"))
	srv.Shutdown(t)

	_, prefs = start(t, dir)
	wantPreference(t, prefs.Get(prefs.IDFromName("u")), "theme", value(t, "dark"))
}

// TestInvalidRequestsAreRefused needs the server to validate requests
// against their protovalidate rules.
func TestInvalidRequestsAreRefused(t *testing.T) {
	_, prefs := start(t, t.TempDir())
	p := prefs.Get(prefs.IDFromName("u"))

	_, err := p.SetPreference(ctx, &preferencesv1.SetPreferenceRequest{Key: "", Value: value(t, 1)})
	exampletest.WantError(t, "SetPreference with an empty key", err, connect.CodeInvalidArgument, "key")
	_, err = p.SetPreference(ctx, &preferencesv1.SetPreferenceRequest{Key: "theme"})
	exampletest.WantError(t, "SetPreference without a value", err, connect.CodeInvalidArgument, "value")
	_, err = p.GetPreference(ctx, &preferencesv1.GetPreferenceRequest{})
	exampletest.WantError(t, "GetPreference with an empty key", err, connect.CodeInvalidArgument, "key")
	if all := getAll(t, p); len(all) != 0 {
		t.Fatalf("GetAllPreferences after refused calls = %v, want none", all)
	}
}
