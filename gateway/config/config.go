// Package config owns frontdoor's configuration file: the TOML schema, strict
// decoding (unknown keys, wrong types and bad values are errors that name the
// file, line and key), defaults, and validation.
//
// The structs here describe what the operator wrote. They are never used as
// runtime state: the gateway package builds its runtime structures from a
// validated Config, so a reload can build a new runtime beside the old one.
package config

import (
	"fmt"
	"time"

	"frontdoor/internal/tomlpos"
)

// Config is one parsed and validated configuration file.
type Config struct {
	// Path is the file the configuration came from ("<embedded>/frontdoor.toml"
	// for the embedded default). Relative paths inside the file are resolved
	// against its directory.
	Path string `toml:"-"`

	// GatewayID names this instance in logs and (later) identity assertions.
	GatewayID string `toml:"gateway_id"`

	// Directory is the path of the directory file (users, mailboxes,
	// databases, servers, sites), relative to the config file.
	Directory string `toml:"directory"`

	// Site is the directory site this gateway serves in. A request for a
	// mailbox whose active copy is in another site follows its protocol's
	// cross_site policy. Empty (default): every site counts as local.
	Site string `toml:"site"`
	// Version is the mailbox-server version this gateway is deployed for
	// ("15.2.1544.4"). Servers of an older version are answered by each
	// protocol's older_server policy; newer ones are proxied. Empty
	// (default): no version policy.
	Version string `toml:"version"`

	Engine    Engine     `toml:"engine"`
	Limits    Limits     `toml:"limits"`
	Timeouts  Timeouts   `toml:"timeouts"`
	Backend   Backend    `toml:"backend"`
	Log       Log        `toml:"log"`
	Admin     Admin      `toml:"admin"`
	AccessLog AccessLog  `toml:"access_log"`
	TLS       TLS        `toml:"tls"`
	Auth      Auth       `toml:"auth"`
	Identity  Identity   `toml:"identity"`
	Runtime   Runtime    `toml:"runtime"`
	State     State      `toml:"state"`
	Listeners []Listener `toml:"listener"`
	Protocols []Protocol `toml:"protocol"`
	// Mail configures the IMAP and POP3 listeners (mail.go).
	Mail Mail `toml:"mail"`

	// doc locates the keys of the file, for Line.
	doc *tomlpos.Doc
}

// Engine tunes the gnet event-loop core.
type Engine struct {
	// Loops is the number of event loops; 0 means one per CPU.
	Loops int `toml:"loops"`
	// ReusePort binds one listening socket per loop with SO_REUSEPORT so the
	// kernel spreads accepts across loops (Linux).
	ReusePort bool `toml:"reuse_port"`
	// ReadBufferBytes is the per-loop read buffer (gnet ReadBufferCap).
	ReadBufferBytes int `toml:"read_buffer_bytes"`
	// WriteBufferBytes is the per-connection outbound ring before gnet spills
	// to its linked list (gnet WriteBufferCap).
	WriteBufferBytes int `toml:"write_buffer_bytes"`
	// SweepInterval is how often each loop checks connection deadlines.
	SweepInterval Duration `toml:"sweep_interval"`
}

