package config

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"frontdoor/internal/hostport"
	"frontdoor/internal/tomlpos"
	"frontdoor/tlsterm"
)

// validate reports every semantic problem of c to doc. Type problems were
// already caught by decoding; what is left is presence, ranges, syntax of
// string values and cross-references.
func (c *Config) validate(doc *tomlpos.Doc) {
	v := checker{doc}

	if strings.IndexFunc(c.GatewayID, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		v.Report("gateway_id", "%q: must not contain spaces or control characters", c.GatewayID)
	}
	v.Required("directory", c.Directory)

	e := &c.Engine
	v.intIn("engine.loops", int64(e.Loops), 0, 4096)
	v.intIn("engine.read_buffer_bytes", int64(e.ReadBufferBytes), 4096, 1<<30)
	v.intIn("engine.write_buffer_bytes", int64(e.WriteBufferBytes), 4096, 1<<30)
	v.durIn("engine.sweep_interval", e.SweepInterval, time.Millisecond, time.Minute)

	l := &c.Limits
	v.intIn("limits.max_connections", int64(l.MaxConnections), 1, math.MaxInt64)
	v.intIn("limits.max_header_bytes", int64(l.MaxHeaderBytes), 1024, 16<<20)
	v.intIn("limits.max_body_bytes", l.MaxBodyBytes, 0, math.MaxInt64)
	v.intIn("limits.max_pipeline_bytes", int64(l.MaxPipelineBytes), 0, 1<<30)
	v.intIn("limits.client_buffer_bytes", int64(l.ClientBufferBytes), 4096, 1<<30)
	// Once a response is taken off the shared backend connection, what was
	// already buffered for the client moves with it, so the detached buffer
	// must be able to hold at least that much.
	if l.MaxResponseBufferBytes < l.ClientBufferBytes {
		v.Report("limits.max_response_buffer_bytes", "must be at least limits.client_buffer_bytes (%d), got %d",
			l.ClientBufferBytes, l.MaxResponseBufferBytes)
	} else {
		v.intIn("limits.max_response_buffer_bytes", int64(l.MaxResponseBufferBytes), 4096, 1<<30)
	}
	v.intIn("limits.max_upload_buffer_bytes", int64(l.MaxUploadBufferBytes), 4096, 1<<30)
	v.intIn("limits.channel_buffer_bytes", int64(l.ChannelBufferBytes), 4096, 16<<20)

	t := &c.Timeouts
	v.durIn("timeouts.header_read", t.HeaderRead, time.Millisecond, 0)
	v.durIn("timeouts.body_read", t.BodyRead, time.Millisecond, 0)
	v.durIn("timeouts.idle", t.Idle, time.Millisecond, 0)
	v.durIn("timeouts.write", t.Write, time.Millisecond, 0)
	v.durIn("timeouts.drain", t.Drain, 0, 0)
	v.durIn("timeouts.rpc_channel_idle", t.RPCChannelIdle, time.Millisecond, 0)
	v.durIn("timeouts.mapi_notification_wait_idle", t.MAPINotificationWaitIdle, time.Millisecond, 0)

	b := &c.Backend
	v.intIn("backend.conns_per_loop", int64(b.ConnsPerLoop), 1, 64)
	v.intIn("backend.max_pipeline", int64(b.MaxPipeline), 1, 1024)
	v.intIn("backend.max_queue", int64(b.MaxQueue), 0, 1<<20)
	v.intIn("backend.max_channels_per_server", int64(b.MaxChannelsPerServer), 1, 1<<20)
	v.durIn("backend.connect_timeout", b.ConnectTimeout, time.Millisecond, 0)
	v.durIn("backend.response_timeout", b.ResponseTimeout, time.Millisecond, 0)
	v.durIn("backend.queue_timeout", b.QueueTimeout, time.Millisecond, 0)
	if v.durIn("backend.reconnect_min", b.ReconnectMin, time.Millisecond, 0) && b.ReconnectMax < b.ReconnectMin {
		v.Report("backend.reconnect_max", "must be at least backend.reconnect_min (%s), got %s", b.ReconnectMin.D(), b.ReconnectMax.D())
	}
	// Retry-After carries whole seconds (RFC 9110 section 10.2.3).
	if v.durIn("backend.retry_after", b.RetryAfter, time.Second, 0) && b.RetryAfter.D()%time.Second != 0 {
		v.Report("backend.retry_after", "%s: must be whole seconds (Retry-After carries seconds)", b.RetryAfter.D())
	}
	if b.TLSCA == "" && v.Has("backend.tls_ca") {
		v.Report("backend.tls_ca", "must not be empty (leave it out to verify mailbox servers against the system roots)")
	}
	intervalOK := b.HealthInterval == 0 || v.durIn("backend.health_interval", b.HealthInterval, 50*time.Millisecond, time.Hour)
	if v.durIn("backend.health_timeout", b.HealthTimeout, time.Millisecond, 0) && intervalOK && b.HealthInterval != 0 && b.HealthTimeout > b.HealthInterval {
		v.Report("backend.health_timeout", "must be at most backend.health_interval (%s), got %s", b.HealthInterval.D(), b.HealthTimeout.D())
	}
	v.intIn("backend.unhealthy_threshold", int64(b.UnhealthyThreshold), 1, 1000)
	v.intIn("backend.healthy_threshold", int64(b.HealthyThreshold), 1, 1000)
	v.intIn("backend.outlier_consecutive_failures", int64(b.OutlierConsecutiveFailures), 0, 1_000_000)

	st := &c.State
	if st.File == "" && v.Has("state.file") {
		v.Report("state.file", "must not be empty (leave it out to keep component states in memory only)")
	}
	v.durIn("state.drain_grace", st.DrainGrace, 0, time.Hour)

	if _, err := ParseLogLevel(c.Log.Level); err != nil {
		v.Report("log.level", "%q: must be debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		v.Report("log.format", "%q: must be text or json", c.Log.Format)
	}

	if c.Admin.Address != "" {
		if _, err := checkListenAddress(c.Admin.Address); err != nil {
			v.Report("admin.address", "%q: %v", c.Admin.Address, err)
		}
	}

	al := &c.AccessLog
	if al.Path == "" && al.Query {
		v.Report("access_log.query", "only with access_log.path (the log is off)")
	}
	if strings.ContainsRune(al.Path, 0) {
		v.Report("access_log.path", "%q: must not contain NUL", al.Path)
	}
	v.intIn("access_log.buffer_bytes", int64(al.BufferBytes), 64<<10, 1<<30)

	tl := &c.TLS
	v.durIn("tls.ticket_rotation", tl.TicketRotation, time.Minute, 0)
	v.durIn("tls.ticket_lifetime", tl.TicketLifetime, time.Minute, 0)
	v.durIn("tls.handshake_timeout", tl.HandshakeTimeout, time.Millisecond, 0)
	v.intIn("tls.max_handshakes", int64(tl.MaxHandshakes), 1, 1<<16)
	v.intIn("tls.handshake_queue", int64(tl.HandshakeQueue), 1, 1<<20)
	v.intIn("tls.max_plaintext_buffer", int64(tl.MaxPlaintextBuffer), 4096, 1<<20)
	if tl.RecordLayer != "frontdoor" && tl.RecordLayer != "crypto/tls" {
		v.Report("tls.record_layer", "%q: must be frontdoor or crypto/tls", tl.RecordLayer)
	}

	rt := &c.Runtime
	if rt.MemoryTrimInterval != 0 {
		v.durIn("runtime.memory_trim_interval", rt.MemoryTrimInterval, time.Second, 24*time.Hour)
	}
	v.intIn("runtime.memory_trim_min_bytes", rt.MemoryTrimMinBytes, 1<<20, 1<<40)

	if c.Version != "" {
		if _, err := parseVersion(c.Version); err != nil {
			v.Report("version", "%q: %v", c.Version, err)
		}
	}
	c.validateAuth(v)
	c.validateProtocols(v)
	c.validateListeners(v)
	c.validateMail(v)
}

// NegotiateUsed reports whether a protocol accepts "negotiate".
func (c *Config) NegotiateUsed() bool {
	for _, p := range c.Protocols {
		if slices.Contains(p.Auth, "negotiate") {
			return true
		}
	}
	return false
}

// authMethods are the values of a protocol's auth list.
var authMethods = []string{"basic", "bearer", "certificate", "negotiate"}

func (c *Config) validateAuth(v checker) {
	a := &c.Auth
	if a.Realm == "" || strings.ContainsAny(a.Realm, "\"\\\r\n") {
		v.Report("auth.realm", "%q: must be non-empty, without quotes, backslashes or line breaks", a.Realm)
	}
	v.durIn("auth.cache_ttl", a.CacheTTL, time.Second, 24*time.Hour)
	v.durIn("auth.failure_ttl", a.FailureTTL, 0, time.Hour)
	v.intIn("auth.cache_entries", int64(a.CacheEntries), 16, 1<<26)
	v.intIn("auth.workers", int64(a.Workers), 0, 1024)
	v.intIn("auth.queue", int64(a.Queue), 1, 1<<20)
	v.intIn("auth.max_failures", int64(a.MaxFailures), 1, 1<<20)
	v.intIn("auth.max_address_failures", int64(a.MaxAddressFailures), 1, 1<<20)
	v.durIn("auth.failure_window", a.FailureWindow, time.Second, 24*time.Hour)
	if a.JWTUserClaim == "" {
		v.Report("auth.jwt_user_claim", "must not be empty")
	}
	bearer := false
	for _, p := range c.Protocols {
		bearer = bearer || slices.Contains(p.Auth, "bearer")
	}
	if bearer {
		v.Required("auth.jwks_file", a.JWKSFile)
		v.Required("auth.jwt_issuer", a.JWTIssuer)
		v.Required("auth.jwt_audience", a.JWTAudience)
	}
	v.durIn("auth.keytab_check_interval", a.KeytabCheckInterval, 100*time.Millisecond, time.Hour)
	v.durIn("auth.kerberos_max_skew", a.KerberosMaxSkew, time.Second, time.Hour)
	v.intIn("auth.kerberos_max_token_bytes", int64(a.KerberosMaxTokenBytes), 1024, 1<<20)
	v.intIn("auth.kerberos_replay_entries", int64(a.KerberosReplayEntries), 1024, 1<<24)
	for i, r := range a.KerberosRealms {
		if r == "" || strings.IndexFunc(r, func(c rune) bool { return c <= ' ' || c == '@' || c == 0x7f }) >= 0 {
			v.Report(fmt.Sprintf("auth.kerberos_realms[%d]", i), "%q: not a realm name", r)
		}
	}
	if a.Keytab == "" && v.Has("auth.keytab") {
		v.Report("auth.keytab", "must not be empty (leave it out when no protocol accepts negotiate)")
	}
	if c.NegotiateUsed() && a.Keytab == "" {
		for i, l := range c.Listeners {
			if l.Mail == "" && l.Keytab == "" {
				v.Report(fmt.Sprintf("listener[%d]", i), "a protocol accepts negotiate: set [auth] keytab or this listener's keytab")
			}
		}
	}

	id := &c.Identity
	if v.Required("identity.header", id.Header) && !validFieldName(id.Header) {
		v.Report("identity.header", "%q: not an HTTP field name (RFC 9110 5.1)", id.Header)
	}
	if id.Lifetime.D() <= a.CacheTTL.D() {
		v.Report("identity.lifetime", "must be longer than auth.cache_ttl (%s): an assertion is minted once per cache entry, got %s", a.CacheTTL.D(), id.Lifetime.D())
	}
	v.Required("identity.audience", id.Audience)
	if id.KeyFile == "" && v.Has("identity.key_file") {
		v.Report("identity.key_file", "must not be empty (leave it out to forward without assertions)")
	}
	if id.Generate && id.KeyFile == "" {
		v.Report("identity.generate", "needs identity.key_file (the file it creates)")
	}
	if id.PublicFile != "" && !id.Generate {
		v.Report("identity.public_file", "only with generate = true (it is where the generated public keys go)")
	}
}

// validFieldName reports whether s is an HTTP field name: a token (RFC 9110 5.6.2).
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// parseVersion parses a dotted numeric version of 1 to 4 parts, each
// 0..65535 (Exchange's "15.2.1544.4").
func parseVersion(s string) ([4]uint16, error) {
	var v [4]uint16
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return v, fmt.Errorf("at most 4 dotted numbers")
	}
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return v, fmt.Errorf("want dotted numbers 0-65535, e.g. \"15.2.1544.4\"")
		}
		v[i] = uint16(n)
	}
	return v, nil
}

