package gateway

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"frontdoor/auth"
	"frontdoor/auth/password"
	"frontdoor/directory"
	"frontdoor/gateway/config"
	"frontdoor/identity"
	"frontdoor/kerberos"
	"frontdoor/l4"
	"frontdoor/l7"
)

// authMethods is a set of authentication methods, one bit each.
type authMethods uint8

const (
	methodBasic authMethods = 1 << iota
	methodBearer
	methodCertificate
	methodNegotiate
)

func parseMethods(names []string) authMethods {
	var m authMethods
	for _, n := range names {
		switch n {
		case "basic":
			m |= methodBasic
		case "bearer":
			m |= methodBearer
		case "certificate":
			m |= methodCertificate
		case "negotiate":
			m |= methodNegotiate
		}
	}
	return m
}

func (m authMethods) has(x authMethods) bool { return m&x != 0 }

// authenticator authenticates requests for the router. Verification is
// expensive (argon2id, signatures) and never runs on an event loop: a
// request whose credential is not in the cache is parked (l7 Pending), a
// worker verifies it and fills the cache, and the request is routed again,
// now a cache hit. The identity assertion is minted with the cache entry,
// so the hot path does no hashing beyond the cache key and no signing.
type authenticator struct {
	log      *slog.Logger
	cfg      config.Auth
	gateway  string
	audience string
	header   string // identity header name
	lifetime time.Duration

	// rt is the router of the newest configuration: workers verify
	// against its directory. A reload that keeps the authentication
	// settings shares the authenticator (and its cache) with the new one.
	rt       atomic.Pointer[router]
	hasher   *auth.Hasher
	cache    *auth.Cache[*authEntry]
	throttle *auth.Throttle
	pool     *auth.Pool
	jwt      *auth.JWTVerifier // nil unless a protocol accepts bearer
	krb      *negotiator       // nil unless a protocol accepts negotiate
	signer   atomic.Pointer[identity.Signer]

	// inflight holds the credentials being verified and the requests
	// waiting for each verdict (see submit).
	mu       sync.Mutex
	inflight map[auth.Key][]l7.Waker
	keyFile  string // identity.key_file, resolved; "" when not signing

	ttl, failTTL int64 // nanoseconds
	// trustAnchor lets X-AnchorMailbox route to a mailbox the user may open.
	trustAnchor bool

	stats authStats
}

// authStats counts authentication outcomes; exported through /stats.
type authStats struct {
	Accepted      [4]atomic.Int64 // by method: basic, bearer, certificate, negotiate
	Refused       [4]atomic.Int64
	CacheHits     atomic.Int64
	CacheMisses   atomic.Int64
	Verifications atomic.Int64 // expensive checks run (argon2id, bcrypt, JWT)
	Signed        atomic.Int64 // identity assertions minted
	Throttled     atomic.Int64
	Overloaded    atomic.Int64 // verifications refused: worker queue full
	Coalesced     atomic.Int64 // requests that waited for a verification already running
	Challenged    atomic.Int64 // 401 without credentials
}

// authEntry is a cached verdict on one credential. It is shared by every
// loop; everything but the assertion slots is immutable once published.
type authEntry struct {
	ok      bool
	method  identity.Method
	login   string // the user's login, to find them in a new directory
	hash    string // the password hash the credential matched (basic)
	gen     uint64 // routing-table generation the entry was made under
	user    *directory.User
	expires int64 // monotonic ns; a bearer token's own expiry caps it

	ids  [4]atomic.Pointer[assertion]
	next atomic.Uint32
	// fresh is set by the worker that verified the credential and
	// cleared by the first request that uses the verdict.
	fresh atomic.Bool
}

// assertion is one minted identity header line for one client address.
type assertion struct {
	client  netip.Addr
	line    []byte // "X-Frontdoor-Identity: <jws>\r\n"
	expires int64  // monotonic ns; re-minted before the JWS expires
}

