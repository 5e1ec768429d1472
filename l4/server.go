// Package l4 is frontdoor's event-loop core. It runs the gnet engine
// (listeners, one event loop per core, SO_REUSEPORT), owns per-loop state,
// dispatches gnet's callbacks to per-connection handlers, enforces the
// gateway-wide connection limit, and provides what gnet does not: deadlines
// swept on each loop, a graceful drain (let in-flight work finish, then
// stop), the replacement of the protocol layer while serving (a
// configuration reload: SetAcceptor), and the handover of new connections
// to another process (a binary upgrade: Steer).
//
// l4 knows nothing of HTTP. A protocol plugs in through Acceptor (client
// connections) and Handler (any connection, including outbound ones that
// the protocol registers on a loop itself).
package l4

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	gnetlog "github.com/panjf2000/gnet/v2/pkg/logging"
)

// Handler owns one connection's protocol state; it is stored as the gnet
// connection's context. Callbacks run on the connection's loop.
type Handler interface {
	// OnTraffic is called when bytes are readable (or after a Wake).
	OnTraffic(c gnet.Conn) gnet.Action
	// OnClose is called once when the connection is closed, for any reason.
	OnClose(c gnet.Conn, err error)
}

// Opener is implemented by handlers of outbound connections (registered on
// a loop with gnet's EventLoop.Enroll and the handler as context) that want
// to know when the connection is live on the loop.
type Opener interface {
	OnOpen(c gnet.Conn) gnet.Action
}

// ClientHandler is the handler of an accepted client connection. It embeds
// ClientConn.
type ClientHandler interface {
	Handler
	// Drain asks the connection to close at the end of an exchange whose
	// response told the client so, never under a request in flight. With
	// closeIdle (a stop) an idle connection closes at once; without (a
	// reload or an upgrade) it waits for its next request, which is
	// answered as the last, or for its idle timeout, so that no client
	// races a close with a request it is sending.
	Drain(closeIdle bool)
	l4Client() *ClientConn
}

// Acceptor turns accepted connections into handlers. One Acceptor serves all
// listeners of a Server; SetAcceptor replaces it for the connections
// accepted from then on.
type Acceptor interface {
	// NewLoop is called once per event loop, on that loop, before its first
	// connection is accepted; it sets up per-loop protocol state (lp.Proto).
	// Each acceptor has its own Loop per event loop (see SetAcceptor).
	NewLoop(lp *Loop)
	// Release is called on an event loop once the acceptor has been
	// replaced and the last connection it accepted there has closed; it
	// frees the loop's protocol state (backend connections). Nothing of
	// lp is used afterwards.
	Release(lp *Loop)
	// Accept returns the handler for a new client connection with cc
	// filled in (Conn, Loop, Listener). out is sent at once (a greeting);
	// action may be gnet.Close.
	Accept(cc ClientConn) (h ClientHandler, out []byte, action gnet.Action)
	// Refusal returns what a connection refused by the limit or by a drain
	// is sent before it is closed (an HTTP 503, say); nil sends nothing.
	Refusal(ln *Listener, reason string) []byte
}

// ListenerSpec names an address to listen on.
type ListenerSpec struct {
	Name    string
	Address string // host:port
	// Proxy says whether connections start with a PROXY protocol header
	// and from which peers it is believed.
	Proxy ProxyPolicy
}

// Listener is a bound listening address and its counters.
type Listener struct {
	Name    string
	Address string
	Index   int

	ip    net.IP // nil when bound to all addresses
	port  int
	proxy ProxyPolicy

	Accepted atomic.Int64 // connections accepted (including refused ones)
	Refused  atomic.Int64 // closed at once: over the limit or draining
	Open     atomic.Int64 // currently open
	// Proxy counts the PROXY protocol outcomes when ProxyMode is not
	// ProxyOff.
	Proxy ProxyStats
}

// ProxyMode is the listener's PROXY protocol mode.
func (ln *Listener) ProxyMode() ProxyMode { return ln.proxy.Mode }