func (c *Config) validateProtocols(v checker) {
	if len(c.Protocols) == 0 {
		v.Report("protocol", "at least one [[protocol]] is required")
	}
	names := make(map[string]string)    // name -> path of first use
	prefixes := make(map[string]string) // lower-cased prefix -> path of first use
	for i, p := range c.Protocols {
		at := fmt.Sprintf("protocol[%d]", i)
		if v.name(at+".name", p.Name) {
			v.unique(names, p.Name, at+".name", fmt.Sprintf("protocol name %q", p.Name))
			if strings.EqualFold(p.Name, ServerWideOffline) {
				v.Report(at+".name", "%q: reserved for the server-wide component state", p.Name)
			}
		}
		if v.Required(at+".path_prefix", p.PathPrefix) {
			if err := checkPathPrefix(p.PathPrefix); err != nil {
				v.Report(at+".path_prefix", "%q: %v", p.PathPrefix, err)
			} else {
				// Matching is case-insensitive, so "/EWS" and "/ews"
				// would select the same requests.
				v.unique(prefixes, strings.ToLower(p.PathPrefix), at+".path_prefix", fmt.Sprintf("path_prefix %q", p.PathPrefix))
			}
		}
		if !v.Has(at + ".backend_port") {
			v.Report(at+".backend_port", "required")
		} else {
			v.intIn(at+".backend_port", int64(p.BackendPort), 1, 65535)
		}
		seen := make(map[string]string)
		for j, m := range p.Auth {
			mat := fmt.Sprintf("%s.auth[%d]", at, j)
			if !slices.Contains(authMethods, m) {
				v.Report(mat, "%q: must be one of %s", m, strings.Join(authMethods, ", "))
				continue
			}
			v.unique(seen, m, mat, fmt.Sprintf("method %q", m))
		}
		if len(p.AnonymousPaths) > 0 && len(p.Auth) == 0 {
			v.Report(at+".anonymous_paths", "only with auth (a protocol without auth is anonymous throughout)")
		}
		for j, ap := range p.AnonymousPaths {
			if !strings.HasPrefix(ap, "/") || strings.ContainsAny(ap, "?#%") || strings.IndexFunc(ap, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
				v.Report(fmt.Sprintf("%s.anonymous_paths[%d]", at, j), "%q: must be a path starting with \"/\", without query, fragment, escapes or spaces", ap)
			}
		}
		for j, m := range p.StreamMethods {
			// A method is a token (RFC 9110 9.1); GET and HEAD answer
			// ordinary requests and CONNECT is refused.
			ok := m != "" && strings.IndexFunc(m, func(r rune) bool {
				return r > 0x7e || r <= ' ' || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r)
			}) < 0
			if !ok || m == "GET" || m == "HEAD" || m == "CONNECT" {
				v.Report(fmt.Sprintf("%s.stream_methods[%d]", at, j), "%q: must be a request method (a token), not GET, HEAD or CONNECT", m)
			}
		}
		switch p.CrossSite {
		case "proxy", "redirect", "redirect-451":
		default:
			v.Report(at+".cross_site", "%q: must be proxy, redirect or redirect-451", p.CrossSite)
		}
		switch p.OlderServer {
		case "proxy", "redirect", "refuse":
		default:
			v.Report(at+".older_server", "%q: must be proxy, redirect or refuse", p.OlderServer)
		}
		if p.OlderServer != "proxy" && c.Version == "" {
			v.Report(at+".older_server", "%q needs the gateway's version (top-level key version)", p.OlderServer)
		}
	}
}

