// Package gateway wires frontdoor together and owns its lifecycle: it turns a
// validated config.Config and a directory into runtime structures (listeners,
// protocol table, router, backend endpoints), starts the event-loop server,
// and stops it gracefully (refuse new clients, drain in-flight requests,
// close).
package gateway

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"frontdoor/accesslog"
	"frontdoor/directory"
	"frontdoor/gateway/config"
	"frontdoor/l4"
	"frontdoor/l7"
	"frontdoor/mailproxy"
	"frontdoor/poolmux"
	"frontdoor/tlsterm"
)

// Gateway is one running gateway: the event-loop server, the admin
// endpoint, and the configuration generations behind them. The current
// generation takes every new connection; after a configuration reload the
// earlier ones finish the connections they had (see reload.go).
type Gateway struct {
	log    *slog.Logger
	server *l4.Server
	trim   *trimmer

	adminAddr string
	// adminLn is the admin listening socket: inherited from the process
	// this one replaces (set before Serve), or bound by Serve.
	adminLn net.Listener

	// stats and poolStats are the HTTP and backend counters every
	// generation adds to, so that /stats runs on across reloads.
	stats     *l7.Stats
	bg        context.Context // ends when Serve returns: certificate watches
	stopBG    context.CancelFunc
	reloadMu  sync.Mutex // serializes configuration reloads
	mu        sync.Mutex
	cur       *generation   // takes new connections
	live      []*generation // cur and the retired ones still serving
	dir       *directory.Directory
	poolStats map[string]*poolmux.Stats // by endpoint key

	// handoff is set once a new process has taken over (a binary
	// upgrade): Serve's drain then serves what is still queued here.
	handoff atomic.Bool

	// accessLog (nil when [access_log] path is empty) and the component
	// states are the process's, shared by every generation.
	accessLog *accesslog.Log
	comps     *components
	// ended is the last endKeepAlive, for new generations (guarded by mu).
	ended []bool
	// mailStats are the IMAP and POP3 counters every generation adds to
	// (guarded by mu; nil until a generation has mail listeners).
	mailStats *mailproxy.Stats
}

// New builds the runtime structures for cfg and dir without listening.
func New(cfg *config.Config, dir *directory.Directory, log *slog.Logger) (*Gateway, error) {
	if cfg == nil || dir == nil {
		return nil, errors.New("gateway: config and directory are required")
	}
	if log == nil {
		log = slog.Default()
	}
	g := &Gateway{log: log, dir: dir, poolStats: map[string]*poolmux.Stats{}}
	comps, err := newComponents(cfg, log)
	if err != nil {
		return nil, err
	}
	g.comps = comps
	comps.changed = g.healthChanged
	comps.endKeepAlive = g.endKeepAlive
	if g.accessLog, err = openAccessLog(cfg, log); err != nil {
		return nil, err
	}
	g.bg, g.stopBG = context.WithCancel(context.Background())
	gen, err := g.newGeneration(cfg, dir, nil)
	if err != nil {
		g.stopBG()
		if g.accessLog != nil {
			_ = g.accessLog.Close()
		}
		return nil, err
	}
	specs := make([]l4.ListenerSpec, len(cfg.Listeners))
	for i, ln := range cfg.Listeners {
		specs[i] = l4.ListenerSpec{Name: ln.Name, Address: ln.Address, Proxy: proxyPolicy(&ln)}
	}
	srv, err := l4.NewServer(l4.Options{
		Listeners:      specs,
		Loops:          cfg.Engine.Loops,
		ReusePort:      cfg.Engine.ReusePort,
		ReadBufferCap:  cfg.Engine.ReadBufferBytes,
		WriteBufferCap: cfg.Engine.WriteBufferBytes,
		SweepInterval:  cfg.Engine.SweepInterval.D(),
		MaxConnections: cfg.Limits.MaxConnections,
		// A load balancer sends the header as the connection opens
		// (spec section 2); the header read timeout bounds it, as it
		// bounds a request head. Listeners do not change on a reload.
		ProxyHeaderTimeout: cfg.Timeouts.HeaderRead.D(),
		Log:                log,
		Released:           g.released,
	}, gen.acceptor())
	if err != nil {
		g.commit(gen)
		g.closeAll()
		if g.accessLog != nil {
			_ = g.accessLog.Close()
		}
		return nil, err
	}
	g.server = srv
	g.commit(gen)
	g.trim = newTrimmer(cfg.Runtime.MemoryTrimInterval.D(), cfg.Runtime.MemoryTrimMinBytes, g.handshakeActivity, log)
	return g, nil
}

