package identity

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// t0 is the time the tests' assertions are issued at.
var t0 = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

var algs = []Alg{EdDSA, MLDSA44}

func newKey(t testing.TB, alg Alg, kid string) *PrivateKey {
	t.Helper()
	k, err := GenerateKey(alg, kid)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newVerifier(t testing.TB, keys ...*PrivateKey) *Verifier {
	t.Helper()
	var pubs []*PublicKey
	for _, k := range keys {
		pubs = append(pubs, k.Public())
	}
	v, err := NewVerifier(pubs...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func sampleClaims() Claims {
	return Claims{
		User:     `EXAMPLE\alice`,
		Mailbox:  "alice@example.test",
		Database: "DB01",
		Method:   MethodBasic,
		Client:   netip.MustParseAddr("::ffff:192.0.2.7"),
		Issuer:   "gw1",
		IssuedAt: t0.Add(400 * time.Millisecond), // Sign drops the fraction
		Expires:  t0.Add(5 * time.Minute),
	}
}

func sign(t testing.TB, k *PrivateKey, c Claims) string {
	t.Helper()
	tok, err := NewSigner(k).Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// signRaw signs arbitrary header and payload JSON with k, for assertions
// that Sign would refuse to produce.
func signRaw(t testing.TB, k *PrivateKey, headerJSON, payloadJSON string) string {
	t.Helper()
	in := b64.EncodeToString([]byte(headerJSON)) + "." + b64.EncodeToString([]byte(payloadJSON))
	sig, err := k.sign([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + b64.EncodeToString(sig)
}

func headerOf(k *PrivateKey) string {
	return `{"alg":"` + string(k.Alg()) + `","kid":"` + k.KeyID() + `","typ":"frontdoor-id+jwt"}`
}

const validPayload = `{"sub":"alice","aud":"frontdoor-backend","iat":1777888800,"exp":1777889100}`

// expectRefusal checks that err wraps want and only want.
func expectRefusal(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: error %v, want %v", what, err, want)
		return
	}
	for _, r := range reasons {
		if r.err != want && errors.Is(err, r.err) {
			t.Errorf("%s: error %v wraps %v as well", what, err, r.err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, alg := range algs {
		t.Run(string(alg), func(t *testing.T) {
			k := newKey(t, alg, "")
			tok := sign(t, k, sampleClaims())

			// The header is exactly what docs/identity.md promises.
			h, _, _ := strings.Cut(tok, ".")
			raw, err := b64.DecodeString(h)
			if err != nil {
				t.Fatal(err)
			}
			if want := headerOf(k); string(raw) != want {
				t.Errorf("header %s, want %s", raw, want)
			}

			got, err := newVerifier(t, k).Verify([]byte(tok), t0.Add(time.Minute))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := sampleClaims()
			want.Client = netip.MustParseAddr("192.0.2.7")
			want.IssuedAt = t0
			want.Audience = DefaultAudience
			want.KeyID = k.KeyID()
			if got != want {
				t.Errorf("claims\n got %+v\nwant %+v", got, want)
			}
			if got.IssuedAt.Location() != time.UTC || got.Expires.Location() != time.UTC {
				t.Errorf("times are not in UTC: %v, %v", got.IssuedAt, got.Expires)
			}
		})
	}
}

// The claims set on the wire uses the names other JWT libraries know.
func TestClaimsOnTheWire(t *testing.T) {
	k := newKey(t, EdDSA, "k1")
	c := sampleClaims()
	c.Audience = "mbx-array-2"
	tok := sign(t, k, c)
	parts := strings.Split(tok, ".")
	payload, err := b64.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	want := `{"sub":"EXAMPLE\\alice","mbx":"alice@example.test","db":"DB01","amr":["basic"],"cip":"192.0.2.7",` +
		`"iss":"gw1","aud":"mbx-array-2","iat":1777888800,"exp":1777889100}`
	if string(payload) != want {
		t.Errorf("claims set\n got %s\nwant %s", payload, want)
	}
}

func TestTampered(t *testing.T) {
	for _, alg := range algs {
		t.Run(string(alg), func(t *testing.T) {
			k := newKey(t, alg, "k1")
			v := newVerifier(t, k)
			now := t0.Add(time.Minute)
			tok := sign(t, k, sampleClaims())
			parts := strings.Split(tok, ".")
			if _, err := v.Verify([]byte(tok), now); err != nil {
				t.Fatalf("untampered: %v", err)
			}

			reencode := func(i int, edit func(string) string) string {
				raw, err := b64.DecodeString(parts[i])
				if err != nil {
					t.Fatal(err)
				}
				p := append([]string(nil), parts...)
				p[i] = b64.EncodeToString([]byte(edit(string(raw))))
				return strings.Join(p, ".")
			}
			sig, _ := b64.DecodeString(parts[2])
			flipped := append([]byte(nil), sig...)
			flipped[len(flipped)/2] ^= 0x01

			for _, tc := range []struct {
				name, tok string
			}{
				// Same meaning, different bytes: the signature covers bytes.
				{"header", reencode(0, func(s string) string { return strings.Replace(s, `{`, `{"x5u":"https://evil.test/k",`, 1) })},
				{"payload", reencode(1, func(s string) string { return strings.Replace(s, `EXAMPLE\\alice`, `EXAMPLE\\admin`, 1) })},
				{"signature bit", parts[0] + "." + parts[1] + "." + b64.EncodeToString(flipped)},
				{"signature truncated", parts[0] + "." + parts[1] + "." + b64.EncodeToString(sig[:len(sig)-1])},
				{"signature of another token", parts[0] + "." + parts[1] + "." + strings.Split(sign(t, k, Claims{
					User: "bob", IssuedAt: t0, Expires: t0.Add(time.Hour)}), ".")[2]},
				{"no signature", parts[0] + "." + parts[1] + "."},
			} {
				_, err := v.Verify([]byte(tc.tok), now)
				expectRefusal(t, tc.name, err, ErrBadSignature)
			}
		})
	}
}

// A key is bound to one algorithm: the header's "alg" never chooses how a
// signature is checked.
func TestAlgConfusion(t *testing.T) {
	ed, ml := newKey(t, EdDSA, "ed"), newKey(t, MLDSA44, "ml")
	v := newVerifier(t, ed, ml)
	now := t0.Add(time.Minute)

	// An EdDSA header naming the ML-DSA key, validly signed with an
	// Ed25519 key, and the other way round.
	edWithMLKid := signRaw(t, ed, `{"alg":"EdDSA","kid":"ml","typ":"frontdoor-id+jwt"}`, validPayload)
	_, err := v.Verify([]byte(edWithMLKid), now)
	expectRefusal(t, "EdDSA header, ML-DSA kid", err, ErrUnknownKey)
	mlWithEdKid := signRaw(t, ml, `{"alg":"ML-DSA-44","kid":"ed","typ":"frontdoor-id+jwt"}`, validPayload)
	_, err = v.Verify([]byte(mlWithEdKid), now)
	expectRefusal(t, "ML-DSA header, EdDSA kid", err, ErrUnknownKey)
	if err == nil || !strings.Contains(err.Error(), `key "ed" is for EdDSA, the header says ML-DSA-44`) {
		t.Errorf("error does not say what is wrong: %v", err)
	}

	// Algorithms that are not supported at all, "none" included.
	in := func(h string) string {
		return b64.EncodeToString([]byte(h)) + "." + b64.EncodeToString([]byte(validPayload))
	}
	for _, tok := range []string{
		in(`{"alg":"none","kid":"ed","typ":"frontdoor-id+jwt"}`) + ".",
		in(`{"alg":"HS256","kid":"ed","typ":"frontdoor-id+jwt"}`) + "." + b64.EncodeToString(make([]byte, 32)),
		in(`{"alg":"eddsa","kid":"ed","typ":"frontdoor-id+jwt"}`) + "." + b64.EncodeToString(make([]byte, 64)),
	} {
		_, err := v.Verify([]byte(tok), now)
		expectRefusal(t, tok[:20], err, ErrMalformed)
	}
}

func TestUnknownKey(t *testing.T) {
	k, other := newKey(t, EdDSA, "k1"), newKey(t, EdDSA, "k2")
	v := newVerifier(t, k)
	now := t0.Add(time.Minute)
	_, err := v.Verify([]byte(sign(t, other, sampleClaims())), now)
	expectRefusal(t, "other kid", err, ErrUnknownKey)
	_, err = v.Verify([]byte(signRaw(t, k, `{"alg":"EdDSA","typ":"frontdoor-id+jwt"}`, validPayload)), now)
	expectRefusal(t, "no kid", err, ErrUnknownKey)

	// A forgery: another key that claims k's id.
	forger := newKey(t, EdDSA, "k1")
	_, err = v.Verify([]byte(sign(t, forger, sampleClaims())), now)
	expectRefusal(t, "forged with the same kid", err, ErrBadSignature)
}

func TestExpiryAndLeeway(t *testing.T) {
	k := newKey(t, EdDSA, "k1")
	c := Claims{User: "alice", IssuedAt: t0, Expires: t0.Add(5 * time.Minute)}
	tok := []byte(sign(t, k, c))
	v := newVerifier(t, k)
	for _, tc := range []struct {
		leeway time.Duration
		now    time.Time
		want   error
	}{
		{DefaultLeeway, t0, nil},
		{DefaultLeeway, c.Expires.Add(59 * time.Second), nil},
		{DefaultLeeway, c.Expires.Add(60 * time.Second), ErrExpired},
		{DefaultLeeway, c.Expires.Add(time.Hour), ErrExpired},
		{DefaultLeeway, t0.Add(-60 * time.Second), nil},
		{DefaultLeeway, t0.Add(-61 * time.Second), ErrNotYetValid},
		{0, c.Expires.Add(-time.Nanosecond), nil},
		{0, c.Expires, ErrExpired}, // RFC 7519: valid only before exp
		{0, t0, nil},
		{0, t0.Add(-time.Nanosecond), ErrNotYetValid},
		{10 * time.Minute, c.Expires.Add(9 * time.Minute), nil},
	} {
		v.Leeway = tc.leeway
		_, err := v.Verify(tok, tc.now)
		what := "leeway " + tc.leeway.String() + " at " + tc.now.Format(time.RFC3339Nano)
		if tc.want == nil {
			if err != nil {
				t.Errorf("%s: %v", what, err)
			}
			continue
		}
		expectRefusal(t, what, err, tc.want)
	}

	// "nbf" is honoured when present, although Sign never writes it.
	v.Leeway = DefaultLeeway
	nbf := signRaw(t, k, headerOf(k), `{"sub":"a","aud":"frontdoor-backend","iat":1777888800,"nbf":1777889000,"exp":1777889100}`)
	_, err := v.Verify([]byte(nbf), t0.Add(time.Minute))
	expectRefusal(t, "before nbf", err, ErrNotYetValid)
	if _, err := v.Verify([]byte(nbf), t0.Add(3*time.Minute)); err != nil {
		t.Errorf("after nbf: %v", err)
	}
}

func TestAudience(t *testing.T) {
	k := newKey(t, EdDSA, "k1")
	v := newVerifier(t, k)
	now := t0.Add(time.Minute)
	c := sampleClaims()
	c.Audience = "someone-else"
	_, err := v.Verify([]byte(sign(t, k, c)), now)
	expectRefusal(t, "other audience", err, ErrAudience)

	v.Audience = "someone-else"
	if got, err := v.Verify([]byte(sign(t, k, c)), now); err != nil || got.Audience != "someone-else" {
		t.Errorf("configured audience: %+v, %v", got, err)
	}

	// An array is fine as long as it names us (RFC 7519 section 4.1.3).
	v.Audience = DefaultAudience
	arr := signRaw(t, k, headerOf(k), `{"sub":"a","aud":["x","frontdoor-backend"],"iat":1777888800,"exp":1777889100}`)
	if got, err := v.Verify([]byte(arr), now); err != nil || got.Audience != DefaultAudience {
		t.Errorf("aud array: %+v, %v", got, err)
	}
	arr = signRaw(t, k, headerOf(k), `{"sub":"a","aud":["x","y"],"iat":1777888800,"exp":1777889100}`)
	_, err = v.Verify([]byte(arr), now)
	expectRefusal(t, "aud array without us", err, ErrAudience)
}

func TestMalformed(t *testing.T) {
	k := newKey(t, EdDSA, "k1")
	v := newVerifier(t, k)
	now := t0.Add(time.Minute)
	good := sign(t, k, sampleClaims())
	h, rest, _ := strings.Cut(good, ".")
	withHeader := func(hdr string) string { return signRaw(t, k, hdr, validPayload) }
	withPayload := func(p string) string { return signRaw(t, k, headerOf(k), p) }

	for _, tc := range []struct{ name, tok string }{
		{"empty", ""},
		{"too long", good + strings.Repeat("A", MaxAssertionSize-len(good)+1)},
		{"two parts", h + "." + strings.Split(rest, ".")[0]},
		{"four parts", good + ".AAAA"},
		{"padding", good + "=="},
		{"newline inside", h[:5] + "\n" + h[5:] + "." + rest},
		{"space around", " " + good},
		{"standard base64 '+'", "+" + good[1:]},
		{"standard base64 '/'", good[:len(good)-1] + "/"},
		{"header not JSON", withHeader(`alg=EdDSA`)},
		{"header an array", withHeader(`["EdDSA"]`)},
		{"header null", withHeader(`null`)},
		{"no alg", withHeader(`{"kid":"k1","typ":"frontdoor-id+jwt"}`)},
		{"alg in upper case member name", withHeader(`{"ALG":"EdDSA","kid":"k1","typ":"frontdoor-id+jwt"}`)},
		{"kid not a string", withHeader(`{"alg":"EdDSA","kid":1,"typ":"frontdoor-id+jwt"}`)},
		{"no typ", withHeader(`{"alg":"EdDSA","kid":"k1"}`)},
		{"typ JWT", withHeader(`{"alg":"EdDSA","kid":"k1","typ":"JWT"}`)},
		{"crit", withHeader(`{"alg":"EdDSA","kid":"k1","typ":"frontdoor-id+jwt","crit":["exp"]}`)},
		{"payload not JSON", withPayload(`sub=alice`)},
		{"no sub", withPayload(`{"aud":"frontdoor-backend","iat":1777888800,"exp":1777889100}`)},
		{"sub not a string", withPayload(`{"sub":7,"aud":"frontdoor-backend","iat":1777888800,"exp":1777889100}`)},
		{"sub with CRLF", withPayload(`{"sub":"a\r\nX-Evil: 1","aud":"frontdoor-backend","iat":1777888800,"exp":1777889100}`)},
		{"no aud", withPayload(`{"sub":"a","iat":1777888800,"exp":1777889100}`)},
		{"aud a number", withPayload(`{"sub":"a","aud":1,"iat":1777888800,"exp":1777889100}`)},
		{"no exp", withPayload(`{"sub":"a","aud":"frontdoor-backend","iat":1777888800}`)},
		{"no iat", withPayload(`{"sub":"a","aud":"frontdoor-backend","exp":1777889100}`)},
		{"exp a string", withPayload(`{"sub":"a","aud":"frontdoor-backend","iat":1777888800,"exp":"1777889100"}`)},
		{"exp negative", withPayload(`{"sub":"a","aud":"frontdoor-backend","iat":1777888800,"exp":-1}`)},
		{"exp huge", withPayload(`{"sub":"a","aud":"frontdoor-backend","iat":1777888800,"exp":1e300}`)},
		{"amr a string", withPayload(`{"sub":"a","amr":"basic","aud":"frontdoor-backend","iat":1777888800,"exp":1777889100}`)},
		{"amr two methods", withPayload(`{"sub":"a","amr":["basic","negotiate"],"aud":"frontdoor-backend","iat":1777888800,"exp":1777889100}`)},
		{"cip not an address", withPayload(`{"sub":"a","cip":"192.0.2.999","aud":"frontdoor-backend","iat":1777888800,"exp":1777889100}`)},
	} {
		_, err := v.Verify([]byte(tc.tok), now)
		expectRefusal(t, tc.name, err, ErrMalformed)
	}

	// What RFC 7515 and RFC 7519 allow must pass: "typ" with the implied
	// "application/" spelled out and in another case, fractional times,
	// and claims this package does not know.
	for _, tok := range []string{
		withHeader(`{"alg":"EdDSA","kid":"k1","typ":"application/Frontdoor-ID+JWT"}`),
		withPayload(`{"sub":"a","aud":"frontdoor-backend","iat":1777888800.5,"exp":1777889100.25,"jti":"x","roles":["a"]}`),
	} {
		if _, err := v.Verify([]byte(tok), now); err != nil {
			t.Errorf("%v", err)
		}
	}
}

// RFC 8037 appendix A: the Ed25519 key (A.1, A.2), its thumbprint (A.3),
// and the JWS it signs (A.4), checked with the low-level JWS code so that
// an assertion from this package is one any RFC 8037 implementation
// verifies, and the other way round.
func TestRFC8037Vectors(t *testing.T) {
	const (
		d          = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
		x          = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
		thumbprint = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
		jws        = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc." +
			"hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
	)
	// A.1 and A.2 as a key file would hold them.
	keys, err := parsePrivateKeys([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","d":"` + d + `","x":"` + x + `","kid":"rfc8037"}]}`))
	if err != nil {
		t.Fatalf("A.1 key: %v", err)
	}
	k := keys[0]
	if got := b64.EncodeToString(k.Public().raw); got != x {
		t.Errorf("A.2 public key %s, want %s", got, x)
	}
	if got := k.Public().Thumbprint(); got != thumbprint {
		t.Errorf("A.3 thumbprint %s, want %s", got, thumbprint)
	}

	c, err := parseCompact([]byte(jws))
	if err != nil {
		t.Fatalf("A.4 JWS: %v", err)
	}
	if c.header.alg != EdDSA || string(c.payload) != "Example of Ed25519 signing" {
		t.Errorf("A.4: alg %q, payload %q", c.header.alg, c.payload)
	}
	if !k.Public().verify(c.signingInput, c.signature) {
		t.Error("A.5: the RFC's signature does not verify")
	}
	sig, err := k.sign(c.signingInput)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b64.EncodeToString(sig), jws[strings.LastIndexByte(jws, '.')+1:]; got != want {
		t.Errorf("A.4: signature\n got %s\nwant %s", got, want)
	}
	c.signature[0] ^= 1
	if k.Public().verify(c.signingInput, c.signature) {
		t.Error("a corrupted signature verifies")
	}
}

// The ML-DSA-44 example of draft-ietf-cose-dilithium: the all-zero seed
// gives the key whose thumbprint is the draft's "kid", and the draft's JWS
// (signed by another implementation) verifies with it.
func TestMLDSA44DraftVector(t *testing.T) {
	const kid = "T4xl70S7MT6Zeq6r9V9fPJGVn76wfnXJ21-gyo0Gu6o"
	k, err := newPrivateKey(MLDSA44, kid, make([]byte, seedSize))
	if err != nil {
		t.Fatal(err)
	}
	if got := k.Public().Thumbprint(); got != kid {
		t.Errorf("thumbprint of the all-zero-seed key %s, want %s", got, kid)
	}
	data, err := os.ReadFile(filepath.Join("testdata", "ml-dsa-44-draft-ietf-cose-dilithium.jws"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseCompact([]byte(strings.TrimSpace(string(data))))
	if err != nil {
		t.Fatal(err)
	}
	if c.header.alg != MLDSA44 || c.header.kid != kid || string(c.payload) != "It’s a dangerous business, Frodo, going out your door." {
		t.Errorf("header %+v, payload %q", c.header, c.payload)
	}
	if !k.Public().verify(c.signingInput, c.signature) {
		t.Error("the draft's signature does not verify")
	}
	c.signingInput[len(c.signingInput)-1] ^= 1
	if k.Public().verify(c.signingInput, c.signature) {
		t.Error("a signature verifies over a changed payload")
	}
}

func TestSignRefuses(t *testing.T) {
	s := NewSigner(newKey(t, EdDSA, "k1"))
	for _, tc := range []struct {
		name string
		edit func(*Claims)
	}{
		{"no user", func(c *Claims) { c.User = "" }},
		{"no iat", func(c *Claims) { c.IssuedAt = time.Time{} }},
		{"no exp", func(c *Claims) { c.Expires = time.Time{} }},
		{"exp before iat", func(c *Claims) { c.Expires = c.IssuedAt.Add(-time.Second) }},
		{"exp within the same second", func(c *Claims) { c.Expires = t0.Add(900 * time.Millisecond) }},
		{"unknown method", func(c *Claims) { c.Method = "password" }},
		{"newline in mailbox", func(c *Claims) { c.Mailbox = "a@b\nX: y" }},
	} {
		c := sampleClaims()
		tc.edit(&c)
		if tok, err := s.Sign(c); err == nil {
			t.Errorf("%s: signed %s", tc.name, tok)
		}
	}
}

func TestKeyIDs(t *testing.T) {
	k := newKey(t, EdDSA, "")
	if k.KeyID() != k.Public().Thumbprint() || len(k.KeyID()) != 43 {
		t.Errorf("default kid %q, want the 43-character thumbprint %q", k.KeyID(), k.Public().Thumbprint())
	}
	for _, bad := range []string{"has space", strings.Repeat("k", 129), "tab\t", "é"} {
		if _, err := GenerateKey(EdDSA, bad); err == nil {
			t.Errorf("key id %q accepted", bad)
		}
	}
	if _, err := NewVerifier(k.Public(), k.Public()); err == nil {
		t.Error("NewVerifier accepted a duplicate key id")
	}
	if _, err := NewVerifier(); err == nil {
		t.Error("NewVerifier accepted no keys")
	}
}

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// Rotation as docs/identity.md describes it: a token signed with the old
// key verifies as long as the old public key is listed, and not after.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "identity.jwks"), filepath.Join(dir, "identity.pub.jwks")
	rotate := func(alg Alg, kid string) []*PrivateKey {
		t.Helper()
		keys, err := RotateKeyFile(priv, newKey(t, alg, kid), 2)
		if err != nil {
			t.Fatal(err)
		}
		var pubs []*PublicKey
		for _, k := range keys {
			pubs = append(pubs, k.Public())
		}
		if err := WritePublicKeyFile(pub, pubs); err != nil {
			t.Fatal(err)
		}
		return keys
	}
	load := func() (*Signer, *Verifier) {
		t.Helper()
		s, err := LoadSigner(priv)
		if err != nil {
			t.Fatal(err)
		}
		v, err := LoadVerifier(pub)
		if err != nil {
			t.Fatal(err)
		}
		return s, v
	}
	now := t0.Add(time.Minute)

	rotate(EdDSA, "2026-05a")
	s, v := load()
	if s.KeyID() != "2026-05a" || s.Alg() != EdDSA {
		t.Fatalf("signer %s/%s", s.KeyID(), s.Alg())
	}
	old, err := s.Sign(sampleClaims())
	if err != nil {
		t.Fatal(err)
	}

	// The new key goes first and signs; the old one still verifies. The
	// new key may even use another algorithm.
	if keys := rotate(MLDSA44, "2026-05b"); len(keys) != 2 || keys[1].KeyID() != "2026-05a" {
		t.Fatalf("after the first rotation: %d keys", len(keys))
	}
	s, v = load()
	if s.KeyID() != "2026-05b" || s.Alg() != MLDSA44 || strings.Join(v.KeyIDs(), ",") != "2026-05b,2026-05a" {
		t.Fatalf("signer %s/%s, verifier %v", s.KeyID(), s.Alg(), v.KeyIDs())
	}
	if c, err := v.Verify([]byte(old), now); err != nil || c.KeyID != "2026-05a" {
		t.Errorf("old token while the old key is listed: %+v, %v", c, err)
	}
	fresh, err := s.Sign(sampleClaims())
	if err != nil {
		t.Fatal(err)
	}
	if c, err := v.Verify([]byte(fresh), now); err != nil || c.KeyID != "2026-05b" {
		t.Errorf("new token: %+v, %v", c, err)
	}

	// keep 2: the third key drops the first.
	rotate(EdDSA, "2026-06")
	_, v = load()
	_, err = v.Verify([]byte(old), now)
	expectRefusal(t, "old token after its key was dropped", err, ErrUnknownKey)
	if _, err := v.Verify([]byte(fresh), now); err != nil {
		t.Errorf("previous key's token: %v", err)
	}

	for path, want := range map[string]os.FileMode{priv: 0o600, pub: 0o644} {
		if fi, err := os.Stat(path); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", path, fi.Mode(), err, want)
		}
	}
	if _, err := RotateKeyFile(priv, newKey(t, EdDSA, "2026-06"), 2); err == nil || !strings.Contains(err.Error(), `already holds key id "2026-06"`) {
		t.Errorf("reusing a key id: %v", err)
	}
	if _, err := RotateKeyFile(priv, newKey(t, EdDSA, ""), 0); err == nil {
		t.Error("keep 0 accepted")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	k := newKey(t, MLDSA44, "m1")
	privSet := string(marshalPrivateKeys([]*PrivateKey{k}))
	pubSet := string(MarshalPublicKeys([]*PublicKey{k.Public()}))

	// The files are JWK Sets with the members RFC 8037 and
	// draft-ietf-cose-dilithium name.
	var set struct{ Keys []map[string]string }
	if err := json.Unmarshal([]byte(privSet), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("private set %s: %v", privSet, err)
	}
	if m := set.Keys[0]; m["kty"] != "AKP" || m["alg"] != "ML-DSA-44" || m["kid"] != "m1" || m["use"] != "sig" ||
		len(m["pub"]) != b64.EncodedLen(1312) || len(m["priv"]) != b64.EncodedLen(32) {
		t.Errorf("private JWK %v", m)
	}
	ek := newKey(t, EdDSA, "e1")
	if err := json.Unmarshal(marshalPrivateKeys([]*PrivateKey{ek}), &set); err != nil {
		t.Fatal(err)
	}
	if m := set.Keys[0]; m["kty"] != "OKP" || m["crv"] != "Ed25519" || m["alg"] != "EdDSA" || len(m["x"]) != 43 || len(m["d"]) != 43 {
		t.Errorf("private JWK %v", m)
	}

	lax := filepath.Join(dir, "lax.jwks")
	writeFile(t, lax, privSet, 0o640)
	if _, err := LoadSigner(lax); err == nil || !strings.Contains(err.Error(), "mode 0640 lets group or others read private keys") {
		t.Errorf("group-readable private key file: %v", err)
	}
	strict := filepath.Join(dir, "strict.jwks")
	writeFile(t, strict, privSet, 0o600)
	if s, err := LoadSigner(strict); err != nil || s.KeyID() != "m1" {
		t.Errorf("0600 private key file: %v", err)
	}
	if _, err := LoadVerifier(strict); err == nil || !strings.Contains(err.Error(), "holds a private key") {
		t.Errorf("private set loaded as a public one: %v", err)
	}
	public := filepath.Join(dir, "public.jwks")
	writeFile(t, public, pubSet, 0o644)
	if _, err := LoadSigner(public); err == nil || !strings.Contains(err.Error(), "has no private key") {
		t.Errorf("public set loaded as a private one: %v", err)
	}

	// Keys of other kinds are skipped (RFC 7517 section 5); broken keys
	// of our kinds are errors that say which key.
	otherKinds := `{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"},{"kty":"OKP","crv":"X25519","kid":"x","x":"AAAA"},` +
		`{"kty":"AKP","alg":"ML-DSA-87","kid":"m87","pub":"AAAA"},{"kty":"OKP","crv":"Ed25519","use":"enc","kid":"e","x":"AAAA"},`
	mixed := `{"keys":[` + otherKinds + strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(pubSet), `{"keys": [`), "]}") + `]}`
	if keys, err := ParsePublicKeys([]byte(mixed)); err != nil || len(keys) != 1 || keys[0].KeyID() != "m1" {
		t.Errorf("set with other kinds of keys: %d keys, %v", len(keys), err)
	}
	x := b64.EncodeToString(ek.Public().raw)
	for _, tc := range []struct{ name, set, want string }{
		{"not JSON", `keys`, "not a JWK Set"},
		{"empty", `{"keys":[]}`, "no EdDSA (OKP Ed25519) or ML-DSA-44 (AKP) key"},
		{"only other kinds", `{"keys":[` + strings.TrimSuffix(otherKinds, ",") + `]}`, "no EdDSA"},
		{"no kid", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + x + `"}]}`, "keys[0]: key id"},
		{"short x", `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"AAAA"}]}`, `keys[0]: key "a": Ed25519 public key is 3 bytes`},
		{"x with padding", `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"` + x + `="}]}`, "not base64url"},
		{"duplicate kid", `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"` + x + `"},{"kty":"OKP","crv":"Ed25519","kid":"a","x":"` + x + `"}]}`,
			`keys[1]: key id "a" appears twice`},
	} {
		if _, err := ParsePublicKeys([]byte(tc.set)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	// A private key whose public half was edited.
	other := b64.EncodeToString(newKey(t, EdDSA, "").Public().raw)
	edited := strings.Replace(string(marshalPrivateKeys([]*PrivateKey{ek})), x, other, 1)
	if _, err := parsePrivateKeys([]byte(edited)); err == nil || !strings.Contains(err.Error(), "not the one the private key derives") {
		t.Errorf("mismatched x and d: %v", err)
	}
}

func TestReason(t *testing.T) {
	for _, r := range reasons {
		if got := Reason(refuse(r.err, "detail")); got != r.label {
			t.Errorf("Reason(%v) = %q, want %q", r.err, got, r.label)
		}
	}
	if Reason(nil) != "" || Reason(errors.New("other")) != "" {
		t.Error("Reason of nil or a foreign error is not empty")
	}
	if strings.Join(Reasons(), ",") != "malformed,unknown_key,bad_signature,expired,not_yet_valid,audience" {
		t.Errorf("Reasons() = %v", Reasons())
	}
}

// One Verifier, many goroutines (run with -race).
func TestConcurrentVerify(t *testing.T) {
	ed, ml := newKey(t, EdDSA, "ed"), newKey(t, MLDSA44, "ml")
	v := newVerifier(t, ed, ml)
	toks := []string{sign(t, ed, sampleClaims()), sign(t, ml, sampleClaims())}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				tok := toks[(g+i)%2]
				if i%5 == 0 {
					// A bad signature now and then: change a character
					// that carries only signature bits (the last ones
					// may carry padding bits a decoder ignores).
					b := []byte(tok)
					if j := len(b) - 3; b[j] == 'A' {
						b[j] = 'B'
					} else {
						b[j] = 'A'
					}
					tok = string(b)
				}
				_, err := v.Verify([]byte(tok), t0.Add(time.Minute))
				if (i%5 == 0) != (err != nil) {
					t.Errorf("goroutine %d, token %d: %v", g, i, err)
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkSign(b *testing.B) {
	for _, alg := range algs {
		b.Run(string(alg), func(b *testing.B) {
			s := NewSigner(newKey(b, alg, ""))
			c := sampleClaims()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Sign(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, alg := range algs {
		b.Run(string(alg), func(b *testing.B) {
			k := newKey(b, alg, "")
			v := newVerifier(b, k)
			tok := []byte(sign(b, k, sampleClaims()))
			now := t0.Add(time.Minute)
			b.ReportAllocs()
			b.SetBytes(int64(len(tok)))
			for b.Loop() {
				if _, err := v.Verify(tok, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
