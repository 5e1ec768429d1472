package poolmux

import (
	"time"

	"github.com/panjf2000/gnet/v2"

	"frontdoor/l4"
	"frontdoor/tlsterm"
)

var (
	_ l4.Transport = (gnet.Conn)(nil)
	_ l4.Transport = (*tlsterm.Conn)(nil)
)

type connState uint8

const (
	connDialing connState = iota
	connReady
	connClosed
)

// Conn is one persistent connection to a server, owned by a loop. Its
// exchanges form a FIFO: requests are written in order and responses come
// back in the same order (RFC 9112 section 9.3.2).
type Conn struct {
	pool *Pool
	// io is gc, or tc for a TLS server; set in OnOpen.
	io l4.Transport // the gnet.Conn, or the TLS connection over it
	gc gnet.Conn
	// tc is the TLS connection of a TLS server: set by the dialling
	// goroutine after its handshake, before the socket is enrolled.
	tc    *tlsterm.Conn
	state connState
	fifo  []Exchange

	// exclusive is set while a request body is being written: no other
	// request may be interleaved on the connection.
	exclusive bool
	// detached connections have left the pool; they close after their
	// head exchange completes.
	detached bool
	// lastProgress is when the connection last received bytes or had its
	// first request written, for the response timeout.
	lastProgress int64
	failures     int // consecutive dial failures, for the backoff

	// pending holds writes not yet made, in order: gathered by dispatch
	// (gathering), or deferred to the end of the loop's event batch
	// (flushQueued) for requests that joined a busy pipeline. Only
	// replayable requests' heads, which their streams own until their
	// response, are ever pending; a pending request is in the FIFO.
	pending     [][]byte
	gathering   bool
	flushQueued bool
}

// Write sends p to the server, in order with everything written before. p
// may be reused when Write returns, except while the connection gathers
// writes (Exchange.Start of a replayable request, see start), where
// exchanges write only bytes they own until their response.
func (c *Conn) Write(p []byte) {
	if c.state != connReady {
		return
	}
	if c.gathering || len(c.pending) > 0 {
		c.pending = append(c.pending, p)
		return
	}
	c.pool.stats.Writes.Add(1)
	_, _ = c.io.Write(p)
}

// Writev sends several buffers with one system call when possible.
func (c *Conn) Writev(bs [][]byte) {
	if c.state != connReady {
		return
	}
	c.pool.stats.Writes.Add(1)
	_, _ = c.io.Writev(bs)
}

// OutboundBuffered is how many written bytes wait in user space for the
// socket: the measure of a server that reads slowly.
func (c *Conn) OutboundBuffered() int {
	if c.state != connReady {
		return 0
	}
	return c.io.OutboundBuffered()
}

// Release ends the exclusive hold of an exchange whose request body is
// fully written, so other requests may follow it on the connection.
func (c *Conn) Release() {
	if !c.exclusive {
		return
	}
	c.exclusive = false
	if !c.detached {
		c.pool.dispatch()
	}
}

// Hold marks the connection exclusive: the started exchange is still
// writing its request body. Call from Exchange.Start.
func (c *Conn) Hold() { c.exclusive = true }

// Detach takes the connection out of its pool because its head exchange is
// streaming a response to a client that reads slowly. Exchanges pipelined
// behind the head are queued again (they are replayable: only such are
// pipelined), a replacement connection is dialled, and this one closes
// when the head's response is complete.
func (c *Conn) Detach() {
	if c.detached || c.state != connReady {
		return
	}
	p := c.pool
	c.detached = true
	p.stats.Detached.Add(1)
	for i, pc := range p.conns {
		if pc == c {
			p.conns[i] = p.newConn(0)
		}
	}
	if len(c.fifo) > 1 {
		// The requests behind the head move to other connections; those
		// not yet written here must not be written here any more.
		c.dropPending()
		behind := c.fifo[1:]
		moved := make([]Exchange, len(behind))
		copy(moved, behind)
		clear(behind)
		c.fifo = c.fifo[:1]
		p.stats.InFlight.Add(-int64(len(moved)))
		p.stats.Retries.Add(int64(len(moved)))
		p.requeueFront(moved)
		p.dispatch()
	}
}

// Close closes the connection; its exchanges are handled in OnClose.
func (c *Conn) Close() {
	if c.state == connReady {
		_ = c.io.Close()
	}
}