// proxyPolicy is a validated listener's PROXY protocol setting.
func proxyPolicy(ln *config.Listener) l4.ProxyPolicy {
	var p l4.ProxyPolicy
	switch ln.ProxyProtocol {
	case "optional":
		p.Mode = l4.ProxyOptional
	case "required":
		p.Mode = l4.ProxyRequired
	default:
		return p
	}
	for _, s := range ln.ProxyProtocolFrom {
		if pfx, err := config.ParseProxySource(s); err == nil { // validated
			p.From = append(p.From, pfx)
		}
	}
	return p
}

// openAccessLog opens [access_log] path; nil when the log is off.
func openAccessLog(cfg *config.Config, log *slog.Logger) (*accesslog.Log, error) {
	al := &cfg.AccessLog
	if al.Path == "" {
		return nil, nil
	}
	path := al.Path
	if path != accesslog.Stdout {
		path = cfg.Resolve(path)
	}
	loops := cfg.Engine.Loops
	if loops == 0 {
		loops = runtime.NumCPU()
	}
	l, err := accesslog.Open(accesslog.Options{Path: path, BufferBytes: al.BufferBytes, Loops: loops,
		Query: al.Query, Log: log})
	if err != nil {
		return nil, fmt.Errorf("%s:%d: access_log.path: %w", cfg.Path, cfg.Line("access_log.path"), err)
	}
	if l.BufferBytes() > al.BufferBytes {
		log.Warn("access_log.buffer_bytes raised so that every event loop has chunks to fill",
			"configured", al.BufferBytes, "used", l.BufferBytes(), "loops", loops)
	}
	return l, nil
}

// l7AccessLog is the access log as l7 takes it: a nil *accesslog.Log in
// the interface would not be nil.
func (g *Gateway) l7AccessLog() l7.AccessLog {
	if g.accessLog == nil {
		return nil
	}
	return g.accessLog
}

// healthChanged brings the health pages of every generation still serving
// up to date (a component state changed).
func (g *Gateway) healthChanged() {
	g.mu.Lock()
	live := slices.Clone(g.live)
	g.mu.Unlock()
	for _, gen := range live {
		gen.health.update()
	}
}

// endKeepAlive ends keep-alive for the protocols marked true, and keeps
// the others alive, in every generation still serving (the component
// states' drain, see state.go). It is remembered for generations a later
// reload builds.
func (g *Gateway) endKeepAlive(protocols []bool) {
	g.mu.Lock()
	g.ended = slices.Clone(protocols)
	live := slices.Clone(g.live)
	g.mu.Unlock()
	for _, gen := range live {
		ended := gen.endedProtocols(g.comps, protocols)
		gen.handler.EndKeepAlive(ended)
		// A long-lived channel has no next request to answer as the
		// last: it is closed, and its client reconnects through the
		// load balancer, which no longer sends it here.
		gen.handler.CloseChannels(func(ci l7.ChannelInfo) bool { return ci.Protocol < len(ended) && ended[ci.Protocol] })
	}
}

// SetComponentState sets a component (ServerWideOffline or a protocol's
// name) "active" or "inactive", persisted in the state file when there is
// one before it takes effect. by names who asked, for the log. An unknown
// component is an ErrUnknownComponent.
func (g *Gateway) SetComponentState(component, state, by string) (ComponentState, error) {
	return g.comps.set(component, state, by)
}

// ComponentStates lists the component states, ServerWideOffline first,
// then the protocols in configuration order.
func (g *Gateway) ComponentStates() []ComponentState { return g.comps.list() }

