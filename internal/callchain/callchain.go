// Package callchain tracks which objects a call is made on behalf of, in
// the context and across the network, so that a call that would wait on an
// object already waiting for it (A→B→A) fails instead of deadlocking.
package callchain

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/durablego/durable/internal/objectkey"
)

type link struct {
	key    objectkey.Key
	parent *link
}

type ctxKey struct{}

// withLink is a context that carries a link of the chain: the context and
// the link in one allocation, where context.WithValue and a link took two
// on every call an object runs.
type withLink struct {
	context.Context
	link link
}

func (c *withLink) Value(key any) any {
	if key == (ctxKey{}) {
		return &c.link
	}
	return c.Context.Value(key)
}

// With returns a context recording that what runs in it runs on behalf of
// the object k, in addition to the objects ctx already records.
func With(ctx context.Context, k objectkey.Key) context.Context {
	parent, _ := ctx.Value(ctxKey{}).(*link)
	return &withLink{Context: ctx, link: link{key: k, parent: parent}}
}

// Contains reports whether ctx runs on behalf of object k.
func Contains(ctx context.Context, k objectkey.Key) bool {
	for l, _ := ctx.Value(ctxKey{}).(*link); l != nil; l = l.parent {
		if l.key == k {
			return true
		}
	}
	return false
}

// MaxHeaderLinks bounds the chain accepted from the network.
const MaxHeaderLinks = 64

// Header renders the chain of ctx, innermost last, for the
// Durable-Call-Chain header; "" when ctx records none.
func Header(ctx context.Context) string {
	var keys []string
	for l, _ := ctx.Value(ctxKey{}).(*link); l != nil; l = l.parent {
		keys = append(keys, l.key.String())
	}
	if len(keys) == 0 {
		return ""
	}
	for i, j := 0, len(keys)-1; i < j; i, j = i+1, j-1 {
		keys[i], keys[j] = keys[j], keys[i]
	}
	return strings.Join(keys, ",")
}

// FromHeader returns ctx extended with the chain a Durable-Call-Chain
// header carries.
func FromHeader(ctx context.Context, h string) (context.Context, error) {
	if h == "" {
		return ctx, nil
	}
	parts := strings.Split(h, ",")
	if len(parts) > MaxHeaderLinks {
		return ctx, fmt.Errorf("call chain has %d links, more than %d", len(parts), MaxHeaderLinks)
	}
	for _, p := range parts {
		class, hx, ok := strings.Cut(strings.TrimSpace(p), ":")
		var k objectkey.Key
		if !ok || class == "" || len(hx) != 64 {
			return ctx, fmt.Errorf("malformed call chain link %q", p)
		}
		if _, err := hex.Decode(k.ID[:], []byte(hx)); err != nil {
			return ctx, fmt.Errorf("malformed call chain link %q: %w", p, err)
		}
		k.Class = class
		ctx = With(ctx, k)
	}
	return ctx, nil
}