// replay is the replay cache of the authenticator this one replaces (nil if
// none): a configuration reload must not forget the authenticators seen.
func newAuthenticator(cfg *config.Config, log *slog.Logger, replay *kerberos.ReplayCache) (*authenticator, error) {
	a := &authenticator{log: log, cfg: cfg.Auth, gateway: cfg.GatewayID, audience: cfg.Identity.Audience,
		header: cfg.Identity.Header, lifetime: cfg.Identity.Lifetime.D(),
		ttl: int64(cfg.Auth.CacheTTL.D()), failTTL: int64(cfg.Auth.FailureTTL.D()),
		trustAnchor: cfg.Auth.TrustAnchorMailbox}
	a.hasher = auth.NewHasher()
	a.inflight = make(map[auth.Key][]l7.Waker)
	a.cache = auth.NewCache[*authEntry](cfg.Auth.CacheEntries)
	a.throttle = auth.NewThrottle(auth.ThrottleConfig{
		MaxFailures:        cfg.Auth.MaxFailures,
		MaxAddressFailures: cfg.Auth.MaxAddressFailures,
		Window:             cfg.Auth.FailureWindow.D(),
		MaxEntries:         cfg.Auth.CacheEntries,
	})
	workers := cfg.Auth.Workers
	if workers == 0 {
		workers = runtime.NumCPU()
	}
	bearer := false
	for _, p := range cfg.Protocols {
		bearer = bearer || parseMethods(p.Auth).has(methodBearer)
	}
	if bearer {
		v, err := auth.NewJWTVerifier(auth.JWTConfig{
			JWKSFile:  cfg.Resolve(cfg.Auth.JWKSFile),
			Issuer:    cfg.Auth.JWTIssuer,
			Audience:  cfg.Auth.JWTAudience,
			UserClaim: cfg.Auth.JWTUserClaim,
		})
		if err != nil {
			return nil, fmt.Errorf("%s:%d: auth.jwks_file: %w", cfg.Path, cfg.Line("auth.jwks_file"), err)
		}
		a.jwt = v
	}
	if err := a.loadSigner(cfg); err != nil {
		return nil, err
	}
	if cfg.NegotiateUsed() {
		n, err := newNegotiator(cfg, log, replay)
		if err != nil {
			return nil, err
		}
		a.krb = n
	}
	a.pool = auth.NewPool(workers, cfg.Auth.Queue)
	return a, nil
}

// loadSigner loads (or, for development, generates) the identity key file.
func (a *authenticator) loadSigner(cfg *config.Config) error {
	id := &cfg.Identity
	if id.KeyFile == "" {
		a.log.Warn("identity.key_file is not set: authenticated requests reach the mailbox servers without a signed identity")
		return nil
	}
	path := cfg.Resolve(id.KeyFile)
	if id.Generate {
		if err := ensureIdentityKeys(path, cfg.Resolve(id.PublicFile), a.log); err != nil {
			return fmt.Errorf("%s:%d: identity.key_file: %w", cfg.Path, cfg.Line("identity.key_file"), err)
		}
	}
	s, err := identity.LoadSigner(path)
	if err != nil {
		return fmt.Errorf("%s:%d: identity.key_file: %w", cfg.Path, cfg.Line("identity.key_file"), err)
	}
	a.signer.Store(s)
	a.keyFile = path
	return nil
}

// reloadSigner re-reads the identity key file (a rotation: its first key
// signs from now on). A bad file is refused and the old key keeps signing.
// Assertions already minted stay valid until they expire.
func (a *authenticator) reloadSigner() error {
	if a.keyFile == "" {
		return nil
	}
	s, err := identity.LoadSigner(a.keyFile)
	if err != nil {
		return fmt.Errorf("identity key file: %w", err)
	}
	if old := a.signer.Swap(s); old == nil || old.KeyID() != s.KeyID() {
		a.log.Info("identity signing key", "kid", s.KeyID(), "alg", s.Alg())
	}
	return nil
}

// dir returns the newest directory and its routing-table generation.
func (a *authenticator) dir() (*directory.Directory, uint64) {
	t := a.rt.Load().table.Load()
	return t.dir, t.gen
}

// close stops the verification workers and the keytab watchers.
func (a *authenticator) close() {
	a.pool.Close()
	if a.krb != nil {
		a.krb.close()
	}
}

// Local answers of authentication.
const (
	bodyUnauthorized = "authentication required"
	bodyRefused      = "authentication failed"
	bodyThrottled    = "too many failed logins: try again later"
	bodyOverloaded   = "authentication service busy: try again later"
	bodyForbidden    = "this account may not sign in here"
)