// current returns the generation that takes new connections.
func (g *Gateway) current() *generation {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cur
}

// Config returns the configuration new connections are served by.
func (g *Gateway) Config() *config.Config { return g.current().cfg }

// handshakeActivity sums the TLS listeners' handshake pools: handshakes
// running or queued, and how many have finished so far.
func (g *Gateway) handshakeActivity() (active, finished int64) {
	for _, t := range g.current().terminators() {
		st := t.Stats()
		active += st.Running.Load() + st.Queued.Load()
		finished += st.Finished()
	}
	return active, finished
}

// stripFields lists the request fields never forwarded for protocol p: the
// identity assertion's (only the gateway may set it), X-AnchorMailbox on
// an authenticating protocol that does not trust it, and the client's
// credentials unless p forwards them.
func stripFields(cfg *config.Config, p config.Protocol) []string {
	strip := []string{strings.ToLower(cfg.Identity.Header)}
	if len(p.Auth) > 0 {
		if !cfg.Auth.TrustAnchorMailbox {
			strip = append(strip, "x-anchormailbox")
		}
		if !p.ForwardAuthorization {
			strip = append(strip, "authorization")
		}
	}
	return strip
}

// SetDirectory makes dir the directory new requests are routed by (a
// reload, a database switchover), in every generation still serving.
// Backend connections to servers no longer active for any database are
// drained.
func (g *Gateway) SetDirectory(dir *directory.Directory) {
	g.mu.Lock()
	g.dir = dir
	live := slices.Clone(g.live)
	g.mu.Unlock()
	for _, gen := range live {
		gen.router.SetDirectory(dir)
		gen.mailDirectory(dir)
	}
}

// newTerminator builds listener i's TLS terminator. A development listener
// (tls_self_signed) gets a self-signed certificate made on first start.
// maxUpstreamPlaintext bounds the decrypted bytes buffered per TLS backend
// connection: above the longest response head l7 accepts (64 KiB), so a
// head always fits, and the body is relayed as it is decrypted.
const maxUpstreamPlaintext = 256 << 10

// upstreamTLS builds the TLS clients of the directory's servers with
// tls = true, and reloads [backend] tls_ca for them.
type upstreamTLS struct {
	client *tlsterm.Client
	caPath string // resolved [backend] tls_ca; "" for the system roots
	log    *slog.Logger

	mu    sync.Mutex
	caPEM []byte         // the bundle in use, to skip reloads that change nothing
	roots *x509.CertPool // nil: the system roots
	// pools holds the settings of every server name verified, shared by
	// the endpoints (and configuration generations) that verify it.
	pools map[string]*poolmux.TLS
}

// newUpstreamTLS loads [backend] tls_ca when a server uses TLS; nil when
// none does.
func newUpstreamTLS(cfg *config.Config, dir *directory.Directory, log *slog.Logger) (*upstreamTLS, error) {
	used := false
	for _, s := range dir.Servers {
		used = used || s.TLS
	}
	if !used {
		return nil, nil
	}
	u := &upstreamTLS{client: tlsterm.NewClient(maxUpstreamPlaintext, log), log: log, pools: map[string]*poolmux.TLS{}}
	if ca := cfg.Backend.TLSCA; ca != "" {
		u.caPath = cfg.Resolve(ca)
		data, err := os.ReadFile(u.caPath)
		if err == nil {
			u.roots, err = tlsterm.ParseCAs(u.caPath, data)
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: backend.tls_ca: %w", cfg.Path, cfg.Line("backend.tls_ca"), err)
		}
		u.caPEM = data
	}
	return u, nil
}

