package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"frontdoor/auth"
	"frontdoor/directory"
	"frontdoor/gateway/config"
	"frontdoor/identity"
	"frontdoor/kerberos"
	"frontdoor/l4"
	"frontdoor/l7"
)

// negotiator is the Kerberos side of the authenticator: HTTP Negotiate
// (RFC 4559) with SPNEGO (RFC 4178) and Kerberos (RFC 4120, RFC 4121).
//
// Negotiate authenticates a connection, not a request: after one token is
// accepted, later requests on the same connection carry no credential
// (RFC 4559 6 lets the server keep the context for the connection), and
// the identity stays in the connection's router slot (l7.Request.Conn)
// until it closes or the ticket expires. Behind other pooling proxies
// that breaks, because the backend authenticates and the proxy must pin
// the client to one backend connection; here the gateway itself
// authenticates, so every request still takes any pooled backend
// connection, with the usual identity assertion.
type negotiator struct {
	log *slog.Logger
	// def verifies for listeners without a keytab of their own;
	// byListener[i] for listener i (nil: def).
	def        *kerberos.Acceptor
	byListener []*kerberos.Acceptor
	keytabs    []*kerberos.Keytab
	replay     *kerberos.ReplayCache
	maxB64     int // longest base64 token taken off the loop
	cancel     context.CancelFunc
	done       chan struct{}

	refused  [kerberos.NumReasons]atomic.Int64
	accepted atomic.Int64 // tokens accepted
	reused   atomic.Int64 // requests authenticated by their connection's identity
}

// newNegotiator builds the Negotiate side of an authenticator. replay, if
// not nil, is the replay cache of the negotiator it replaces, kept (when
// its bound is unchanged) so that a reload opens no replay window.
func newNegotiator(cfg *config.Config, log *slog.Logger, replay *kerberos.ReplayCache) (*negotiator, error) {
	a := &cfg.Auth
	if replay == nil || replay.Cap() != a.KerberosReplayEntries {
		replay = kerberos.NewReplayCache(a.KerberosReplayEntries)
	}
	n := &negotiator{log: log, replay: replay,
		maxB64: base64.StdEncoding.EncodedLen(a.KerberosMaxTokenBytes), done: make(chan struct{})}
	byPath := map[string]*kerberos.Acceptor{}
	acceptor := func(path, key string, line int) (*kerberos.Acceptor, error) {
		path = cfg.Resolve(path)
		if acc, ok := byPath[path]; ok {
			return acc, nil
		}
		kt, err := kerberos.LoadKeytab(path)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %w", cfg.Path, line, key, err)
		}
		log.Info("kerberos keytab loaded", "file", path, "keys", kt.Summary())
		acc := kerberos.NewAcceptor(kerberos.Config{Keytab: kt, MaxSkew: a.KerberosMaxSkew.D(), Realms: a.KerberosRealms,
			Replay: n.replay, MaxTokenBytes: a.KerberosMaxTokenBytes})
		byPath[path] = acc
		n.keytabs = append(n.keytabs, kt)
		return acc, nil
	}
	if a.Keytab != "" {
		acc, err := acceptor(a.Keytab, "auth.keytab", cfg.Line("auth.keytab"))
		if err != nil {
			return nil, err
		}
		n.def = acc
	}
	n.byListener = make([]*kerberos.Acceptor, len(cfg.Listeners))
	for i, l := range cfg.Listeners {
		if l.Keytab == "" {
			continue
		}
		key := fmt.Sprintf("listener[%d].keytab", i)
		acc, err := acceptor(l.Keytab, key, cfg.Line(key))
		if err != nil {
			return nil, err
		}
		n.byListener[i] = acc
	}
	// The shared keytab is rotated by replacing the file on every member:
	// each picks it up within an interval, without a signal.
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() {
		defer close(n.done)
		interval := a.KeytabCheckInterval.D()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				n.reload()
			}
		}
	}()
	return n, nil
}

// reload re-reads the keytabs that changed; a bad file is logged and the
// keys in service stay.
func (n *negotiator) reload() {
	for _, kt := range n.keytabs {
		changed, err := kt.Reload()
		switch {
		case err != nil:
			n.log.Error("kerberos keytab refused; the keys in service stay", "file", kt.Path(), "err", err)
		case changed:
			n.log.Info("kerberos keytab reloaded", "file", kt.Path(), "keys", kt.Summary())
		}
	}
}

func (n *negotiator) close() {
	n.cancel()
	<-n.done
}

func (n *negotiator) acceptor(listener int) *kerberos.Acceptor {
	if listener < len(n.byListener) && n.byListener[listener] != nil {
		return n.byListener[listener]
	}
	return n.def
}

