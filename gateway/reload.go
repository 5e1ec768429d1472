package gateway

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"frontdoor/directory"
	"frontdoor/gateway/config"
	"frontdoor/kerberos"
	"frontdoor/l4"
	"frontdoor/l7"
	"frontdoor/mailproxy"
	"frontdoor/poolmux"
	"frontdoor/tlsterm"
)

// A configuration reload (SIGHUP) without a failed request.
//
// The new configuration is loaded and validated, then built beside the one
// serving: a new generation (HTTP handler, router, authentication, TLS
// terminators). Any error leaves the running generation alone. Once built,
// it becomes the acceptor of new connections (l4.Server.SetAcceptor) in
// one step; the connections the old generation accepted stay with it,
// finish the exchange in flight, and close after their next response (it
// says Connection: close) or at their idle timeout. Nothing is closed
// under a request. When the old generation's last connection is gone on
// every loop, l4 calls released and what only it used is closed.
//
// What a generation shares with the one before when its settings did not
// change: the authenticator (the verdict cache, throttling counters and
// worker pool; rebuilding it would send every client through argon2id
// again), each TLS listener's terminator (per-process ticket keys, so
// sessions still resume, and the handshake counters), and the backend TLS
// client. The HTTP and backend counters are always shared.
//
// What needs a new process (an upgrade: `frontdoor upgrade`, `systemctl
// reload`): the listeners' names, addresses and TLS on/off, [engine]
// (gnet's loops and buffers are fixed when it starts), [admin], [runtime],
// [log] format and the directory file's path. A reload that changes any of
// them is refused as a whole, with the keys named, rather than applied in
// part.

// generation is what one configuration builds.
type generation struct {
	cfg      *config.Config
	handler  *l7.Handler
	router   *router
	auth     *sharedAuth   // nil when no protocol authenticates
	tls      []*sharedTerm // by listener index; nil for plaintext listeners
	upstream *upstreamTLS  // nil when no mailbox server uses TLS
	// backends checks the generation's mailbox servers (its endpoints)
	// and health answers its protocols' health pages; stopHealth ends
	// the checks when the generation is dropped.
	backends   *backendHealth
	health     *healthPages
	stopHealth context.CancelFunc
	// mail serves the IMAP and POP3 listeners (nil without); mux is then
	// the generation's acceptor (see acceptor).
	mail *mailproxy.Handler
	mux  *mailMux
}

// sharedAuth and sharedTerm are resources generations may share; refs
// counts the live generations using one (guarded by Gateway.mu), and it is
// closed when the last is released.
type sharedAuth struct {
	a    *authenticator
	refs int
}

type sharedTerm struct {
	t        *tlsterm.Terminator
	settings tlsterm.Settings
	selfSign bool
	refs     int
	stop     context.CancelFunc // ends the certificate file watch
}

// terminators returns the generation's TLS terminators.
func (gen *generation) terminators() []*tlsterm.Terminator {
	var ts []*tlsterm.Terminator
	for _, st := range gen.tls {
		if st != nil {
			ts = append(ts, st.t)
		}
	}
	return ts
}