// forServer returns the pool TLS settings of srv, nil for a plaintext one.
func (u *upstreamTLS) forServer(srv *directory.Server) *poolmux.TLS {
	if u == nil || !srv.TLS {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if t := u.pools[srv.TLSServerName]; t != nil {
		return t
	}
	t := &poolmux.TLS{Client: u.client, Config: tlsterm.ClientConfig(u.roots, srv.TLSServerName)}
	u.pools[srv.TLSServerName] = t
	return t
}

// reload reads tls_ca again. A bundle that cannot be read or holds no
// certificate is refused and the one in use stays. A new bundle applies to
// the handshakes of later dials, with new session caches (a resumed
// session is not verified again); open connections stay. The system roots
// are not reloaded.
func (u *upstreamTLS) reload() (changed bool, err error) {
	if u == nil || u.caPath == "" {
		return false, nil
	}
	data, err := os.ReadFile(u.caPath)
	var roots *x509.CertPool
	if err == nil {
		roots, err = tlsterm.ParseCAs(u.caPath, data)
	}
	if err != nil {
		return false, fmt.Errorf("backend.tls_ca: %w", err)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if bytes.Equal(data, u.caPEM) {
		return false, nil
	}
	u.caPEM, u.roots = data, roots
	for name, t := range u.pools {
		t.SetConfig(tlsterm.ClientConfig(roots, name))
	}
	return true, nil
}

func newTerminator(cfg *config.Config, i int, log *slog.Logger) (*tlsterm.Terminator, error) {
	ln := &cfg.Listeners[i]
	settings := cfg.TLSSettings(i)
	if ln.TLSSelfSigned && len(settings.Certificates) == 1 {
		if err := ensureSelfSigned(settings.Certificates[0], ln.Address, log); err != nil {
			return nil, fmt.Errorf("listener %s: %w", ln.Name, err)
		}
	}
	t, err := tlsterm.NewTerminator(settings, log.With("listener", ln.Name))
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", ln.Name, err)
	}
	return t, nil
}

// ensureSelfSigned writes a development certificate at pair's paths when
// either file is missing.
func ensureSelfSigned(pair tlsterm.CertPair, address string, log *slog.Logger) error {
	_, errC := os.Stat(pair.CertFile)
	_, errK := os.Stat(pair.KeyFile)
	if errC == nil && errK == nil {
		return nil
	}
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, _, err := net.SplitHostPort(address); err == nil && h != "" && h != "127.0.0.1" && h != "::1" {
		hosts = append(hosts, h)
	}
	// Written beside the target and renamed into place, so a crash never
	// leaves half a pair.
	if err := os.MkdirAll(filepath.Dir(pair.CertFile), 0o700); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(pair.CertFile), ".selfsigned-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	certPath, keyPath, err := tlsterm.WriteSelfSigned(tmp, hosts, 90*24*time.Hour)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(pair.KeyFile), 0o700); err != nil {
		return err
	}
	if err := os.Rename(keyPath, pair.KeyFile); err != nil {
		return err
	}
	if err := os.Rename(certPath, pair.CertFile); err != nil {
		return err
	}
	log.Warn("generated a self-signed development certificate (tls_self_signed): never use it in production",
		"cert", pair.CertFile, "key", pair.KeyFile, "hosts", hosts)
	return nil
}