func (c *Config) validateListeners(v checker) {
	if len(c.Listeners) == 0 {
		v.Report("listener", "at least one [[listener]] is required")
	}
	known := make(map[string]bool, len(c.Protocols))
	var list []string
	for _, p := range c.Protocols {
		if p.Name != "" && !known[p.Name] {
			known[p.Name] = true
			list = append(list, p.Name)
		}
	}
	names := make(map[string]string)
	addrs := make(map[string]string)
	for i, l := range c.Listeners {
		at := fmt.Sprintf("listener[%d]", i)
		if v.name(at+".name", l.Name) {
			v.unique(names, l.Name, at+".name", fmt.Sprintf("listener name %q", l.Name))
		}
		if v.Required(at+".address", l.Address) {
			if canon, err := checkListenAddress(l.Address); err != nil {
				v.Report(at+".address", "%q: %v", l.Address, err)
			} else {
				v.unique(addrs, canon, at+".address", fmt.Sprintf("listener address %q", l.Address))
			}
		}
		seen := make(map[string]string)
		for j, name := range l.Protocols {
			pat := fmt.Sprintf("%s.protocols[%d]", at, j)
			switch {
			case !known[name]:
				v.Report(pat, "unknown protocol %q (defined: %s)", name, strings.Join(list, ", "))
			default:
				v.unique(seen, name, pat, fmt.Sprintf("protocol %q", name))
			}
		}
		c.validateListenerTLS(v, at, &l)
		validateListenerProxy(v, at, &l)
		if v.Has(at + ".keytab") {
			switch {
			case l.Keytab == "":
				v.Report(at+".keytab", "must not be empty")
			case l.Mail != "":
				v.Report(at+".keytab", "only on HTTP listeners (Negotiate is HTTP authentication)")
			}
		}
	}
}