// newGeneration builds what cfg describes, with the resources of prev
// whose settings cfg leaves unchanged. On error nothing it created is
// left running. The result is not serving until commit.
func (g *Gateway) newGeneration(cfg *config.Config, dir *directory.Directory, prev *generation) (gen *generation, err error) {
	log := g.log
	gen = &generation{cfg: cfg, tls: make([]*sharedTerm, len(cfg.Listeners))}
	var created []func() // closes what this call created, on error
	defer func() {
		if err != nil {
			for _, c := range created {
				c()
			}
		}
	}()

	protocols := make([]l7.Protocol, len(cfg.Protocols))
	anyAuth := false
	for i, p := range cfg.Protocols {
		protocols[i] = l7.Protocol{Name: p.Name, Prefix: p.PathPrefix, Index: i, StripFields: stripFields(cfg, p),
			StreamMethods: p.StreamMethods}
		anyAuth = anyAuth || len(p.Auth) > 0
	}
	// Mail logins use the authenticator too.
	anyAuth = anyAuth || cfg.HasMail()

	if prev != nil && prev.upstream != nil && prev.upstream.caPath == cfg.Resolve(cfg.Backend.TLSCA) {
		gen.upstream = prev.upstream
	} else if gen.upstream, err = newUpstreamTLS(cfg, dir, log); err != nil {
		return nil, err
	}

	if anyAuth {
		if prev != nil && prev.auth != nil && sameAuthSettings(prev.cfg, cfg) {
			gen.auth = prev.auth
		} else {
			var replay *kerberos.ReplayCache
			if prev != nil && prev.auth != nil && prev.auth.a.krb != nil {
				replay = prev.auth.a.krb.replay
			}
			a, err := newAuthenticator(cfg, log, replay)
			if err != nil {
				return nil, err
			}
			created = append(created, a.close)
			gen.auth = &sharedAuth{a: a}
		}
	}
	var authn *authenticator
	var routeGen uint64
	if gen.auth != nil {
		authn = gen.auth.a
	}
	if prev != nil {
		routeGen = prev.router.table.Load().gen
	}
	rt, endpoints, err := newRouter(cfg, dir, gen.upstream, authn, routeGen, log)
	if err != nil {
		return nil, err
	}
	gen.router = rt

	listeners := make([]l7.Listener, len(cfg.Listeners))
	for i, ln := range cfg.Listeners {
		if !ln.TLS && !ln.StartTLS {
			continue
		}
		settings := cfg.TLSSettings(i)
		if prev != nil && i < len(prev.tls) && prev.tls[i] != nil &&
			prev.tls[i].selfSign == ln.TLSSelfSigned && reflect.DeepEqual(prev.tls[i].settings, settings) {
			gen.tls[i] = prev.tls[i]
		} else {
			t, err := newTerminator(cfg, i, log)
			if err != nil {
				return nil, err
			}
			ctx, stop := context.WithCancel(g.bg)
			// Certificate files are polled: a renewed certificate is
			// picked up without a signal; a broken one is refused and
			// logged.
			go t.Store().Watch(ctx, 5*time.Second)
			created = append(created, func() { stop(); t.Close() })
			gen.tls[i] = &sharedTerm{t: t, settings: settings, selfSign: ln.TLSSelfSigned, stop: stop}
		}
		listeners[i].TLS = gen.tls[i].t
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
	gen.backends = newBackendHealth(cfg, endpoints, log)
	rt.backends = gen.backends
	gen.health = newHealthPages(cfg, g.comps, gen.backends, rt)
	t := &cfg.Timeouts
	b := &cfg.Backend
	lim := &cfg.Limits
	gen.handler = l7.NewHandler(l7.Config{
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
		MaxChannelsPerServer:   b.MaxChannelsPerServer,
		ChannelBufferBytes:     lim.ChannelBufferBytes,
		RPCChannelIdle:         t.RPCChannelIdle.D(),
		NotificationWaitIdle:   t.MAPINotificationWaitIdle.D(),
		Health:                 gen.health,
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
		Log:       log,
		AccessLog: g.l7AccessLog(),
		Stats:     g.statsFor(len(protocols), len(endpoints)),
		PoolStats: g.poolStatsFor(endpoints),
	})
	if gen.mail, err = g.newMailHandler(gen); err != nil {
		return nil, err
	}
	if gen.mail != nil {
		gen.mux = &mailMux{http: gen.handler, mail: gen.mail}
	}
	rt.retire = gen.handler.Retire
	rt.channels = gen.handler.CloseChannels
	rt.swapped = gen.health.update
	gen.backends.changed = gen.health.update
	gen.backends.revive = gen.handler.Revive
	g.mu.Lock()
	ended := g.ended
	g.mu.Unlock()
	if ended != nil {
		// A component drain in progress applies to the new generation's
		// connections too.
		gen.handler.EndKeepAlive(gen.endedProtocols(g.comps, ended))
	}
	ctx, stop := context.WithCancel(g.bg)
	gen.stopHealth = stop
	go gen.backends.run(ctx)
	return gen, nil
}

// endedProtocols translates the components' keep-alive verdict (indexed
// like the components: the protocols of the configuration the gateway
// started with) into the generation's protocol order, by name; a protocol
// a reload added has no component and keeps its connections alive.
func (gen *generation) endedProtocols(comps *components, ended []bool) []bool {
	out := make([]bool, len(gen.cfg.Protocols))
	for i, p := range gen.cfg.Protocols {
		if c := comps.index(p.Name); c > 0 && c-1 < len(ended) {
			out[i] = ended[c-1]
		}
	}
	return out
}

// statsFor returns the HTTP counters every generation adds to, new ones
// when a generation has more endpoints than the shared counters have room
// for (a reload after the directory added servers).
func (g *Gateway) statsFor(protocols, endpoints int) *l7.Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stats == nil || len(g.stats.ByProtocol) != protocols+1 || len(g.stats.BackendLatency) < endpoints {
		g.stats = l7.NewStats(protocols, endpoints)
	}
	return g.stats
}