// Options configures a Server.
type Options struct {
	Listeners      []ListenerSpec
	Loops          int // 0: one per CPU
	ReusePort      bool
	ReadBufferCap  int
	WriteBufferCap int
	SweepInterval  time.Duration
	MaxConnections int // 0: unlimited; see SetMaxConnections
	// ProxyHeaderTimeout bounds the wait for a connection's PROXY protocol
	// header (on an optional listener, for its first bytes), counted from
	// accept; required when a listener has a PROXY mode.
	ProxyHeaderTimeout time.Duration
	Log                *slog.Logger
	// Released, when set, is called once for every acceptor replaced by
	// SetAcceptor, after its Release has run on every loop it served: its
	// shared resources (TLS terminators, say) can then be closed. It runs
	// on an event loop or on the caller of SetAcceptor; it must not block.
	Released func(Acceptor)
}

// DrainOptions says how Serve ends once its context is cancelled.
type DrainOptions struct {
	// Timeout bounds the wait for open connections to finish; whatever is
	// left then is closed.
	Timeout time.Duration
	// Handoff is the drain of a binary upgrade: another process has taken
	// the new connections over (Steer). Connections this one still
	// accepts (queued before the handover) are served, each with one
	// exchange, not refused; idle connections are left to their next
	// request or idle timeout instead of being closed under a request
	// their client may be sending. Without Handoff (a stop) new
	// connections are refused and idle ones closed at once.
	Handoff bool
	// MinListen keeps the listening sockets open at least this long after
	// the drain began, even once no connection is left: with Handoff,
	// handshakes the kernel began on this process's sockets before the
	// handover finish and are served here rather than reset.
	MinListen time.Duration
}

// Server runs the gnet engine for a set of listeners.
type Server struct {
	opts      Options
	loops     int // event loops, resolved (Options.Loops 0 is one per CPU)
	log       *slog.Logger
	listeners []*Listener

	engine    gnet.Engine
	booted    chan struct{} // closed by the first OnTick: every loop and socket is up
	bootOnce  sync.Once
	draining  atomic.Bool  // stop: new connections are refused
	handoff   atomic.Bool  // upgrade: new connections are served once, then closed
	open      atomic.Int64 // client connections, all listeners
	maxConns  atomic.Int64
	steerLock sync.Mutex

	// gen is the generation new connections are accepted by. slotsMu
	// serializes a generation's replacement with the creation of Loops,
	// so that no Loop of a retired generation is made after it retired.
	gen     atomic.Pointer[generation]
	slotsMu sync.Mutex
	slots   atomic.Pointer[[]*loopSlot]

	proxy bool // some listener has a PROXY protocol mode

	stats Stats
}

// generation is one Acceptor and the Loops made for it. A generation is
// retired when SetAcceptor replaces it; its Loops keep serving the
// connections they accepted, and once the last one is released the
// Released callback runs.
type generation struct {
	acceptor Acceptor
	live     atomic.Int32 // Loops made and not yet released
	retired  atomic.Bool
	done     atomic.Bool // Released was called
}

// loopSlot is one gnet event loop: the Loop of the current generation (nil
// until the loop's first connection under it) and the Loops of retired
// generations with connections left. Only its event loop touches cur and
// old.
type loopSlot struct {
	server *Server
	el     gnet.EventLoop
	index  int
	cur    *Loop
	old    []*Loop
	// deferred is the loop's Deferred queue (Loop.Defer); nil on a slot
	// that has not served a connection yet.
	deferred *deferQueue
}