// route authenticates req and routes it to the user's mailbox.
func (a *authenticator) route(r *router, t *routeTable, p *protoPolicy, req *l7.Request) l7.Route {
	var scratch [auth.BasicScratchSize]byte
	var (
		key    auth.Key
		method identity.Method
		user   []byte // the name the client gave, for throttling
		secret []byte // the password or token, for a verification job
		leaf   *x509.Certificate
	)
	authz := req.Field("authorization")
	scheme, _ := auth.Scheme(authz)
	switch {
	case len(authz) > 0 && p.methods.has(methodBasic) && equalFoldASCII(scheme, "basic"):
		u, pw, ok := auth.ParseBasic(authz, scratch[:])
		if !ok {
			return a.refuse(p, identity.MethodBasic, 400)
		}
		method, user, secret = identity.MethodBasic, u, pw
		key = a.hasher.Sum2(u, pw)
	case len(authz) > 0 && p.methods.has(methodBearer) && equalFoldASCII(scheme, "bearer"):
		tok, ok := auth.ParseBearer(authz)
		if !ok {
			return a.refuse(p, identity.MethodBearer, 400)
		}
		method, secret = identity.MethodBearer, tok
		key = a.hasher.Sum2(bearerDomain, tok)
	case len(authz) > 0 && p.methods.has(methodNegotiate) && equalFoldASCII(scheme, "negotiate"):
		return a.routeNegotiate(r, t, p, req, authz)
	case len(authz) > 0 && p.methods.has(methodNegotiate) && equalFoldASCII(scheme, "ntlm"):
		return a.refuseNTLM(p, req)
	case len(authz) == 0 && p.methods.has(methodNegotiate) && req.Conn != nil && *req.Conn != nil:
		// Authenticated earlier on this connection (RFC 4559 6).
		if e, ok := a.connIdentity(t, req); ok {
			return a.accept(r, t, p, req, e, identity.MethodNegotiate, nil)
		}
		if p.methods.has(methodCertificate) && req.TLS != nil && req.TLS.VerifiedLeaf() != nil {
			leaf = req.TLS.VerifiedLeaf()
			method = identity.MethodCertificate
			key = a.hasher.Sum2(certificateDomain, leaf.Raw)
			break
		}
		return a.challenge(p)
	case p.methods.has(methodCertificate) && req.TLS != nil:
		if leaf = req.TLS.VerifiedLeaf(); leaf == nil {
			return a.challenge(p)
		}
		method = identity.MethodCertificate
		key = a.hasher.Sum2(certificateDomain, leaf.Raw)
	default:
		return a.challenge(p)
	}

	now := l4.Monotonic()
	e, hit := a.cache.Get(key, now)
	if hit && e.gen != t.gen {
		// A new directory since the verdict: a disabled user, a
		// changed password or a moved mailbox must count now.
		e, hit = a.revalidate(t, key, e)
	}
	if !hit || !e.ok {
		// Only a credential not known to be good is throttled: guessing
		// is what throttling stops, and a cached good credential is
		// not a guess (so a user is never locked out by an attacker
		// once signed in).
		if retry, ok := a.throttle.Check(user, req.Client, now); !ok {
			a.stats.Throttled.Add(1)
			return throttled(retry)
		}
	}
	if !hit {
		a.stats.CacheMisses.Add(1)
		return a.submitVerify(req, key, method, user, secret, leaf)
	}
	a.stats.CacheHits.Add(1)
	if !e.ok {
		a.throttle.Failure(user, req.Client, now)
		return a.refuse(p, method, 401)
	}
	if e.fresh.Load() && e.fresh.Swap(false) {
		// First use of a verdict just reached: a good login clears the
		// failures of this user from this address.
		a.throttle.Success(user, req.Client)
	}
	return a.accept(r, t, p, req, e, method, nil)
}

// accept routes req of the authenticated user of e to the mailbox it may
// open, with e's identity assertion; respHeader goes to the client with
// the response (the Negotiate mutual-authentication token).
func (a *authenticator) accept(r *router, t *routeTable, p *protoPolicy, req *l7.Request, e *authEntry, method identity.Method, respHeader []byte) l7.Route {
	var scratch [auth.BasicScratchSize]byte
	line, ok := e.identityFor(req.Client, l4.Monotonic())
	if !ok && a.signer.Load() != nil {
		// First request of this user from this address: mint its
		// assertion off the loop, then route.
		return a.submitMint(req, e)
	}
	a.stats.Accepted[methodIndex(method)].Add(1)
	mb := e.user
	if r.auth.trustAnchor {
		if anchor := req.Field("x-anchormailbox"); len(anchor) > 0 {
			target := t.dir.LookupMailbox(anchor)
			switch {
			case target == nil:
				return l7.Route{Endpoint: -1, Status: 404, Body: bodyUnknownMailbox, User: e.user.Login}
			case !e.user.MayOpen(target):
				return l7.Route{Endpoint: -1, Status: 403, Body: bodyForbiddenMbx, User: e.user.Login}
			}
			mb = target
		}
	}
	if named, ok := requestMailbox(t.dir, req, &scratch); ok {
		// The mailbox the request names (an RPC channel's target,
		// MAPI's MailboxId): the user's own or one it is a delegate
		// of. Unknown and forbidden look alike, so the answer tells
		// nothing about which mailboxes exist.
		target := t.dir.LookupMailbox(named)
		if !e.user.MayOpen(target) {
			return l7.Route{Endpoint: -1, Status: 403, Body: bodyForbiddenMbx, User: e.user.Login}
		}
		mb = target
	}
	route := r.toMailbox(t, p, req, mb, line)
	// For the access log: the login string is the directory's, so this
	// costs no allocation.
	route.User = e.user.Login
	if route.Endpoint >= 0 {
		route.ResponseHeader = respHeader
	}
	return route
}

