package gateway

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/panjf2000/gnet/v2"

	"frontdoor/auth"
	"frontdoor/directory"
	"frontdoor/l4"
	"frontdoor/l7"
	"frontdoor/mailproxy"
	"frontdoor/poolmux"
	"frontdoor/tlsterm"
)

// The mail listeners (IMAP, POP3; package mailproxy) share the HTTP
// listeners' engine, authenticator (verdict cache, throttle, workers),
// router (directory snapshot) and TLS terminators. A generation with mail
// listeners hands l4 a mailMux as its acceptor: each connection goes to
// the mail handler or to l7 by its listener.

// mailMux is the l4.Acceptor of a generation that has mail listeners.
type mailMux struct {
	http *l7.Handler
	mail *mailproxy.Handler
}

func (m *mailMux) NewLoop(lp *l4.Loop) { m.http.NewLoop(lp); m.mail.NewLoop(lp) }
func (m *mailMux) Release(lp *l4.Loop) { m.mail.Release(lp); m.http.Release(lp) }

func (m *mailMux) Accept(cc l4.ClientConn) (l4.ClientHandler, []byte, gnet.Action) {
	if m.mail.Serves(cc.Listener.Index) {
		return m.mail.Accept(cc)
	}
	return m.http.Accept(cc)
}

func (m *mailMux) Refusal(ln *l4.Listener, reason string) []byte {
	if m.mail.Serves(ln.Index) {
		return m.mail.Refusal(ln, reason)
	}
	return m.http.Refusal(ln, reason)
}

// acceptor is what l4 hands the generation's new connections to.
func (gen *generation) acceptor() l4.Acceptor {
	if gen.mux != nil {
		return gen.mux
	}
	return gen.handler
}

// newMailHandler builds the generation's mail handler; nil without mail
// listeners.
func (g *Gateway) newMailHandler(gen *generation) (*mailproxy.Handler, error) {
	cfg := gen.cfg
	if !cfg.HasMail() {
		return nil, nil
	}
	m := &cfg.Mail
	mc := mailproxy.Config{
		Listeners:            make([]mailproxy.Listener, len(cfg.Listeners)),
		MasterUser:           m.MasterUser,
		MasterFormat:         m.MasterFormat,
		MaxLineBytes:         m.MaxLineBytes,
		MaxLiteralBytes:      m.MaxLiteralBytes,
		MaxCommandBytes:      m.MaxCommandBytes,
		MaxRelayBufferBytes:  m.MaxRelayBufferBytes,
		MaxHalfClosed:        m.MaxHalfClosed,
		LoginTimeout:         m.LoginTimeout.D(),
		IMAPIdleTimeout:      m.IMAPIdleTimeout.D(),
		POP3IdleTimeout:      m.POP3IdleTimeout.D(),
		FailureDelay:         m.FailureDelay.D(),
		MaxFailures:          m.MaxFailures,
		ConnectTimeout:       cfg.Backend.ConnectTimeout.D(),
		FlushTimeout:         cfg.Timeouts.Write.D(),
		ForwardClientAddress: m.ForwardClientAddress,
		Log:                  g.log.With("component", "mail"),
	}
	if m.Login == "client" {
		mc.Login = mailproxy.LoginClient
	} else {
		pw, err := cfg.MasterPassword()
		if err != nil {
			return nil, err
		}
		mc.MasterPassword = pw
	}
	for i, ln := range cfg.Listeners {
		var l mailproxy.Listener
		switch ln.Mail {
		case "imap":
			l.Protocol = mailproxy.IMAP
		case "pop3":
			l.Protocol = mailproxy.POP3
		default:
			continue
		}
		if st := gen.tls[i]; st != nil {
			if ln.TLS {
				l.TLS = st.t
			} else {
				l.StartTLS = st.t
			}
		}
		l.AllowPlaintextLogin = ln.AllowPlaintextLogin
		mc.Listeners[i] = l
	}
	ma := &mailAuth{a: gen.auth.a, r: gen.router, imapPort: m.IMAPBackendPort, pop3Port: m.POP3BackendPort}
	if m.BackendTLS {
		var roots *x509.CertPool // nil: the system roots
		if ca := cfg.Backend.TLSCA; ca != "" {
			var err error
			if roots, err = tlsterm.LoadCAFile(cfg.Resolve(ca)); err != nil {
				return nil, fmt.Errorf("%s:%d: backend.tls_ca: %w", cfg.Path, cfg.Line("backend.tls_ca"), err)
			}
		}
		ma.tls = &mailTLS{client: tlsterm.NewClient(maxUpstreamPlaintext, g.log), roots: roots, byName: map[string]*poolmux.TLS{}}
	}
	mc.Auth = ma
	g.mu.Lock()
	if g.mailStats == nil {
		// One set of counters across reloads, as for HTTP.
		g.mailStats = &mailproxy.Stats{}
	}
	stats := g.mailStats
	g.mu.Unlock()
	return mailproxy.NewHandler(mc, stats), nil
}

// mailAuth is the mail handler's Authenticator: the gateway's
// authenticator (same cache, throttle and workers as HTTP Basic) and the
// router's directory snapshot.
type mailAuth struct {
	a                  *authenticator
	r                  *router
	imapPort, pop3Port int
	tls                *mailTLS // nil: plaintext to the servers

	// inflight holds the credentials being verified and the sessions
	// waiting for each verdict: a client that opens several connections
	// at once (every mail client does) costs one verification, as
	// authenticator.submit does for HTTP.
	mu       sync.Mutex
	inflight map[auth.Key][]func()
}