// NewServer validates opts and returns a server that is not yet listening.
func NewServer(opts Options, acceptor Acceptor) (*Server, error) {
	if len(opts.Listeners) == 0 {
		return nil, errors.New("l4: no listeners")
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = 250 * time.Millisecond
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	s := &Server{opts: opts, log: opts.Log, booted: make(chan struct{}), loops: opts.Loops}
	if s.loops <= 0 {
		s.loops = runtime.NumCPU() // as gnet does with multicore and no count
	}
	s.gen.Store(&generation{acceptor: acceptor})
	s.maxConns.Store(int64(opts.MaxConnections))
	s.stats.init()
	for i, spec := range opts.Listeners {
		if spec.Proxy.Mode != ProxyOff {
			if len(spec.Proxy.From) == 0 {
				return nil, fmt.Errorf("l4: listener %s: PROXY protocol %s without trusted networks", spec.Name, spec.Proxy.Mode)
			}
			if opts.ProxyHeaderTimeout <= 0 {
				return nil, fmt.Errorf("l4: listener %s: PROXY protocol without a header timeout", spec.Name)
			}
			s.proxy = true
		}
		host, portStr, err := net.SplitHostPort(spec.Address)
		if err != nil {
			return nil, fmt.Errorf("l4: listener %s: %w", spec.Name, err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil || port <= 0 || port > 65535 {
			return nil, fmt.Errorf("l4: listener %s: bad port %q", spec.Name, portStr)
		}
		ln := &Listener{Name: spec.Name, Address: spec.Address, Index: i, port: port, proxy: spec.Proxy}
		if host != "" {
			if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
				ln.ip = ip
			}
		}
		s.listeners = append(s.listeners, ln)
	}
	return s, nil
}

// Listeners returns the server's listeners (for counters).
func (s *Server) Listeners() []*Listener { return s.listeners }

// Stats returns the server's counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Draining reports whether the server is draining (see Drain).
func (s *Server) Draining() bool { return s.draining.Load() }

// OpenClients is the number of open client connections.
func (s *Server) OpenClients() int64 { return s.open.Load() }

// LoopCount is the number of event loops seen so far (those that had a
// client connection).
func (s *Server) LoopCount() int { return len(s.slotList()) }

// EventLoops is the number of event loops the engine runs; with ReusePort
// each listener has that many sockets.
func (s *Server) EventLoops() int { return s.loops }

// ReusePort reports whether each loop has its own SO_REUSEPORT socket.
func (s *Server) ReusePort() bool { return s.opts.ReusePort }

// SetMaxConnections changes the connection limit (0: unlimited) for the
// connections accepted from now on; open ones are not closed.
func (s *Server) SetMaxConnections(n int) { s.maxConns.Store(int64(n)) }

// Acceptor returns the acceptor of new connections.
func (s *Server) Acceptor() Acceptor { return s.gen.Load().acceptor }

// SetAcceptor makes a the acceptor of the connections accepted from now on
// (a configuration reload). The connections the previous acceptor
// accepted stay with it: each loop drains them the way a reload must
// (Drain(false): the exchange in flight completes, the next response says
// Connection: close, idle ones wait for their next request or idle
// timeout), and once the last of them has closed on a loop the previous
// acceptor's Release runs there. Options.Released follows once every loop
// has released it. SetAcceptor returns once every loop has begun the
// drain: a request read after it is the last of its connection. Safe from
// any goroutine but the event loops.
func (s *Server) SetAcceptor(a Acceptor) {
	s.slotsMu.Lock()
	old := s.gen.Load()
	s.gen.Store(&generation{acceptor: a})
	old.retired.Store(true)
	slots := s.slotList()
	s.slotsMu.Unlock()
	var wg sync.WaitGroup
	for _, sl := range slots {
		sl := sl
		wg.Add(1)
		err := sl.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			defer wg.Done()
			sl.retireCurrent()
			return nil
		}))
		if err != nil {
			wg.Done() // the engine is stopping: its connections end anyway
		}
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(setAcceptorWait):
		s.log.Warn("an event loop has not begun draining the replaced configuration's connections", "waited", setAcceptorWait)
	}
	// A generation that never got a connection has no Loop to wait for.
	s.maybeReleased(old)
}

// setAcceptorWait bounds SetAcceptor's wait for the loops: a loop busy for
// longer than that is wedged, and the reload must not hang on it.
const setAcceptorWait = 5 * time.Second

