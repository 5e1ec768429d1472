package poolmux

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"frontdoor/l4"
	"frontdoor/tlsterm"
)

// Exchange is one request and its response, as poolmux sees it.
type Exchange interface {
	// Replayable reports whether the request may be pipelined behind others
	// and sent again on another connection: idempotent and without a body.
	Replayable() bool
	// Start writes the request onto c (with Conn.Write). It is called when
	// the exchange is assigned to c and may return false when the request is
	// no longer wanted (its client left): nothing was written and the
	// exchange is dropped.
	Start(c *Conn) bool
	// Receive is given the bytes read from the server while the exchange is
	// at the head of c's FIFO. It returns how many it consumed, whether the
	// response is complete, and an error when the response is unusable
	// (then the exchange has dealt with its client and c is closed).
	Receive(c *Conn, p []byte) (n int, done bool, err error)
	// Fail reports that no (more) response will come, with the status to
	// answer if the client has not received anything yet.
	Fail(status int, reason string)
	// Received reports whether any response byte reached the exchange.
	Received() bool
}

// Options configures the pools of one server.
type Options struct {
	ConnsPerLoop    int
	MaxPipeline     int
	MaxQueue        int
	ConnectTimeout  time.Duration
	ResponseTimeout time.Duration
	QueueTimeout    time.Duration
	ReconnectMin    time.Duration
	ReconnectMax    time.Duration
}

// Stats counts one server's backend activity over all loops.
type Stats struct {
	ConnsOpen    atomic.Int64 // backend connections open now
	Dials        atomic.Int64
	DialFailures atomic.Int64
	Requests     atomic.Int64 // exchanges started on a connection
	// Writes counts the writes (system calls, or TLS records) that carried
	// requests to the server: below Requests when queued requests went out
	// together in one writev.
	Writes       atomic.Int64
	Retries      atomic.Int64 // replayable exchanges moved after a failure
	Detached     atomic.Int64 // connections taken off the pool for a slow client
	QueueFull    atomic.Int64 // exchanges refused with 503: queue full
	QueueTimeout atomic.Int64 // exchanges refused with 503: waited too long
	Failed       atomic.Int64 // exchanges failed with 502/504
	Queued       atomic.Int64 // exchanges waiting now
	Retired      atomic.Int64 // connections drained because the server lost its databases
	// InFlight is a gauge: exchanges written to a connection whose
	// response has not ended yet (the connections' FIFOs, summed).
	InFlight atomic.Int64
}

// Pool is one loop's connections to one server (host:port). It is used
// only on its loop.
type Pool struct {
	lp    *l4.Loop
	name  string
	addr  string
	opts  *Options
	stats *Stats
	log   *slog.Logger

	conns []*Conn
	queue queue
	// down is set when a dial failed and no connection is ready: new
	// exchanges fail at once instead of waiting out the queue timeout.
	down bool

	tls    *TLS    // nil: plaintext
	health *Health // nil: not watched
}

// TLS makes a pool's connections TLS: each dial is followed by a client
// handshake (Config carries the roots and the server name to verify) on
// the dialling goroutine, and records are then read and written on the
// loop through Client's connections. A failed handshake is a failed dial.
// One TLS may be shared by the pools of every loop.
type TLS struct {
	Client *tlsterm.Client
	// Config is the configuration until SetConfig replaces it.
	Config *tls.Config

	current atomic.Pointer[tls.Config]
}

// SetConfig replaces the configuration for the handshakes of later dials
// (a reloaded CA bundle, say); open connections are left as they are. It
// is safe to call while the pools dial.
func (t *TLS) SetConfig(cfg *tls.Config) { t.current.Store(cfg) }

// Current is the configuration a dial uses now.
func (t *TLS) Current() *tls.Config {
	if c := t.current.Load(); c != nil {
		return c
	}
	return t.Config
}

// SetTLS makes the pool's connections TLS (nil: plaintext). Call it after
// NewPool, before the first Submit.
func (p *Pool) SetTLS(t *TLS) { p.tls = t }

// SetHealth makes the pool report dial failures, connections lost with
// requests in flight and response timeouts to h. Call it after NewPool,
// before the first Submit.
func (p *Pool) SetHealth(h *Health) { p.health = h }

// Health is the server's health, shared by every loop's pool (nil when
// not watched).
func (p *Pool) Health() *Health { return p.health }

// NewPool returns the pool of loop lp for server name at addr. Connections
// are dialled on first use.
func NewPool(lp *l4.Loop, name, addr string, opts *Options, stats *Stats, log *slog.Logger) *Pool {
	p := &Pool{lp: lp, name: name, addr: addr, opts: opts, stats: stats, log: log}
	p.queue.init(opts.MaxQueue)
	lp.OnSweep(p.sweep)
	return p
}

// Name is the server's name.
func (p *Pool) Name() string { return p.name }

// Addr is the server's host:port.
func (p *Pool) Addr() string { return p.addr }