// Login implements mailproxy.Authenticator. The cache key is HTTP Basic's,
// so a user signed in over HTTP is a cache hit over IMAP and the other way
// round.
func (m *mailAuth) Login(proto mailproxy.Protocol, user, pass []byte, client netip.Addr, wake func()) mailproxy.Verdict {
	a := m.a
	t := m.r.table.Load()
	key := a.hasher.Sum2(user, pass)
	now := l4.Monotonic()
	e, hit := a.cache.Get(key, now)
	if hit && e.gen != t.gen {
		e, hit = a.revalidate(t, key, e)
	}
	if !hit || !e.ok {
		if _, ok := a.throttle.Check(user, client, now); !ok {
			a.stats.Throttled.Add(1)
			return mailproxy.Verdict{Throttled: true}
		}
	}
	if !hit {
		a.stats.CacheMisses.Add(1)
		return m.submit(key, user, pass, wake)
	}
	a.stats.CacheHits.Add(1)
	if !e.ok {
		a.throttle.Failure(user, client, now)
		a.stats.Refused[0].Add(1)
		return mailproxy.Verdict{}
	}
	if e.fresh.Load() && e.fresh.Swap(false) {
		a.throttle.Success(user, client)
	}
	a.stats.Accepted[0].Add(1)
	db := e.user.Database
	srv := db.Active
	port := m.imapPort
	if proto == mailproxy.POP3 {
		port = m.pop3Port
	}
	return mailproxy.Verdict{OK: true, User: e.user.Login, Backend: mailproxy.Backend{
		Server: srv.Name, Database: db.Name, Addr: mailAddr(srv, port), TLS: m.tls.forServer(srv),
	}}
}

// submit verifies a credential on a worker, or joins the verification of
// the same credential already running; wake is called when the verdict is
// in the cache.
func (m *mailAuth) submit(key auth.Key, user, pass []byte, wake func()) mailproxy.Verdict {
	a := m.a
	m.mu.Lock()
	if ws, running := m.inflight[key]; running {
		if len(ws) >= maxCoalesced {
			m.mu.Unlock()
			a.stats.Overloaded.Add(1)
			return mailproxy.Verdict{Busy: true}
		}
		m.inflight[key] = append(ws, wake)
		m.mu.Unlock()
		a.stats.Coalesced.Add(1)
		return mailproxy.Verdict{Pending: true}
	}
	if m.inflight == nil {
		m.inflight = map[auth.Key][]func(){}
	}
	m.inflight[key] = []func(){wake}
	m.mu.Unlock()
	u, pw := bytes.Clone(user), bytes.Clone(pass)
	ok := a.pool.Submit(func() {
		e := a.verifyBasic(u, pw)
		ttl := a.ttl
		if !e.ok {
			ttl = a.failTTL
		}
		e.expires = l4.Monotonic() + ttl
		e.fresh.Store(true)
		a.cache.Put(key, e, e.expires)
		m.wakeWaiting(key)
	})
	if !ok {
		// Those who joined meanwhile ask again; this one is answered now.
		m.wakeWaiting(key)
		a.stats.Overloaded.Add(1)
		return mailproxy.Verdict{Busy: true}
	}
	return mailproxy.Verdict{Pending: true}
}

// wakeWaiting ends key's verification: every session waiting for it asks
// again (a session closed meanwhile ignores its wake).
func (m *mailAuth) wakeWaiting(key auth.Key) {
	m.mu.Lock()
	ws := m.inflight[key]
	delete(m.inflight, key)
	m.mu.Unlock()
	for _, w := range ws {
		w()
	}
}

// mailAddr is the server's host with the mail port: a port in the
// directory's address is the HTTP one.
func mailAddr(srv *directory.Server, port int) string {
	host := srv.Address
	if h, _, err := net.SplitHostPort(srv.Address); err == nil {
		host = h
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// mailTLS holds the TLS client settings of the mail servers, by name.
type mailTLS struct {
	client *tlsterm.Client
	roots  *x509.CertPool
	mu     sync.Mutex
	byName map[string]*poolmux.TLS
}

func (m *mailTLS) forServer(srv *directory.Server) *poolmux.TLS {
	if m == nil {
		return nil
	}
	name := srv.TLSServerName
	if name == "" {
		name = srv.Address
		if h, _, err := net.SplitHostPort(name); err == nil {
			name = h
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.byName[name]; t != nil {
		return t
	}
	t := &poolmux.TLS{Client: m.client, Config: tlsterm.ClientConfig(m.roots, name)}
	m.byName[name] = t
	return t
}

// reloadMailMaster rereads [mail] master_password_file (SIGHUP): logins
// from now on use the new password; a file that cannot be read leaves the
// old one in use.
func (gen *generation) reloadMailMaster() error {
	if gen.mail == nil || gen.cfg.Mail.Login != "master" {
		return nil
	}
	pw, err := gen.cfg.MasterPassword()
	if err != nil {
		return err
	}
	gen.mail.SetMasterPassword(pw)
	return nil
}

// mailDirectory closes the mail sessions whose server no longer holds
// their database's active copy in dir.
func (gen *generation) mailDirectory(dir *directory.Directory) {
	if gen.mail == nil {
		return
	}
	gen.mail.CheckActive(func(database, server string) bool {
		db := dir.Database(database)
		return db != nil && db.Active != nil && db.Active.Name == server
	})
}
