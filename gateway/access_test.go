package gateway_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"frontdoor/auth/password"
	"frontdoor/directory"
	"frontdoor/gateway/config"
	"frontdoor/internal/gwtest"
	"frontdoor/internal/testbed"
)

// accessBed is two sites and three mailbox servers that verify identity
// assertions, with a gateway in site-a authenticating in front of them.
//
//	site-a: mbx1 (DB01: alice, carol[disabled]), mbx2 (DB02: bob)
//	site-b: mbx3 (DB03: dave)
type accessBed struct {
	dir        string // temp dir with keys, directory, JWKS
	m1, m2, m3 *testbed.Mailboxd
	jwtKey     ed25519.PrivateKey
	dirText    string
	ca         *testCA
	// listenerExtra is appended to the gateway's [[listener]] table.
	listenerExtra string
	// owaAuth, when set, replaces the owa protocol's auth list.
	owaAuth string
}

const (
	alicePassword = "correct horse battery"
	bobPassword   = "tr0ub4dor&3"
	carolPassword = "carol's secret"
)

func newAccessBed(t *testing.T) *accessBed { return newAccessBedAlg(t, "ed25519") }

// newAccessBedAlg is newAccessBed with identity keys of alg (ed25519 or
// ml-dsa-44).
func newAccessBedAlg(t *testing.T, alg string) *accessBed {
	t.Helper()
	b := &accessBed{dir: t.TempDir()}
	// The array's identity keys, made by the CLI as an operator would.
	keys, pub := filepath.Join(b.dir, "identity.json"), filepath.Join(b.dir, "identity.pub.json")
	p := testbed.StartProcess(t, "identity", "keygen", "--out", keys, "--public", pub, "--kid", "k1", "--alg", alg)
	if code, err := p.Wait(30 * time.Second); code != 0 || err != nil {
		t.Fatalf("identity keygen: exit %d %v\n%s", code, err, p.Output())
	}
	b.m1 = testbed.StartMailboxdArgs(t, "mbx1", "--identity-keys", pub)
	b.m2 = testbed.StartMailboxdArgs(t, "mbx2", "--identity-keys", pub)
	b.m3 = testbed.StartMailboxdArgs(t, "mbx3", "--identity-keys", pub)

	hash := func(pw string) string {
		h, err := password.Hash([]byte(pw))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	b.dirText = fmt.Sprintf(`
[[site]]
name = "site-a"
external_url = "https://mail-a.example.test"
[[site]]
name = "site-b"
external_url = "https://mail-b.example.test/"
[[server]]
name = "mbx1"
address = %q
site = "site-a"
version = "15.2.1544.4"
[[server]]
name = "mbx2"
address = %q
site = "site-a"
version = "15.2.1544.4"
[[server]]
name = "mbx3"
address = %q
site = "site-b"
version = "15.2.1544.4"
[[database]]
name = "DB01"
active = "mbx1"
copies = ["mbx2"]
[[database]]
name = "DB02"
active = "mbx2"
[[database]]
name = "DB03"
active = "mbx3"
[[user]]
login = "alice"
address = "alice@example.test"
database = "DB01"
password_hash = %q
[[user]]
login = "bob"
address = "bob@example.test"
database = "DB02"
password_hash = %q
delegates = ["alice"]
[[user]]
login = "carol"
address = "carol@example.test"
database = "DB01"
password_hash = %q
disabled = true
[[user]]
login = "dave"
address = "dave@example.test"
database = "DB03"
password_hash = %q
`, b.m1.Addr(), b.m2.Addr(), b.m3.Addr(), hash(alicePassword), hash(bobPassword), hash(carolPassword), hash(alicePassword))

	// The identity provider's JWKS: one Ed25519 key.
	pubKey, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b.jwtKey = priv
	jwks := fmt.Sprintf(`{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":"idp-1","x":%q}]}`,
		base64.RawURLEncoding.EncodeToString(pubKey))
	writeFile(t, filepath.Join(b.dir, "jwks.json"), jwks)
	b.ca = newTestCA(t, b.dir, "client-ca")
	return b
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startGateway starts a gateway in site-a; authExtra is appended to its
// [auth] section.
func (b *accessBed) startGateway(t *testing.T, authExtra string, tlsListener bool) *gwtest.Gateway {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort(t, "127.0.0.1"))
	var c strings.Builder
	fmt.Fprintf(&c, "directory = %q\ngateway_id = \"gw-a\"\nsite = \"site-a\"\n", filepath.Join(b.dir, "directory.toml"))
	fmt.Fprintf(&c, "[engine]\nloops = 2\n")
	fmt.Fprintf(&c, "[auth]\njwks_file = %q\njwt_issuer = \"https://idp.example.test\"\njwt_audience = \"frontdoor\"\nmax_failures = 3\nmax_address_failures = 50\n",
		filepath.Join(b.dir, "jwks.json"))
	c.WriteString(authExtra + "\n")
	fmt.Fprintf(&c, "[identity]\nkey_file = %q\n", filepath.Join(b.dir, "identity.json"))
	fmt.Fprintf(&c, "[[listener]]\nname = \"front\"\naddress = %q\n", addr)
	if tlsListener {
		fmt.Fprintf(&c, "tls = true\ntls_self_signed = true\ncertificates = [{ cert = %q, key = %q }]\ntls_client_auth = \"request\"\ntls_client_ca = %q\n",
			filepath.Join(b.dir, "cert.pem"), filepath.Join(b.dir, "key.pem"), filepath.Join(b.dir, "client-ca.pem"))
	}
	c.WriteString(b.listenerExtra)
	owaAuth := b.owaAuth
	if owaAuth == "" {
		owaAuth = `["basic", "bearer", "certificate"]`
	}
	c.WriteString(`
[[protocol]]
name = "owa"
path_prefix = "/owa"
backend_port = 1
auth = ` + owaAuth + `
cross_site = "redirect"
[[protocol]]
name = "ews"
path_prefix = "/EWS"
backend_port = 1
auth = ["basic", "bearer"]
[[protocol]]
name = "eas"
path_prefix = "/Microsoft-Server-ActiveSync"
backend_port = 1
auth = ["basic"]
cross_site = "redirect-451"
[[protocol]]
name = "autodiscover"
path_prefix = "/autodiscover"
backend_port = 1
`)
	writeFile(t, filepath.Join(b.dir, "directory.toml"), b.dirText)
	cfg, err := config.Parse(filepath.Join(b.dir, "frontdoor.toml"), []byte(c.String()))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, c.String())
	}
	dir, err := directory.Load(filepath.Join(b.dir, "directory.toml"))
	if err != nil {
		t.Fatal(err)
	}
	return gwtest.StartWith(t, cfg, dir, addr, testLogWriter(t))
}