// Stats returns the server's counters (shared by every loop's pool).
func (p *Pool) Stats() *Stats { return p.stats }

// Submit hands x to the pool. It is started on a connection now, queued, or
// failed at once (x.Fail is called before Submit returns) when the server
// is down or the queue is full.
func (p *Pool) Submit(x Exchange) {
	if p.conns == nil {
		p.start()
	}
	if p.down {
		p.stats.Failed.Add(1)
		x.Fail(502, "backend_down")
		return
	}
	if p.queue.len() == 0 {
		if c := p.pick(x.Replayable()); c != nil {
			c.start(x)
			return
		}
	}
	if !p.queue.push(x, p.lp.Now()) {
		p.stats.QueueFull.Add(1)
		x.Fail(503, "queue_full")
		return
	}
	p.stats.Queued.Add(1)
	p.dispatch()
}

// Retire drains the pool's connections because the server is no longer
// active for any mailbox database: idle ones close now, busy ones when their
// last response is complete (nothing in flight is cut), and the pool keeps
// no connection open. A later Submit dials afresh. Retire does nothing
// while exchanges are queued: they still need the connections. It must run
// on the pool's loop.
func (p *Pool) Retire() {
	if p.conns == nil || p.queue.len() > 0 {
		return
	}
	conns := p.conns
	p.conns, p.down = nil, false
	for _, c := range conns {
		p.stats.Retired.Add(1)
		switch {
		case c.state != connReady:
			// Dialling: OnOpen sees it is no longer a member and closes
			// it; or already closed.
		case len(c.fifo) == 0 && !c.exclusive:
			c.Close()
		default:
			// Closes after its last response, like a detached one.
			c.detached = true
		}
	}
}

// Revive ends the wait of a pool that found its server unreachable,
// because something else learnt that it is back (its health checks pass):
// connections waiting out their reconnect backoff are dialled again now,
// and new exchanges queue for them instead of failing with 502. It must
// run on the pool's loop.
func (p *Pool) Revive() {
	if !p.down {
		return
	}
	p.down = false
	for i, c := range p.conns {
		if c.state == connDialing && c.failures > 0 {
			// The old one's dial, when its backoff ends, finds it is no
			// longer a member and closes.
			p.conns[i] = p.newConn(0)
		}
	}
}

// Close ends the pool for good: the handler it served was replaced (a
// configuration reload) and has no client left. Exchanges still queued
// belong to clients that are gone and are dropped; the connections close
// as Retire closes them, and nothing dials again. It must run on the
// pool's loop, which must not Submit to it afterwards.
func (p *Pool) Close() {
	for p.queue.len() > 0 {
		x := p.queue.pop()
		p.stats.Queued.Add(-1)
		x.Fail(503, "pool_closed")
	}
	p.Retire()
}

// start creates the pool's connections and dials them.
func (p *Pool) start() {
	p.conns = make([]*Conn, p.opts.ConnsPerLoop)
	for i := range p.conns {
		p.conns[i] = p.newConn(0)
	}
}

func (p *Pool) newConn(delay time.Duration) *Conn {
	c := &Conn{pool: p, fifo: make([]Exchange, 0, p.opts.MaxPipeline)}
	c.dial(delay)
	return c
}

// pick returns the connection to write the next exchange on, or nil.
// Replayable exchanges go to the least loaded connection with room in its
// pipeline; others need an idle connection.
func (p *Pool) pick(replayable bool) *Conn {
	var best *Conn
	for _, c := range p.conns {
		if c.state != connReady || c.exclusive {
			continue
		}
		n := len(c.fifo)
		if n == 0 {
			return c
		}
		if !replayable || n >= p.opts.MaxPipeline {
			continue
		}
		if best == nil || n < len(best.fifo) {
			best = c
		}
	}
	return best
}

// dispatch starts queued exchanges while connections have room. Heads of
// consecutive replayable exchanges bound for one connection are gathered
// and written with one writev: at once on an idle connection, at the end
// of the loop's event batch on a busy one (see Conn.start), so that
// dispatches from many callbacks of one batch share the write.
func (p *Pool) dispatch() {
	for p.queue.len() > 0 {
		x := p.queue.peek()
		c := p.pick(x.Replayable())
		if c == nil {
			return
		}
		p.queue.pop()
		p.stats.Queued.Add(-1)
		if !x.Replayable() {
			c.start(x)
			continue
		}
		busy := len(c.fifo) > 0
		c.gathering = true
		c.start(x)
		for p.queue.len() > 0 && len(c.fifo) < p.opts.MaxPipeline && c.state == connReady {
			y := p.queue.peek()
			if !y.Replayable() {
				break
			}
			p.queue.pop()
			p.stats.Queued.Add(-1)
			c.start(y)
		}
		c.gathering = false
		if busy {
			c.flushSoon()
		} else {
			c.flush()
		}
	}
}

