package sockets

import "sync"

// outboxes releases the sends of committed calls off the goroutine that
// reports commits: that goroutine commits every object of the node, and a
// broadcast to thousands of sockets would hold all of them up. Each
// object's sends leave in commit order, through at most one goroutine per
// object at a time, started when there is something to send and ended when
// there is nothing left.
type outboxes struct {
	mu      sync.Mutex
	pending map[Key][]*callState // a key is here while its goroutine runs
	idle    *sync.Cond           // signalled when pending becomes empty
}

// post queues the sends of cs, a committed call of the object key.
func (o *outboxes) post(key Key, cs *callState) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.pending == nil {
		o.pending = make(map[Key][]*callState)
	}
	queue, running := o.pending[key]
	o.pending[key] = append(queue, cs)
	if !running {
		go o.drain(key)
	}
}

// drain sends the queued calls' effects of key until none is left.
func (o *outboxes) drain(key Key) {
	for {
		o.mu.Lock()
		queue := o.pending[key]
		if len(queue) == 0 {
			delete(o.pending, key)
			if len(o.pending) == 0 && o.idle != nil {
				o.idle.Broadcast()
			}
			o.mu.Unlock()
			return
		}
		o.pending[key] = queue[:0:0]
		o.mu.Unlock()
		for _, cs := range queue {
			for _, f := range cs.effects {
				f()
			}
		}
	}
}

// wait returns once every send queued so far, and any queued meanwhile,
// has been handed to its socket.
func (o *outboxes) wait() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.idle == nil {
		o.idle = sync.NewCond(&o.mu)
	}
	for len(o.pending) > 0 {
		o.idle.Wait()
	}
}