// retireCurrent retires the slot's Loop if its generation is no longer the
// current one. It runs on the slot's loop.
func (sl *loopSlot) retireCurrent() {
	lp := sl.cur
	if lp == nil || !lp.gen.retired.Load() {
		return
	}
	sl.cur = nil
	lp.retired = true
	sl.old = append(sl.old, lp)
	lp.drain(false)
	if lp.nclients == 0 {
		lp.release()
	}
}

// release frees a retired Loop that has no client left. It runs on the
// loop.
func (lp *Loop) release() {
	if lp.released {
		return
	}
	lp.released = true
	sl := lp.slot
	for i, o := range sl.old {
		if o == lp {
			sl.old = append(sl.old[:i], sl.old[i+1:]...)
			break
		}
	}
	lp.gen.acceptor.Release(lp)
	lp.gen.live.Add(-1)
	lp.server.maybeReleased(lp.gen)
}

// maybeReleased calls Options.Released once for a retired generation whose
// Loops are all released.
func (s *Server) maybeReleased(g *generation) {
	if !g.retired.Load() || g.live.Load() != 0 || !g.done.CompareAndSwap(false, true) {
		return
	}
	if s.opts.Released != nil {
		s.opts.Released(g.acceptor)
	}
}

func (s *Server) slotList() []*loopSlot {
	if p := s.slots.Load(); p != nil {
		return *p
	}
	return nil
}

// Serve listens and serves until ctx is cancelled, then drains as drain()
// says at that moment and stops. ready, when non-nil, is called once every
// loop and listening socket is up.
func (s *Server) Serve(ctx context.Context, drain func() DrainOptions, ready func()) error {
	addrs := make([]string, len(s.listeners))
	for i, ln := range s.listeners {
		addrs[i] = "tcp://" + ln.Address
	}
	opts := []gnet.Option{
		gnet.WithMulticore(s.loops != 1),
		gnet.WithNumEventLoop(s.loops),
		gnet.WithReusePort(s.opts.ReusePort),
		gnet.WithTicker(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(gnetLogger{s.log}),
		gnet.WithLogLevel(gnetlog.WarnLevel),
	}
	if s.opts.ReadBufferCap > 0 {
		opts = append(opts, gnet.WithReadBufferCap(s.opts.ReadBufferCap))
	}
	if s.opts.WriteBufferCap > 0 {
		opts = append(opts, gnet.WithWriteBufferCap(s.opts.WriteBufferCap))
	}
	errc := make(chan error, 1)
	go func() { errc <- gnet.Rotate(s, addrs, opts...) }()
	select {
	case err := <-errc:
		if err == nil {
			err = errors.New("engine stopped before it booted")
		}
		return fmt.Errorf("l4: listen: %w", err)
	case <-s.booted:
	}
	for _, ln := range s.listeners {
		s.log.Info("listening", "listener", ln.Name, "address", ln.Address)
	}
	if ready != nil {
		ready()
	}
	select {
	case err := <-errc:
		return fmt.Errorf("l4: engine stopped: %w", err)
	case <-ctx.Done():
	}
	s.Drain(drain())
	stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.engine.Stop(stopCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("engine stop", "err", err)
	}
	return <-errc
}

// Drain asks every open client connection to finish (see
// ClientHandler.Drain and DrainOptions) and waits until none is left and
// MinListen has passed, or Timeout passes.
func (s *Server) Drain(o DrainOptions) {
	if o.Handoff {
		s.handoff.Store(true)
	} else {
		s.draining.Store(true)
	}
	s.log.Info("draining", "open_clients", s.open.Load(), "timeout", o.Timeout, "handoff", o.Handoff)
	for _, sl := range s.slotList() {
		sl := sl
		_ = sl.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			if sl.cur != nil {
				sl.cur.drain(!o.Handoff)
			}
			for _, lp := range slices.Clone(sl.old) {
				if !lp.released {
					lp.drain(!o.Handoff)
				}
			}
			return nil
		}))
	}
	start := time.Now()
	deadline := start.Add(o.Timeout)
	for time.Now().Before(deadline) && (s.open.Load() > 0 || time.Since(start) < o.MinListen) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := s.open.Load(); n > 0 {
		s.log.Warn("drain timeout, closing remaining clients", "open_clients", n)
	} else {
		s.log.Info("drained")
	}
}

