package etcdstore

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Objects lists the objects of class that hold something, in byte order
// of their IDs. An object's keys are contiguous under o/{p}/{class}/{id}/,
// so each owned partition's next object is one limited, keys-only Range
// from just past the previous one; the partitions are merged (a
// partition is not a range of IDs). It costs about limit + 8 round trips
// and holds one candidate per partition: for tests and tools.
func (s *Store) Objects(ctx context.Context, class string, after []byte, limit int) ([][32]byte, error) {
	if limit <= 0 {
		return nil, nil
	}
	type cand struct {
		p  int
		id [32]byte
		ok bool
	}
	// next reads the first object of each partition of ps after from[p].
	from := map[int]string{}
	start := hex.EncodeToString(after)
	next := func(ps []int) ([]cand, error) {
		var ops []clientv3.Op
		for _, p := range ps {
			pre := fmt.Sprintf("%so/%04x/%s/", s.keys.prefix, p, class)
			lo, ok := from[p]
			if !ok {
				lo = pre + start
				if len(after) > 0 {
					lo += "/\xff" // past every key of after
				}
			}
			ops = append(ops, clientv3.OpGet(lo, clientv3.WithRange(successor(pre)), clientv3.WithLimit(1), clientv3.WithKeysOnly()))
		}
		cctx, cancel := s.call(ctx)
		resp, err := s.cli.Txn(cctx).Then(ops...).Commit()
		cancel()
		if err != nil {
			return nil, storeError(err)
		}
		out := make([]cand, len(ps))
		for i, r := range resp.Responses {
			out[i].p = ps[i]
			kvs := r.GetResponseRange().Kvs
			if len(kvs) == 0 {
				continue
			}
			pre := fmt.Sprintf("%so/%04x/%s/", s.keys.prefix, ps[i], class)
			rest := string(kvs[0].Key[len(pre):])
			if len(rest) < 64 {
				return nil, fmt.Errorf("etcdstore: malformed object key %q", kvs[0].Key)
			}
			if _, err := hex.Decode(out[i].id[:], []byte(rest[:64])); err != nil {
				return nil, fmt.Errorf("etcdstore: malformed object key %q: %w", kvs[0].Key, err)
			}
			out[i].ok = true
			from[ps[i]] = pre + rest[:64] + "/\xff"
		}
		return out, nil
	}
	var heads []cand
	var owned []int
	for p := range Partitions {
		if _, err := s.owns(p); err == nil {
			owned = append(owned, p)
		}
	}
	for i := 0; i < len(owned); i += s.cfg.maxOps {
		c, err := next(owned[i:min(i+s.cfg.maxOps, len(owned))])
		if err != nil {
			return nil, err
		}
		for _, x := range c {
			if x.ok {
				heads = append(heads, x)
			}
		}
	}
	var out [][32]byte
	for len(out) < limit && len(heads) > 0 {
		best := 0
		for i := range heads {
			if bytes.Compare(heads[i].id[:], heads[best].id[:]) < 0 {
				best = i
			}
		}
		out = append(out, heads[best].id)
		c, err := next([]int{heads[best].p})
		if err != nil {
			return nil, err
		}
		if c[0].ok {
			heads[best] = c[0]
		} else {
			heads = append(heads[:best], heads[best+1:]...)
		}
	}
	return out, nil
}
