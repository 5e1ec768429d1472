package l4

import (
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"frontdoor/l4/proxyproto"
)

// ProxyMode says whether a listener expects a PROXY protocol header in
// front of its connections' bytes (package proxyproto).
type ProxyMode uint8

const (
	// ProxyOff: no header is expected; the bytes are the protocol's.
	ProxyOff ProxyMode = iota
	// ProxyOptional: a trusted peer may send a header or not (a load
	// balancer's health checks, direct clients during a migration). A
	// connection from any other peer is served with its own address, and
	// closed if it starts with a header: a header is never honoured from
	// an untrusted peer, and one sent from there is a misconfiguration or
	// a spoofing attempt, not a request.
	ProxyOptional
	// ProxyRequired: every connection must start with a header, and only
	// trusted peers may connect; others are closed at accept.
	ProxyRequired
)

// String returns the mode as the configuration spells it.
func (m ProxyMode) String() string {
	switch m {
	case ProxyOptional:
		return "optional"
	case ProxyRequired:
		return "required"
	}
	return "off"
}

// ProxyPolicy is a listener's PROXY protocol setting.
type ProxyPolicy struct {
	Mode ProxyMode
	// From are the networks of the peers (the load balancers) whose
	// headers are trusted. Section 5 of the specification: "accepting the
	// header only from a number of known sources should be safe".
	From []netip.Prefix
}

// trusts reports whether a header from peer may be believed.
func (p *ProxyPolicy) trusts(peer netip.Addr) bool {
	for _, pfx := range p.From {
		if pfx.Contains(peer) {
			return true
		}
	}
	return false
}

// Counters of ProxyStats.Rejected: why a connection was closed before its
// header was accepted.
const (
	// ProxyUntrusted: a peer outside ProxyPolicy.From connected to a
	// required listener, or sent a header to an optional one.
	ProxyUntrusted = iota
	// ProxyMissing: a required listener's connection did not start with a
	// header.
	ProxyMissing
	// ProxyMalformed, ProxyTooLong, ProxyUnsupported: the header was
	// refused by the parser (proxyproto.Reason).
	ProxyMalformed
	ProxyTooLong
	ProxyUnsupported
	// ProxyTimeout: the header, or on an optional listener the first
	// bytes, did not arrive within Options.ProxyHeaderTimeout.
	ProxyTimeout
	numProxyRejects
)

var proxyRejectNames = [numProxyRejects]string{"untrusted", "missing", "malformed", "too_long", "unsupported", "timeout"}

// ProxyStats counts a listener's PROXY protocol outcomes. Every connection
// of a listener with a PROXY mode other than ProxyOff ends up in exactly
// one counter (unless the server drains or it closes first).
type ProxyStats struct {
	// V1 and V2 count headers accepted that carried the client's address.
	V1, V2 atomic.Int64
	// Local counts version 2 LOCAL headers (the load balancer's own
	// connections, such as health checks): served with the peer's address.
	Local atomic.Int64
	// Unknown counts headers accepted that carried no usable address
	// (v1 UNKNOWN; v2 AF_UNSPEC, AF_UNIX or UDP): served with the peer's
	// address, as the specification says.
	Unknown atomic.Int64
	// Direct counts connections of an optional listener without a header.
	Direct atomic.Int64
	// Rejected counts connections closed, by ProxyUntrusted... ProxyTimeout.
	Rejected [numProxyRejects]atomic.Int64
}

// Snapshot returns the counters by name: "v1", "v2", "local", "unknown",
// "direct" and "rejected.<reason>" (untrusted, missing, malformed,
// too_long, unsupported, timeout).
func (st *ProxyStats) Snapshot() map[string]int64 {
	m := map[string]int64{
		"v1": st.V1.Load(), "v2": st.V2.Load(), "local": st.Local.Load(),
		"unknown": st.Unknown.Load(), "direct": st.Direct.Load(),
	}
	for i, name := range proxyRejectNames {
		m["rejected."+name] = st.Rejected[i].Load()
	}
	return m
}

// proxyConn is a client connection of a PROXY protocol listener until its
// header is read. l4 is its handler meanwhile; once the client's address
// is known (or the connection turns out to be a direct one) the Acceptor
// gets the connection as if it had just opened, its bytes starting after
// the header: a TLS listener's ClientHello, say. It is linked into its
// loop's client list and counted against the limit like any client.
type proxyConn struct {
	ClientConn
	srv *Server
	// trusted: the peer is in ProxyPolicy.From, so a header is parsed;
	// otherwise (an optional listener) the first bytes are only sniffed.
	trusted bool
}

// Drain implements ClientHandler. A stop closes a connection that has sent
// no request yet at once. A handoff (closeIdle false) lets its header
// arrive: the connection is then accepted like any queued before the
// handover, and served once.
func (p *proxyConn) Drain(closeIdle bool) {
	if closeIdle {
		_ = p.Conn.Close()
	}
}

// OnClose implements Handler. The server has already unlinked and
// uncounted the connection.
func (p *proxyConn) OnClose(gnet.Conn, error) {}

// Expire implements Expirer: the header did not arrive in time.
func (p *proxyConn) Expire(int64) {
	p.reject(ProxyTimeout, nil)
	_ = p.Conn.Close()
}

