package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"frontdoor/auth/password"
	"frontdoor/directory"
	"frontdoor/gateway/config"
	"frontdoor/identity"
)

// TestWrittenAuthConfigLoads is the contract of the auth scenarios with the
// config, directory and identity packages: the files the runner writes load,
// the authenticated protocol requires Basic and reaches the
// identity-verifying mailboxd, every bench user's password verifies, and
// the generated keys are a signer's and a verifier's.
func TestWrittenAuthConfigLoads(t *testing.T) {
	dir := t.TempDir()
	f, err := newAuthFixture(dir, identity.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	s := &suite{o: suiteOptions{loops: 1}, dir: dir, auth: f, gwCacheTTL: time.Second}
	if err := s.writeConfig(gatewayPorts{HTTP: 18080, Admin: 18090, Mbx: 18081, MbxID: 18082}); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(filepath.Join(dir, "frontdoor.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Protocols) != 2 {
		t.Fatalf("protocols %+v", c.Protocols)
	}
	owa, ews := c.Protocols[0], c.Protocols[1]
	if owa.PathPrefix != "/owa" || len(owa.Auth) != 0 || owa.BackendPort != 18081 {
		t.Errorf("anonymous protocol %+v", owa)
	}
	if ews.Name != authProtocol || ews.PathPrefix != authPrefix || strings.Join(ews.Auth, ",") != "basic" || ews.BackendPort != 18082 {
		t.Errorf("authenticated protocol %+v", ews)
	}
	if c.Auth.CacheTTL.D() != time.Second || c.Identity.KeyFile != f.keyFile || c.Admin.Address != "127.0.0.1:18090" {
		t.Errorf("auth.cache_ttl %v, identity.key_file %q, admin.address %q", c.Auth.CacheTTL.D(), c.Identity.KeyFile, c.Admin.Address)
	}

	d, err := directory.Load(c.DirectoryPath())
	if err != nil {
		t.Fatal(err)
	}
	alice := d.LookupLogin([]byte(authLogin))
	if alice == nil || alice.Address != anchorMailbox || alice.Database.Active.HostPort(ews.BackendPort) != "127.0.0.1:18082" ||
		alice.Database.Active.HostPort(owa.BackendPort) != "127.0.0.1:18081" {
		t.Fatalf("alice resolves to %+v", alice)
	}
	for _, login := range []string{authLogin, authUserLogin(0), authUserLogin(authUsers - 1)} {
		u := d.LookupLogin([]byte(login))
		if u == nil {
			t.Errorf("user %s missing", login)
			continue
		}
		if ok, err := password.Verify(u.PasswordHash, []byte(benchPassword)); !ok || err != nil {
			t.Errorf("%s: password does not verify: %v", login, err)
		}
	}
	if d.LookupLogin([]byte(authUserLogin(authUsers))) != nil {
		t.Errorf("more than %d bench users", authUsers)
	}

	st, err := os.Stat(f.keyFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("private key file: %v, mode %v", err, st.Mode())
	}
	signer, err := identity.LoadSigner(f.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := identity.LoadVerifier(f.pubFile)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	tok, err := signer.Sign(identity.Claims{User: authLogin, Audience: "frontdoor-backend", IssuedAt: now, Expires: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verifier.Verify([]byte(tok), now); err != nil || signer.Alg() != identity.EdDSA {
		t.Errorf("generated keys: %v (alg %s)", err, signer.Alg())
	}

	// The default cache TTL writes no [auth] table; no auth, no users.
	s.gwCacheTTL = 0
	if err := s.writeConfig(gatewayPorts{HTTP: 18080, Admin: 18090, Mbx: 18081, MbxID: 18082}); err != nil {
		t.Fatal(err)
	}
	if c, err := config.Load(filepath.Join(dir, "frontdoor.toml")); err != nil || c.Auth.CacheTTL.D() != 5*time.Minute {
		t.Errorf("default cache TTL: %v, %v", err, c.Auth.CacheTTL.D())
	}
	if u := directoryUsers("", ""); strings.Contains(u, "password_hash") || strings.Count(u, "[[user]]") != 1 {
		t.Errorf("directory users without auth:\n%s", u)
	}
}

func TestLoginVariants(t *testing.T) {
	base := Request{Path: authPrefix + "/", Header: []Header{{"X-AnchorMailbox", anchorMailbox}}}
	v := loginVariants(base)
	if len(v.Requests) != authUsers || len(base.Header) != 1 {
		t.Fatalf("%d variants, base header %v", len(v.Requests), base.Header)
	}
	seen := map[string]bool{}
	for i, q := range v.Requests {
		if len(q.Header) != 2 || q.Header[0] != base.Header[0] || q.Header[1].Name != "Authorization" || q.Path != base.Path {
			t.Fatalf("variant %d: %+v", i, q)
		}
		seen[q.Header[1].Value] = true
	}
	if len(seen) != authUsers {
		t.Errorf("%d distinct credentials, want %d", len(seen), authUsers)
	}
	cred, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(v.Requests[7].Header[1].Value, "Basic "))
	if string(cred) != authUserLogin(7)+":"+benchPassword {
		t.Errorf("variant 7 carries %q", cred)
	}
	if h := authHeaders(Scenario{Auth: AuthCached}); len(h) != 1 || h[0].Value != basicAuth(authLogin) {
		t.Errorf("cached: %v", h)
	}
	if authHeaders(Scenario{Auth: AuthLogin}) != nil || authHeaders(Scenario{}) != nil {
		t.Error("only AuthCached has a fixed Authorization field")
	}
}

func TestAuthDelta(t *testing.T) {
	d := authDelta(map[string]int64{"verifications": 3, "cache_entries": 5}, map[string]int64{"verifications": 10, "signed": 2, "cache_entries": 7})
	if d["verifications"] != 7 || d["signed"] != 2 || d["cache_entries"] != 7 {
		t.Errorf("delta %v", d)
	}
}

// TestSuiteAuthWithFakeFrontdoor runs the auth scenarios against the
// stand-in frontdoor: the gateway rows reach the identity-verifying
// mailboxd (which refuses requests without an identity field), the direct
// rows the plain one, and the gateway's auth counters are reported.
func TestSuiteAuthWithFakeFrontdoor(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	t.Setenv(fakeEnv, "1")
	o := testSuiteOptions(t, "keepalive-get", "auth-keepalive", "auth-login")
	var stdout, stderr bytes.Buffer
	code := runSuite(context.Background(), o, &stdout, &stderr)
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	if code != 0 {
		t.Fatalf("exit code %d", code)
	}
	rep := readReport(t, o.jsonFile)
	if rep.IdentityAlg != string(identity.EdDSA) || rep.AuthUsers != authUsers || len(rep.Results) != 6 {
		t.Fatalf("identity alg %q, users %d, %d results", rep.IdentityAlg, rep.AuthUsers, len(rep.Results))
	}
	for _, sc := range []string{"keepalive-get", "auth-keepalive", "auth-login"} {
		for _, target := range []string{"direct", "gateway"} {
			r := findRow(rep, sc, target)
			if r == nil {
				t.Fatalf("no %s/%s row", sc, target)
			}
			if r.Requests == 0 || r.ErrorsTotal != 0 || r.StatusClasses["2xx"] != r.Requests {
				t.Errorf("%s/%s: requests %d errors %v classes %v", sc, target, r.Requests, r.Errors, r.StatusClasses)
			}
			auth := sc != "keepalive-get"
			if auth != (r.Auth != "") || r.NoAuthCeiling != (auth && target == "direct") {
				t.Errorf("%s/%s: auth %q, no-auth ceiling %v", sc, target, r.Auth, r.NoAuthCeiling)
			}
			if (auth && target == "gateway") != (r.GatewayAuth != nil) {
				t.Errorf("%s/%s: gateway auth counters %v", sc, target, r.GatewayAuth)
			}
		}
	}
	if a := findRow(rep, "auth-keepalive", "gateway").GatewayAuth; a["verifications"] != 0 || a["cache_hits"] == 0 {
		t.Errorf("auth-keepalive: %v, want only cache hits (alice was verified at start-up)", a)
	}
	login := findRow(rep, "auth-login", "gateway")
	// Every login is a verification in the stand-in (it forgets
	// credentials before the users come round again); the table warns
	// about cache hits among logins only when there were some.
	if a := login.GatewayAuth; a["verifications"] == 0 || a["verifications"] != a["signed"] || a["verifications"] > login.Requests {
		t.Errorf("auth-login: %v for %d requests", a, login.Requests)
	}
	wantShort := login.GatewayAuth["verifications"] < login.Requests*99/100
	if strings.Contains(stdout.String(), "some logins were cache hits") != wantShort {
		t.Errorf("warning about cache hits among logins: want %v", wantShort)
	}
	for _, want := range []string{"direct (no auth)", "verifications per request", "logins/s", "restarting the gateway with auth.cache_ttl 1s"} {
		if !strings.Contains(stdout.String()+stderr.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