// negConn is a connection's Negotiate state, in its l7 router slot. All
// of it but result belongs to the connection's loop.
type negConn struct {
	// key is the hash of the token that authenticated the connection:
	// the request that carried it may be routed more than once (after
	// an assertion is minted, or when it becomes a channel) and must
	// not be verified again, which the replay cache would refuse.
	key       auth.Key
	entry     *authEntry // nil: not authenticated
	principal string
	gen       uint64 // routing-table generation entry was checked under
	expires   int64  // monotonic ns: the ticket's end time
	// mutual is the response header line with the acceptor's token,
	// sent with the response to the request that carried key.
	mutual []byte
	// result is the verdict on a token, stored by the worker that
	// verified it and taken by the loop when the request is routed
	// again.
	result atomic.Pointer[negResult]
}

// negResult is a worker's verdict on one token.
type negResult struct {
	key       auth.Key
	entry     *authEntry // nil: refused
	principal string
	mutual    []byte
	expires   int64
}

// negotiateDomain separates token hashes from other cache keys;
// negotiateUserDomain keys the per-user entries that share assertions.
var (
	negotiateDomain     = []byte("negotiate\x00")
	negotiateUserDomain = []byte("negotiate-user\x00")
)

// routeNegotiate handles a request carrying Authorization: Negotiate. A
// token is a new security context (RFC 4559 4.2): verified off the loop,
// whatever the connection's earlier identity, which it replaces.
func (a *authenticator) routeNegotiate(r *router, t *routeTable, p *protoPolicy, req *l7.Request, authz []byte) l7.Route {
	n := a.krb
	_, tok := auth.Scheme(authz)
	tok = bytes.TrimRight(tok, " \t")
	if len(tok) == 0 || !isBase64(tok) {
		return a.refuse(p, identity.MethodNegotiate, 400)
	}
	if len(tok) > n.maxB64 {
		n.refused[kerberos.ReasonTooLarge].Add(1)
		return a.refuse(p, identity.MethodNegotiate, 401)
	}
	if bytes.HasPrefix(tok, ntlmBase64) {
		return a.refuseNTLM(p, req)
	}
	slot := req.Conn
	if slot == nil {
		// No connection to hold the context (l7 always provides one).
		return a.challenge(p)
	}
	key := a.hasher.Sum2(negotiateDomain, tok)
	cs, _ := (*slot).(*negConn)
	if cs != nil {
		if res := cs.result.Load(); res != nil && res.key == key {
			cs.result.Store(nil)
			if res.entry == nil {
				a.throttle.Failure(nil, req.Client, l4.Monotonic())
				return a.refuse(p, identity.MethodNegotiate, 401)
			}
			// The entry's generation, not t's: a directory swapped in
			// while the worker ran is checked by connIdentity.
			cs.key, cs.entry, cs.principal, cs.gen, cs.expires, cs.mutual = key, res.entry, res.principal, res.entry.gen, res.expires, res.mutual
		}
		if cs.entry != nil && cs.key == key {
			if e, ok := a.connIdentity(t, req); ok {
				return a.accept(r, t, p, req, e, identity.MethodNegotiate, cs.mutual)
			}
			return a.challenge(p)
		}
	} else {
		cs = new(negConn)
		*slot = cs
	}
	// A new context: whatever this connection was authenticated as
	// ends here, and holds again only if the token is good.
	cs.entry, cs.mutual = nil, nil
	now := l4.Monotonic()
	if retry, ok := a.throttle.Check(nil, req.Client, now); !ok {
		a.stats.Throttled.Add(1)
		return throttled(retry)
	}
	a.stats.CacheMisses.Add(1)
	tokCopy, listener, client := bytes.Clone(tok), req.Listener, req.Client
	return a.submit(req, auth.Key{}, false, func() *authEntry {
		res := a.verifyNegotiate(tokCopy, listener, client.String())
		res.key = key
		cs.result.Store(res)
		return nil
	})
}

// connIdentity returns the entry of the user the connection of req was
// authenticated as, if it still holds: the ticket has not expired and the
// directory (if it changed) still maps the principal to an enabled user.
// Without a change it allocates nothing.
func (a *authenticator) connIdentity(t *routeTable, req *l7.Request) (*authEntry, bool) {
	if req.Conn == nil {
		return nil, false
	}
	cs, _ := (*req.Conn).(*negConn)
	if cs == nil || cs.entry == nil {
		return nil, false
	}
	if l4.Monotonic() >= cs.expires {
		// The ticket expired: the client must present a new one.
		cs.entry, cs.mutual = nil, nil
		return nil, false
	}
	if cs.gen != t.gen {
		u := t.dir.LookupPrincipal(cs.principal)
		if u == nil || u.Disabled {
			cs.entry, cs.mutual = nil, nil
			return nil, false
		}
		if u != cs.entry.user {
			cs.entry = a.negotiateEntry(u, t.gen)
		}
		cs.gen = t.gen
	}
	a.krb.reused.Add(1)
	return cs.entry, true
}