// poolStatsFor returns the counters of each endpoint, shared with earlier
// generations' endpoints of the same server, address and TLS.
func (g *Gateway) poolStatsFor(endpoints []l7.Endpoint) []*poolmux.Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*poolmux.Stats, len(endpoints))
	for i, ep := range endpoints {
		key := ep.Name + " " + ep.Addr
		if ep.TLS != nil {
			key += " tls " + ep.TLS.Config.ServerName
		}
		ps := g.poolStats[key]
		if ps == nil {
			ps = new(poolmux.Stats)
			g.poolStats[key] = ps
		}
		out[i] = ps
	}
	return out
}

// sameAuthSettings reports whether a reload from a to b can keep the
// authenticator: everything it was built from is unchanged.
func sameAuthSettings(a, b *config.Config) bool {
	return reflect.DeepEqual(a.Auth, b.Auth) && reflect.DeepEqual(a.Identity, b.Identity) &&
		a.GatewayID == b.GatewayID && usesBearer(a) == usesBearer(b) &&
		a.Resolve(a.Auth.JWKSFile) == b.Resolve(b.Auth.JWKSFile) &&
		a.Resolve(a.Identity.KeyFile) == b.Resolve(b.Identity.KeyFile) &&
		a.NegotiateUsed() == b.NegotiateUsed() && a.Resolve(a.Auth.Keytab) == b.Resolve(b.Auth.Keytab) &&
		slices.Equal(listenerKeytabs(a), listenerKeytabs(b))
}

// listenerKeytabs lists the listeners' own keytabs, resolved ("" for none):
// the negotiator is built from them.
func listenerKeytabs(c *config.Config) []string {
	out := make([]string, len(c.Listeners))
	for i, l := range c.Listeners {
		if l.Keytab != "" {
			out[i] = c.Resolve(l.Keytab)
		}
	}
	return out
}

func usesBearer(c *config.Config) bool {
	for _, p := range c.Protocols {
		if parseMethods(p.Auth).has(methodBearer) {
			return true
		}
	}
	return false
}

// commit makes gen the generation of new connections' configuration
// bookkeeping: it takes its references on shared resources. The caller
// hands gen.handler to the server.
func (g *Gateway) commit(gen *generation) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if gen.auth != nil {
		gen.auth.refs++
	}
	for _, st := range gen.tls {
		if st != nil {
			st.refs++
		}
	}
	g.cur = gen
	g.live = append(g.live, gen)
}

