package engine_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/durablego/durable/internal/engine"
)

func TestAlarmAPI(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func() *engine.Store) {
		ctx := context.Background()
		st := open()
		var changes []engine.AlarmChange
		call(t, st, func(kv *engine.KV) error {
			if err := kv.SetAlarm(ctx, time.Now()); !errors.Is(err, engine.ErrNoAlarmHandler) {
				t.Fatalf("SetAlarm without a handler: %v", err)
			}
			return nil
		})
		st.HandleAlarms(func(c engine.AlarmChange) { changes = append(changes, c) })
		at := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
		call(t, st, func(kv *engine.KV) error {
			for _, bad := range []time.Time{{}, time.UnixMilli(-1), time.Unix(0, 0)} {
				if err := kv.SetAlarm(ctx, bad); !errors.Is(err, engine.ErrInvalidAlarm) || !errors.Is(err, engine.ErrInvalid) {
					t.Fatalf("SetAlarm(%v) = %v", bad, err)
				}
			}
			if err := kv.SetAlarm(ctx, at); err != nil {
				t.Fatal(err)
			}
			if got, ok, err := kv.GetAlarm(ctx); !ok || err != nil || !got.Equal(at) {
				t.Fatalf("GetAlarm in the same call = %v, %v, %v", got, ok, err)
			}
			return nil
		})
		// A failed call's change is undone.
		call(t, st, func(kv *engine.KV) error {
			kv.DeleteAlarm(ctx)
			return errors.New("fail")
		})
		if err := commit(st, nil); err != nil {
			t.Fatal(err)
		}
		if len(changes) != 1 || !changes[0].Set || changes[0].At != at.UnixMilli() {
			t.Fatalf("changes reported after the commit: %+v", changes)
		}
		st.Close()

		reopened := open()
		reopened.HandleAlarms(nil)
		call(t, reopened, func(kv *engine.KV) error {
			if got, ok, err := kv.GetAlarm(ctx); !ok || err != nil || !got.Equal(at) {
				t.Fatalf("GetAlarm after reopening = %v, %v, %v", got, ok, err)
			}
			if err := kv.DeleteAll(ctx); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := kv.GetAlarm(ctx); ok {
				t.Fatal("DeleteAll left the alarm")
			}
			return nil
		})
		if err := commit(reopened, nil); err != nil {
			t.Fatal(err)
		}
		call(t, reopened, func(kv *engine.KV) error {
			if _, ok, _ := kv.GetAlarm(ctx); ok {
				t.Fatal("the alarm survived a committed DeleteAll")
			}
			return nil
		})
	})
}

// A time in the past is stored as the time SetAlarm ran, as Cloudflare
// does: GetAlarm returns that, in the call and after the commit.
func TestSetAlarmInThePastStoresNow(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func() *engine.Store) {
		ctx := context.Background()
		st := open()
		defer st.Close()
		var changes []engine.AlarmChange
		st.HandleAlarms(func(c engine.AlarmChange) { changes = append(changes, c) })
		past := time.UnixMilli(1)
		var before, after int64
		call(t, st, func(kv *engine.KV) error {
			before = time.Now().UnixMilli()
			if err := kv.SetAlarm(ctx, past); err != nil {
				t.Fatal(err)
			}
			after = time.Now().UnixMilli()
			got, ok, err := kv.GetAlarm(ctx)
			if !ok || err != nil || got.UnixMilli() < before || got.UnixMilli() > after {
				t.Fatalf("GetAlarm after SetAlarm(%v) = %v, %v, %v; want a time in [%d, %d] ms", past, got, ok, err, before, after)
			}
			return nil
		})
		if err := commit(st, nil); err != nil {
			t.Fatal(err)
		}
		if len(changes) != 1 || !changes[0].Set || changes[0].At < before || changes[0].At > after {
			t.Fatalf("changes reported after the commit: %+v; want one set in [%d, %d]", changes, before, after)
		}
		call(t, st, func(kv *engine.KV) error {
			if got, ok, err := kv.GetAlarm(ctx); !ok || err != nil || got.UnixMilli() != changes[0].At {
				t.Fatalf("GetAlarm in the next call = %v, %v, %v; want %d ms", got, ok, err, changes[0].At)
			}
			return nil
		})
	})
}