// Limits bounds what one client may make the gateway hold.
type Limits struct {
	// MaxConnections is the gateway-wide cap on open client connections;
	// connections beyond it are closed right after accept and counted.
	MaxConnections int `toml:"max_connections"`
	// MaxHeaderBytes caps a request's header block (request line included);
	// larger blocks get 431.
	MaxHeaderBytes int `toml:"max_header_bytes"`
	// MaxBodyBytes caps a request body; larger declared or streamed bodies get 413.
	MaxBodyBytes int64 `toml:"max_body_bytes"`
	// MaxPipelineBytes caps the bytes a client may send ahead of the request
	// being served (pipelined requests waiting their turn).
	MaxPipelineBytes int `toml:"max_pipeline_bytes"`
	// ClientBufferBytes caps the response bytes buffered for one slow client
	// before its response is taken off the shared backend connection.
	ClientBufferBytes int `toml:"client_buffer_bytes"`
	// MaxResponseBufferBytes caps what is buffered for one client after its
	// response was taken off the shared connection; beyond it the client is
	// closed (it is not reading).
	MaxResponseBufferBytes int `toml:"max_response_buffer_bytes"`
	// MaxUploadBufferBytes caps request-body bytes waiting to be written to
	// a backend connection.
	MaxUploadBufferBytes int `toml:"max_upload_buffer_bytes"`
	// ChannelBufferBytes is the buffer of each direction of a long-lived
	// channel (RPC over HTTP, MAPI NotificationWait; docs/outlook.md): what
	// the gateway holds for one channel whatever its two sides do.
	ChannelBufferBytes int `toml:"channel_buffer_bytes"`
}

// Timeouts are enforced by a per-loop sweep, since gnet has no deadlines.
type Timeouts struct {
	// HeaderRead is the time a client has to send a complete request header
	// block, counted from its first byte.
	HeaderRead Duration `toml:"header_read"`
	// BodyRead is the longest pause allowed between two reads of a request body.
	BodyRead Duration `toml:"body_read"`
	// Idle is how long a keep-alive connection may wait for its next request.
	Idle Duration `toml:"idle"`
	// Write is the longest a connection may have response bytes pending
	// without the client reading any of them.
	Write Duration `toml:"write"`
	// Drain is how long a graceful stop waits for in-flight requests.
	Drain Duration `toml:"drain"`
	// RPCChannelIdle closes an RPC over HTTP channel (or a protocol's
	// stream_methods channel) when nothing moved either way for that long.
	RPCChannelIdle Duration `toml:"rpc_channel_idle"`
	// MAPINotificationWaitIdle is the same for a MAPI NotificationWait
	// long poll: the server's hold time plus a margin.
	MAPINotificationWaitIdle Duration `toml:"mapi_notification_wait_idle"`
}

// Backend configures the pools of connections to mailbox servers.
type Backend struct {
	// ConnsPerLoop is the number of persistent connections each event loop
	// keeps to each mailbox server.
	ConnsPerLoop int `toml:"conns_per_loop"`
	// MaxPipeline is the most requests written ahead on one backend connection.
	MaxPipeline int `toml:"max_pipeline"`
	// MaxQueue bounds the requests waiting for a connection, per loop and
	// server; beyond it clients get 503 with Retry-After. The queue's memory
	// grows with use (24 bytes a request), so the default (16384) lets ten
	// thousand clients of one server wait at once without 503s.
	MaxQueue int `toml:"max_queue"`
	// ConnectTimeout bounds a dial to a mailbox server.
	ConnectTimeout Duration `toml:"connect_timeout"`
	// ResponseTimeout bounds the wait for a response header once a request
	// is written; it fails the backend connection (504 for its requests).
	ResponseTimeout Duration `toml:"response_timeout"`
	// QueueTimeout bounds how long a request waits for a backend connection.
	QueueTimeout Duration `toml:"queue_timeout"`
	// ReconnectMin and ReconnectMax bound the exponential reconnect backoff.
	ReconnectMin Duration `toml:"reconnect_min"`
	ReconnectMax Duration `toml:"reconnect_max"`
	// RetryAfter is the value of Retry-After on 503 answers.
	RetryAfter Duration `toml:"retry_after"`
	// MaxChannelsPerServer bounds the dedicated connections of long-lived
	// channels to one mailbox server endpoint, all loops together; beyond
	// it a channel gets 503 with Retry-After.
	MaxChannelsPerServer int `toml:"max_channels_per_server"`
	// TLSCA is the PEM bundle of the CAs that mailbox servers declared with
	// tls = true in the directory must chain to, relative to the config
	// file; empty means the system roots. Reloaded on SIGHUP.
	TLSCA string `toml:"tls_ca"`

	// HealthInterval is how often every mailbox server endpoint is checked
	// (GET /healthcheck.htm on a new connection); 0 turns the active
	// checks off, and with them passive outlier detection (nothing would
	// bring an ejected server back): every server counts as healthy.
	HealthInterval Duration `toml:"health_interval"`
	// HealthTimeout bounds one check: connect, TLS handshake, request and
	// response head.
	HealthTimeout Duration `toml:"health_timeout"`
	// UnhealthyThreshold consecutive failed checks mark a healthy server
	// unhealthy; HealthyThreshold consecutive good ones (2xx) mark an
	// unhealthy server healthy again.
	UnhealthyThreshold int `toml:"unhealthy_threshold"`
	HealthyThreshold   int `toml:"healthy_threshold"`
	// OutlierConsecutiveFailures marks a server unhealthy at once after
	// that many consecutive failures seen on live traffic (failed
	// connects, connections lost with requests in flight, response
	// timeouts, 5xx responses) with no success between them; the active
	// checks bring it back. 0 turns passive detection off.
	OutlierConsecutiveFailures int `toml:"outlier_consecutive_failures"`
}