// start writes x on c and appends it to the FIFO.
//
// A replayable request that joins requests already in flight is not
// written at once: its response has to wait for theirs anyway, so its
// write is deferred to the end of the loop's event batch (l4.Loop.Defer),
// and the requests of every client that arrive in one batch go out in
// one writev. A request to an idle connection is written at once (no
// latency is added when there is nothing to share a write with).
func (c *Conn) start(x Exchange) {
	if len(c.fifo) == 0 {
		c.lastProgress = c.pool.lp.Now()
	}
	deferWrite := !c.gathering && len(c.fifo) > 0 && x.Replayable()
	c.fifo = append(c.fifo, x)
	// Counted before Start: Start may close the connection, whose OnClose
	// then takes the whole FIFO, x included, off the gauge.
	c.pool.stats.InFlight.Add(1)
	if deferWrite {
		c.gathering = true
	}
	ok := x.Start(c)
	if deferWrite {
		c.gathering = false
		c.flushSoon()
	}
	if !ok {
		c.fifo = c.fifo[:len(c.fifo)-1]
		c.pool.stats.InFlight.Add(-1)
		return
	}
	c.pool.stats.Requests.Add(1)
}

// RunDeferred implements l4.Deferred: the loop handled its event batch;
// write the requests deferred during it.
func (c *Conn) RunDeferred() {
	c.flushQueued = false
	c.flush()
}

// flushSoon writes the pending writes at the end of the loop's event
// batch, or now when the loop cannot defer.
func (c *Conn) flushSoon() {
	if len(c.pending) == 0 || c.flushQueued {
		return
	}
	if c.pool.lp.Defer(c) {
		c.flushQueued = true
		return
	}
	c.flush()
}

// flush writes the pending writes, with one writev when there are several.
func (c *Conn) flush() {
	b := c.pending
	c.pending = b[:0]
	switch {
	case len(b) == 0:
	case c.state != connReady:
		// Closed meanwhile: OnClose requeued or failed their exchanges.
	case len(b) == 1:
		c.Write(b[0])
	default:
		c.Writev(b)
	}
	clear(b)
}

// dropPending forgets the writes not yet made: their exchanges are
// leaving the connection (requeued elsewhere, or failed).
func (c *Conn) dropPending() {
	clear(c.pending)
	c.pending = c.pending[:0]
}

func (c *Conn) dial(delay time.Duration) {
	c.state = connDialing
	go c.enroll(delay)
}

func (c *Conn) backoff() time.Duration {
	o := c.pool.opts
	d := o.ReconnectMin << min(c.failures, 16)
	if d > o.ReconnectMax || d <= 0 {
		d = o.ReconnectMax
	}
	return d
}

// dialFailed runs on the loop after a failed dial.
func (c *Conn) dialFailed(err error) {
	p := c.pool
	if c.state != connDialing {
		return
	}
	c.failures++
	p.health.Failure(reasonConnect)
	if c.failures == 1 {
		p.log.Warn("backend dial failed", "server", p.name, "address", p.addr, "err", err)
	}
	p.setDown()
	if c.isMember() {
		c.dial(c.backoff())
	} else {
		c.state = connClosed
	}
}

func (c *Conn) isMember() bool {
	for _, pc := range c.pool.conns {
		if pc == c {
			return true
		}
	}
	return false
}

// OnOpen implements l4.Opener: the dialled connection is live on the loop.
func (c *Conn) OnOpen(gc gnet.Conn) gnet.Action {
	p := c.pool
	c.gc = gc
	c.io = gc
	if c.tc != nil {
		c.tc.Attach(gc)
		c.io = c.tc
	}
	if !c.isMember() || c.state != connDialing {
		c.state = connClosed
		return gnet.Close
	}
	c.state = connReady
	if c.failures > 0 {
		p.log.Info("backend reachable again", "server", p.name, "address", p.addr)
	}
	c.failures = 0
	p.down = false
	p.stats.ConnsOpen.Add(1)
	p.dispatch()
	return gnet.None
}