// maxProxySources bounds proxy_protocol_from: each accepted connection of
// the listener is checked against every entry.
const maxProxySources = 256

// validateListenerProxy checks the PROXY protocol keys of the listener l
// at path at.
func validateListenerProxy(v checker, at string, l *Listener) {
	switch l.ProxyProtocol {
	case "off":
		if v.Has(at + ".proxy_protocol_from") {
			v.Report(at+".proxy_protocol_from", `only with proxy_protocol = "optional" or "required"`)
		}
		return
	case "optional", "required":
	default:
		v.Report(at+".proxy_protocol", "%q: must be off, optional or required", l.ProxyProtocol)
		return
	}
	switch n := len(l.ProxyProtocolFrom); {
	case n == 0 && v.Has(at+".proxy_protocol_from"):
		v.Report(at+".proxy_protocol_from", "must list at least one network")
	case n == 0:
		v.Report(at+".proxy_protocol_from", `required with proxy_protocol = %q: the networks of the load balancers whose headers are believed, e.g. ["10.0.0.0/8"]`, l.ProxyProtocol)
	case n > maxProxySources:
		v.Report(at+".proxy_protocol_from", "at most %d networks, got %d", maxProxySources, n)
	}
	for j, s := range l.ProxyProtocolFrom {
		if _, err := ParseProxySource(s); err != nil {
			v.Report(fmt.Sprintf("%s.proxy_protocol_from[%d]", at, j), "%q: %v", s, err)
		}
	}
}