// Log configures the structured log.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `toml:"level"`
	// Format is "text" or "json".
	Format string `toml:"format"`
}

// Admin is the operator's HTTP endpoint: counters as JSON at /stats,
// Prometheus metrics at /metrics and Go's pprof handlers under
// /debug/pprof/. It binds to loopback by default because pprof exposes
// internals.
type Admin struct {
	// Address is host:port; empty turns the endpoint off.
	Address string `toml:"address"`
}

// AccessLog configures the access log: one JSON line per exchange, written
// off the event loops with a bounded buffer (package accesslog).
type AccessLog struct {
	// Path is the file appended to, relative to the configuration file,
	// or "-" for standard output; empty (default) turns the log off. The
	// file is reopened on SIGHUP, for rotation.
	Path string `toml:"path"`
	// BufferBytes bounds the memory of records waiting to be written;
	// when the writer falls behind, further records are dropped and
	// counted (frontdoor_access_log_dropped_total).
	BufferBytes int `toml:"buffer_bytes"`
	// Query keeps request query strings in the log (they may carry
	// tokens and mailbox names); off by default.
	Query bool `toml:"query"`
}

// Listener is one address the gateway accepts clients on.
type Listener struct {
	// Name identifies the listener in logs and counters; unique.
	Name string `toml:"name"`
	// Address is host:port to bind (IPv4, [IPv6] or a host name that resolves).
	Address string `toml:"address"`
	// Protocols names the protocols served here; empty means all.
	Protocols []string `toml:"protocols"`

	// TLS terminates TLS on this listener (package tlsterm). The other TLS
	// keys and HSTS are allowed only with it.
	TLS bool `toml:"tls"`
	// TLSMinVersion is the lowest TLS version accepted: "1.2" (default) or
	// "1.3". TLS 1.0 and 1.1 are never accepted (RFC 8996).
	TLSMinVersion string `toml:"tls_min_version"`
	// TLSClientAuth asks for client certificates: "none" (default),
	// "request" (verified when sent) or "require".
	TLSClientAuth string `toml:"tls_client_auth"`
	// TLSClientCA is the PEM bundle of the CAs client certificates must
	// chain to; required unless TLSClientAuth is "none".
	TLSClientCA string `toml:"tls_client_ca"`
	// HSTS is the Strict-Transport-Security value sent on this listener's
	// responses (RFC 6797), e.g. "max-age=31536000; includeSubDomains";
	// empty (default) sends none.
	HSTS string `toml:"hsts"`
	// TLSSelfSigned is for development only: when the one certificate's
	// files do not exist, the gateway writes a self-signed certificate
	// there on start.
	TLSSelfSigned bool `toml:"tls_self_signed"`
	// Certificates are selected by SNI; the first is the default. At least
	// one with tls = true.
	Certificates []Certificate `toml:"certificates"`

	// ProxyProtocol says whether connections start with a PROXY protocol
	// header (v1 or v2) naming the client a load balancer relays
	// (docs/deploy.md, "PROXY protocol"): "off" (default), "optional" or
	// "required". The header precedes the TLS ClientHello on a TLS
	// listener.
	ProxyProtocol string `toml:"proxy_protocol"`
	// ProxyProtocolFrom lists the networks of the load balancers whose
	// headers are believed: CIDR prefixes ("10.0.0.0/8") or single
	// addresses. Required unless ProxyProtocol is "off".
	ProxyProtocolFrom []string `toml:"proxy_protocol_from"`

	// Keytab overrides [auth] keytab for this HTTP listener: a listener
	// serving another service name (another host name of the array) may
	// have that service account's keytab.
	Keytab string `toml:"keytab"`

	// Mail makes this an IMAP or POP3 listener ("imap", "pop3"; default ""
	// for HTTP); see docs/mail.md. StartTLS offers STARTTLS/STLS on a
	// plaintext mail listener (the TLS keys then apply to it);
	// AllowPlaintextLogin lets clients log in before TLS there.
	Mail                string `toml:"mail"`
	StartTLS            bool   `toml:"starttls"`
	AllowPlaintextLogin bool   `toml:"allow_plaintext_login"`
}