// OnTraffic implements l4.Handler: responses for the FIFO's head.
func (c *Conn) OnTraffic(gc gnet.Conn) gnet.Action {
	p := c.pool
	now := p.lp.Tick()
	io := l4.Transport(gc)
	if c.tc != nil {
		// Decrypt what arrived; an error (a bad record, the server's
		// close_notify with nothing left to read) ends the connection.
		if _, err := c.tc.OnTraffic(); err != nil {
			return gnet.Close
		}
		io = c.tc
	}
	for c.state == connReady {
		buf, _ := io.Peek(-1)
		if len(buf) == 0 {
			break
		}
		if len(c.fifo) == 0 {
			// Bytes with no request waiting: the server broke the
			// protocol (or sent a 408 on an idle connection). Nothing
			// can be matched to them; drop the connection.
			p.log.Warn("backend sent bytes with no request outstanding", "server", p.name, "bytes", len(buf))
			return gnet.Close
		}
		c.lastProgress = now
		x := c.fifo[0]
		n, done, err := x.Receive(c, buf)
		if n > 0 {
			// Never Discard(0): gnet reads n <= 0 as "discard everything".
			_, _ = io.Discard(n)
		}
		if err != nil {
			c.fifo[0] = nil
			c.fifo = c.fifo[1:]
			p.stats.InFlight.Add(-1)
			return gnet.Close
		}
		if !done {
			if n == 0 {
				break // needs more bytes
			}
			continue
		}
		copy(c.fifo, c.fifo[1:])
		c.fifo[len(c.fifo)-1] = nil
		c.fifo = c.fifo[:len(c.fifo)-1]
		p.stats.InFlight.Add(-1)
		if c.detached && len(c.fifo) == 0 {
			p.dispatchQueued()
			return gnet.Close
		}
	}
	// Queued exchanges are started once all responses that arrived are
	// consumed, not after each one: the slots freed by a burst of
	// responses are refilled with one writev per connection instead of a
	// write per response.
	p.dispatchQueued()
	return gnet.None
}

// OnClose implements l4.Handler. Exchanges that got no response byte and
// are replayable go back to the pool once; the others fail with 502.
func (c *Conn) OnClose(_ gnet.Conn, err error) {
	p := c.pool
	p.lp.Tick()
	if c.tc != nil {
		c.tc.OnClose()
	}
	wasReady := c.state == connReady
	c.state = connClosed
	c.exclusive = false
	c.dropPending()
	if wasReady {
		p.stats.ConnsOpen.Add(-1)
	}
	p.stats.InFlight.Add(-int64(len(c.fifo)))
	if len(c.fifo) > 0 && err != nil {
		// The server (or the path to it) closed or reset the connection
		// with requests in flight: a failure of the server, counted once
		// per connection. A close of the gateway's own (err == nil: a
		// bad response, a client's broken upload) is not the server's.
		p.health.Failure(reasonLost)
	}
	var retry []Exchange
	for i, x := range c.fifo {
		c.fifo[i] = nil
		if x.Replayable() && !x.Received() && retryable(x) {
			retry = append(retry, x)
			continue
		}
		p.stats.Failed.Add(1)
		x.Fail(502, "backend_closed")
	}
	c.fifo = c.fifo[:0]
	if c.isMember() {
		for i, pc := range p.conns {
			if pc == c {
				if c.failures == 0 && len(retry) == 0 {
					// An idle keep-alive connection closed by the server
					// is normal; dial again at once.
					p.conns[i] = p.newConn(0)
				} else {
					nc := p.newConn(c.backoff())
					nc.failures = c.failures
					p.conns[i] = nc
				}
			}
		}
	}
	if len(retry) > 0 {
		p.stats.Retries.Add(int64(len(retry)))
		p.requeueFront(retry)
		p.dispatch()
	}
}

// retryable lets each exchange be moved after a failure at most once, so
// a server that kills every connection cannot make requests loop forever.
func retryable(x Exchange) bool {
	if r, ok := x.(interface{ Retry() bool }); ok {
		return r.Retry()
	}
	return false
}

// Reasons given to Health.Failure.
const (
	reasonConnect = "connect failed"
	reasonLost    = "connection lost with requests in flight"
	reasonTimeout = "response timeout"
)

// fail answers the head with status and the rest with 502, then closes.
func (c *Conn) fail(status int, reason string) {
	if status == 504 {
		c.pool.health.Failure(reasonTimeout)
	}
	if len(c.fifo) > 0 {
		x := c.fifo[0]
		c.fifo[0] = nil
		c.fifo = c.fifo[1:]
		c.pool.stats.InFlight.Add(-1)
		c.pool.stats.Failed.Add(1)
		x.Fail(status, reason)
	}
	c.Close()
}