// ParseProxySource parses an entry of proxy_protocol_from: a network in
// CIDR notation without host bits ("10.0.0.0/8", "2001:db8::/32") or a
// single address ("192.0.2.7", a /32). Peers are compared as IPv4
// addresses when they are IPv4 clients of a dual-stack socket, so
// IPv4-mapped IPv6 entries are refused in favour of their IPv4 form.
func ParseProxySource(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, fmt.Errorf(`want a network in CIDR notation, e.g. "10.0.0.0/8", or an address`)
		}
		if m := p.Masked(); m != p {
			return p, fmt.Errorf("host bits set; did you mean %q?", m.String())
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return p, fmt.Errorf(`want a network in CIDR notation, e.g. "10.0.0.0/8", or an address`)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() {
		// Without host bits a mapped network is at least a /96.
		return p, fmt.Errorf("IPv4-mapped IPv6 network; write it as %q", netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).String())
	}
	return p, nil
}

// tlsKeys are the listener keys allowed only with tls = true.
var tlsKeys = []string{"tls_min_version", "tls_client_auth", "tls_client_ca", "hsts", "tls_self_signed", "certificates"}

// validateListenerTLS checks the TLS keys of the listener l at path at.
func (c *Config) validateListenerTLS(v checker, at string, l *Listener) {
	if !l.TLS && !(l.StartTLS && l.Mail != "") {
		for _, k := range tlsKeys {
			if v.Has(at + "." + k) {
				v.Report(at+"."+k, "only with tls = true")
			}
		}
		return
	}
	switch l.TLSMinVersion {
	case "1.2", "1.3":
	case "1.0", "1.1":
		v.Report(at+".tls_min_version", "%q: must be \"1.2\" or \"1.3\" (TLS 1.0 and 1.1 are deprecated, RFC 8996)", l.TLSMinVersion)
	default:
		v.Report(at+".tls_min_version", "%q: must be \"1.2\" or \"1.3\"", l.TLSMinVersion)
	}
	switch l.TLSClientAuth {
	case "none":
		if l.TLSClientCA != "" {
			v.Report(at+".tls_client_ca", "only with tls_client_auth = \"request\" or \"require\"")
		}
	case "request", "require":
		if l.TLSClientCA == "" {
			if v.Has(at + ".tls_client_ca") {
				v.Report(at+".tls_client_ca", "must not be empty")
			} else {
				v.Report(at+".tls_client_ca", "required with tls_client_auth = %q: the PEM bundle of the CAs client certificates must chain to", l.TLSClientAuth)
			}
		}
	default:
		v.Report(at+".tls_client_auth", "%q: must be none, request or require", l.TLSClientAuth)
	}
	if l.HSTS != "" {
		if err := tlsterm.CheckHSTS(l.HSTS); err != nil {
			v.Report(at+".hsts", "%q: %v", l.HSTS, err)
		}
	}
	mode := "tls = true"
	if !l.TLS {
		mode = "starttls = true" // a mail listener's STARTTLS (mail.go)
	}
	if len(l.Certificates) == 0 {
		if v.Has(at + ".certificates") {
			v.Report(at+".certificates", "at least one certificate is required with %s", mode)
		} else {
			v.Report(at+".certificates", `required with %s, e.g. certificates = [{ cert = "cert.pem", key = "key.pem" }]`, mode)
		}
	}
	for j, p := range l.Certificates {
		cat := fmt.Sprintf("%s.certificates[%d]", at, j)
		v.Required(cat+".cert", p.Cert)
		v.Required(cat+".key", p.Key)
	}
	if l.TLSSelfSigned {
		switch {
		case len(l.Certificates) > 1:
			v.Report(at+".tls_self_signed", "needs exactly one certificate (the one it generates), got %d", len(l.Certificates))
		case len(l.Certificates) == 1 && l.Certificates[0].OCSP != "":
			v.Report(at+".certificates[0].ocsp", "not with tls_self_signed (a self-signed certificate has no OCSP responder)")
		}
	}
}