// testLogWriter sends the gateway's log to the test log.
func testLogWriter(t *testing.T) io.Writer {
	return writerFunc(func(p []byte) (int, error) { t.Logf("gateway: %s", strings.TrimSpace(string(p))); return len(p), nil })
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// client is an HTTP client bound to source address src (127.0.0.x), so
// throttling per address can be tested on loopback.
func client(src string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return &http.Client{
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 4,
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
}

type result struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, c *http.Client, method, url string, hdr ...string) result {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return result{resp.StatusCode, resp.Header, string(body)}
}

func basic(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

// jwt signs an EdDSA JWT (RFC 8037) with claims.
func (b *accessBed) jwt(t *testing.T, claims map[string]any) string {
	t.Helper()
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"EdDSA","typ":"JWT","kid":"idp-1"}`))
	p, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := h + "." + base64.RawURLEncoding.EncodeToString(p)
	return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(b.jwtKey, []byte(input)))
}

func (b *accessBed) token(t *testing.T, sub string, exp time.Time, aud string) string {
	return b.jwt(t, map[string]any{"iss": "https://idp.example.test", "aud": aud, "sub": sub,
		"exp": exp.Unix(), "nbf": time.Now().Add(-time.Minute).Unix(), "iat": time.Now().Unix()})
}

// echoHeader returns the value of the first field name (any case) mailboxd saw.
func echoHeader(t *testing.T, body, name string) (string, int) {
	t.Helper()
	e := echoOf(t, []byte(body))
	val, n := "", 0
	for _, kv := range e.Headers {
		if strings.EqualFold(kv[0], name) {
			if n == 0 {
				val = kv[1]
			}
			n++
		}
	}
	return val, n
}

func TestAuthMethodsAndIdentity(t *testing.T) {
	b := newAccessBed(t)
	g := b.startGateway(t, "", false)
	c := client("127.0.0.1")
	base := "http://" + g.Addr

	t.Run("no credentials: 401 challenge, nothing reaches a server", func(t *testing.T) {
		r := do(t, c, "GET", base+"/owa/")
		if r.status != 401 {
			t.Fatalf("status %d, want 401", r.status)
		}
		ch := strings.Join(r.header.Values("WWW-Authenticate"), " | ")
		if !strings.Contains(ch, `Basic realm="frontdoor"`) || !strings.Contains(ch, "Bearer") {
			t.Errorf("WWW-Authenticate %q: want Basic and Bearer challenges", ch)
		}
	})

	t.Run("basic: the user's mailbox server gets a verified identity and no password", func(t *testing.T) {
		r := do(t, c, "GET", base+"/owa/inbox", "Authorization", basic("alice", alicePassword),
			"X-Frontdoor-Identity", "forged", "X-AnchorMailbox", "bob@example.test")
		if r.status != 200 || r.header.Get("X-Mailboxd-Server") != "mbx1" {
			t.Fatalf("status %d from %q, want 200 from mbx1: %s", r.status, r.header.Get("X-Mailboxd-Server"), r.body)
		}
		if u := r.header.Get("X-Mailboxd-User"); u != "alice" {
			t.Errorf("backend verified user %q, want alice", u)
		}
		if _, n := echoHeader(t, r.body, "Authorization"); n != 0 {
			t.Error("the client's Authorization reached the backend")
		}
		if _, n := echoHeader(t, r.body, "X-AnchorMailbox"); n != 0 {
			t.Error("an untrusted X-AnchorMailbox reached the backend")
		}
		if v, n := echoHeader(t, r.body, "X-Frontdoor-Identity"); n != 1 || v == "forged" {
			t.Errorf("identity fields at the backend: %d (first %q), want exactly the gateway's", n, v)
		}
	})

	t.Run("login by SMTP address and DOMAIN\\user", func(t *testing.T) {
		for _, login := range []string{"Alice@Example.Test", `EXAMPLE\alice`} {
			r := do(t, c, "GET", base+"/EWS/Exchange.asmx", "Authorization", basic(login, alicePassword))
			if r.status != 200 || r.header.Get("X-Mailboxd-User") != "alice" {
				t.Errorf("%s: status %d user %q", login, r.status, r.header.Get("X-Mailboxd-User"))
			}
		}
	})

	t.Run("refusals look the same", func(t *testing.T) {
		c2 := client("127.0.0.3")
		wrong := do(t, c2, "GET", base+"/owa/", "Authorization", basic("bob", "nope"))
		unknown := do(t, c2, "GET", base+"/owa/", "Authorization", basic("nobody", "nope"))
		disabled := do(t, c2, "GET", base+"/owa/", "Authorization", basic("carol", carolPassword))
		for name, r := range map[string]result{"wrong password": wrong, "unknown user": unknown, "disabled user": disabled} {
			if r.status != 401 || r.body != wrong.body || r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s: status %d body %q, want 401 like the wrong password", name, r.status, r.body)
			}
		}
	})

	t.Run("cache: one verification per credential", func(t *testing.T) {
		before := g.Snapshot().Auth["verifications"]
		for i := 0; i < 20; i++ {
			if r := do(t, c, "GET", base+"/owa/", "Authorization", basic("bob", bobPassword)); r.status != 200 {
				t.Fatalf("status %d", r.status)
			}
		}
		if got := g.Snapshot().Auth["verifications"] - before; got != 1 {
			t.Errorf("verifications for 20 requests: %d, want 1", got)
		}
	})

	t.Run("bearer", func(t *testing.T) {
		good := b.token(t, "bob@example.test", time.Now().Add(time.Hour), "frontdoor")
		r := do(t, c, "GET", base+"/EWS/x", "Authorization", "Bearer "+good)
		if r.status != 200 || r.header.Get("X-Mailboxd-Server") != "mbx2" || r.header.Get("X-Mailboxd-User") != "bob" {
			t.Errorf("valid token: %d from %q as %q", r.status, r.header.Get("X-Mailboxd-Server"), r.header.Get("X-Mailboxd-User"))
		}
		for name, tok := range map[string]string{
			"expired":        b.token(t, "bob", time.Now().Add(-time.Hour), "frontdoor"),
			"wrong audience": b.token(t, "bob", time.Now().Add(time.Hour), "someone-else"),
			"unknown user":   b.token(t, "mallory", time.Now().Add(time.Hour), "frontdoor"),
			"tampered":       good[:len(good)-4] + "AAAA",
		} {
			if r := do(t, c, "GET", base+"/EWS/x", "Authorization", "Bearer "+tok); r.status != 401 {
				t.Errorf("%s token: status %d, want 401", name, r.status)
			}
		}
		// eas accepts basic only.
		if r := do(t, c, "GET", base+"/Microsoft-Server-ActiveSync", "Authorization", "Bearer "+good); r.status != 401 {
			t.Errorf("bearer on a basic-only protocol: %d, want 401", r.status)
		}
	})

	t.Run("cross-site: redirect, 451, proxy", func(t *testing.T) {
		cred := basic("dave", alicePassword)
		r := do(t, c, "GET", base+"/owa/calendar?view=week", "Authorization", cred)
		if r.status != 302 || r.header.Get("Location") != "https://mail-b.example.test/owa/calendar?view=week" {
			t.Errorf("owa: %d Location %q, want 302 to site-b", r.status, r.header.Get("Location"))
		}
		r = do(t, c, "POST", base+"/Microsoft-Server-ActiveSync", "Authorization", cred)
		if r.status != 451 || r.header.Get("X-MS-Location") != "https://mail-b.example.test/Microsoft-Server-ActiveSync" {
			t.Errorf("eas: %d X-MS-Location %q, want 451 to site-b", r.status, r.header.Get("X-MS-Location"))
		}
		r = do(t, c, "GET", base+"/EWS/Exchange.asmx", "Authorization", cred)
		if r.status != 200 || r.header.Get("X-Mailboxd-Server") != "mbx3" {
			t.Errorf("ews: %d from %q, want proxied to mbx3", r.status, r.header.Get("X-Mailboxd-Server"))
		}
	})

	t.Run("anonymous protocol: routed by anchor, backend refuses without identity", func(t *testing.T) {
		r := do(t, c, "GET", base+"/autodiscover/autodiscover.xml", "X-AnchorMailbox", "alice@example.test")
		if r.status != 403 || r.header.Get("X-Mailboxd-Server") != "mbx1" {
			t.Errorf("status %d from %q, want mbx1's 403 (no assertion)", r.status, r.header.Get("X-Mailboxd-Server"))
		}
	})

	t.Run("forged assertion sent straight to a server is refused", func(t *testing.T) {
		r := do(t, c, "GET", b.m1.URL("/owa/"), "X-Frontdoor-Identity", "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.AAAA")
		if r.status != 403 {
			t.Errorf("status %d, want 403", r.status)
		}
	})
	if st := g.Snapshot().Auth; st["signed"] < 1 || st["accepted_basic"] < 1 || st["refused_basic"] < 3 {
		t.Errorf("auth counters %v", st)
	}
}

func TestAuthThrottling(t *testing.T) {
	b := newAccessBed(t)
	g := b.startGateway(t, "", false)
	base := "http://" + g.Addr
	attacker, other := client("127.0.0.4"), client("127.0.0.5")
	for i := 0; i < 3; i++ {
		if r := do(t, attacker, "GET", base+"/owa/", "Authorization", basic("alice", fmt.Sprint("guess", i))); r.status != 401 {
			t.Fatalf("attempt %d: %d, want 401", i, r.status)
		}
	}
	r := do(t, attacker, "GET", base+"/owa/", "Authorization", basic("alice", alicePassword))
	if r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Fatalf("after 3 failures: %d Retry-After %q, want 429 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
	if r := do(t, other, "GET", base+"/owa/", "Authorization", basic("alice", alicePassword)); r.status != 200 {
		t.Errorf("alice from another address: %d, want 200 (no lockout)", r.status)
	}
	if g.Snapshot().Auth["throttled"] < 1 {
		t.Error("throttled counter did not move")
	}
}

func TestAuthClientCertificate(t *testing.T) {
	b := newAccessBed(t)
	g := b.startGateway(t, "", true)
	cert := b.ca.clientCert(t, "alice-laptop", "alice@example.test")
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}}}
	c := &http.Client{Timeout: 15 * time.Second, Transport: tr}
	r := do(t, c, "GET", "https://"+g.Addr+"/owa/")
	if r.status != 200 || r.header.Get("X-Mailboxd-User") != "alice" {
		t.Fatalf("certificate: %d as %q, want 200 as alice: %s", r.status, r.header.Get("X-Mailboxd-User"), r.body)
	}
	// Without a certificate the challenge stands.
	if r := do(t, client("127.0.0.1"), "GET", "https://"+g.Addr+"/owa/"); r.status != 401 {
		t.Errorf("no certificate: %d, want 401", r.status)
	}
	// ews does not accept certificates.
	if r := do(t, c, "GET", "https://"+g.Addr+"/EWS/x"); r.status != 401 {
		t.Errorf("certificate on ews: %d, want 401", r.status)
	}
}

func TestTrustedAnchorDelegation(t *testing.T) {
	b := newAccessBed(t)
	gt := b.startGateway(t, "trust_anchor_mailbox = true", false)
	c := client("127.0.0.1")
	// alice is a delegate of bob: her request anchored to bob's mailbox
	// goes to bob's server.
	r := do(t, c, "GET", "http://"+gt.Addr+"/owa/", "Authorization", basic("alice", alicePassword), "X-AnchorMailbox", "bob@example.test")
	if r.status != 200 || r.header.Get("X-Mailboxd-Server") != "mbx2" || r.header.Get("X-Mailboxd-User") != "alice" {
		t.Errorf("delegate: %d from %q as %q, want mbx2 as alice", r.status, r.header.Get("X-Mailboxd-Server"), r.header.Get("X-Mailboxd-User"))
	}
	// bob is not alice's delegate.
	r = do(t, c, "GET", "http://"+gt.Addr+"/owa/", "Authorization", basic("bob", bobPassword), "X-AnchorMailbox", "alice@example.test")
	if r.status != 403 {
		t.Errorf("not a delegate: %d, want 403", r.status)
	}
}

// TestSwitchoverUnderLoad moves DB01 from mbx1 to mbx2 while clients send
// GETs: none fails, the traffic moves, and mbx1's pooled connections are
// drained.
func TestSwitchoverUnderLoad(t *testing.T) {
	b := newAccessBed(t)
	g := b.startGateway(t, "", false)
	base := "http://" + g.Addr
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var (
		wg           sync.WaitGroup
		ok, failed   atomic.Int64
		onMbx2       atomic.Int64
		switched     atomic.Bool
		firstFailure atomic.Value
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client("127.0.0.1")
			for i := 0; i < 400 && ctx.Err() == nil; i++ {
				req, _ := http.NewRequestWithContext(ctx, "GET", base+"/owa/", nil)
				req.Header.Set("Authorization", basic("alice", alicePassword))
				resp, err := c.Do(req)
				if err != nil {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, resp.Status)
					continue
				}
				ok.Add(1)
				if switched.Load() && resp.Header.Get("X-Mailboxd-Server") == "mbx2" {
					onMbx2.Add(1)
				}
			}
		}()
	}
	for ok.Load() < 200 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	moved := strings.Replace(b.dirText, "active = \"mbx1\"\ncopies = [\"mbx2\"]", "active = \"mbx2\"\ncopies = [\"mbx1\"]", 1)
	dir, err := directory.Parse("directory.toml", []byte(moved))
	if err != nil {
		t.Fatal(err)
	}
	g.SetDirectory(dir)
	switched.Store(true)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed during the switchover (first: %v)", n, n+ok.Load(), firstFailure.Load())
	}
	if onMbx2.Load() == 0 {
		t.Fatal("no request reached mbx2 after the switchover")
	}
	// mbx1 holds no active database now: its pooled connections drain.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var open, retired int64
		for _, be := range g.Snapshot().Backends {
			if be.Server == "mbx1" {
				open, retired = be.ConnsOpen, be.Retired
			}
		}
		if open == 0 && retired > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mbx1 backend connections: %d open, %d retired; want 0 open after the switchover", open, retired)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFailoverReroutesInFlight: a GET in flight on the old server when it
// dies is answered by the new one; a POST gets 503 with Retry-After.
func TestFailoverReroutesInFlight(t *testing.T) {
	b := newAccessBed(t)
	g := b.startGateway(t, "", false)
	base := "http://" + g.Addr
	c := client("127.0.0.1")
	cred := basic("alice", alicePassword)
	if r := do(t, c, "GET", base+"/owa/", "Authorization", cred); r.status != 200 {
		t.Fatalf("warm-up: %d", r.status)
	}
	type res struct {
		r   result
		err error
	}
	send := func(method string) chan res {
		ch := make(chan res, 1)
		go func() {
			req, _ := http.NewRequest(method, base+"/owa/slow", nil)
			req.Header.Set("Authorization", cred)
			req.Header.Set("X-Mailboxd-Delay", "3s")
			resp, err := client("127.0.0.1").Do(req)
			if err != nil {
				ch <- res{err: err}
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ch <- res{r: result{resp.StatusCode, resp.Header, string(body)}}
		}()
		return ch
	}
	get, post := send("GET"), send("POST")
	time.Sleep(500 * time.Millisecond) // both are now with mbx1
	moved := strings.Replace(b.dirText, "active = \"mbx1\"\ncopies = [\"mbx2\"]", "active = \"mbx2\"\ncopies = [\"mbx1\"]", 1)
	dir, err := directory.Parse("directory.toml", []byte(moved))
	if err != nil {
		t.Fatal(err)
	}
	g.SetDirectory(dir)
	b.m1.Stop()
	gr, pr := <-get, <-post
	if gr.err != nil || gr.r.status != 200 || gr.r.header.Get("X-Mailboxd-Server") != "mbx2" {
		t.Errorf("GET in flight: %v %d from %q, want 200 from mbx2", gr.err, gr.r.status, gr.r.header.Get("X-Mailboxd-Server"))
	}
	if pr.err != nil || pr.r.status != 503 || pr.r.header.Get("Retry-After") == "" {
		t.Errorf("POST in flight: %v %d Retry-After %q, want 503 with Retry-After", pr.err, pr.r.status, pr.r.header.Get("Retry-After"))
	}
	if g.Snapshot().Rerouted != 1 {
		t.Errorf("rerouted %d, want 1", g.Snapshot().Rerouted)
	}
}

// clientCert issues a client certificate with an email SAN.
func (ca *testCA) clientCert(t *testing.T, cn, email string) tls.Certificate {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		EmailAddresses: []string{email}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
}

// TestSetActiveMovesRunningBinary: the operator's switchover command edits
// the shared directory file; a running `frontdoor run` follows it, and new
// requests reach the new server within one second.
func TestSetActiveMovesRunningBinary(t *testing.T) {
	b := newAccessBed(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort(t, "127.0.0.1"))
	cfgText := fmt.Sprintf(`directory = "directory.toml"
site = "site-a"
[engine]
loops = 2
[identity]
key_file = "identity.json"
[[listener]]
name = "http"
address = %q
[[protocol]]
name = "owa"
path_prefix = "/owa"
backend_port = 1
auth = ["basic"]
`, addr)
	cfgFile := filepath.Join(b.dir, "frontdoor.toml")
	dirFile := filepath.Join(b.dir, "directory.toml")
	writeFile(t, cfgFile, cfgText)
	writeFile(t, dirFile, b.dirText)
	testbed.StartProcess(t, "run", "--config", cfgFile)
	c := client("127.0.0.1")
	cred := basic("alice", alicePassword)
	server := func() string {
		req, _ := http.NewRequest("GET", "http://"+addr+"/owa/", nil)
		req.Header.Set("Authorization", cred)
		resp, err := c.Do(req)
		if err != nil {
			return "error: " + err.Error()
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			return resp.Status
		}
		return resp.Header.Get("X-Mailboxd-Server")
	}
	deadline := time.Now().Add(10 * time.Second)
	for server() != "mbx1" {
		if time.Now().After(deadline) {
			t.Fatalf("gateway not serving alice from mbx1: %s", server())
		}
		time.Sleep(50 * time.Millisecond)
	}
	p := testbed.StartProcess(t, "directory", "set-active", "--file", dirFile, "--database", "DB01", "--server", "mbx2")
	if code, err := p.Wait(10 * time.Second); code != 0 || err != nil {
		t.Fatalf("set-active: exit %d %v\n%s", code, err, p.Output())
	}
	moved := time.Now()
	for {
		s := server()
		if s == "mbx2" {
			break
		}
		if s != "mbx1" {
			t.Fatalf("during the switchover: %s", s)
		}
		if time.Since(moved) > time.Second {
			t.Fatalf("requests still reach mbx1 %v after set-active", time.Since(moved))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("requests followed the switchover after %v", time.Since(moved))
}

// TestOlderServerPolicy: a server older than the gateway's version is
// refused (421) or redirected per protocol; a newer one is proxied.
func TestOlderServerPolicy(t *testing.T) {
	b := newAccessBed(t)
	// mbx3 (site-b, dave) becomes a newer server, mbx1 and mbx2 older ones.
	b.dirText = strings.Replace(b.dirText, "site = \"site-b\"\nversion = \"15.2.1544.4\"", "site = \"site-b\"\nversion = \"15.2.1600.0\"", 1)
	addr := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort(t, "127.0.0.1"))
	writeFile(t, filepath.Join(b.dir, "directory.toml"), b.dirText)
	cfg, err := config.Parse(filepath.Join(b.dir, "frontdoor.toml"), []byte(fmt.Sprintf(`directory = "directory.toml"
site = "site-a"
version = "15.2.1555.0"
[identity]
key_file = "identity.json"
[[listener]]
name = "http"
address = %q
[[protocol]]
name = "owa"
path_prefix = "/owa"
backend_port = 1
auth = ["basic"]
older_server = "refuse"
[[protocol]]
name = "ews"
path_prefix = "/EWS"
backend_port = 1
auth = ["basic"]
older_server = "redirect"
`, addr)))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := directory.Load(filepath.Join(b.dir, "directory.toml"))
	if err != nil {
		t.Fatal(err)
	}
	g := gwtest.StartWith(t, cfg, dir, addr, testLogWriter(t))
	c := client("127.0.0.1")
	base := "http://" + g.Addr
	if r := do(t, c, "GET", base+"/owa/", "Authorization", basic("alice", alicePassword)); r.status != 421 {
		t.Errorf("owa, older server: %d, want 421", r.status)
	}
	if r := do(t, c, "GET", base+"/EWS/x", "Authorization", basic("alice", alicePassword)); r.status != 302 ||
		r.header.Get("Location") != "https://mail-a.example.test/EWS/x" {
		t.Errorf("ews, older server: %d Location %q, want 302 to site-a's URL", r.status, r.header.Get("Location"))
	}
	if r := do(t, c, "GET", base+"/owa/", "Authorization", basic("dave", alicePassword)); r.status != 200 || r.header.Get("X-Mailboxd-Server") != "mbx3" {
		t.Errorf("owa, newer server in another site (proxy): %d from %q, want 200 from mbx3", r.status, r.header.Get("X-Mailboxd-Server"))
	}
}

// TestPostQuantumIdentity: with an ML-DSA-44 key (FIPS 204) the assertions
// are post-quantum signatures (about 3.5 KB) and the servers verify them.
func TestPostQuantumIdentity(t *testing.T) {
	b := newAccessBedAlg(t, "ml-dsa-44")
	g := b.startGateway(t, "", false)
	r := do(t, client("127.0.0.1"), "GET", "http://"+g.Addr+"/owa/", "Authorization", basic("alice", alicePassword))
	if r.status != 200 || r.header.Get("X-Mailboxd-User") != "alice" {
		t.Fatalf("status %d as %q, want 200 as alice: %s", r.status, r.header.Get("X-Mailboxd-User"), r.body)
	}
	v, _ := echoHeader(t, r.body, "X-Frontdoor-Identity")
	hdr, _, _ := strings.Cut(v, ".")
	raw, err := base64.RawURLEncoding.DecodeString(hdr)
	if err != nil || !strings.Contains(string(raw), `"ML-DSA-44"`) || len(v) < 3000 {
		t.Errorf("assertion header %s (%d bytes): want an ML-DSA-44 JWS", raw, len(v))
	}
}

// TestDirectoryReloadRevokesCachedVerdicts: a cached login stops working
// at the next directory reload when the user is disabled or the password
// changes, and keeps working (without new hashing) when neither changed.
func TestDirectoryReloadRevokesCachedVerdicts(t *testing.T) {
	b := newAccessBed(t)
	g := b.startGateway(t, "", false)
	c := client("127.0.0.1")
	base := "http://" + g.Addr + "/owa/"
	alice, bob := basic("alice", alicePassword), basic("bob", bobPassword)
	for _, cred := range []string{alice, bob} {
		if r := do(t, c, "GET", base, "Authorization", cred); r.status != 200 {
			t.Fatalf("before the reload: %d", r.status)
		}
	}
	newBob, err := password.Hash([]byte("a new password"))
	if err != nil {
		t.Fatal(err)
	}
	// alice disabled, bob's password changed, dave untouched.
	text := strings.Replace(b.dirText, "login = \"alice\"\n", "login = \"alice\"\ndisabled = true\n", 1)
	i := strings.Index(text, "login = \"bob\"")
	j := i + strings.Index(text[i:], "password_hash = ")
	k := j + strings.Index(text[j:], "\n")
	text = text[:j] + fmt.Sprintf("password_hash = %q", newBob) + text[k:]
	dir, err := directory.Parse("directory.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if r := do(t, c, "GET", base, "Authorization", basic("dave", alicePassword)); r.status != 302 {
		t.Fatalf("dave before the reload: %d", r.status)
	}
	before := g.Snapshot().Auth["verifications"]
	g.SetDirectory(dir)
	if r := do(t, c, "GET", base, "Authorization", alice); r.status != 401 {
		t.Errorf("disabled alice after the reload: %d, want 401", r.status)
	}
	if r := do(t, c, "GET", base, "Authorization", bob); r.status != 401 {
		t.Errorf("bob's old password after the reload: %d, want 401", r.status)
	}
	if r := do(t, c, "GET", base, "Authorization", basic("bob", "a new password")); r.status != 200 {
		t.Errorf("bob's new password: %d, want 200", r.status)
	}
	after := g.Snapshot().Auth["verifications"]
	if r := do(t, c, "GET", base, "Authorization", basic("dave", alicePassword)); r.status != 302 {
		t.Errorf("dave after the reload: %d, want 302 (still site-b)", r.status)
	}
	if got := g.Snapshot().Auth["verifications"]; got != after {
		t.Errorf("dave's unchanged verdict was verified again (%d -> %d verifications)", after, got)
	}
	if after-before != 3 {
		t.Errorf("%d verifications for alice, bob's old and new passwords after the reload, want 3", after-before)
	}
}

// TestConcurrentLoginsCoalesce: 16 connections presenting the same new
// credential at once cost one password verification, not 16.
func TestConcurrentLoginsCoalesce(t *testing.T) {
	b := newAccessBed(t)
	g := b.startGateway(t, "", false)
	var wg sync.WaitGroup
	var failed atomic.Int64
	start := make(chan struct{})
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client("127.0.0.1")
			<-start
			req, _ := http.NewRequest("GET", "http://"+g.Addr+"/owa/", nil)
			req.Header.Set("Authorization", basic("bob", bobPassword))
			resp, err := c.Do(req)
			if err != nil || resp.StatusCode != 200 {
				failed.Add(1)
			}
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of 16 concurrent logins failed", n)
	}
	st := g.Snapshot().Auth
	if st["verifications"] != 1 {
		t.Errorf("%d verifications for 16 concurrent logins with one credential, want 1 (coalesced %d)", st["verifications"], st["coalesced"])
	}
}