// negotiateEntry returns the shared verdict for user u, so that the
// assertions minted for u are reused across connections (one is signed
// per user and client address, as for the other methods).
func (a *authenticator) negotiateEntry(u *directory.User, gen uint64) *authEntry {
	key := a.hasher.Sum2(negotiateUserDomain, []byte(u.Login))
	now := l4.Monotonic()
	if e, ok := a.cache.Get(key, now); ok && e.ok && e.user == u {
		return e
	}
	e := &authEntry{ok: true, method: identity.MethodNegotiate, login: u.Login, gen: gen, user: u, expires: now + a.ttl}
	a.cache.Put(key, e, e.expires)
	return e
}

// verifyNegotiate verifies a base64 token on a worker and maps its client
// principal to a directory user.
func (a *authenticator) verifyNegotiate(tok []byte, listener int, client string) *negResult {
	n := a.krb
	a.stats.Verifications.Add(1)
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(tok)))
	m, err := base64.StdEncoding.Decode(raw, tok)
	if err != nil {
		return n.refusal(client, kerberos.ReasonBadToken, fmt.Errorf("base64: %w", err))
	}
	acc := n.acceptor(listener)
	if acc == nil {
		return n.refusal(client, kerberos.ReasonWrongService, fmt.Errorf("no keytab for listener %d", listener))
	}
	res, err := acc.Accept(raw[:m], time.Now())
	if err != nil {
		return n.refusal(client, kerberos.ReasonOf(err), err)
	}
	dir, gen := a.dir()
	u := dir.LookupPrincipal(res.Client)
	if u == nil || u.Disabled {
		return n.refusal(client, kerberos.ReasonUnknownPrincipal,
			fmt.Errorf("principal %s maps to no enabled user of the directory (kerberos_principals)", res.Client))
	}
	n.accepted.Add(1)
	out := &negResult{entry: a.negotiateEntry(u, gen), principal: res.Client,
		expires: l4.Monotonic() + int64(time.Until(res.EndTime))}
	if len(res.Response) > 0 {
		// RFC 4559 5: the final token goes back in WWW-Authenticate
		// with the (successful) response.
		h := make([]byte, 0, 30+base64.StdEncoding.EncodedLen(len(res.Response)))
		h = append(h, "WWW-Authenticate: Negotiate "...)
		h = base64.StdEncoding.AppendEncode(h, res.Response)
		out.mutual = append(h, "\r\n"...)
	}
	return out
}

// refusal counts and logs a refused token (refused_negotiate is counted
// when the request is answered).
func (n *negotiator) refusal(client string, r kerberos.Reason, err error) *negResult {
	n.refused[r].Add(1)
	n.log.Info("negotiate refused", "reason", r.String(), "client", client, "err", err)
	return &negResult{}
}

// ntlmBase64 starts the base64 form of every NTLM message ("NTLMSSP\0").
var ntlmBase64 = []byte("TlRMTVNTUA")

// refuseNTLM answers an NTLM attempt (Authorization: NTLM, or an NTLM
// token under Negotiate): frontdoor does not do NTLM, whose
// connection-bound handshake is what breaks behind pooling proxies and
// which Kerberos replaces. The 401 offers Negotiate and Basic again, so
// the client falls back to one of them.
func (a *authenticator) refuseNTLM(p *protoPolicy, req *l7.Request) l7.Route {
	if a.krb != nil {
		a.krb.refused[kerberos.ReasonNTLM].Add(1)
	}
	a.stats.Refused[methodIndex(identity.MethodNegotiate)].Add(1)
	a.log.Info("negotiate refused", "reason", "ntlm", "client", req.Client,
		"err", "NTLM is not supported: the client must use Kerberos (Negotiate) or Basic")
	return l7.Route{Endpoint: -1, Status: 401, Body: bodyNTLM, Header: p.challenge}
}

const bodyNTLM = "NTLM is not supported: use Kerberos (Negotiate) or Basic"

func isBase64(b []byte) bool {
	for _, c := range b {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return true
}

// snapshot adds the Negotiate counters to /stats' auth section.
func (n *negotiator) snapshot(m map[string]int64) {
	m["negotiate_accepted"] = n.accepted.Load()
	m["negotiate_connection_reuse"] = n.reused.Load()
	m["negotiate_replay_entries"] = int64(n.replay.Len())
	m["negotiate_replay_evicted"] = n.replay.Evicted()
	for r := kerberos.Reason(0); r < kerberos.NumReasons; r++ {
		m["negotiate_refused_"+r.String()] = n.refused[r].Load()
	}
}
