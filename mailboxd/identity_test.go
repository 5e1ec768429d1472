package mailboxd

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"frontdoor/identity"
)

// identityBed is a mailboxd that requires identity assertions, and the
// gateway key its public key file trusts.
type identityBed struct {
	*testServer
	signer *identity.Signer
}

// startWithIdentity starts mailboxd with IdentityKeys pointing at the
// public half of a fresh gateway key.
func startWithIdentity(t *testing.T, opts Options) *identityBed {
	t.Helper()
	key, err := identity.GenerateKey(identity.EdDSA, "gw-2026-05")
	if err != nil {
		t.Fatal(err)
	}
	opts.IdentityKeys = filepath.Join(t.TempDir(), "identity.pub.jwks")
	if err := identity.WritePublicKeyFile(opts.IdentityKeys, []*identity.PublicKey{key.Public()}); err != nil {
		t.Fatal(err)
	}
	return &identityBed{testServer: start(t, opts), signer: identity.NewSigner(key)}
}

func aliceClaims() identity.Claims {
	now := time.Now()
	return identity.Claims{
		User:     "alice",
		Mailbox:  "alice@example.test",
		Database: "DB01",
		Method:   identity.MethodNegotiate,
		Client:   netip.MustParseAddr("2001:db8::7"),
		Issuer:   "gw1",
		IssuedAt: now,
		Expires:  now.Add(5 * time.Minute),
	}
}