// Domain separators of cache keys, so a password can never collide with a
// token or a certificate.
var (
	bearerDomain      = []byte("bearer\x00")
	certificateDomain = []byte("certificate\x00")
)

// submitVerify parks req while a worker verifies its credential. The
// credential is copied: the request's bytes belong to the loop. Kept out
// of route so that route's scratch space never escapes to the heap.
func (a *authenticator) submitVerify(req *l7.Request, key auth.Key, m identity.Method, user, secret []byte, leaf *x509.Certificate) l7.Route {
	var job func() *authEntry
	switch m {
	case identity.MethodBasic:
		u, pw := bytes.Clone(user), bytes.Clone(secret)
		job = func() *authEntry { return a.verifyBasic(u, pw) }
	case identity.MethodBearer:
		tok := bytes.Clone(secret)
		job = func() *authEntry { return a.verifyBearer(tok) }
	default:
		job = func() *authEntry { return a.mapCertificate(leaf) }
	}
	return a.submit(req, key, true, job)
}

// submitMint parks req while a worker signs e's assertion for its client.
func (a *authenticator) submitMint(req *l7.Request, e *authEntry) l7.Route {
	client := req.Client
	return a.submit(req, auth.Key{}, false, func() *authEntry { a.mint(e, client); return nil })
}

// maxCoalesced bounds the requests waiting for one credential's
// verification.
const maxCoalesced = 4096

// submit parks req while job runs on a worker; job's entry (if any) goes
// into the cache under key, then the request is routed again.
//
// With coalesce, requests that carry the same credential while its
// verification runs wait for that one instead of starting their own: a
// client that opens many connections at once (Outlook does, and every
// client does after a gateway restart) costs one argon2id, not one per
// connection, and cannot queue the workers full with duplicates.
func (a *authenticator) submit(req *l7.Request, key auth.Key, coalesce bool, job func() *authEntry) l7.Route {
	w := req.Waker
	if coalesce {
		a.mu.Lock()
		if ws, running := a.inflight[key]; running {
			if len(ws) >= maxCoalesced {
				a.mu.Unlock()
				a.stats.Overloaded.Add(1)
				return l7.Route{Endpoint: -1, Status: 503, Body: bodyOverloaded, Header: retryAfter1}
			}
			a.inflight[key] = append(ws, w)
			a.mu.Unlock()
			a.stats.Coalesced.Add(1)
			return l7.Route{Pending: true}
		}
		a.inflight[key] = []l7.Waker{w}
		a.mu.Unlock()
	}
	ok := a.pool.Submit(func() {
		if e := job(); e != nil {
			ttl := a.ttl
			if !e.ok {
				ttl = a.failTTL
			}
			exp := l4.Monotonic() + ttl
			if e.expires == 0 || e.expires > exp {
				e.expires = exp
			}
			e.fresh.Store(true)
			a.cache.Put(key, e, e.expires)
		}
		if coalesce {
			a.wakeWaiting(key)
		} else {
			w.Wake()
		}
	})
	if !ok {
		if coalesce {
			// Those who joined meanwhile try again (and most likely get
			// this 503 too); this request is answered now.
			a.wakeWaiting(key)
		}
		a.stats.Overloaded.Add(1)
		return l7.Route{Endpoint: -1, Status: 503, Body: bodyOverloaded, Header: retryAfter1}
	}
	return l7.Route{Pending: true}
}