// checker reports problems found in values to a Doc.
type checker struct{ *tomlpos.Doc }

// name checks a required identifier used in logs, counters and references.
func (v checker) name(path, s string) bool {
	if !v.Required(path, s) {
		return false
	}
	if !validName(s) {
		v.Report(path, "%q: must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit", s)
		return false
	}
	return true
}

// unique reports a duplicate, described as desc, when seen already has key
// (naming where it was first used), else records key as used at path.
func (v checker) unique(seen map[string]string, key, path, desc string) {
	if first, dup := seen[key]; dup {
		v.Report(path, "duplicate %s (first at line %d, %s)", desc, v.Line(first), first)
		return
	}
	seen[key] = path
}

// intIn reports got outside [lo, hi].
func (v checker) intIn(path string, got, lo, hi int64) {
	switch {
	case got >= lo && got <= hi:
	case hi == math.MaxInt64:
		v.Report(path, "must be at least %d, got %d", lo, got)
	default:
		v.Report(path, "must be between %d and %d, got %d", lo, hi, got)
	}
}

// durIn reports d below lo or, when hi > 0, above hi. It returns whether d
// is in range.
func (v checker) durIn(path string, d Duration, lo, hi time.Duration) bool {
	switch got := d.D(); {
	case got < lo && lo > 0:
		v.Report(path, "must be at least %s, got %s", lo, got)
	case got < lo:
		v.Report(path, "must not be negative, got %s", got)
	case hi > 0 && got > hi:
		v.Report(path, "must be at most %s, got %s", hi, got)
	default:
		return true
	}
	return false
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 || !isAlnum(s[0]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// checkListenAddress checks a host:port to bind, and returns it in a canonical
// form for duplicate detection (IP literals normalized, names lower-cased).
// An empty host (":8080") binds all interfaces.
func checkListenAddress(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf(`want host:port, e.g. "127.0.0.1:8080", "[::1]:8080" or ":8080"`)
	}
	n, err := hostport.ParsePort(port)
	if err != nil {
		return "", err
	}
	if host != "" {
		canon, ok := hostport.CanonicalHost(host)
		if !ok {
			return "", fmt.Errorf("host %q is neither an IP address nor a host name", host)
		}
		host = canon
	}
	return net.JoinHostPort(host, strconv.Itoa(n)), nil
}

// checkPathPrefix checks a protocol's path prefix: an absolute path of one or
// more non-empty segments without a trailing slash.
func checkPathPrefix(p string) error {
	switch {
	case p[0] != '/':
		return fmt.Errorf(`must start with "/"`)
	case p == "/":
		return fmt.Errorf(`"/" alone would match every request; use the protocol's first path segment, e.g. "/owa"`)
	case strings.HasSuffix(p, "/"):
		return fmt.Errorf(`must not end with "/" (prefixes match on segment boundaries: "/owa" matches "/owa/x")`)
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("empty, \".\" or \"..\" path segment")
		}
	}
	for i := 0; i < len(p); i++ {
		// RFC 3986 pchar and "/", minus "%": prefixes are matched against
		// the request path as sent, so an escaped prefix would never match
		// its unescaped spelling.
		if c := p[i]; !isAlnum(c) && !strings.ContainsRune("/-._~!$&'()*+,;=:@", rune(c)) {
			return fmt.Errorf("character %q is not allowed in a path prefix", c)
		}
	}
	return nil
}
