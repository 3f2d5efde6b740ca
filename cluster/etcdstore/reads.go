package etcdstore

import (
	"context"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// localReads gathers the serializable reads of single keys (an object's
// activation, a key-value miss) that arrive while one is in flight into
// the next request: a read-only transaction of serializable ranges, which
// the member reached serves locally like a lone Get, carrying up to
// WithLimits' operations. A lone read goes at once; under many activations
// a request carries many, and etcd and the node handle one request instead
// of each.
type localReads struct {
	mu      sync.Mutex
	queue   []*localRead
	sending bool // a request is in flight; its sender takes the queue next
}

// localRead is one read of localReads, answered when done is closed.
type localRead struct {
	key  string
	kv   *mvccpb.KeyValue // nil: no such key
	rev  int64            // the member's revision when it read
	err  error
	done chan struct{}
}

// getLocal reads key at the member the client reached, with the reads
// that queue beside it.
func (s *Store) getLocal(ctx context.Context, key string) (*mvccpb.KeyValue, int64, error) {
	r := &localRead{key: key, done: make(chan struct{})}
	l := &s.reads
	l.mu.Lock()
	l.queue = append(l.queue, r)
	if l.sending {
		l.mu.Unlock()
		select {
		case <-r.done:
			return r.kv, r.rev, r.err
		case <-ctx.Done():
			return nil, 0, ctx.Err() // the read completes unheard
		}
	}
	// No request in flight, so the queue was empty: this read leads the
	// next one, alone or with those that came meanwhile.
	l.sending = true
	batch := l.takeLocked(s.cfg.maxOps)
	l.mu.Unlock()
	s.sendLocal(ctx, batch)
	s.nextLocal()
	return r.kv, r.rev, r.err
}

// nextLocal sends what queued while the last request was in flight, in a
// goroutine of its own so that no caller waits on others' reads, or ends
// the sending when nothing did.
func (s *Store) nextLocal() {
	l := &s.reads
	l.mu.Lock()
	if len(l.queue) == 0 {
		l.sending = false
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	go func() {
		for {
			l.mu.Lock()
			if len(l.queue) == 0 {
				l.sending = false
				l.mu.Unlock()
				return
			}
			batch := l.takeLocked(s.cfg.maxOps)
			l.mu.Unlock()
			s.sendLocal(context.Background(), batch)
		}
	}()
}

// takeLocked removes up to n reads from the front of the queue.
func (l *localReads) takeLocked(n int) []*localRead {
	n = min(n, len(l.queue))
	batch := l.queue[:n:n]
	l.queue = l.queue[n:]
	if len(l.queue) == 0 {
		l.queue = nil // let the backing array go
	}
	return batch
}

// sendLocal reads batch in one request and answers each read. ctx is the
// leading caller's: its end fails the batch, whose reads are then asked
// again linearizably, each by its own caller.
func (s *Store) sendLocal(ctx context.Context, batch []*localRead) {
	ops := make([]clientv3.Op, len(batch))
	for i, r := range batch {
		ops[i] = clientv3.OpGet(r.key, clientv3.WithSerializable())
	}
	cctx, cancel := s.call(ctx)
	resp, err := s.cli.Txn(cctx).Then(ops...).Commit()
	cancel()
	for i, r := range batch {
		switch {
		case err != nil:
			r.err = err
		default:
			r.rev = resp.Header.Revision
			if kvs := resp.Responses[i].GetResponseRange().GetKvs(); len(kvs) > 0 {
				r.kv = kvs[0]
			}
		}
		close(r.done)
	}
}
