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
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"frontdoor/directory"
	"frontdoor/gateway/config"
	"frontdoor/l4"
	"frontdoor/l7"
	"frontdoor/poolmux"
	"frontdoor/tlsterm"
)

// Gateway is one running configuration.
type Gateway struct {
	cfg     *config.Config
	log     *slog.Logger
	server  *l4.Server
	handler *l7.Handler
	router  *router

	terminators []*tlsterm.Terminator
	listenerTLS []*tlsterm.Terminator // by listener index, nil for plaintext
	adminAddr   string
	trim        *trimmer
	upstream    *upstreamTLS // nil when no server uses TLS
}

// New builds the runtime structures for cfg and dir without listening.
func New(cfg *config.Config, dir *directory.Directory, log *slog.Logger) (*Gateway, error) {
	if cfg == nil || dir == nil {
		return nil, errors.New("gateway: config and directory are required")
	}
	if log == nil {
		log = slog.Default()
	}
	protocols := make([]l7.Protocol, len(cfg.Protocols))
	anyAuth := false
	for i, p := range cfg.Protocols {
		protocols[i] = l7.Protocol{Name: p.Name, Prefix: p.PathPrefix, Index: i, StripFields: stripFields(cfg, p)}
		anyAuth = anyAuth || len(p.Auth) > 0
	}
	upstream, err := newUpstreamTLS(cfg, dir, log)
	if err != nil {
		return nil, err
	}
	var authn *authenticator
	if anyAuth {
		if authn, err = newAuthenticator(cfg, log); err != nil {
			return nil, err
		}
	}
	rt, endpoints, err := newRouter(cfg, dir, upstream, authn, log)
	if err != nil {
		if authn != nil {
			authn.close()
		}
		return nil, err
	}
	listeners := make([]l7.Listener, len(cfg.Listeners))
	var terminators []*tlsterm.Terminator
	closeTLS := func() {
		for _, t := range terminators {
			t.Close()
		}
	}
	for i, ln := range cfg.Listeners {
		if !ln.TLS {
			continue
		}
		t, err := newTerminator(cfg, i, log)
		if err != nil {
			closeTLS()
			return nil, err
		}
		terminators = append(terminators, t)
		listeners[i].TLS = t
	}
	for i, ln := range cfg.Listeners {
		if len(ln.Protocols) == 0 {
			continue // all
		}
		listeners[i].Served = make([]bool, len(cfg.Protocols))
		for _, name := range ln.Protocols {
			for pi, p := range cfg.Protocols {
				if p.Name == name {
					listeners[i].Served[pi] = true
				}
			}
		}
	}
	t := &cfg.Timeouts
	b := &cfg.Backend
	lim := &cfg.Limits
	handler := l7.NewHandler(l7.Config{
		Protocols:              protocols,
		Endpoints:              endpoints,
		Router:                 rt,
		Reroute:                rt.Reroute,
		Listeners:              listeners,
		MaxHeaderBytes:         lim.MaxHeaderBytes,
		MaxBodyBytes:           lim.MaxBodyBytes,
		MaxPipelineBytes:       lim.MaxPipelineBytes,
		ClientBufferBytes:      lim.ClientBufferBytes,
		MaxResponseBufferBytes: lim.MaxResponseBufferBytes,
		MaxUploadBufferBytes:   lim.MaxUploadBufferBytes,
		HeaderTimeout:          t.HeaderRead.D(),
		BodyTimeout:            t.BodyRead.D(),
		IdleTimeout:            t.Idle.D(),
		WriteTimeout:           t.Write.D(),
		RetryAfter:             b.RetryAfter.D(),
		Pool: poolmux.Options{
			ConnsPerLoop:    b.ConnsPerLoop,
			MaxPipeline:     b.MaxPipeline,
			MaxQueue:        b.MaxQueue,
			ConnectTimeout:  b.ConnectTimeout.D(),
			ResponseTimeout: b.ResponseTimeout.D(),
			QueueTimeout:    b.QueueTimeout.D(),
			ReconnectMin:    b.ReconnectMin.D(),
			ReconnectMax:    b.ReconnectMax.D(),
		},
		Log: log,
	})
	var srv *l4.Server
	specs := make([]l4.ListenerSpec, len(cfg.Listeners))
	for i, ln := range cfg.Listeners {
		specs[i] = l4.ListenerSpec{Name: ln.Name, Address: ln.Address}
	}
	srv, err = l4.NewServer(l4.Options{
		Listeners:      specs,
		Loops:          cfg.Engine.Loops,
		ReusePort:      cfg.Engine.ReusePort,
		ReadBufferCap:  cfg.Engine.ReadBufferBytes,
		WriteBufferCap: cfg.Engine.WriteBufferBytes,
		SweepInterval:  cfg.Engine.SweepInterval.D(),
		MaxConnections: lim.MaxConnections,
		Log:            log,
	}, handler)
	if err != nil {
		closeTLS()
		return nil, err
	}
	byListener := make([]*tlsterm.Terminator, len(listeners))
	for i := range listeners {
		byListener[i] = listeners[i].TLS
	}
	rt.retire = handler.Retire
	g := &Gateway{cfg: cfg, log: log, server: srv, handler: handler, router: rt,
		terminators: terminators, listenerTLS: byListener, upstream: upstream}
	g.trim = newTrimmer(cfg.Runtime.MemoryTrimInterval.D(), cfg.Runtime.MemoryTrimMinBytes, g.handshakeActivity, log)
	return g, nil
}

