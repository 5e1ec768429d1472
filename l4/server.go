// Package l4 is frontdoor's event-loop core. It runs the gnet engine
// (listeners, one event loop per core, SO_REUSEPORT), owns per-loop state,
// dispatches gnet's callbacks to per-connection handlers, enforces the
// gateway-wide connection limit, and provides what gnet does not: deadlines
// swept on each loop, and a graceful drain (refuse new clients, let
// in-flight work finish, then stop).
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
	// Drain asks the connection to finish its current exchange and close;
	// an idle connection closes at once.
	Drain()
	l4Client() *ClientConn
}

// Acceptor turns accepted connections into handlers. One Acceptor serves all
// listeners of a Server.
type Acceptor interface {
	// NewLoop is called once per event loop, on that loop, before its first
	// connection is accepted; it sets up per-loop protocol state (lp.Proto).
	NewLoop(lp *Loop)
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
	MaxConnections int // 0: unlimited
	// ProxyHeaderTimeout bounds the wait for a connection's PROXY protocol
	// header (on an optional listener, for its first bytes), counted from
	// accept; required when a listener has a PROXY mode.
	ProxyHeaderTimeout time.Duration
	Log                *slog.Logger
}

// Server runs the gnet engine for a set of listeners.
type Server struct {
	opts      Options
	acceptor  Acceptor
	log       *slog.Logger
	listeners []*Listener

	engine   gnet.Engine
	booted   chan struct{}
	draining atomic.Bool
	open     atomic.Int64 // client connections, all listeners

	loopsMu sync.Mutex
	loops   atomic.Pointer[[]*Loop]

	proxy bool // some listener has a PROXY protocol mode

	stats Stats
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
	s := &Server{opts: opts, acceptor: acceptor, log: opts.Log, booted: make(chan struct{})}
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

// Loops returns the loops seen so far (those that had a connection).
func (s *Server) Loops() []*Loop {
	if p := s.loops.Load(); p != nil {
		return *p
	}
	return nil
}

// Serve listens and serves until ctx is cancelled, then drains for at most
// drain and stops. ready, when non-nil, is called once listening.
func (s *Server) Serve(ctx context.Context, drain time.Duration, ready func()) error {
	addrs := make([]string, len(s.listeners))
	for i, ln := range s.listeners {
		addrs[i] = "tcp://" + ln.Address
	}
	opts := []gnet.Option{
		gnet.WithMulticore(s.opts.Loops != 1),
		gnet.WithReusePort(s.opts.ReusePort),
		gnet.WithTicker(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(gnetLogger{s.log}),
		gnet.WithLogLevel(gnetlog.WarnLevel),
	}
	if s.opts.Loops > 0 {
		opts = append(opts, gnet.WithNumEventLoop(s.opts.Loops))
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
	s.Drain(drain)
	stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.engine.Stop(stopCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("engine stop", "err", err)
	}
	return <-errc
}

// Drain refuses new client connections, asks every open one to finish its
// exchange and close, and waits until none is left or timeout passes.
func (s *Server) Drain(timeout time.Duration) {
	if s.draining.Swap(true) {
		return
	}
	s.log.Info("draining", "open_clients", s.open.Load(), "timeout", timeout)
	for _, lp := range s.Loops() {
		lp := lp
		_ = lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			lp.drain()
			return nil
		}))
	}
	deadline := time.Now().Add(timeout)
	for s.open.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := s.open.Load(); n > 0 {
		s.log.Warn("drain timeout, closing remaining clients", "open_clients", n)
	} else {
		s.log.Info("drained")
	}
}

// loopFor returns the Loop of el, creating it on first sight. It runs on el.
func (s *Server) loopFor(el gnet.EventLoop) *Loop {
	if p := s.loops.Load(); p != nil {
		for _, lp := range *p {
			if lp.el == el {
				return lp
			}
		}
	}
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	var cur []*Loop
	if p := s.loops.Load(); p != nil {
		cur = *p
		for _, lp := range cur {
			if lp.el == el {
				return lp
			}
		}
	}
	lp := &Loop{server: s, el: el, index: len(cur)}
	lp.Tick()
	if s.proxy {
		lp.proxyList = lp.NewDeadlineList("proxy_header", s.opts.ProxyHeaderTimeout)
	}
	s.acceptor.NewLoop(lp)
	next := make([]*Loop, len(cur)+1)
	copy(next, cur)
	next[len(cur)] = lp
	s.loops.Store(&next)
	return lp
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

// OnBoot implements gnet.EventHandler.
func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	s.engine = eng
	close(s.booted)
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
	if s.draining.Load() {
		ln.Refused.Add(1)
		s.stats.refused("draining")
		return s.acceptor.Refusal(ln, "draining"), gnet.Close
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
	if n := s.open.Add(1); s.opts.MaxConnections > 0 && n > int64(s.opts.MaxConnections) {
		s.open.Add(-1)
		ln.Refused.Add(1)
		s.stats.refused("max_connections")
		return s.acceptor.Refusal(ln, "max_connections"), gnet.Close
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
	h, out, action := s.acceptor.Accept(conn)
	cc := h.l4Client()
	cc.handler = h
	conn.Loop.link(cc)
	conn.Conn.SetContext(h)
	return h, out, action
}

// OnClose implements gnet.EventHandler.
func (s *Server) OnClose(c gnet.Conn, err error) gnet.Action {
	h, _ := c.Context().(Handler)
	if h == nil {
		return gnet.None // refused before a handler existed
	}
	if ch, ok := h.(ClientHandler); ok {
		cc := ch.l4Client()
		if cc.Loop != nil {
			cc.Loop.Tick()
			cc.Loop.unlink(cc)
		}
		cc.Disarm()
		s.open.Add(-1)
		cc.Listener.Open.Add(-1)
	}
	h.OnClose(c, err)
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
	for _, lp := range s.Loops() {
		_ = lp.el.Execute(context.Background(), lp)
	}
	return s.opts.SweepInterval, gnet.None
}

// Run implements gnet.Runnable: the per-loop sweep, executed on the loop.
func (lp *Loop) Run(context.Context) error {
	lp.sweep()
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