// loopFor returns the Loop of the current generation on el, creating it
// (and el's slot) on first sight. It runs on el.
func (s *Server) loopFor(el gnet.EventLoop) *Loop {
	sl := s.slotOf(el)
	if sl != nil && sl.cur != nil {
		return sl.cur
	}
	s.slotsMu.Lock()
	defer s.slotsMu.Unlock()
	if sl == nil {
		cur := s.slotList()
		sl = &loopSlot{server: s, el: el, index: len(cur)}
		sl.startDeferQueue()
		next := make([]*loopSlot, len(cur)+1)
		copy(next, cur)
		next[len(cur)] = sl
		s.slots.Store(&next)
	}
	// Under slotsMu the current generation cannot be retired meanwhile.
	g := s.gen.Load()
	lp := &Loop{server: s, slot: sl, gen: g, el: el, index: sl.index}
	g.live.Add(1)
	lp.Tick()
	if s.proxy {
		lp.proxyList = lp.NewDeadlineList("proxy_header", s.opts.ProxyHeaderTimeout)
	}
	g.acceptor.NewLoop(lp)
	sl.cur = lp
	return lp
}

func (s *Server) slotOf(el gnet.EventLoop) *loopSlot {
	for _, sl := range s.slotList() {
		if sl.el == el {
			return sl
		}
	}
	return nil
}

func (s *Server) listenerFor(c gnet.Conn) *Listener {
	if len(s.listeners) == 1 {
		return s.listeners[0]
	}
	la, _ := c.LocalAddr().(*net.TCPAddr)
	if la == nil {
		return s.listeners[0]
	}
	var wildcard *Listener
	for _, ln := range s.listeners {
		if ln.port != la.Port {
			continue
		}
		if ln.ip == nil {
			wildcard = ln
			continue
		}
		if ln.ip.Equal(la.IP) {
			return ln
		}
	}
	if wildcard != nil {
		return wildcard
	}
	return s.listeners[0]
}

// OnBoot implements gnet.EventHandler. gnet calls it before it binds the
// sockets of loops after the first, so readiness waits for the first
// OnTick, which gnet's ticker makes once every loop runs.
func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	s.engine = eng
	return gnet.None
}

// OnShutdown implements gnet.EventHandler.
func (s *Server) OnShutdown(gnet.Engine) {}

// OnOpen implements gnet.EventHandler. Outbound connections arrive with
// their handler as context; accepted ones get one from the Acceptor.
func (s *Server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if h := c.Context(); h != nil {
		if o, ok := h.(Opener); ok {
			return nil, o.OnOpen(c)
		}
		return nil, gnet.None
	}
	lp := s.loopFor(c.EventLoop())
	lp.Tick()
	ln := s.listenerFor(c)
	ln.Accepted.Add(1)
	acceptor := lp.gen.acceptor
	if s.draining.Load() {
		ln.Refused.Add(1)
		s.stats.refused("draining")
		return acceptor.Refusal(ln, "draining"), gnet.Close
	}
	remote := addrPortOf(c.RemoteAddr())
	trusted := false
	if ln.proxy.Mode != ProxyOff {
		trusted = ln.proxy.trusts(remote.Addr())
		if !trusted && ln.proxy.Mode == ProxyRequired {
			// Closed before it costs a slot or a read.
			ln.Proxy.Rejected[ProxyUntrusted].Add(1)
			lp.logProxyReject(ln, ProxyUntrusted, remote, nil)
			return nil, gnet.Close
		}
	}
	if n, limit := s.open.Add(1), s.maxConns.Load(); limit > 0 && n > limit {
		s.open.Add(-1)
		ln.Refused.Add(1)
		s.stats.refused("max_connections")
		return acceptor.Refusal(ln, "max_connections"), gnet.Close
	}
	ln.Open.Add(1)
	cc := ClientConn{Conn: c, Loop: lp, Listener: ln, Remote: remote}
	if ln.proxy.Mode != ProxyOff {
		// The Acceptor gets the connection once its header is read.
		p := &proxyConn{ClientConn: cc, srv: s, trusted: trusted}
		p.handler = p
		lp.link(&p.ClientConn)
		c.SetContext(p)
		lp.proxyList.Arm(&p.Deadline, p, lp.Now())
		return nil, gnet.None
	}
	_, out, action := s.accept(cc)
	return out, action
}

