package callchain

import (
	"context"
	"strings"
	"testing"

	"github.com/durablego/durable/internal/objectkey"
)

func TestChainRoundTripsThroughHeader(t *testing.T) {
	a := objectkey.Key{Class: "A", ID: [32]byte{1}}
	b := objectkey.Key{Class: "B", ID: [32]byte{2}}
	c := objectkey.Key{Class: "A", ID: [32]byte{3}}
	ctx := With(With(context.Background(), a), b)
	if !Contains(ctx, a) || !Contains(ctx, b) || Contains(ctx, c) {
		t.Fatal("Contains is wrong for a two-link chain")
	}
	h := Header(ctx)
	if !strings.HasPrefix(h, a.String()+",") {
		t.Fatalf("header %q does not start with the outermost link", h)
	}
	back, err := FromHeader(context.Background(), h)
	if err != nil || Header(back) != h || !Contains(back, a) || !Contains(back, b) {
		t.Fatalf("FromHeader(%q) = %q, %v", h, Header(back), err)
	}
	if Header(context.Background()) != "" {
		t.Fatal("an empty chain renders a header")
	}
}

func TestFromHeaderRejectsMalformedChains(t *testing.T) {
	ok := objectkey.Key{Class: "A"}.String()
	for _, h := range []string{
		"A",
		":" + strings.Repeat("0", 64),
		"A:" + strings.Repeat("0", 63),
		"A:" + strings.Repeat("g", 64),
		ok + ",junk",
		strings.Repeat(ok+",", MaxHeaderLinks) + ok,
	} {
		if _, err := FromHeader(context.Background(), h); err == nil {
			t.Errorf("FromHeader(%.40q…) accepted a malformed chain", h)
		}
	}
}
