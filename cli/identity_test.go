package cli

import (
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"frontdoor/identity"
)

func TestIdentityKeygen(t *testing.T) {
	dir := t.TempDir()
	priv := filepath.Join(dir, "gw", "identity.jwks")
	pub := filepath.Join(dir, "backends", "identity.pub.jwks")

	// Create: one Ed25519 key named by its thumbprint.
	code, out, errOut := run("identity", "keygen", "--out", priv, "--public", pub)
	if code != 0 || errOut != "" {
		t.Fatalf("create: code %d, stderr %q", code, errOut)
	}
	s, err := identity.LoadSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	first := s.KeyID()
	if s.Alg() != identity.EdDSA || first != s.Public().Thumbprint() {
		t.Errorf("new key %s (%s), want an EdDSA key named by its thumbprint", first, s.Alg())
	}
	if want := priv + ": 1 key, signing with " + first + " (EdDSA)\n" + pub + ": 1 public key: " + first + "\n"; out != want {
		t.Errorf("stdout\n%s\nwant\n%s", out, want)
	}
	for path, mode := range map[string]os.FileMode{priv: 0o600, pub: 0o644, filepath.Dir(priv): 0o700 | os.ModeDir} {
		if fi, err := os.Stat(path); err != nil || fi.Mode() != mode {
			t.Errorf("%s: mode %v (%v), want %v", path, fi.Mode(), err, mode)
		}
	}

	// Rotate to an ML-DSA-44 key: it signs, the old one stays published.
	code, out, errOut = run("identity", "keygen", "--out", priv, "--public", pub, "--alg", "ml-dsa-44", "--kid", "2026-06")
	if want := priv + ": 2 keys, signing with 2026-06 (ML-DSA-44)\n" + pub + ": 2 public keys: 2026-06, " + first + "\n"; code != 0 || out != want {
		t.Fatalf("rotate: code %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
	}
	v, err := identity.LoadVerifier(pub)
	if err != nil || strings.Join(v.KeyIDs(), ",") != "2026-06,"+first {
		t.Fatalf("public set after rotation: %v, %v", v.KeyIDs(), err)
	}

	// --keep 2 drops the oldest; without --public the public set is not
	// touched.
	code, out, _ = run("identity", "keygen", "--out", priv, "--kid", "2026-07")
	if want := priv + ": 2 keys, signing with 2026-07 (EdDSA)\n"; code != 0 || out != want {
		t.Errorf("second rotation: code %d, stdout %q, want %q", code, out, want)
	}
	if v, err := identity.LoadVerifier(pub); err != nil || len(v.KeyIDs()) != 2 || v.KeyIDs()[0] != "2026-06" {
		t.Errorf("public set changed without --public: %v", v.KeyIDs())
	}

	// A key id already in the file, and a file that is not a key file,
	// are runtime failures that leave the file alone.
	before, _ := os.ReadFile(priv)
	code, _, errOut = run("identity", "keygen", "--out", priv, "--kid", "2026-07")
	if after, _ := os.ReadFile(priv); code != 1 || !strings.Contains(errOut, `already holds key id "2026-07"`) || string(after) != string(before) {
		t.Errorf("duplicate kid: code %d, stderr %q", code, errOut)
	}
	bad := filepath.Join(dir, "bad.jwks")
	writeFile(t, bad, "not keys\n", 0o600)
	code, out, errOut = run("identity", "keygen", "--out", bad)
	if data, _ := os.ReadFile(bad); code != 1 || out != "" || !strings.Contains(errOut, bad) || string(data) != "not keys\n" {
		t.Errorf("bad file: code %d, stdout %q, stderr %q, file %q", code, out, errOut, data)
	}
	lax := filepath.Join(dir, "lax.jwks")
	writeFile(t, lax, string(before), 0o644)
	if code, _, errOut = run("identity", "keygen", "--out", lax); code != 1 || !strings.Contains(errOut, "chmod 600") {
		t.Errorf("world-readable private key file: code %d, stderr %q", code, errOut)
	}
}

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestIdentityVerify(t *testing.T) {
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "identity.jwks"), filepath.Join(dir, "identity.pub.jwks")
	if code, _, errOut := run("identity", "keygen", "--out", priv, "--public", pub, "--kid", "k1"); code != 0 {
		t.Fatalf("keygen: %s", errOut)
	}
	s, err := identity.LoadSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	c := identity.Claims{User: "alice", Mailbox: "alice@example.test", Database: "DB01", Method: identity.MethodCertificate,
		Client: netip.MustParseAddr("192.0.2.7"), Issuer: "gw1", IssuedAt: now, Expires: now.Add(5 * time.Minute)}
	tok, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	verify := func(input string, args ...string) (int, string, string) {
		t.Helper()
		stub[io.Reader](t, &stdin, strings.NewReader(input))
		return run(append([]string{"identity", "verify", "--keys", pub}, args...)...)
	}

	want := "user      alice\nmailbox   alice@example.test\ndatabase  DB01\nmethod    certificate\nclient    192.0.2.7\n" +
		"issuer    gw1\naudience  frontdoor-backend\nissued    " + now.UTC().Format(time.RFC3339) +
		"\nexpires   " + now.Add(5*time.Minute).UTC().Format(time.RFC3339) + "\nkey       k1\n"
	for _, input := range []string{tok, tok + "\n", "X-Frontdoor-Identity: " + tok + "\r\n"} {
		if code, out, errOut := verify(input); code != 0 || out != want || errOut != "" {
			t.Errorf("input %.30q: code %d, stderr %q, stdout\n%s\nwant\n%s", input, code, errOut, out, want)
		}
	}

	// Refusals name the reason; exit 1.
	c.Audience = "elsewhere"
	other, _ := s.Sign(c)
	for _, tc := range []struct {
		input string
		args  []string
		want  string
	}{
		{"", nil, "identity: malformed assertion: not a JWS compact serialization"},
		{tok[:len(tok)-4] + "AAAA", nil, `identity: bad signature: key "k1" (EdDSA)`},
		{other, nil, `identity: wrong audience: aud ["elsewhere"], want "frontdoor-backend"`},
		{tok, []string{"--audience", "mbx-array-2"}, "wrong audience"},
	} {
		code, out, errOut := verify(tc.input, tc.args...)
		if code != 1 || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("input %.30q %q: code %d, stdout %q, stderr %q; want 1 and %q", tc.input, tc.args, code, out, errOut, tc.want)
		}
	}
	if code, out, _ := verify(other, "--audience", "elsewhere"); code != 0 || !strings.Contains(out, "audience  elsewhere\n") {
		t.Errorf("--audience: code %d, stdout %q", code, out)
	}

	// The gateway's private file is not a verification key set: exit 2.
	stub[io.Reader](t, &stdin, strings.NewReader(tok))
	if code, _, errOut := run("identity", "verify", "--keys", priv); code != 2 || !strings.Contains(errOut, "holds a private key") {
		t.Errorf("private key file as --keys: code %d, stderr %q", code, errOut)
	}
}