// dispatchQueued dispatches when exchanges wait.
func (p *Pool) dispatchQueued() {
	if p.queue.len() > 0 {
		p.dispatch()
	}
}

// sweep enforces queue and response timeouts; it runs on every loop sweep.
func (p *Pool) sweep(now int64) {
	qt := int64(p.opts.QueueTimeout)
	for p.queue.len() > 0 && now-p.queue.peekTime() > qt {
		x := p.queue.pop()
		p.stats.Queued.Add(-1)
		p.stats.QueueTimeout.Add(1)
		x.Fail(503, "queue_timeout")
	}
	rt := int64(p.opts.ResponseTimeout)
	for _, c := range p.conns {
		if c.state == connReady && len(c.fifo) > 0 && now-c.lastProgress > rt {
			c.fail(504, "response_timeout")
		}
	}
}

// setDown marks the server unreachable from this loop and fails what waits.
func (p *Pool) setDown() {
	for _, c := range p.conns {
		if c.state == connReady {
			return
		}
	}
	if !p.down {
		p.log.Warn("mailbox server unreachable", "server", p.name, "address", p.addr, "loop", p.lp.Index())
	}
	p.down = true
	for p.queue.len() > 0 {
		x := p.queue.pop()
		p.stats.Queued.Add(-1)
		p.stats.Failed.Add(1)
		x.Fail(502, "backend_down")
	}
}

// requeueFront puts exchanges back at the head of the queue, in order,
// ahead of newer arrivals (they have waited longest).
func (p *Pool) requeueFront(xs []Exchange) {
	for i := len(xs) - 1; i >= 0; i-- {
		if !p.queue.pushFront(xs[i], p.lp.Now()) {
			p.stats.Failed.Add(1)
			xs[i].Fail(502, "queue_full")
			continue
		}
		p.stats.Queued.Add(1)
	}
}

// enroll dials addr and registers the connection on the loop with c as its
// handler. It runs in its own goroutine: dials block, loops must not.
func (c *Conn) enroll(delay time.Duration) {
	if delay > 0 {
		time.Sleep(delay)
	}
	p := c.pool
	p.stats.Dials.Add(1)
	nc, err := net.DialTimeout("tcp", p.addr, p.opts.ConnectTimeout)
	if err == nil && p.tls != nil {
		// The handshake blocks on the socket here, off the loop; it has
		// its own ConnectTimeout.
		var tc *tlsterm.Conn
		if tc, err = p.tls.Client.Handshake(nc, p.tls.Current(), p.opts.ConnectTimeout); err != nil {
			nc.Close()
		} else {
			c.tc = tc // read by the loop after Enroll
		}
	}
	if err == nil {
		var ch <-chan gnet.RegisteredResult
		ch, err = p.lp.EventLoop().Enroll(gnet.NewContext(context.Background(), c), nc)
		if err == nil {
			res := <-ch
			err = res.Err
		} else {
			nc.Close()
		}
	}
	if err != nil {
		p.stats.DialFailures.Add(1)
		_ = p.lp.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			c.dialFailed(err)
			return nil
		}))
	}
}

// queue is a bounded ring of exchanges with their enqueue times. The ring
// grows (doubling) up to its bound as a burst needs it, so a generous
// bound costs no memory until it is used.
type queue struct {
	items []queued
	head  int
	n     int
	limit int
}

type queued struct {
	x  Exchange
	at int64
}

// init bounds the queue; capacity 0 means exchanges never wait (503 at
// once when no connection can take them).
func (q *queue) init(capacity int) {
	q.limit = max(capacity, 0)
	q.items = make([]queued, min(q.limit, 16))
}

func (q *queue) len() int { return q.n }

// room makes space for one more exchange, growing the ring within its
// bound; false when the queue is full.
func (q *queue) room() bool {
	if q.n < len(q.items) {
		return true
	}
	if len(q.items) >= q.limit {
		return false
	}
	grown := make([]queued, min(max(2*len(q.items), 16), q.limit))
	for i := range q.n {
		grown[i] = q.items[(q.head+i)%len(q.items)]
	}
	q.items, q.head = grown, 0
	return true
}

func (q *queue) push(x Exchange, now int64) bool {
	if !q.room() {
		return false
	}
	q.items[(q.head+q.n)%len(q.items)] = queued{x, now}
	q.n++
	return true
}

func (q *queue) pushFront(x Exchange, now int64) bool {
	if !q.room() {
		return false
	}
	q.head = (q.head - 1 + len(q.items)) % len(q.items)
	q.items[q.head] = queued{x, now}
	q.n++
	return true
}

func (q *queue) peek() Exchange { return q.items[q.head].x }

func (q *queue) peekTime() int64 { return q.items[q.head].at }

func (q *queue) pop() Exchange {
	x := q.items[q.head].x
	q.items[q.head] = queued{}
	q.head = (q.head + 1) % len(q.items)
	q.n--
	return x
}