// Certificate names the files of one certificate of a TLS listener,
// relative to the configuration file.
type Certificate struct {
	// Cert is the PEM chain: the leaf first, then its intermediates.
	Cert string `toml:"cert"`
	// Key is the leaf's PEM private key.
	Key string `toml:"key"`
	// OCSP, optional, is a DER OCSP response to staple.
	OCSP string `toml:"ocsp"`
}

// TLS holds the settings shared by every TLS listener.
type TLS struct {
	// TicketKeyFile is the session-ticket key file shared by the members
	// of an array (written by `frontdoor tls ticket-keys`), relative to
	// the configuration file; empty (default) uses per-process keys.
	TicketKeyFile string `toml:"ticket_key_file"`
	// TicketRotation is how often per-process ticket keys are replaced.
	TicketRotation Duration `toml:"ticket_rotation"`
	// TicketLifetime is how long a replaced per-process key still
	// decrypts tickets.
	TicketLifetime Duration `toml:"ticket_lifetime"`
	// HandshakeTimeout bounds a connection's time from accept to the end of
	// its handshake, waiting for a handshake slot included.
	HandshakeTimeout Duration `toml:"handshake_timeout"`
	// MaxHandshakes bounds the handshakes running at once, per listener.
	MaxHandshakes int `toml:"max_handshakes"`
	// HandshakeQueue bounds the connections waiting for a handshake slot,
	// per listener; beyond it a connection is closed at once.
	HandshakeQueue int `toml:"handshake_queue"`
	// MaxPlaintextBuffer bounds the decrypted bytes buffered per
	// connection.
	MaxPlaintextBuffer int `toml:"max_plaintext_buffer"`
	// SessionTickets turns session resumption by tickets on.
	SessionTickets bool `toml:"session_tickets"`
	// RecordLayer is who protects TLS 1.3 records after the handshake:
	// "frontdoor" (tlsterm's own record layer, no allocation per record)
	// or "crypto/tls" (the standard library's, as for TLS 1.2).
	RecordLayer string `toml:"record_layer"`
}