// wakeWaiting ends key's verification: every request waiting for it is
// routed again. A Waker of a request answered meanwhile does nothing.
func (a *authenticator) wakeWaiting(key auth.Key) {
	a.mu.Lock()
	ws := a.inflight[key]
	delete(a.inflight, key)
	a.mu.Unlock()
	for _, w := range ws {
		w.Wake()
	}
}

var retryAfter1 = []byte("Retry-After: 1\r\n")

// verifyBasic checks a user name and password against the directory. It
// runs on a worker. Unknown users cost a dummy hash, so timing does not
// tell them from wrong passwords; every refusal looks the same.
func (a *authenticator) verifyBasic(name, pw []byte) *authEntry {
	defer clear(pw)
	a.stats.Verifications.Add(1)
	dir, gen := a.dir()
	u := dir.LookupLogin(name)
	if u == nil || u.PasswordHash == "" {
		password.VerifyDummy(pw)
		return &authEntry{gen: gen}
	}
	ok, err := password.Verify(u.PasswordHash, pw)
	if err != nil {
		a.log.Warn("password hash unusable", "user", u.Login, "err", err)
	}
	if !ok || u.Disabled {
		return &authEntry{gen: gen, login: u.Login}
	}
	e := &authEntry{ok: true, method: identity.MethodBasic, login: u.Login, hash: u.PasswordHash, gen: gen, user: u}
	return e
}

// verifyBearer checks a JWT and maps its user claim to a directory user.
func (a *authenticator) verifyBearer(tok []byte) *authEntry {
	a.stats.Verifications.Add(1)
	dir, gen := a.dir()
	res, err := a.jwt.Verify(tok, time.Now())
	if err != nil {
		a.log.Info("bearer token refused", "reason", err)
		return &authEntry{gen: gen}
	}
	u := lookupUser(dir, []byte(res.User))
	if u == nil || u.Disabled {
		return &authEntry{gen: gen}
	}
	e := &authEntry{ok: true, method: identity.MethodBearer, login: u.Login, gen: gen, user: u}
	// The cache never outlives the token.
	e.expires = l4.Monotonic() + int64(time.Until(res.Expires))
	return e
}

// mapCertificate maps a verified client certificate to a user: an email
// SAN that is a user's SMTP address, else the subject's common name as a
// login (RFC 5280 4.2.1.6).
func (a *authenticator) mapCertificate(leaf *x509.Certificate) *authEntry {
	dir, gen := a.dir()
	var u *directory.User
	for _, em := range leaf.EmailAddresses {
		if u = dir.LookupMailbox([]byte(em)); u != nil {
			break
		}
	}
	if u == nil && leaf.Subject.CommonName != "" {
		u = dir.LookupLogin([]byte(leaf.Subject.CommonName))
	}
	if u == nil || u.Disabled {
		return &authEntry{gen: gen}
	}
	return &authEntry{ok: true, method: identity.MethodCertificate, login: u.Login, gen: gen, user: u}
}

func lookupUser(dir *directory.Directory, name []byte) *directory.User {
	if u := dir.LookupLogin(name); u != nil {
		return u
	}
	return dir.LookupMailbox(name)
}

// revalidate carries a cached verdict over to the current directory when
// nothing it rests on changed; otherwise the credential is verified again.
func (a *authenticator) revalidate(t *routeTable, key auth.Key, e *authEntry) (*authEntry, bool) {
	if !e.ok {
		return nil, false
	}
	u := t.dir.LookupLogin([]byte(e.login))
	if u == nil || u.Disabled || e.method == identity.MethodBasic && u.PasswordHash != e.hash {
		return nil, false
	}
	n := &authEntry{ok: true, method: e.method, login: e.login, hash: e.hash, gen: t.gen, user: u, expires: e.expires}
	if u.Address == e.user.Address && u.Database.Name == e.user.Database.Name {
		// The assertions name the same mailbox and database: keep them.
		for i := range e.ids {
			n.ids[i].Store(e.ids[i].Load())
		}
	}
	a.cache.Put(key, n, n.expires)
	return n, true
}

// identityFor returns the entry's assertion line for client, if one was
// minted and is not close to expiring.
func (e *authEntry) identityFor(client netip.Addr, now int64) ([]byte, bool) {
	for i := range e.ids {
		if as := e.ids[i].Load(); as != nil && as.client == client && now < as.expires {
			return as.line, true
		}
	}
	return nil, false
}

