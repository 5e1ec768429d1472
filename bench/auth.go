package bench

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"frontdoor/auth/password"
	"frontdoor/identity"
)

// AuthMode says how a scenario's requests authenticate.
type AuthMode int

const (
	// AuthNone: anonymous /owa/ requests, routed by X-AnchorMailbox.
	AuthNone AuthMode = iota
	// AuthCached: every request is alice's, with her password. The first
	// one is verified (argon2id) and its assertion signed; every later one
	// is an auth-cache hit, so the scenario measures what authentication
	// costs a keep-alive request on the hot path.
	AuthCached
	// AuthLogin: every request is the first login of another of
	// authUsers users, round-robin (see Variants), so every request is an
	// auth-cache miss: one argon2id verification and one signature.
	AuthLogin
	// AuthNegotiateKeepalive: HTTP Negotiate (Kerberos) against a KDC the
	// suite runs (bench/negotiate.go): each connection is authenticated
	// once, by a token on a request before the measured ones, and its
	// keep-alive requests carry no credential.
	AuthNegotiateKeepalive
	// AuthNegotiateLogin: a new connection per request, each with a fresh
	// Negotiate token (a new authenticator): one Kerberos verification
	// per request.
	AuthNegotiateLogin
)

const (
	// authPrefix is the path prefix of the protocol that requires Basic.
	authPrefix   = "/ews"
	authProtocol = "ews"
	authLogin    = "alice"
	// benchPassword is every bench user's password. Its argon2id hash is
	// made when the suite starts (password.Hash, default parameters), so
	// the logins cost what the gateway's default parameters cost.
	benchPassword = "password"
	// authUsers is the number of users auth-login cycles through. A user
	// repeats only after all the others (Variants), so with
	// auth.cache_ttl = 1s a repeat is a cache miss unless the gateway
	// verifies more than authUsers logins per second (argon2id costs tens
	// of milliseconds of CPU: about 80/s on 2 cores). The measured
	// counters (RunReport.GatewayAuth) show it either way.
	authUsers = 1024
	// authLoginConns keeps a few logins waiting for the gateway's
	// verification workers (one per CPU) without queueing hundreds.
	authLoginConns = 4
	// mailboxdIDLabel names the identity-verifying mailboxd in progress
	// messages.
	mailboxdIDLabel = "mailboxd (identity)"
)

// authUserLogin is the login of bench user i (0 <= i < authUsers).
func authUserLogin(i int) string { return fmt.Sprintf("user%04d", i) }

// basicAuth is the value of an Authorization field for login and
// benchPassword (RFC 7617).
func basicAuth(login string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(login+":"+benchPassword))
}

// authFixture is what the suite's authenticated scenarios need: the
// identity keys (made in the suite's temporary directory, never kept), the
// users' password hash, and the second mailboxd that verifies assertions.
type authFixture struct {
	alg              identity.Alg
	keyFile, pubFile string
	hash             string
	mbx              *backend // nil until started
}

// newAuthFixture generates an identity signing key of alg into dir/identity
// (private set 0600, public set 0644, as `frontdoor identity keygen --out
// --public` writes them) and hashes benchPassword.
func newAuthFixture(dir string, alg identity.Alg) (*authFixture, error) {
	f := &authFixture{
		alg:     alg,
		keyFile: filepath.Join(dir, "identity", "identity.jwks"),
		pubFile: filepath.Join(dir, "identity", "identity.pub.jwks"),
	}
	if err := os.MkdirAll(filepath.Dir(f.keyFile), 0o700); err != nil {
		return nil, err
	}
	k, err := identity.GenerateKey(alg, "bench")
	if err != nil {
		return nil, err
	}
	if _, err := identity.RotateKeyFile(f.keyFile, k, 1); err != nil {
		return nil, err
	}
	if err := identity.WritePublicKeyFile(f.pubFile, []*identity.PublicKey{k.Public()}); err != nil {
		return nil, err
	}
	if f.hash, err = password.Hash([]byte(benchPassword)); err != nil {
		return nil, err
	}
	return f, nil
}

// authHeaders returns the Authorization field of a scenario's requests
// (AuthCached), or nil.
func authHeaders(sc Scenario) []Header {
	if sc.Auth == AuthCached {
		return []Header{{"Authorization", basicAuth(authLogin)}}
	}
	return nil
}