// Auth configures client authentication (docs/auth.md). Which methods a
// protocol accepts is set per protocol.
type Auth struct {
	// Realm is the realm of the Basic and Bearer challenges (RFC 7235).
	Realm string `toml:"realm"`
	// CacheTTL is how long a verified credential is trusted before it is
	// verified again (the expensive part: argon2id, signatures).
	CacheTTL Duration `toml:"cache_ttl"`
	// FailureTTL is how long a refused credential is remembered, so a
	// client repeating a wrong password costs no new hashing.
	FailureTTL Duration `toml:"failure_ttl"`
	// CacheEntries bounds the auth-result cache.
	CacheEntries int `toml:"cache_entries"`
	// Workers verify credentials off the event loops; 0 means one per CPU.
	Workers int `toml:"workers"`
	// Queue bounds the verifications waiting for a worker; beyond it the
	// request gets 503 with Retry-After.
	Queue int `toml:"queue"`
	// MaxFailures failed logins of one user from one client address
	// within FailureWindow get that pair 429 until the window passes;
	// MaxAddressFailures failures from one address, whatever the user,
	// get the address 429. A user is never locked out from other
	// addresses.
	MaxFailures        int      `toml:"max_failures"`
	MaxAddressFailures int      `toml:"max_address_failures"`
	FailureWindow      Duration `toml:"failure_window"`
	// TrustAnchorMailbox lets an authenticated user's X-AnchorMailbox route
	// the request to another mailbox the user may open (a delegate). Off:
	// the field is ignored and never forwarded.
	TrustAnchorMailbox bool `toml:"trust_anchor_mailbox"`
	// JWKSFile is the JSON Web Key Set (RFC 7517) bearer tokens are
	// verified against, relative to the configuration file; required by
	// protocols that accept "bearer".
	JWKSFile string `toml:"jwks_file"`
	// JWTIssuer and JWTAudience are the iss and aud a token must carry.
	JWTIssuer   string `toml:"jwt_issuer"`
	JWTAudience string `toml:"jwt_audience"`
	// JWTUserClaim names the claim holding the user's login or SMTP address.
	JWTUserClaim string `toml:"jwt_user_claim"`

	// Keytab is the Kerberos service keytab HTTP Negotiate tickets are
	// verified with (docs/kerberos.md), relative to the configuration
	// file: the shared alternate service account's keys, every kvno of
	// which is accepted. Required by protocols that accept "negotiate"
	// unless every HTTP listener names its own. Reloaded when the file
	// changes (checked every KeytabCheckInterval).
	Keytab string `toml:"keytab"`
	// KeytabCheckInterval is how often the keytab files are checked for
	// a change.
	KeytabCheckInterval Duration `toml:"keytab_check_interval"`
	// KerberosRealms are the realms whose client principals may sign in;
	// empty (default) means the realms of the keytab's service principals.
	KerberosRealms []string `toml:"kerberos_realms"`
	// KerberosMaxSkew is the clock skew allowed between clients and the
	// gateway (RFC 4120 1.6); it is also how long an authenticator is
	// remembered for replay detection.
	KerberosMaxSkew Duration `toml:"kerberos_max_skew"`
	// KerberosMaxTokenBytes bounds a decoded Negotiate token; longer ones
	// are refused without parsing. The request head limit
	// (limits.max_header_bytes) must hold its base64 form too.
	KerberosMaxTokenBytes int `toml:"kerberos_max_token_bytes"`
	// KerberosReplayEntries bounds the replay cache (authenticators seen
	// within the skew); make it exceed the Negotiate logins of one skew
	// window.
	KerberosReplayEntries int `toml:"kerberos_replay_entries"`
}

// Identity configures the signed identity assertion added to every
// authenticated request (package identity, docs/identity.md).
type Identity struct {
	// KeyFile is the private JWK set shared by the array, relative to the
	// configuration file (`frontdoor identity keygen`); its first key
	// signs. Empty: requests are forwarded without an assertion, which
	// only suits backends that do their own authentication.
	KeyFile string `toml:"key_file"`
	// Generate is for development only: when KeyFile does not exist, the
	// gateway creates it (and PublicFile) on start.
	Generate bool `toml:"generate"`
	// PublicFile is where Generate writes the public key set for the
	// mailbox servers.
	PublicFile string `toml:"public_file"`
	// Header is the request field carrying the assertion. A client's own
	// field of that name is always removed.
	Header string `toml:"header"`
	// Lifetime is how long an assertion is valid; it must outlast
	// auth.cache_ttl, since one is minted per cache entry.
	Lifetime Duration `toml:"lifetime"`
	// Audience is the aud claim of the assertions.
	Audience string `toml:"audience"`
}