// released implements l4.Options.Released: the generation of handler has
// no connection left. What no other live generation uses is closed.
func (g *Gateway) released(a l4.Acceptor) {
	g.mu.Lock()
	var gen *generation
	g.live = slices.DeleteFunc(g.live, func(x *generation) bool {
		if x.acceptor() == a {
			gen = x
			return true
		}
		return false
	})
	g.mu.Unlock()
	if gen == nil {
		return
	}
	g.drop(gen)
	g.log.Info("configuration generation released: its last connection closed", "config", gen.cfg.Path)
}

// drop gives up gen's references and closes what is no longer used.
func (g *Gateway) drop(gen *generation) {
	if gen.stopHealth != nil {
		gen.stopHealth()
	}
	g.mu.Lock()
	var closers []func()
	if sa := gen.auth; sa != nil {
		if sa.refs--; sa.refs == 0 {
			closers = append(closers, sa.a.close)
		}
	}
	for _, st := range gen.tls {
		if st == nil {
			continue
		}
		if st.refs--; st.refs == 0 {
			st := st
			closers = append(closers, func() { st.stop(); st.t.Close() })
		}
	}
	g.mu.Unlock()
	for _, c := range closers {
		c()
	}
}

// closeAll releases every live generation (the gateway has stopped).
func (g *Gateway) closeAll() {
	g.mu.Lock()
	live := g.live
	g.live = nil
	g.mu.Unlock()
	for _, gen := range live {
		g.drop(gen)
	}
	g.stopBG()
}

// ErrNeedsUpgrade is wrapped by ReloadConfig's error when the new
// configuration changes what only a new process can apply.
var ErrNeedsUpgrade = errors.New("needs an upgrade (frontdoor upgrade, or systemctl reload under systemd)")

// ReloadConfig makes cfg the configuration of new connections. It reports
// whether anything changed: an equal configuration leaves everything as
// it is, unless the directory has servers the running configuration has
// no backend pools for (they become routable). A configuration that cannot be built, or that changes a setting
// only an upgrade applies (see needsUpgrade), is refused with an error
// and the running one keeps serving.
func (g *Gateway) ReloadConfig(cfg *config.Config) (changed bool, err error) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	cur := g.current()
	g.mu.Lock()
	dir := g.dir
	g.mu.Unlock()
	// An equal configuration is rebuilt only to route to mailbox servers
	// the directory added since the running one was built.
	if config.Equal(cur.cfg, cfg) && cur.router.covers(dir) {
		return false, nil
	}
	if diffs := needsUpgrade(cur.cfg, cfg); len(diffs) > 0 {
		return false, fmt.Errorf("%s: %w", strings.Join(diffs, "; "), ErrNeedsUpgrade)
	}
	gen, err := g.newGeneration(cfg, dir, cur)
	if err != nil {
		return false, err
	}
	g.commit(gen)
	g.mu.Lock()
	newer := g.dir
	g.mu.Unlock()
	if newer != dir {
		// The directory changed while the generation was built.
		gen.router.SetDirectory(newer)
	}
	g.server.SetMaxConnections(cfg.Limits.MaxConnections)
	g.server.SetAcceptor(gen.acceptor())
	what := strings.Join(changedSections(cur.cfg, cfg), ",")
	if what == "" {
		what = "servers the directory added"
	}
	g.log.Info("configuration reloaded: new connections are served by it, open ones finish under the old one",
		"config", cfg.Path, "changed", what)
	return true, nil
}

