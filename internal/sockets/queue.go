package sockets

import "github.com/olahol/melody"

// cost is what a message of payload b counts for in BufferedAmount.
func cost(b []byte) int64 { return int64(len(b)) + MessageOverhead }

// envelope is a message to write.
type envelope struct {
	data   []byte
	binary bool
	close  bool
	code   int
}

// write writes e now: to the session, or to the buffer that is flushed
// on the upgrade. Nothing is written after a close frame, nor once the
// session is gone. Hub.Close uses it too, for its close frames.
func (c *Conn) write(e envelope) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sentCode != 0 || c.upgraded && c.sess == nil {
		return
	}
	if !e.close {
		// Past the bound, unless nothing waits (a message longer than
		// the bound is sent alone).
		k := cost(e.data)
		if n := c.queued - c.written.Load() + k; n > c.hub.cfg.MaxBuffer && n != k {
			c.slowLocked()
			return
		}
		c.queued += k
	}
	if !c.upgraded {
		c.pre = append(c.pre, e)
		if e.close {
			c.sentCode, c.sentReason = e.code, string(e.data)
		}
		return
	}
	c.writeLocked(e)
}

// writeLocked hands e to melody, after the backlog, or queues it in the
// backlog when melody's buffer is full. The caller holds c.mu, and
// c.sess is set.
func (c *Conn) writeLocked(e envelope) {
	if e.close {
		c.sentCode, c.sentReason = e.code, string(e.data)
	}
	if len(c.backlog) == 0 && c.push(e) {
		return
	}
	c.backlog = append(c.backlog, e)
	if !c.backlogged.Load() {
		c.backlogged.Store(true)
		// melody may have written all it held since push found its
		// buffer full, and then seen no backlog: refill now. If its
		// buffer is still full, onSent sees the backlog after the next
		// write.
		c.refillLocked()
	}
}

// push hands e to melody, and reports whether melody took it (its buffer
// was not full). The caller holds c.mu, and c.sess is set.
func (c *Conn) push(e envelope) bool {
	switch {
	case e.close:
		c.sess.CloseWithMsg(melody.FormatCloseMessage(e.code, string(e.data)))
	case e.binary:
		c.sess.WriteBinary(e.data)
	default:
		c.sess.Write(e.data)
	}
	if c.full.Load() {
		c.full.Store(false)
		return false
	}
	return true
}

// refillLocked moves what it can of the backlog to melody's buffer, in
// order. The caller holds c.mu.
func (c *Conn) refillLocked() {
	for len(c.backlog) > 0 && c.sess != nil {
		if !c.push(c.backlog[0]) {
			return
		}
		c.backlog[0] = envelope{}
		c.backlog = c.backlog[1:]
	}
	c.backlog = nil
	c.backlogged.Store(false)
}

// slowLocked closes the socket of a client too slow to read what is sent
// to it: what waits behind melody's buffer (or, before the upgrade, all
// that waits) is dropped, a close frame 1013 follows what melody holds,
// and WebSocketError hears of ErrSlowClient, before WebSocketClose. The
// caller holds c.mu.
func (c *Conn) slowLocked() {
	var dropped int64
	for _, e := range c.backlog {
		dropped += cost(e.data)
	}
	for _, e := range c.pre {
		dropped += cost(e.data)
	}
	c.queued -= dropped
	c.backlog, c.pre = nil, nil
	c.backlogged.Store(false)
	bye := envelope{close: true, code: closeTryAgainLater, data: []byte(slowReason)}
	if c.upgraded {
		c.writeLocked(bye)
	} else {
		c.pre = append(c.pre, bye)
		c.sentCode, c.sentReason = bye.code, slowReason
	}
	done := make(chan struct{})
	c.slow = done
	go func() {
		defer close(done)
		c.hub.dispatch(c.key, Event{Kind: EventError, Conn: c, Err: ErrSlowClient})
	}()
}