// Runtime tunes how the process gives memory back to the kernel.
type Runtime struct {
	// MemoryTrimInterval enables the memory trimmer: when no TLS handshake
	// has run for a second and the heap holds at least MemoryTrimMinBytes
	// of free or garbage memory, the gateway collects it and returns the
	// free pages to the kernel (runtime/debug.FreeOSMemory), at most once
	// per interval. 0 turns it off.
	MemoryTrimInterval Duration `toml:"memory_trim_interval"`
	// MemoryTrimMinBytes is the least retained heap memory worth a trim.
	MemoryTrimMinBytes int64 `toml:"memory_trim_min_bytes"`
}

// State configures the component states (Exchange's server component
// states): ServerWideOffline and one per protocol, each active or
// inactive, set through the admin endpoint (`frontdoor state set`).
type State struct {
	// File keeps the states across restarts (JSON, written atomically),
	// relative to the configuration file. Empty (default): the states
	// live in memory and every component is active after a restart.
	File string `toml:"file"`
	// DrainGrace is how long after a component goes inactive its health
	// pages answer 503 while its keep-alive connections are still kept
	// (the load balancer needs that long to notice); then they are told
	// to close.
	DrainGrace Duration `toml:"drain_grace"`
}

// ServerWideOffline is the name of the server-wide component: inactive,
// every protocol is, whatever its own state. A protocol cannot take it.
const ServerWideOffline = "ServerWideOffline"

// Protocol is one client-access protocol, selected by request path prefix.
type Protocol struct {
	// Name is the protocol's short name ("owa", "ews", "mapi", ...); unique.
	Name string `toml:"name"`
	// PathPrefix selects the protocol (case-insensitive, segment boundary):
	// "/owa" matches "/owa", "/owa/" and "/OWA/x" but not "/owab".
	PathPrefix string `toml:"path_prefix"`
	// BackendPort is the port this protocol is served on by mailbox servers
	// whose directory address has no port of its own.
	BackendPort int `toml:"backend_port"`

	// Auth lists the authentication methods the protocol accepts:
	// "basic", "bearer", "certificate", "negotiate" (Kerberos, needs
	// [auth] keytab; docs/kerberos.md). Empty (default): the protocol is
	// anonymous and routed by X-AnchorMailbox or /{prefix}/u/{mailbox}/.
	Auth []string `toml:"auth"`
	// AnonymousPaths are path prefixes, after the protocol's own, served
	// without authentication (and routed like an anonymous protocol),
	// e.g. ["/auth/"]. (The health page, /{prefix}/healthcheck.htm, is
	// the gateway's own and needs none.)
	AnonymousPaths []string `toml:"anonymous_paths"`
	// CrossSite says what to do when the mailbox is active in another
	// site: "proxy" (default), "redirect" (302 to the site's external
	// URL, for browser protocols) or "redirect-451" (451 with
	// X-MS-Location, for ActiveSync).
	CrossSite string `toml:"cross_site"`
	// OlderServer says what to do when the mailbox's server is older than
	// the gateway's version: "proxy" (default), "redirect" (as CrossSite
	// redirects, to the server's site) or "refuse" (421).
	OlderServer string `toml:"older_server"`
	// ForwardAuthorization forwards the client's Authorization field to
	// the mailbox server. Off (default): the server gets the identity
	// assertion instead of the client's password or token.
	ForwardAuthorization bool `toml:"forward_authorization"`
	// StreamMethods are request methods streamed on a channel of their own
	// like RPC_IN_DATA and RPC_OUT_DATA (which always are), e.g. for a
	// protocol with its own long-lived methods (docs/outlook.md).
	StreamMethods []string `toml:"stream_methods"`
}

// Duration is a time.Duration written as a Go duration string ("15s", "2m").
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("bad duration %q: want a number and a unit (ns, us, ms, s, m, h), e.g. \"250ms\" or \"1m30s\"", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