// Reload re-reads what can change without a restart: every TLS listener's
// certificates and session-ticket keys, [backend] tls_ca, and the identity
// signing key (the directory reloads itself, see Run); and it reopens the
// access log file, for rotation. Each is validated before it replaces the
// old one; an error leaves the old one serving and is logged.
func (g *Gateway) Reload() error {
	var errs []error
	cur := g.current()
	for _, t := range cur.terminators() {
		if err := t.Store().Reload(); err != nil {
			errs = append(errs, err)
		}
		if tk := t.TicketKeys(); tk != nil {
			if err := tk.Reload(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if a := cur.router.auth; a != nil {
		if err := a.reloadSigner(); err != nil {
			errs = append(errs, err)
		}
		if a.krb != nil {
			// Also watched (auth.keytab_check_interval); SIGHUP
			// makes a rotation take effect at once.
			a.krb.reload()
		}
	}
	if g.accessLog != nil {
		if err := g.accessLog.Reopen(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := cur.reloadMailMaster(); err != nil {
		errs = append(errs, err)
	}
	caChanged, err := cur.upstream.reload()
	if err != nil {
		g.log.Error("backend CA bundle refused, the previous one stays in service", "file", cur.upstream.caPath, "err", err)
		errs = append(errs, err)
	} else if caChanged {
		g.log.Info("reloaded the backend CA bundle: new backend connections are verified against it", "file", cur.upstream.caPath)
	}
	err = errors.Join(errs...)
	if err != nil {
		g.log.Error("reload refused in part: what failed stays as it was", "err", err)
	} else {
		g.log.Info("reloaded certificates, ticket keys, the backend CA bundle and the identity key; reopened the access log")
	}
	return err
}

// Serve listens and serves until ctx is cancelled, then drains (at most
// the configured drain timeout) and stops. ready is called once every
// listening socket is up.
func (g *Gateway) Serve(ctx context.Context, ready func()) error {
	defer g.closeAll()
	cfg := g.Config()
	g.log.Info("starting", "gateway_id", cfg.GatewayID, "config", cfg.Path,
		"listeners", len(cfg.Listeners), "protocols", len(cfg.Protocols),
		"endpoints", len(g.current().handler.Endpoints()))
	if addr := cfg.Admin.Address; addr != "" {
		// Bound before the data listeners so a port clash fails the start.
		ln := g.adminLn
		if ln == nil {
			var err error
			if ln, err = net.Listen("tcp", addr); err != nil {
				return fmt.Errorf("admin endpoint: %w", err)
			}
			g.adminLn = ln
		}
		g.adminAddr = ln.Addr().String()
		actx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go g.serveAdmin(actx, ln)
		g.log.Info("admin endpoint", "address", g.adminAddr)
	} else if g.adminLn != nil {
		g.adminLn.Close()
		g.adminLn = nil
	}
	go g.trim.run(g.bg)
	g.comps.start()
	defer g.comps.close()
	err := g.server.Serve(ctx, g.drainOptions, ready)
	// Long-lived channels left the loops, so the drain did not wait for
	// them: close them now, and their clients reconnect elsewhere.
	g.closeChannels()
	if g.accessLog != nil {
		// The loops have stopped: what they formatted is written now.
		if cerr := g.accessLog.Close(); cerr != nil {
			g.log.Error("access log", "err", cerr)
		}
	}
	snap := g.Snapshot()
	g.log.Info("stopped", "requests", snap.Requests, "client_conns_accepted", snap.ClientsAccepted,
		"backend_conns_open", snap.BackendConns)
	return err
}

// closeChannels closes the long-lived channels of every generation.
func (g *Gateway) closeChannels() {
	g.mu.Lock()
	live := slices.Clone(g.live)
	g.mu.Unlock()
	n := 0
	for _, gen := range live {
		n += gen.handler.CloseChannels(nil)
	}
	if n > 0 {
		g.log.Info("closed long-lived channels", "channels", n)
	}
}

// handoffMinListen is how long an upgraded process keeps its listening
// sockets after the new one took new connections over: handshakes the
// kernel had begun on them complete within a round trip, or a second
// more when the first SYN-ACK was lost (the initial retransmission
// timeout), and are served here rather than reset.
const handoffMinListen = 2 * time.Second

// drainOptions is how Serve drains when its context ends: a stop, or the
// handoff of an upgrade.
func (g *Gateway) drainOptions() l4.DrainOptions {
	d := l4.DrainOptions{Timeout: g.Config().Timeouts.Drain.D()}
	if g.handoff.Load() {
		d.Handoff, d.MinListen = true, handoffMinListen
	}
	return d
}

// directoryPoll is how often the directory file is checked for changes:
// often enough that requests follow a database switchover within a second.
const directoryPoll = 250 * time.Millisecond

// Snapshot is a point-in-time view of the gateway's counters.
type Snapshot struct {
	ClientsOpen     int64 `json:"clients_open"`
	ClientsAccepted int64 `json:"clients_accepted"`
	ClientsRefused  int64 `json:"clients_refused"`
	Requests        int64 `json:"requests"`
	// Rerouted counts requests moved to their mailbox's new server after
	// the old one failed them (a database switchover or failover).
	Rerouted     int64            `json:"rerouted"`
	Responses    map[string]int64 `json:"responses"`
	Rejects      map[string]int64 `json:"rejects"`
	Core         map[string]int64 `json:"core"`
	BackendConns int64            `json:"backend_conns"`
	// ClientsPerBackendConn is the multiplexing ratio: open client
	// connections per open backend connection.
	ClientsPerBackendConn float64          `json:"clients_per_backend_conn"`
	Backends              []BackendSummary `json:"backends"`
	// TLS holds each TLS listener's handshake counters (by version, suite,
	// key-exchange group, resumption, failure reason).
	TLS map[string]map[string]int64 `json:"tls,omitempty"`
	// Auth holds authentication counters: accepted and refused by method,
	// cache hits and misses, expensive verifications run, assertions
	// signed, throttled and overloaded requests.
	Auth map[string]int64 `json:"auth,omitempty"`
	// Proxy holds, per listener with proxy_protocol on, the PROXY
	// protocol outcomes (l4.ProxyStats.Snapshot): headers accepted by
	// version, LOCAL and addressless ones, direct connections, and
	// connections closed by reason.
	Proxy map[string]map[string]int64 `json:"proxy,omitempty"`
	// BackendTLS holds the handshake counters of the gateway's TLS
	// connections to mailbox servers (tls = true in the directory), in the
	// same form; absent when no server uses TLS.
	BackendTLS map[string]int64 `json:"backend_tls,omitempty"`
	// AccessLog holds the access log's counters (records, bytes,
	// dropped_buffer_full, dropped_write_error, write_errors); absent when
	// the log is off.
	AccessLog map[string]int64 `json:"access_log,omitempty"`
	// Mail holds the IMAP and POP3 counters (mailproxy.Stats); absent
	// without mail listeners.
	Mail map[string]int64 `json:"mail,omitempty"`
	// Runtime is the process's memory and the memory trimmer's counters.
	Runtime RuntimeSummary `json:"runtime"`
	// Health is what the protocols' health pages answer and why, the
	// component states, and the probes answered.
	Health HealthSummary `json:"health"`
	Loops  int           `json:"loops"`
	Time   time.Time     `json:"time"`
}

// HealthSummary is the health section of /stats.
type HealthSummary struct {
	// Protocols is what each protocol's health page answers now.
	Protocols map[string]ProtocolHealth `json:"protocols"`
	// Components are the component states.
	Components []ComponentState `json:"components"`
	// ProbesOK and ProbesFailed count the health probes answered 200
	// and 503 (they are not in requests).
	ProbesOK     int64 `json:"probes_ok"`
	ProbesFailed int64 `json:"probes_failed"`
}

// BackendSummary is one endpoint's pool counters over all loops.
type BackendSummary struct {
	Server       string `json:"server"`
	Address      string `json:"address"`
	TLS          bool   `json:"tls"`
	ConnsOpen    int64  `json:"conns_open"`
	Dials        int64  `json:"dials"`
	DialFailures int64  `json:"dial_failures"`
	Requests     int64  `json:"requests"`
	// Writes is how many writes carried those requests: fewer than
	// Requests when queued ones went out together.
	Writes       int64 `json:"writes"`
	Retries      int64 `json:"retries"`
	Detached     int64 `json:"detached"`
	Retired      int64 `json:"retired"`
	Queued       int64 `json:"queued"`
	QueueFull    int64 `json:"queue_full"`
	QueueTimeout int64 `json:"queue_timeout"`
	Failed       int64 `json:"failed"`
	// Channels is the number of open long-lived channels (RPC over HTTP,
	// MAPI NotificationWait) on dedicated connections to the endpoint.
	Channels int64 `json:"channels"`
	// Health is the endpoint's health (active checks and outlier
	// detection).
	Health BackendHealth `json:"health"`
}

// Snapshot reads every counter. The HTTP and backend counters include the
// connections of generations a reload replaced; the TLS and auth counters
// are those of the current generation's terminators and authenticator.
func (g *Gateway) Snapshot() Snapshot {
	cur := g.current()
	st := cur.handler.Stats()
	s := Snapshot{
		ClientsOpen: g.server.OpenClients(),
		Requests:    st.Requests.Load(),
		Rerouted:    st.Rerouted.Load(),
		Responses:   map[string]int64{},
		Rejects:     map[string]int64{},
		Core:        map[string]int64{},
		Loops:       g.server.LoopCount(),
		Runtime:     g.trim.summary(),
		Health: HealthSummary{
			Protocols:    cur.health.summary(cur.cfg, g.server.Draining()),
			Components:   g.comps.list(),
			ProbesOK:     st.HealthOK.Load(),
			ProbesFailed: st.HealthFailed.Load(),
		},
		Time: time.Now(),
	}
	for _, ln := range g.server.Listeners() {
		s.ClientsAccepted += ln.Accepted.Load()
		s.ClientsRefused += ln.Refused.Load()
	}
	for i := 1; i <= 5; i++ {
		if v := st.Responses[i].Load(); v > 0 {
			s.Responses[fmt.Sprintf("%dxx", i)] = v
		}
	}
	for k, v := range st.Rejects {
		if n := v.Load(); n > 0 {
			s.Rejects[k] = n
		}
	}
	for _, nv := range g.server.Stats().Snapshot() {
		s.Core[nv.Name] = nv.Value
	}
	for i, ep := range cur.handler.Endpoints() {
		ps := cur.handler.PoolStats(i)
		b := BackendSummary{
			Server: ep.Name, Address: ep.Addr, TLS: ep.TLS != nil,
			ConnsOpen: ps.ConnsOpen.Load(), Dials: ps.Dials.Load(), DialFailures: ps.DialFailures.Load(),
			Requests: ps.Requests.Load(), Writes: ps.Writes.Load(), Retries: ps.Retries.Load(), Detached: ps.Detached.Load(), Retired: ps.Retired.Load(),
			Queued: ps.Queued.Load(), QueueFull: ps.QueueFull.Load(), QueueTimeout: ps.QueueTimeout.Load(),
			Failed: ps.Failed.Load(), Health: cur.backends.summary(i),
			Channels: cur.handler.OpenChannels(i),
		}
		s.BackendConns += b.ConnsOpen
		s.Backends = append(s.Backends, b)
	}
	for i, ln := range cur.cfg.Listeners {
		if (ln.TLS || ln.StartTLS) && i < len(cur.tls) && cur.tls[i] != nil { // a mail listener's STARTTLS too
			if s.TLS == nil {
				s.TLS = map[string]map[string]int64{}
			}
			s.TLS[ln.Name] = cur.tls[i].t.Stats().Snapshot()
		}
	}
	for _, ln := range g.server.Listeners() {
		if ln.ProxyMode() != l4.ProxyOff {
			if s.Proxy == nil {
				s.Proxy = map[string]map[string]int64{}
			}
			s.Proxy[ln.Name] = ln.Proxy.Snapshot()
		}
	}
	if a := cur.router.auth; a != nil {
		s.Auth = a.snapshot()
	}
	if cur.upstream != nil {
		s.BackendTLS = cur.upstream.client.Stats().Snapshot()
		// The client side has no handshake pool.
		delete(s.BackendTLS, "running")
		delete(s.BackendTLS, "queued")
	}
	if g.accessLog != nil {
		as := g.accessLog.Stats()
		s.AccessLog = map[string]int64{
			"records": as.Records.Load(), "bytes": as.Bytes.Load(), "write_errors": as.WriteErrors.Load(),
			"dropped_buffer_full": as.DroppedFull.Load(), "dropped_write_error": as.DroppedError.Load(),
		}
	}
	g.mu.Lock()
	if g.mailStats != nil {
		s.Mail = g.mailStats.Snapshot()
	}
	g.mu.Unlock()
	if s.BackendConns > 0 {
		s.ClientsPerBackendConn = float64(s.ClientsOpen) / float64(s.BackendConns)
	}
	return s
}