// handshakeActivity sums the TLS listeners' handshake pools: handshakes
// running or queued, and how many have finished so far.
func (g *Gateway) handshakeActivity() (active, finished int64) {
	for _, t := range g.terminators {
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
// reload, a database switchover). Backend connections to servers no longer
// active for any database are drained.
func (g *Gateway) SetDirectory(dir *directory.Directory) { g.router.SetDirectory(dir) }

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
	pools []upstreamPool // every TLS endpoint, for reloads
}

type upstreamPool struct {
	tls        *poolmux.TLS
	serverName string
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
	u := &upstreamTLS{client: tlsterm.NewClient(maxUpstreamPlaintext, log), log: log}
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
	t := &poolmux.TLS{Client: u.client, Config: tlsterm.ClientConfig(u.roots, srv.TLSServerName)}
	u.pools = append(u.pools, upstreamPool{t, srv.TLSServerName})
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
	for _, p := range u.pools {
		p.tls.SetConfig(tlsterm.ClientConfig(roots, p.serverName))
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
// signing key (the directory reloads itself, see Run). Each is validated
// before it replaces the old one; an error leaves the old one serving and
// is logged.
func (g *Gateway) Reload() error {
	var errs []error
	for _, t := range g.terminators {
		if err := t.Store().Reload(); err != nil {
			errs = append(errs, err)
		}
		if tk := t.TicketKeys(); tk != nil {
			if err := tk.Reload(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if a := g.router.auth; a != nil {
		if err := a.reloadSigner(); err != nil {
			errs = append(errs, err)
		}
	}
	caChanged, err := g.upstream.reload()
	if err != nil {
		g.log.Error("backend CA bundle refused, the previous one stays in service", "file", g.upstream.caPath, "err", err)
		errs = append(errs, err)
	} else if caChanged {
		g.log.Info("reloaded the backend CA bundle: new backend connections are verified against it", "file", g.upstream.caPath)
	}
	err = errors.Join(errs...)
	if err != nil {
		g.log.Error("reload refused in part: what failed stays as it was", "err", err)
	} else {
		g.log.Info("reloaded certificates, ticket keys, the backend CA bundle and the identity key")
	}
	return err
}

// Serve listens and serves until ctx is cancelled, then drains (at most
// the configured drain timeout) and stops. ready is called once listening.
func (g *Gateway) Serve(ctx context.Context, ready func()) error {
	g.log.Info("starting", "gateway_id", g.cfg.GatewayID, "config", g.cfg.Path,
		"listeners", len(g.cfg.Listeners), "protocols", len(g.cfg.Protocols),
		"endpoints", len(g.handler.Endpoints()))
	if addr := g.cfg.Admin.Address; addr != "" {
		// Bound before the data listeners so a port clash fails the start.
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("admin endpoint: %w", err)
		}
		g.adminAddr = ln.Addr().String()
		actx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go g.serveAdmin(actx, ln)
		g.log.Info("admin endpoint", "address", g.adminAddr)
	}
	wctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	for _, t := range g.terminators {
		// Certificate files are polled: a renewed certificate is picked
		// up without a signal; a broken one is refused and logged.
		go t.Store().Watch(wctx, 5*time.Second)
	}
	go g.trim.run(wctx)
	defer func() {
		for _, t := range g.terminators {
			t.Close()
		}
		if g.router.auth != nil {
			g.router.auth.close()
		}
	}()
	err := g.server.Serve(ctx, func() l4.DrainOptions { return l4.DrainOptions{Timeout: g.cfg.Timeouts.Drain.D()} }, ready)
	snap := g.Snapshot()
	g.log.Info("stopped", "requests", snap.Requests, "client_conns_accepted", snap.ClientsAccepted,
		"backend_conns_open", snap.BackendConns)
	return err
}

// Run builds the gateway from cfg and dir (re-read from its file, which is
// then followed), serves until ctx is cancelled, then drains within
// cfg.Timeouts.Drain and returns. ready, when non-nil, is
// called once every listener accepts connections.
func Run(ctx context.Context, cfg *config.Config, dir *directory.Directory, log *slog.Logger, ready func()) error {
	// A directory file is followed: a change (an operator's edit, `frontdoor
	// directory set-active`) is validated and swapped in; a bad file is
	// refused and logged. The embedded example directory cannot change.
	var live *directory.Live
	if path := cfg.DirectoryPath(); !strings.HasPrefix(path, "<embedded>") {
		var err error
		live, err = directory.NewLive(ctx, &directory.FileSource{Path: path, Interval: directoryPoll}, log)
		if err != nil {
			return err
		}
		dir = live.Current()
	}
	g, err := New(cfg, dir, log)
	if err != nil {
		return err
	}
	if live != nil {
		live.OnSwap(func(_, d *directory.Directory) { g.SetDirectory(d) })
		go live.Run(ctx)
	}
	// SIGHUP reloads certificates, ticket keys, the backend CA bundle, the
	// identity key and the
	// directory (the rest of the configuration comes with the operations
	// issue).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				_ = g.Reload()
				if live != nil {
					_ = live.Reload(ctx)
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return g.Serve(ctx, ready)
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
	// BackendTLS holds the handshake counters of the gateway's TLS
	// connections to mailbox servers (tls = true in the directory), in the
	// same form; absent when no server uses TLS.
	BackendTLS map[string]int64 `json:"backend_tls,omitempty"`
	// Runtime is the process's memory and the memory trimmer's counters.
	Runtime RuntimeSummary `json:"runtime"`
	Loops   int            `json:"loops"`
	Time    time.Time      `json:"time"`
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
	Retries      int64  `json:"retries"`
	Detached     int64  `json:"detached"`
	Retired      int64  `json:"retired"`
	Queued       int64  `json:"queued"`
	QueueFull    int64  `json:"queue_full"`
	QueueTimeout int64  `json:"queue_timeout"`
	Failed       int64  `json:"failed"`
}

// Snapshot reads every counter.
func (g *Gateway) Snapshot() Snapshot {
	st := g.handler.Stats()
	s := Snapshot{
		ClientsOpen: g.server.OpenClients(),
		Requests:    st.Requests.Load(),
		Rerouted:    st.Rerouted.Load(),
		Responses:   map[string]int64{},
		Rejects:     map[string]int64{},
		Core:        map[string]int64{},
		Loops:       g.server.LoopCount(),
		Runtime:     g.trim.summary(),
		Time:        time.Now(),
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
	for i, ep := range g.handler.Endpoints() {
		ps := g.handler.PoolStats(i)
		b := BackendSummary{
			Server: ep.Name, Address: ep.Addr, TLS: ep.TLS != nil,
			ConnsOpen: ps.ConnsOpen.Load(), Dials: ps.Dials.Load(), DialFailures: ps.DialFailures.Load(),
			Requests: ps.Requests.Load(), Retries: ps.Retries.Load(), Detached: ps.Detached.Load(), Retired: ps.Retired.Load(),
			Queued: ps.Queued.Load(), QueueFull: ps.QueueFull.Load(), QueueTimeout: ps.QueueTimeout.Load(),
			Failed: ps.Failed.Load(),
		}
		s.BackendConns += b.ConnsOpen
		s.Backends = append(s.Backends, b)
	}
	for i, ln := range g.cfg.Listeners {
		if ln.TLS && i < len(g.listenerTLS) && g.listenerTLS[i] != nil {
			if s.TLS == nil {
				s.TLS = map[string]map[string]int64{}
			}
			s.TLS[ln.Name] = g.listenerTLS[i].Stats().Snapshot()
		}
	}
	if a := g.router.auth; a != nil {
		s.Auth = a.snapshot()
	}
	if g.upstream != nil {
		s.BackendTLS = g.upstream.client.Stats().Snapshot()
		// The client side has no handshake pool.
		delete(s.BackendTLS, "running")
		delete(s.BackendTLS, "queued")
	}
	if s.BackendConns > 0 {
		s.ClientsPerBackendConn = float64(s.ClientsOpen) / float64(s.BackendConns)
	}
	return s
}
