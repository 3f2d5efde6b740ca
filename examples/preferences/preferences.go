// Package preferences implements the reference page's key-value storage
// example: a user's preferences, each a google.protobuf.Value stored under
// its own key of the object's storage.
package preferences

import (
	"context"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	preferencesv1 "github.com/durablego/durable/gen/examples/preferences/v1"
	"github.com/durablego/durable/gen/examples/preferences/v1/preferencesv1durable"
	"github.com/durablego/durable/storage"
)

// Prefix starts the storage key of every preference: "pref:<key>".
const Prefix = "pref:"

// Preferences implements preferencesv1durable.Preferences.
type Preferences struct{}

var _ preferencesv1durable.Preferences = Preferences{}

// SetPreference stores the value under "pref:<key>".
func (Preferences) SetPreference(ctx context.Context, o *preferencesv1durable.PreferencesObject, req *preferencesv1.SetPreferenceRequest) (*preferencesv1.SetPreferenceResponse, error) {
	v := req.GetValue()
	if v == nil { // the request's rules require a value; store null if none came
		v = structpb.NewNullValue()
	}
	if err := storage.PutProto(ctx, o.Storage, Prefix+req.GetKey(), v); err != nil {
		return nil, err
	}
	return &preferencesv1.SetPreferenceResponse{}, nil
}

// GetPreference reads "pref:<key>".
func (Preferences) GetPreference(ctx context.Context, o *preferencesv1durable.PreferencesObject, req *preferencesv1.GetPreferenceRequest) (*preferencesv1.GetPreferenceResponse, error) {
	v := &structpb.Value{}
	found, err := storage.GetProto(ctx, o.Storage, Prefix+req.GetKey(), v)
	if err != nil || !found {
		return &preferencesv1.GetPreferenceResponse{}, err
	}
	return &preferencesv1.GetPreferenceResponse{Value: v, Found: true}, nil
}

// GetAllPreferences lists the keys with the "pref:" prefix.
func (Preferences) GetAllPreferences(ctx context.Context, o *preferencesv1durable.PreferencesObject, _ *preferencesv1.GetAllPreferencesRequest) (*preferencesv1.GetAllPreferencesResponse, error) {
	entries, err := o.Storage.List(ctx, storage.ListOptions{Prefix: Prefix})
	if err != nil {
		return nil, err
	}
	prefs := make(map[string]*structpb.Value, len(entries))
	for _, e := range entries {
		v := &structpb.Value{}
		if err := proto.Unmarshal(e.Value, v); err != nil {
			return nil, err
		}
		prefs[strings.TrimPrefix(e.Key, Prefix)] = v
	}
	return &preferencesv1.GetAllPreferencesResponse{Preferences: prefs}, nil
}

// ClearPreferences deletes every key with the "pref:" prefix, and nothing
// else of the object's storage.
func (Preferences) ClearPreferences(ctx context.Context, o *preferencesv1durable.PreferencesObject, _ *preferencesv1.ClearPreferencesRequest) (*preferencesv1.ClearPreferencesResponse, error) {
	entries, err := o.Storage.List(ctx, storage.ListOptions{Prefix: Prefix})
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(entries))
	for i, e := range entries {
		keys[i] = e.Key
	}
	n, err := o.Storage.DeleteMany(ctx, keys)
	if err != nil {
		return nil, err
	}
	return &preferencesv1.ClearPreferencesResponse{Cleared: int64(n)}, nil
}