// mint signs an identity assertion for e's user seen from client and
// stores it in one of e's slots (round robin: a user behind several
// addresses keeps the most recent four).
func (a *authenticator) mint(e *authEntry, client netip.Addr) {
	s := a.signer.Load()
	if s == nil {
		return
	}
	now := time.Now().Truncate(time.Second)
	c := identity.Claims{
		User: e.user.Login, Mailbox: e.user.Address, Database: e.user.Database.Name,
		Method: e.method, Client: client, Issuer: a.gateway, Audience: a.audience,
		IssuedAt: now, Expires: now.Add(a.lifetime),
	}
	v, err := s.Sign(c)
	if err != nil {
		a.log.Error("identity assertion not signed", "user", e.user.Login, "err", err)
		return
	}
	a.stats.Signed.Add(1)
	line := make([]byte, 0, len(a.header)+len(v)+4)
	line = append(append(append(append(line, a.header...), ": "...), v...), "\r\n"...)
	// Valid in the cache until a minute before the signed expiry, so a
	// backend never receives an assertion about to lapse.
	valid := l4.Monotonic() + int64(a.lifetime) - int64(time.Minute)
	slot := e.next.Add(1) % uint32(len(e.ids))
	e.ids[slot].Store(&assertion{client: client, line: line, expires: valid})
}

// challenge answers a request without usable credentials.
func (a *authenticator) challenge(p *protoPolicy) l7.Route {
	a.stats.Challenged.Add(1)
	return l7.Route{Endpoint: -1, Status: 401, Body: bodyUnauthorized, Header: p.challenge}
}

// refuse answers refused credentials: 401 with the challenge, identical for
// an unknown user and a wrong password (or 400 for a malformed field).
func (a *authenticator) refuse(p *protoPolicy, m identity.Method, status int) l7.Route {
	a.stats.Refused[methodIndex(m)].Add(1)
	if status == 400 {
		return l7.Route{Endpoint: -1, Status: 400, Body: "malformed Authorization field"}
	}
	return l7.Route{Endpoint: -1, Status: 401, Body: bodyRefused, Header: p.challenge}
}

// throttled answers a client over its failed-login budget: 429 with
// Retry-After (RFC 6585 section 4).
func throttled(retry time.Duration) l7.Route {
	secs := int64((retry + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	h := strconv.AppendInt([]byte("Retry-After: "), secs, 10)
	h = append(h, "\r\n"...)
	return l7.Route{Endpoint: -1, Status: 429, Body: bodyThrottled, Header: h}
}

func methodIndex(m identity.Method) int {
	switch m {
	case identity.MethodBasic:
		return 0
	case identity.MethodBearer:
		return 1
	case identity.MethodCertificate:
		return 2
	}
	return 3 // negotiate
}

func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// snapshot reads the authentication counters for /stats.
func (a *authenticator) snapshot() map[string]int64 {
	m := map[string]int64{
		"cache_hits":    a.stats.CacheHits.Load(),
		"cache_misses":  a.stats.CacheMisses.Load(),
		"cache_entries": int64(a.cache.Len()),
		"verifications": a.stats.Verifications.Load(),
		"signed":        a.stats.Signed.Load(),
		"throttled":     a.stats.Throttled.Load(),
		"overloaded":    a.stats.Overloaded.Load(),
		"coalesced":     a.stats.Coalesced.Load(),
		"challenged":    a.stats.Challenged.Load(),
	}
	for i, name := range []string{"basic", "bearer", "certificate", "negotiate"} {
		m["accepted_"+name] = a.stats.Accepted[i].Load()
		m["refused_"+name] = a.stats.Refused[i].Load()
	}
	if a.krb != nil {
		a.krb.snapshot(m)
	}
	return m
}

// ensureIdentityKeys creates a development identity key file at path (and
// its public set at public, when given) if path does not exist
// (identity.generate). Production arrays create and rotate theirs with
// `frontdoor identity keygen`.
func ensureIdentityKeys(path, public string, log *slog.Logger) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	k, err := identity.GenerateKey(identity.EdDSA, "")
	if err != nil {
		return err
	}
	if _, err := identity.RotateKeyFile(path, k, 1); err != nil {
		return err
	}
	if public != "" {
		if err := os.MkdirAll(filepath.Dir(public), 0o755); err != nil {
			return err
		}
		if err := identity.WritePublicKeyFile(public, []*identity.PublicKey{k.Public()}); err != nil {
			return err
		}
	}
	log.Warn("generated a development identity key (identity.generate): never use it in production",
		"key_file", path, "public_file", public, "kid", k.KeyID())
	return nil
}