// needsUpgrade lists, as FILE:LINE: KEY: message, the settings that differ
// between a and b and that only a new process can apply.
func needsUpgrade(a, b *config.Config) []string {
	var out []string
	diff := func(key string, x, y any, why string) {
		if !reflect.DeepEqual(x, y) {
			out = append(out, fmt.Sprintf("%s:%d: %s: changed from %v to %v: %s", b.Path, b.Line(key), key, x, y, why))
		}
	}
	const engine = "gnet's event loops and buffers are set when it starts"
	diff("engine.loops", a.Engine.Loops, b.Engine.Loops, engine)
	diff("engine.reuse_port", a.Engine.ReusePort, b.Engine.ReusePort, engine)
	diff("engine.read_buffer_bytes", a.Engine.ReadBufferBytes, b.Engine.ReadBufferBytes, engine)
	diff("engine.write_buffer_bytes", a.Engine.WriteBufferBytes, b.Engine.WriteBufferBytes, engine)
	diff("engine.sweep_interval", a.Engine.SweepInterval.D(), b.Engine.SweepInterval.D(), engine)
	if len(a.Listeners) != len(b.Listeners) {
		out = append(out, fmt.Sprintf("%s:%d: listener: %d listeners instead of %d: listeners are bound at start",
			b.Path, b.Line("listener"), len(b.Listeners), len(a.Listeners)))
	} else {
		for i := range a.Listeners {
			at := fmt.Sprintf("listener[%d]", i)
			const why = "listeners are bound at start"
			diff(at+".name", a.Listeners[i].Name, b.Listeners[i].Name, why)
			diff(at+".address", a.Listeners[i].Address, b.Listeners[i].Address, why)
			diff(at+".tls", a.Listeners[i].TLS, b.Listeners[i].TLS, why)
			diff(at+".mail", a.Listeners[i].Mail, b.Listeners[i].Mail, why)
		}
	}
	diff("admin.address", a.Admin.Address, b.Admin.Address, "the admin endpoint is bound at start")
	diff("log.format", a.Log.Format, b.Log.Format, "the log is set up at start")
	diff("runtime.memory_trim_interval", a.Runtime.MemoryTrimInterval.D(), b.Runtime.MemoryTrimInterval.D(), "the memory trimmer is set up at start")
	diff("runtime.memory_trim_min_bytes", a.Runtime.MemoryTrimMinBytes, b.Runtime.MemoryTrimMinBytes, "the memory trimmer is set up at start")
	diff("directory", a.DirectoryPath(), b.DirectoryPath(), "the directory file is followed from start")
	diff("state.file", a.State.File, b.State.File, "component states are loaded at start")
	diff("access_log.path", a.AccessLog.Path, b.AccessLog.Path, "the access log is opened at start (SIGHUP reopens it)")
	diff("access_log.buffer_bytes", a.AccessLog.BufferBytes, b.AccessLog.BufferBytes, "the access log is opened at start")
	diff("access_log.query", a.AccessLog.Query, b.AccessLog.Query, "the access log is opened at start")
	for i := range a.Listeners {
		if i < len(b.Listeners) {
			at := fmt.Sprintf("listener[%d]", i)
			const why = "the PROXY protocol policy is set when listeners are bound"
			diff(at+".proxy_protocol", a.Listeners[i].ProxyProtocol, b.Listeners[i].ProxyProtocol, why)
			diff(at+".proxy_protocol_from", a.Listeners[i].ProxyProtocolFrom, b.Listeners[i].ProxyProtocolFrom, why)
		}
	}
	return out
}

// changedSections names the parts of the configuration a reload changed,
// for the log.
func changedSections(a, b *config.Config) []string {
	var out []string
	add := func(name string, x, y any) {
		if !reflect.DeepEqual(x, y) {
			out = append(out, name)
		}
	}
	add("limits", a.Limits, b.Limits)
	add("timeouts", a.Timeouts, b.Timeouts)
	add("backend", a.Backend, b.Backend)
	add("tls", a.TLS, b.TLS)
	add("auth", a.Auth, b.Auth)
	add("identity", a.Identity, b.Identity)
	add("listener", a.Listeners, b.Listeners)
	add("protocol", a.Protocols, b.Protocols)
	add("mail", a.Mail, b.Mail)
	add("log.level", a.Log.Level, b.Log.Level)
	add("site", a.Site, b.Site)
	add("version", a.Version, b.Version)
	add("gateway_id", a.GatewayID, b.GatewayID)
	return out
}
