package storage

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/proto"
)

// GetProto reads key into m, reporting whether the key exists.
func GetProto(ctx context.Context, kv *KV, key string, m proto.Message) (bool, error) {
	b, ok, err := kv.Get(ctx, key)
	if err != nil || !ok {
		return false, err
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return false, fmt.Errorf("storage: value of %.64q is not a %s: %w", key, m.ProtoReflect().Descriptor().FullName(), err)
	}
	return true, nil
}

// PutProto stores m, in the binary protobuf encoding, under key.
func PutProto(ctx context.Context, kv *KV, key string, m proto.Message) error {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return fmt.Errorf("storage: encode %.64q: %w", key, err)
	}
	return kv.Put(ctx, key, b)
}

// GetJSON reads the JSON value of key into a T, reporting whether the key
// exists.
func GetJSON[T any](ctx context.Context, kv *KV, key string) (T, bool, error) {
	var v T
	b, ok, err := kv.Get(ctx, key)
	if err != nil || !ok {
		return v, false, err
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, false, fmt.Errorf("storage: value of %.64q is not a JSON %T: %w", key, v, err)
	}
	return v, true, nil
}

// PutJSON stores v, encoded as JSON, under key.
func PutJSON(ctx context.Context, kv *KV, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("storage: encode %.64q: %w", key, err)
	}
	return kv.Put(ctx, key, b)
}