func signWith(t *testing.T, s *identity.Signer, c identity.Claims) string {
	t.Helper()
	tok, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// requestWith sends GET /owa/ with the given header lines on a fresh
// connection and returns the response.
func (b *identityBed) requestWith(t *testing.T, headers ...string) (status int, user, body string) {
	t.Helper()
	c := dial(t, b.addr)
	c.send(t, "GET /owa/ HTTP/1.1\r\nHost: mail.example.test\r\n"+strings.Join(headers, "")+"\r\n")
	resp, raw := c.read(t, "GET")
	return resp.StatusCode, resp.Header.Get(HeaderUser), string(raw)
}

func TestIdentityValid(t *testing.T) {
	b := startWithIdentity(t, Options{})
	tok := signWith(t, b.signer, aliceClaims())
	status, user, body := b.requestWith(t, "X-Frontdoor-Identity: "+tok+"\r\n")
	if status != 200 || user != "alice" {
		t.Fatalf("status %d, %s %q: %s", status, HeaderUser, user, body)
	}
	e := decodeEcho(t, []byte(body))
	want := EchoIdentity{User: "alice", Mailbox: "alice@example.test", Database: "DB01", Method: "negotiate",
		Client: "2001:db8::7", Issuer: "gw1", KeyID: "gw-2026-05"}
	if e.Identity == nil || *e.Identity != want {
		t.Errorf("echo identity %+v, want %+v", e.Identity, want)
	}
	// The header is matched case-insensitively and still echoed as sent.
	status, _, body = b.requestWith(t, "x-frontdoor-identity: "+tok+"\r\n")
	if e := decodeEcho(t, []byte(body)); status != 200 || e.Headers[1] != [2]string{"x-frontdoor-identity", tok} {
		t.Errorf("lower-case header: %d, headers %q", status, e.Headers)
	}
	if st := b.stats(t); st.Identity == nil || st.Identity.Accepted != 2 || st.Requests != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestIdentityRefused(t *testing.T) {
	b := startWithIdentity(t, Options{})
	valid := signWith(t, b.signer, aliceClaims())

	// Forged: a key the backend does not trust, under the trusted key's id.
	forger, err := identity.GenerateKey(identity.EdDSA, "gw-2026-05")
	if err != nil {
		t.Fatal(err)
	}
	forged := signWith(t, identity.NewSigner(forger), aliceClaims())
	expired := aliceClaims()
	expired.IssuedAt, expired.Expires = time.Now().Add(-time.Hour), time.Now().Add(-30*time.Minute)
	otherAud := aliceClaims()
	otherAud.Audience = "another-array"

	for _, tc := range []struct {
		name    string
		headers []string
		reason  string
	}{
		{"missing", nil, IdentityMissing},
		{"empty", []string{"X-Frontdoor-Identity: \r\n"}, "malformed"},
		{"forged", []string{"X-Frontdoor-Identity: " + forged + "\r\n"}, "bad_signature"},
		{"expired", []string{"X-Frontdoor-Identity: " + signWith(t, b.signer, expired) + "\r\n"}, "expired"},
		{"wrong audience", []string{"X-Frontdoor-Identity: " + signWith(t, b.signer, otherAud) + "\r\n"}, "audience"},
		// Two headers, even two valid ones: a client may have added one.
		{"duplicate", []string{"X-Frontdoor-Identity: " + valid + "\r\n", "X-Other: 1\r\n", "x-frontdoor-identity: " + valid + "\r\n"},
			IdentityDuplicate},
	} {
		status, user, body := b.requestWith(t, tc.headers...)
		if status != 403 || user != "" || !strings.HasPrefix(body, "mailboxd: identity refused ("+tc.reason+"): ") {
			t.Errorf("%s: status %d, %s %q, body %q; want 403 and the reason %q", tc.name, status, HeaderUser, user, body, tc.reason)
		}
	}

	st := b.stats(t)
	if st.Identity == nil {
		t.Fatalf("no identity stats: %+v", st)
	}
	want := map[string]int64{"missing": 1, "duplicate": 1, "malformed": 1, "unknown_key": 0, "bad_signature": 1,
		"expired": 1, "not_yet_valid": 0, "audience": 1}
	if st.Identity.Accepted != 0 || len(st.Identity.Refused) != len(want) {
		t.Errorf("identity stats %+v, want refusals %v", st.Identity, want)
	}
	for r, n := range want {
		if st.Identity.Refused[r] != n {
			t.Errorf("refused[%q] = %d, want %d", r, st.Identity.Refused[r], n)
		}
	}
	if st.Requests != 6 {
		t.Errorf("requests %d, want 6: refused requests reached the backend too", st.Requests)
	}
}

// Health probes and the harness's own paths need no identity; a refused
// request's body is still read, so the connection stays usable.
func TestIdentityExemptionsAndKeepAlive(t *testing.T) {
	b := startWithIdentity(t, Options{Name: "mbx-id"})
	if resp, body := get(t, b.url("/owa/healthcheck.htm")); resp.StatusCode != 200 {
		t.Errorf("health probe: %d %q", resp.StatusCode, body)
	}
	if st := b.stats(t); st.Healthchecks != 1 || st.Identity.Refused[IdentityMissing] != 0 {
		t.Errorf("stats %+v", st)
	}

	c := dial(t, b.addr)
	c.send(t, "POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"+
		"GET /owa/ HTTP/1.1\r\nHost: h\r\nX-Frontdoor-Identity: "+signWith(t, b.signer, aliceClaims())+"\r\n\r\n")
	if resp, body := c.read(t, "POST"); resp.StatusCode != 403 || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("POST without identity: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if resp, body := c.read(t, "GET"); resp.StatusCode != 200 || decodeEcho(t, body).Identity.User != "alice" {
		t.Errorf("pipelined request after a refusal: %d %q", resp.StatusCode, body)
	}

	// A response whose body is not the Echo still names the user.
	c.send(t, "GET /owa/ HTTP/1.1\r\nHost: h\r\nX-Mailboxd-Size: 10\r\nX-Frontdoor-Identity: "+
		signWith(t, b.signer, aliceClaims())+"\r\n\r\n")
	if resp, body := c.read(t, "GET"); resp.StatusCode != 200 || resp.Header.Get(HeaderUser) != "alice" || len(body) != 10 {
		t.Errorf("sized response: %d, user %q, %d bytes", resp.StatusCode, resp.Header.Get(HeaderUser), len(body))
	}
}

func TestIdentityCustomHeader(t *testing.T) {
	b := startWithIdentity(t, Options{IdentityHeader: "X-Gw-Assertion"})
	tok := signWith(t, b.signer, aliceClaims())
	if status, user, body := b.requestWith(t, "X-Gw-Assertion: "+tok+"\r\n"); status != 200 || user != "alice" {
		t.Errorf("custom header: %d %q %s", status, user, body)
	}
	if status, _, body := b.requestWith(t, "X-Frontdoor-Identity: "+tok+"\r\n"); status != 403 ||
		!strings.Contains(body, "no X-Gw-Assertion header") {
		t.Errorf("default header when another is configured: %d %s", status, body)
	}
}

// Without IdentityKeys nothing changes: no check, no stats, no echo field.
func TestIdentityOffByDefault(t *testing.T) {
	s := start(t, Options{})
	resp, body := get(t, s.url("/owa/"))
	if resp.StatusCode != 200 || resp.Header.Get(HeaderUser) != "" || strings.Contains(string(body), `"identity"`) {
		t.Errorf("%d %q %s", resp.StatusCode, resp.Header.Get(HeaderUser), body)
	}
	if st := s.stats(t); st.Identity != nil {
		t.Errorf("identity stats without IdentityKeys: %+v", st.Identity)
	}
}

func TestIdentityKeysErrors(t *testing.T) {
	dir := t.TempDir()
	priv := filepath.Join(dir, "identity.jwks")
	key, err := identity.GenerateKey(identity.MLDSA44, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := identity.RotateKeyFile(priv, key, 2); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{filepath.Join(dir, "nope.jwks"), "no such file"},
		{priv, "holds a private key"}, // the gateway's file, handed to a backend by mistake
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		err = Run(context.Background(), Options{Listener: ln, IdentityKeys: tc.path}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.path, err, tc.want)
		}
		if _, err := ln.Accept(); err == nil { // Run closed the listener it was given
			t.Errorf("%s: listener left open", tc.path)
		}
	}
}