// OnTraffic implements Handler: it reads the header from the bytes that
// have arrived, waits for more, or hands the connection over.
func (p *proxyConn) OnTraffic(c gnet.Conn) gnet.Action {
	p.Loop.Tick()
	buf, _ := c.Peek(-1)
	if !p.trusted {
		// An optional listener's untrusted peer: the bytes are the
		// protocol's, unless they are a header.
		switch proxyproto.Sniff(buf) {
		case proxyproto.NeedMore:
			return gnet.None
		case proxyproto.None:
			p.Listener.Proxy.Direct.Add(1)
			return p.handover(c, p.Remote)
		}
		p.reject(ProxyUntrusted, nil)
		return gnet.Close
	}
	var h proxyproto.Header
	n, err := proxyproto.Parse(buf, &h)
	switch {
	case err == proxyproto.ErrMissing && p.Listener.proxy.Mode == ProxyOptional:
		p.Listener.Proxy.Direct.Add(1)
		return p.handover(c, p.Remote)
	case err == proxyproto.ErrMissing:
		p.reject(ProxyMissing, err)
		return gnet.Close
	case err != nil:
		p.reject(proxyRejectOf(err), err)
		return gnet.Close
	case n == 0:
		return gnet.None // the deadline bounds the wait, MaxV2Length the bytes
	}
	_, _ = c.Discard(n)
	st := &p.Listener.Proxy
	remote := p.Remote
	switch {
	case h.Command == proxyproto.Local:
		st.Local.Add(1)
	case !h.Source.IsValid():
		st.Unknown.Add(1)
	default:
		if h.Version == 1 {
			st.V1.Add(1)
		} else {
			st.V2.Add(1)
		}
		remote = netip.AddrPortFrom(h.Source.Addr().Unmap(), h.Source.Port())
	}
	return p.handover(c, remote)
}

func proxyRejectOf(err error) int {
	if e, ok := err.(*proxyproto.Error); ok {
		switch e.Reason() {
		case proxyproto.TooLong:
			return ProxyTooLong
		case proxyproto.Unsupported:
			return ProxyUnsupported
		}
	}
	return ProxyMalformed
}

// handover gives the connection to the Acceptor with remote as the
// client's address, and lets the new handler see the bytes that followed
// the header.
func (p *proxyConn) handover(c gnet.Conn, remote netip.AddrPort) gnet.Action {
	lp := p.Loop
	p.Disarm()
	lp.unlink(&p.ClientConn)
	h, out, action := p.srv.accept(ClientConn{Conn: c, Loop: lp, Listener: p.Listener, Remote: remote})
	if len(out) > 0 {
		_, _ = c.Write(out)
	}
	if action != gnet.None || c.InboundBuffered() == 0 {
		return action
	}
	return h.OnTraffic(c)
}

// reject counts a connection closed for reason and logs it (rate-limited
// per loop); err is the parser's refusal, if any.
func (p *proxyConn) reject(reason int, err error) {
	p.Listener.Proxy.Rejected[reason].Add(1)
	p.Loop.logProxyReject(p.Listener, reason, p.Remote, err)
}

// logProxyReject logs a connection closed by the PROXY protocol stage, at
// most proxyLogBurst lines a second per loop; the counters see every one.
// peer is the connection's own peer (the load balancer, or whoever
// connected).
func (lp *Loop) logProxyReject(ln *Listener, reason int, peer netip.AddrPort, err error) {
	now := lp.Now()
	if now-lp.proxyLogWindow > int64(time.Second) {
		if lp.proxyLogSuppressed > 0 {
			lp.server.log.Warn("PROXY protocol log lines suppressed", "count", lp.proxyLogSuppressed)
		}
		lp.proxyLogWindow, lp.proxyLogBudget, lp.proxyLogSuppressed = now, proxyLogBurst, 0
	}
	if lp.proxyLogBudget == 0 {
		lp.proxyLogSuppressed++
		return
	}
	lp.proxyLogBudget--
	args := []any{"reason", proxyRejectNames[reason], "peer", peer.Addr().String(), "listener", ln.Name}
	if err != nil {
		args = append(args, "err", err.Error())
	}
	lp.server.log.Info("PROXY protocol: connection closed", args...)
}

// proxyLogBurst bounds the PROXY protocol log lines per second and loop.
const proxyLogBurst = 10

// addrPortOf returns a TCP address as a netip.AddrPort, IPv4-mapped IPv6
// addresses unmapped (a dual-stack socket reports IPv4 peers so); the zero
// AddrPort for other addresses.
func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return netip.AddrPortFrom(ip.Unmap(), uint16(ta.Port))
		}
	}
	return netip.AddrPort{}
}

// RemoteAddr returns Remote as a net.Addr: the connection's own when the
// client is its peer, a new one when a PROXY protocol header named
// another client.
func (cc *ClientConn) RemoteAddr() net.Addr {
	peer := cc.Conn.RemoteAddr()
	if addrPortOf(peer) == cc.Remote {
		return peer
	}
	return net.TCPAddrFromAddrPort(cc.Remote)
}
