package l4

import (
	"net/netip"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// Loop is the state one gnet event loop owns for one Acceptor. Everything
// reachable from a Loop is touched only by that loop's goroutine
// (callbacks, sweeps and Execute'd tasks all run there), so none of it
// needs locks. After a reload (Server.SetAcceptor) an event loop has the
// new acceptor's Loop and, until their connections are gone, retired ones;
// each keeps its own deadline lists, sweepers and protocol state.
type Loop struct {
	server *Server
	slot   *loopSlot
	gen    *generation
	el     gnet.EventLoop
	index  int

	// nclients counts the linked clients; a retired Loop is released when
	// it drops to zero.
	nclients int
	retired  bool
	released bool

	// now caches the monotonic clock for the current callback; see Now.
	now int64

	lists    []*DeadlineList
	sweepers []func(now int64)
	drainers []func()

	// clients is an intrusive list of the open client connections, for drain.
	clients ClientConn

	// proxyList holds the connections waiting for their PROXY protocol
	// header; nil when no listener has a PROXY mode.
	proxyList *DeadlineList
	// The PROXY protocol stage's log budget, see logProxyReject.
	proxyLogWindow     int64
	proxyLogBudget     int
	proxyLogSuppressed int

	// Proto is the per-loop state of the protocol layer (l7 keeps its parser
	// scratch space and backend pools here). Set by Acceptor.NewLoop.
	Proto any
}

// clock is the process's monotonic origin: Loop.Now is nanoseconds since it.
var clock = time.Now()

// Monotonic returns nanoseconds on the monotonic clock used by deadlines.
func Monotonic() int64 { return int64(time.Since(clock)) }

// Index is the event loop's position in the order loops were first seen
// (0-based); the Loops of every acceptor on one event loop share it.
func (lp *Loop) Index() int { return lp.index }

// EventLoop is the gnet loop, for Register/Enroll/Execute.
func (lp *Loop) EventLoop() gnet.EventLoop { return lp.el }

// Server is the server the loop belongs to.
func (lp *Loop) Server() *Server { return lp.server }

// Now returns the monotonic time in nanoseconds, refreshed at the start of
// each callback the l4 core dispatches, so a burst of work in one callback
// shares one clock read.
func (lp *Loop) Now() int64 { return lp.now }

// Tick refreshes the cached clock and returns it.
func (lp *Loop) Tick() int64 {
	lp.now = Monotonic()
	return lp.now
}

// NewDeadlineList makes a deadline list swept by this loop.
func (lp *Loop) NewDeadlineList(name string, d time.Duration) *DeadlineList {
	l := NewDeadlineList(name, d)
	lp.lists = append(lp.lists, l)
	return l
}

// OnSweep registers f to run on every sweep of this loop (after deadlines).
func (lp *Loop) OnSweep(f func(now int64)) { lp.sweepers = append(lp.sweepers, f) }

// OnDrain registers f to run on this loop when its clients are asked to
// finish: the server drains, or the Loop's acceptor was replaced.
func (lp *Loop) OnDrain(f func()) { lp.drainers = append(lp.drainers, f) }

// Draining reports whether the server is draining (refusing new clients).
func (lp *Loop) Draining() bool { return lp.server.draining.Load() }

// Sweep runs the loop's sweep now: expired deadlines, then the OnSweep
// functions. It must run on the loop; the server runs it every
// SweepInterval, and tests of a protocol layer call it on a Loop they
// drive by hand.
func (lp *Loop) Sweep() { lp.sweep() }

func (lp *Loop) sweep() {
	now := lp.Tick()
	for _, l := range lp.lists {
		// Zero-length lists are polls (re-armed every sweep), not timeouts.
		if n := l.expire(now); n > 0 && l.duration > 0 {
			lp.server.stats.timeouts(l.name, n)
		}
	}
	for _, f := range lp.sweepers {
		f(now)
	}
}

// EachClient calls f for every open client connection of the loop. f may
// close the connection it is given. It must run on the loop (from a
// callback, a sweep or an Execute'd task), like everything else a Loop
// owns.
func (lp *Loop) EachClient(f func(ClientHandler)) {
	for cc := lp.clients.cnext; cc != nil && cc != &lp.clients; {
		next := cc.cnext
		f(cc.handler)
		cc = next
	}
}

func (lp *Loop) drain(closeIdle bool) {
	lp.Tick()
	for _, f := range lp.drainers {
		f()
	}
	// EachClient iterates from a snapshot of the next pointer: Drain may
	// close (and unlink) the client being visited.
	lp.EachClient(func(h ClientHandler) { h.Drain(closeIdle) })
}

// ClientConn is the part of a client connection's state that l4 owns. A
// protocol's per-connection handler embeds it; l4 links it into its loop's
// client list (for drain) and counts it against the connection limit.
type ClientConn struct {
	Deadline
	// Conn is the gnet connection; valid until OnClose.
	Conn gnet.Conn
	// Loop is the owning loop.
	Loop *Loop
	// Listener accepted the connection.
	Listener *Listener
	// Remote is the client's address: the peer's, or the one a PROXY
	// protocol header carried (ProxyPolicy). IPv4 clients have 4-byte
	// addresses, also on a dual-stack socket.
	Remote netip.AddrPort

	handler      ClientHandler
	cprev, cnext *ClientConn
}

func (cc *ClientConn) l4Client() *ClientConn { return cc }

func (lp *Loop) link(cc *ClientConn) {
	if lp.clients.cnext == nil {
		lp.clients.cnext, lp.clients.cprev = &lp.clients, &lp.clients
	}
	tail := lp.clients.cprev
	cc.cprev, cc.cnext = tail, &lp.clients
	tail.cnext = cc
	lp.clients.cprev = cc
	lp.nclients++
}

func (lp *Loop) unlink(cc *ClientConn) {
	if cc.cprev == nil {
		return
	}
	cc.cprev.cnext = cc.cnext
	cc.cnext.cprev = cc.cprev
	cc.cprev, cc.cnext = nil, nil
	lp.nclients--
}