// accept hands a client connection to the Acceptor and makes the handler
// it returns the connection's.
func (s *Server) accept(conn ClientConn) (ClientHandler, []byte, gnet.Action) {
	h, out, action := conn.Loop.gen.acceptor.Accept(conn)
	cc := h.l4Client()
	cc.handler = h
	conn.Loop.link(cc)
	conn.Conn.SetContext(h)
	if s.handoff.Load() {
		// Queued before another process took the new connections over:
		// served, and told its first response is the last.
		h.Drain(false)
	}
	return h, out, action
}

// OnClose implements gnet.EventHandler.
func (s *Server) OnClose(c gnet.Conn, err error) gnet.Action {
	h, _ := c.Context().(Handler)
	if h == nil {
		return gnet.None // refused before a handler existed
	}
	ch, ok := h.(ClientHandler)
	if !ok {
		h.OnClose(c, err)
		return gnet.None
	}
	cc := ch.l4Client()
	lp := cc.Loop
	lp.Tick()
	lp.unlink(cc)
	cc.Disarm()
	s.open.Add(-1)
	cc.Listener.Open.Add(-1)
	h.OnClose(c, err)
	if lp.retired && lp.nclients == 0 {
		lp.release()
	}
	return gnet.None
}

// OnTraffic implements gnet.EventHandler.
func (s *Server) OnTraffic(c gnet.Conn) gnet.Action {
	h, _ := c.Context().(Handler)
	if h == nil {
		return gnet.Close
	}
	return h.OnTraffic(c)
}

// OnTick implements gnet.EventHandler. It runs on gnet's ticker goroutine,
// not on a loop, so it hands each loop its sweep with Execute.
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	s.bootOnce.Do(func() { close(s.booted) })
	for _, sl := range s.slotList() {
		_ = sl.el.Execute(context.Background(), sl)
	}
	return s.opts.SweepInterval, gnet.None
}

// Run implements gnet.Runnable: the per-loop sweep of every generation's
// Loop, executed on the loop.
func (sl *loopSlot) Run(context.Context) error {
	if sl.cur != nil {
		sl.cur.sweep()
	}
	// A sweep may end the last client of a retired Loop, which releases
	// it and shrinks old: walk a copy (only while a reload drains).
	if len(sl.old) > 0 {
		for _, lp := range slices.Clone(sl.old) {
			if !lp.released {
				lp.sweep()
			}
		}
	}
	return nil
}

// gnetLogger routes gnet's own log lines into the structured log.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(format string, args ...any) {}
func (g gnetLogger) Infof(format string, args ...any) {
	g.l.Info(fmt.Sprintf(format, args...), "component", "gnet")
}
func (g gnetLogger) Warnf(format string, args ...any) {
	g.l.Warn(fmt.Sprintf(format, args...), "component", "gnet")
}
func (g gnetLogger) Errorf(format string, args ...any) {
	g.l.Error(fmt.Sprintf(format, args...), "component", "gnet")
}
func (g gnetLogger) Fatalf(format string, args ...any) {
	g.l.Error(fmt.Sprintf(format, args...), "component", "gnet", "fatal", true)
}