// loginVariants returns one request per bench user: base with that user's
// Authorization field added.
func loginVariants(base Request) *Variants {
	v := &Variants{Requests: make([]Request, authUsers)}
	for i := range v.Requests {
		q := base
		q.Header = append(append([]Header(nil), base.Header...), Header{"Authorization", basicAuth(authUserLogin(i))})
		v.Requests[i] = q
	}
	return v
}

// directoryUsers returns the [[user]] tables of the bench directory:
// alice, whose mailbox every scenario addresses, and with hash set (auth
// scenarios selected) her password hash and authUsers more users with the
// same one (the auth cache key includes the login, so a shared hash still
// makes every login a verification). All mailboxes are on database DB01.
//
// principal, when set, is alice's Kerberos principal (negotiate scenarios).
func directoryUsers(hash, principal string) string {
	var b strings.Builder
	user := func(login, address string) {
		fmt.Fprintf(&b, "\n[[user]]\nlogin = %q\naddress = %q\ndatabase = \"DB01\"\n", login, address)
		if hash != "" {
			fmt.Fprintf(&b, "password_hash = %q\n", hash)
		}
	}
	user(authLogin, anchorMailbox)
	if principal != "" {
		fmt.Fprintf(&b, "kerberos_principals = [%q]\n", principal)
	}
	if hash != "" {
		for i := range authUsers {
			l := authUserLogin(i)
			user(l, l+"@example.test")
		}
	}
	return b.String()
}

// authConfig returns the parts of the gateway config that authentication
// adds: the [auth] and [identity] tables, and the protocol that requires
// Basic, served by the identity-verifying mailboxd on mbxIDPort.
//
// With keytab set (a negotiate scenario is selected) the protocol accepts
// Negotiate too, verified with that keytab.
func authConfig(keyFile string, cacheTTL time.Duration, mbxIDPort int, keytab string) string {
	var b strings.Builder
	if cacheTTL > 0 || keytab != "" {
		b.WriteString("\n[auth]\n")
	}
	if cacheTTL > 0 {
		fmt.Fprintf(&b, "cache_ttl = %q\n", cacheTTL.String())
	}
	methods := `["basic"]`
	if keytab != "" {
		fmt.Fprintf(&b, "keytab = %q   # the suite's throwaway realm, deleted with its directory\n", keytab)
		methods = `["negotiate", "basic"]`
	}
	fmt.Fprintf(&b, "\n[identity]\nkey_file = %q   # generated by the suite, deleted with its directory\n", keyFile)
	fmt.Fprintf(&b, `
[[protocol]]
name = %q
path_prefix = %q
backend_port = %d   # mailboxd --identity-keys: verifies every assertion
auth = %s
`, authProtocol, authPrefix, mbxIDPort, methods)
	return b.String()
}

// gatewayAuthStats reads the auth section of the gateway's admin /stats.
func gatewayAuthStats(adminAddr string) (map[string]int64, error) {
	return gatewayStatsSection(adminAddr, "auth")
}

// gatewayStatsSection reads one section of counters (auth, mail) of the
// gateway's admin /stats.
func gatewayStatsSection(adminAddr, section string) (map[string]int64, error) {
	resp, err := probeClient.Get("http://" + adminAddr + "/stats")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /stats: %s", resp.Status)
	}
	var st map[string]json.RawMessage
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&st); err != nil {
		return nil, err
	}
	var counters map[string]int64
	if raw, ok := st[section]; ok {
		if err := json.Unmarshal(raw, &counters); err != nil {
			return nil, fmt.Errorf("GET /stats: %s: %w", section, err)
		}
	}
	if counters == nil {
		return nil, fmt.Errorf("GET /stats: no %s section", section)
	}
	return counters, nil
}

// authDelta returns after - before for the gateway's auth counters, and
// after for its gauges (cache_entries).
func authDelta(before, after map[string]int64) map[string]int64 {
	d := make(map[string]int64, len(after))
	for k, v := range after {
		if k == "cache_entries" {
			d[k] = v
			continue
		}
		d[k] = v - before[k]
	}
	return d
}

// String names the mode in reports: "", "basic-cached", "basic-login".
func (m AuthMode) String() string {
	switch m {
	case AuthCached:
		return "basic-cached"
	case AuthLogin:
		return "basic-login"
	case AuthNegotiateKeepalive:
		return "negotiate-keepalive"
	case AuthNegotiateLogin:
		return "negotiate-login"
	}
	return ""
}
