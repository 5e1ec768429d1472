package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The published examples: RFC 8037 appendix A.1's Ed25519 key and A.4's
// JWS; RFC 7515 appendix A.3's P-256 key and ES256 JWS. They come from
// outside this code, so they check the signature layer against other
// implementations, not against itself.
const (
	rfc8037X   = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
	rfc8037D   = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
	rfc8037JWS = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc." +
		"hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"

	rfc7515X   = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"
	rfc7515Y   = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
	rfc7515D   = "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"
	rfc7515JWS = "eyJhbGciOiJFUzI1NiJ9." +
		"eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ." +
		"DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
)

func mustKeySet(t testing.TB, jwks string) *keySet {
	t.Helper()
	ks, err := parseJWKS([]byte(jwks))
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func TestRFC8037Ed25519Example(t *testing.T) {
	ks := mustKeySet(t, `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"`+rfc8037X+`"}]}`)
	payload, err := verifyJWS(ks, []byte(rfc8037JWS))
	if err != nil || string(payload) != "Example of Ed25519 signing" {
		t.Fatalf("verifyJWS = %q, %v", payload, err)
	}
	// Ed25519 is deterministic: this file's signer, given the RFC's private
	// key, must reproduce the RFC's signature, which vouches for the tokens
	// the other tests mint with it.
	seed, _ := base64.RawURLEncoding.DecodeString(rfc8037D)
	priv := ed25519.NewKeyFromSeed(seed)
	if x := base64.RawURLEncoding.EncodeToString(priv.Public().(ed25519.PublicKey)); x != rfc8037X {
		t.Fatalf("public key from d = %s", x)
	}
	if got := signJWS(`{"alg":"EdDSA"}`, "Example of Ed25519 signing", edSigner(priv)); got != rfc8037JWS {
		t.Fatalf("signer made %s", got)
	}
	tamperings(t, ks, rfc8037JWS)
}

func TestRFC7515ES256Example(t *testing.T) {
	jwks := `{"keys":[{"kty":"EC","crv":"P-256","x":"` + rfc7515X + `","y":"` + rfc7515Y + `"}]}`
	ks := mustKeySet(t, jwks)
	payload, err := verifyJWS(ks, []byte(rfc7515JWS))
	want := "{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}"
	if err != nil || string(payload) != want {
		t.Fatalf("verifyJWS = %q, %v", payload, err)
	}
	// ECDSA signatures are randomized, so the signer cannot be checked
	// byte for byte; check that it reads the RFC's private key as the RFC's
	// public key, and that what it signs verifies.
	d, _ := base64.RawURLEncoding.DecodeString(rfc7515D)
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := priv.PublicKey.Bytes()
	if x, y := base64.RawURLEncoding.EncodeToString(pub[1:33]), base64.RawURLEncoding.EncodeToString(pub[33:]); x != rfc7515X || y != rfc7515Y {
		t.Fatalf("public key from d = %s, %s", x, y)
	}
	if _, err := verifyJWS(ks, []byte(signJWS(`{"alg":"ES256"}`, "x", ecSigner(priv)))); err != nil {
		t.Fatalf("own ES256 signature: %v", err)
	}
	tamperings(t, ks, rfc7515JWS)

	// The example's payload is a claims set (iss joe, exp 2011-03-22
	// 18:43:00 UTC) without aud: through the whole verifier it passes the
	// signature, time and issuer checks and stops at the audience.
	path := writeFile(t, jwks)
	v, err := NewJWTVerifier(JWTConfig{JWKSFile: path, Issuer: "joe", Audience: "frontdoor"})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Unix(1300819380, 0)
	if _, err := v.Verify([]byte(rfc7515JWS), exp.Add(-time.Hour)); !errors.Is(err, ErrAudience) {
		t.Errorf("before exp: %v, want ErrAudience", err)
	}
	if _, err := v.Verify([]byte(rfc7515JWS), exp.Add(time.Hour)); !errors.Is(err, ErrExpired) {
		t.Errorf("after exp: %v, want ErrExpired", err)
	}
}

// tamperings checks that a valid JWS stops verifying when any part changes.
func tamperings(t *testing.T, ks *keySet, jws string) {
	t.Helper()
	parts := strings.Split(jws, ".")
	flip := func(s string, i int) string {
		b := []byte(s)
		// Swap between two base64url characters of the same 6-bit group
		// position, keeping the encoding canonical.
		if b[i] == 'A' {
			b[i] = 'Q'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	for _, tc := range []struct {
		name, jws string
		want      error
	}{
		{"signature byte", parts[0] + "." + parts[1] + "." + flip(parts[2], 5), ErrBadSignature},
		{"payload byte", parts[0] + "." + flip(parts[1], 3) + "." + parts[2], ErrBadSignature},
		{"signature truncated", parts[0] + "." + parts[1] + "." + parts[2][:40], ErrBadSignature},
		{"signature empty", parts[0] + "." + parts[1] + ".", ErrBadSignature},
		{"signature with CR LF", parts[0] + "." + parts[1] + "." + parts[2][:20] + "\r\n" + parts[2][20:], ErrMalformed},
		{"padded", jws + "=", ErrMalformed},
		{"four parts", jws + ".", ErrMalformed},
	} {
		if _, err := verifyJWS(ks, []byte(tc.jws)); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// A minimal JWS signer, written apart from the verifier.

type signer struct {
	sign func(input []byte) []byte
}

func edSigner(priv ed25519.PrivateKey) signer {
	return signer{func(in []byte) []byte { return ed25519.Sign(priv, in) }}
}

func ecSigner(priv *ecdsa.PrivateKey) signer {
	return signer{func(in []byte) []byte {
		h := sha256.Sum256(in)
		r, s, err := ecdsa.Sign(rand.Reader, priv, h[:])
		if err != nil {
			panic(err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig
	}}
}

func hmacSigner(secret []byte) signer {
	return signer{func(in []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(in)
		return m.Sum(nil)
	}}
}

func signJWS(header, payload string, s signer) string {
	in := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	return in + "." + base64.RawURLEncoding.EncodeToString(s.sign([]byte(in)))
}

func writeFile(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func edJWK(kid string, pub ed25519.PublicKey) string {
	return fmt.Sprintf(`{"kty":"OKP","crv":"Ed25519","kid":%q,"use":"sig","x":%q}`, kid, base64.RawURLEncoding.EncodeToString(pub))
}

func ecJWK(kid string, pub *ecdsa.PublicKey) string {
	b, _ := pub.Bytes()
	return fmt.Sprintf(`{"kty":"EC","crv":"P-256","kid":%q,"alg":"ES256","x":%q,"y":%q}`, kid,
		base64.RawURLEncoding.EncodeToString(b[1:33]), base64.RawURLEncoding.EncodeToString(b[33:]))
}

// jwtFixture is a verifier over a JWK Set of one Ed25519 and one P-256 key,
// and their private halves.
type jwtFixture struct {
	v    *JWTVerifier
	path string
	ed   ed25519.PrivateKey
	ec   *ecdsa.PrivateKey
	now  time.Time
}

const (
	testIssuer   = "https://idp.example.test"
	testAudience = "frontdoor"
)

func newJWTFixture(t testing.TB) *jwtFixture {
	t.Helper()
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f := &jwtFixture{ed: ed, ec: ec, now: time.Unix(1_700_000_000, 0)}
	f.path = writeFile(t, `{"keys":[`+edJWK("ed1", ed.Public().(ed25519.PublicKey))+`,`+ecJWK("ec1", &ec.PublicKey)+`]}`)
	v, err := NewJWTVerifier(JWTConfig{JWKSFile: f.path, Issuer: testIssuer, Audience: testAudience})
	if err != nil {
		t.Fatal(err)
	}
	f.v = v
	return f
}

// claims returns a valid claims set at f.now, with changes: a key mapped
// to nil is removed.
func (f *jwtFixture) claims(changes map[string]any) string {
	c := map[string]any{
		"iss": testIssuer, "aud": testAudience, "sub": "alice@example.test",
		"exp": f.now.Unix() + 600, "nbf": f.now.Unix() - 10, "iat": f.now.Unix() - 10,
	}
	for k, v := range changes {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	b, _ := json.Marshal(c)
	return string(b)
}

func (f *jwtFixture) ed25519Token(changes map[string]any) string {
	return signJWS(`{"alg":"EdDSA","kid":"ed1","typ":"JWT"}`, f.claims(changes), edSigner(f.ed))
}

func (f *jwtFixture) es256Token(changes map[string]any) string {
	return signJWS(`{"alg":"ES256","kid":"ec1"}`, f.claims(changes), ecSigner(f.ec))
}

func TestJWTVerify(t *testing.T) {
	f := newJWTFixture(t)
	for name, tok := range map[string]string{"EdDSA": f.ed25519Token(nil), "ES256": f.es256Token(nil)} {
		res, err := f.v.Verify([]byte(tok), f.now)
		if err != nil || res.User != "alice@example.test" || !res.Expires.Equal(f.now.Add(600*time.Second)) {
			t.Errorf("%s: %+v, %v", name, res, err)
		}
	}
	// RFC 9864's fully-specified name for the same algorithm.
	tok := signJWS(`{"alg":"Ed25519","kid":"ed1"}`, f.claims(nil), edSigner(f.ed))
	if _, err := f.v.Verify([]byte(tok), f.now); err != nil {
		t.Errorf(`alg "Ed25519": %v`, err)
	}
	// Whitespace in the JSON is the producer's choice.
	tok = signJWS("{ \"alg\" : \"ES256\" ,\n \"kid\":\"ec1\" }", strings.ReplaceAll(f.claims(nil), `":`, `" : `), ecSigner(f.ec))
	if _, err := f.v.Verify([]byte(tok), f.now); err != nil {
		t.Errorf("JSON with spaces: %v", err)
	}
}

func TestJWTClaims(t *testing.T) {
	f := newJWTFixture(t)
	n := f.now.Unix()
	for _, tc := range []struct {
		name    string
		changes map[string]any
		want    error
	}{
		{"expired", map[string]any{"exp": n - 61}, ErrExpired},
		{"expired within leeway", map[string]any{"exp": n - 59}, nil},
		{"expires now plus leeway", map[string]any{"exp": n - 60}, ErrExpired},
		{"fractional exp", map[string]any{"exp": float64(n) + 0.5}, nil},
		{"no exp", map[string]any{"exp": nil}, ErrMalformed},
		{"exp a string", map[string]any{"exp": "soon"}, ErrMalformed},
		{"exp null", map[string]any{"exp": json.RawMessage("null")}, ErrMalformed},
		{"exp negative", map[string]any{"exp": -1}, ErrMalformed},
		{"exp beyond 9999", map[string]any{"exp": 1e20}, ErrMalformed},
		{"nbf in the future", map[string]any{"nbf": n + 120}, ErrNotYetValid},
		{"nbf within leeway", map[string]any{"nbf": n + 50}, nil},
		{"no nbf", map[string]any{"nbf": nil}, nil},
		{"iat in the future", map[string]any{"iat": n + 120}, ErrNotYetValid},
		{"no iat", map[string]any{"iat": nil}, nil},
		{"wrong issuer", map[string]any{"iss": "https://evil.example"}, ErrIssuer},
		{"issuer differs in case", map[string]any{"iss": strings.ToUpper(testIssuer)}, ErrIssuer},
		{"no issuer", map[string]any{"iss": nil}, ErrIssuer},
		{"issuer not a string", map[string]any{"iss": 7}, ErrIssuer},
		{"wrong audience", map[string]any{"aud": "owa"}, ErrAudience},
		{"audience array with ours", map[string]any{"aud": []string{"owa", testAudience}}, nil},
		{"audience array without ours", map[string]any{"aud": []string{"owa", "ews"}}, ErrAudience},
		{"audience array of non-strings", map[string]any{"aud": []any{1, testAudience}}, ErrAudience},
		{"no audience", map[string]any{"aud": nil}, ErrAudience},
		{"no sub", map[string]any{"sub": nil}, ErrMissingUser},
		{"empty sub", map[string]any{"sub": ""}, ErrMissingUser},
		{"sub not a string", map[string]any{"sub": 42}, ErrMissingUser},
		// Claim names are case-sensitive: "EXP" is not exp.
		{"EXP instead of exp", map[string]any{"exp": nil, "EXP": n + 600}, ErrMalformed},
		{"Aud instead of aud", map[string]any{"aud": nil, "Aud": testAudience}, ErrAudience},
	} {
		for alg, tok := range map[string]string{"EdDSA": f.ed25519Token(tc.changes), "ES256": f.es256Token(tc.changes)} {
			_, err := f.v.Verify([]byte(tok), f.now)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("%s (%s): %v, want %v", tc.name, alg, err, tc.want)
			}
		}
	}
	for _, payload := range []string{"null", "[]", `"x"`, "{", `{"exp":1} x`} {
		tok := signJWS(`{"alg":"EdDSA"}`, payload, edSigner(f.ed))
		if _, err := f.v.Verify([]byte(tok), f.now); !errors.Is(err, ErrMalformed) {
			t.Errorf("claims %q: %v, want ErrMalformed", payload, err)
		}
	}
}

func TestJWTUserClaimAndLeeway(t *testing.T) {
	f := newJWTFixture(t)
	v, err := NewJWTVerifier(JWTConfig{JWKSFile: f.path, Issuer: testIssuer, Audience: testAudience, UserClaim: "preferred_username", Leeway: -1})
	if err != nil {
		t.Fatal(err)
	}
	tok := f.ed25519Token(map[string]any{"preferred_username": "alice", "exp": f.now.Unix()})
	if _, err := v.Verify([]byte(tok), f.now.Add(-time.Nanosecond)); err != nil {
		t.Errorf("just before exp: %v", err)
	}
	if _, err := v.Verify([]byte(tok), f.now); !errors.Is(err, ErrExpired) {
		t.Errorf("at exp without leeway: %v, want ErrExpired", err)
	}
	res, err := v.Verify([]byte(f.ed25519Token(map[string]any{"preferred_username": "alice"})), f.now)
	if err != nil || res.User != "alice" {
		t.Errorf("preferred_username: %+v, %v", res, err)
	}
	if _, err := v.Verify([]byte(f.ed25519Token(nil)), f.now); !errors.Is(err, ErrMissingUser) {
		t.Errorf("without preferred_username: %v, want ErrMissingUser", err)
	}
}

// The header's alg never chooses how a key is used, and a token never
// supplies its own key.
func TestJWTAlgorithmAndKeySelection(t *testing.T) {
	f := newJWTFixture(t)
	edPub := []byte(f.ed.Public().(ed25519.PublicKey))
	claims := f.claims(nil)
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + base64.RawURLEncoding.EncodeToString([]byte(claims)) + "."
	_, attacker, _ := ed25519.GenerateKey(rand.Reader)
	attackerJWK := edJWK("ed1", attacker.Public().(ed25519.PublicKey))
	for _, tc := range []struct {
		name, tok string
		want      error
	}{
		{"alg none", none, ErrUnsupportedAlg},
		{"alg None", strings.Replace(none, base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)), base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"None"}`)), 1), ErrUnsupportedAlg},
		// The classic confusion: HMAC keyed with the public key's bytes,
		// or with the JWK Set's text for the key.
		{"HS256 keyed with the public key", signJWS(`{"alg":"HS256","kid":"ed1"}`, claims, hmacSigner(edPub)), ErrUnsupportedAlg},
		{"HS256 keyed with the JWK", signJWS(`{"alg":"HS256"}`, claims, hmacSigner([]byte(edJWK("ed1", edPub)))), ErrUnsupportedAlg},
		{"RS256", signJWS(`{"alg":"RS256","kid":"ed1"}`, claims, edSigner(f.ed)), ErrUnsupportedAlg},
		{"ES384", signJWS(`{"alg":"ES384","kid":"ec1"}`, claims, ecSigner(f.ec)), ErrUnsupportedAlg},
		{"Ed448", signJWS(`{"alg":"Ed448","kid":"ed1"}`, claims, edSigner(f.ed)), ErrUnsupportedAlg},
		{"lower-case alg", signJWS(`{"alg":"es256","kid":"ec1"}`, claims, ecSigner(f.ec)), ErrUnsupportedAlg},
		// A kid naming a key of the other type.
		{"EdDSA with the EC key's kid", signJWS(`{"alg":"EdDSA","kid":"ec1"}`, claims, edSigner(f.ed)), ErrUnknownKey},
		{"ES256 with the Ed25519 key's kid", signJWS(`{"alg":"ES256","kid":"ed1"}`, claims, ecSigner(f.ec)), ErrUnknownKey},
		{"unknown kid", signJWS(`{"alg":"EdDSA","kid":"ed2"}`, claims, edSigner(f.ed)), ErrUnknownKey},
		{"kid not a string", signJWS(`{"alg":"EdDSA","kid":1}`, claims, edSigner(f.ed)), ErrMalformed},
		{"kid null", signJWS(`{"alg":"EdDSA","kid":null}`, claims, edSigner(f.ed)), ErrMalformed},
		// One key per algorithm: no kid selects it.
		{"no kid, EdDSA", signJWS(`{"alg":"EdDSA"}`, claims, edSigner(f.ed)), nil},
		{"no kid, ES256", signJWS(`{"alg":"ES256"}`, claims, ecSigner(f.ec)), nil},
		// An embedded key is ignored (CVE-2018-0114's attack).
		{"embedded jwk", signJWS(`{"alg":"EdDSA","kid":"ed1","jwk":`+attackerJWK+`}`, claims, edSigner(attacker)), ErrBadSignature},
		{"jku", signJWS(`{"alg":"EdDSA","jku":"https://evil.example/jwks"}`, claims, edSigner(attacker)), ErrBadSignature},
		{"signed by another key", signJWS(`{"alg":"ES256","kid":"ec1"}`, claims, ecSigner(mustECKey())), ErrBadSignature},
		{"crit", signJWS(`{"alg":"EdDSA","kid":"ed1","crit":["exp"],"exp":1}`, claims, edSigner(f.ed)), ErrMalformed},
		{"b64 false", signJWS(`{"alg":"EdDSA","kid":"ed1","b64":false,"crit":["b64"]}`, claims, edSigner(f.ed)), ErrMalformed},
		{"ALG instead of alg", signJWS(`{"ALG":"EdDSA","kid":"ed1"}`, claims, edSigner(f.ed)), ErrMalformed},
		{"alg not a string", signJWS(`{"alg":["EdDSA"]}`, claims, edSigner(f.ed)), ErrMalformed},
		{"header not an object", signJWS(`"EdDSA"`, claims, edSigner(f.ed)), ErrMalformed},
		{"header null", signJWS(`null`, claims, edSigner(f.ed)), ErrMalformed},
		{"one part", "eyJhbGciOiJFZERTQSJ9", ErrMalformed},
		{"JWE's five parts", "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", ErrMalformed},
		{"empty", "", ErrMalformed},
	} {
		_, err := f.v.Verify([]byte(tc.tok), f.now)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func mustECKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func TestJWTKeyAmbiguity(t *testing.T) {
	_, ed1, _ := ed25519.GenerateKey(rand.Reader)
	_, ed2, _ := ed25519.GenerateKey(rand.Reader)
	path := writeFile(t, `{"keys":[`+edJWK("a", ed1.Public().(ed25519.PublicKey))+`,`+edJWK("b", ed2.Public().(ed25519.PublicKey))+`]}`)
	v, err := NewJWTVerifier(JWTConfig{JWKSFile: path, Issuer: testIssuer, Audience: testAudience})
	if err != nil {
		t.Fatal(err)
	}
	f := &jwtFixture{now: time.Unix(1_700_000_000, 0)}
	if _, err := v.Verify([]byte(signJWS(`{"alg":"EdDSA"}`, f.claims(nil), edSigner(ed2))), f.now); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("no kid with two Ed25519 keys: %v, want ErrUnknownKey", err)
	}
	if _, err := v.Verify([]byte(signJWS(`{"alg":"EdDSA","kid":"b"}`, f.claims(nil), edSigner(ed2))), f.now); err != nil {
		t.Errorf("kid b: %v", err)
	}
}

func TestJWTTokenSizeLimit(t *testing.T) {
	f := newJWTFixture(t)
	pad := strings.Repeat("x", 8<<10)
	big := f.ed25519Token(map[string]any{"pad": pad})
	if _, err := f.v.Verify([]byte(big), f.now); !errors.Is(err, ErrTooLarge) {
		t.Errorf("%d-byte token: %v, want ErrTooLarge", len(big), err)
	}
	v, err := NewJWTVerifier(JWTConfig{JWKSFile: f.path, Issuer: testIssuer, Audience: testAudience, MaxTokenBytes: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify([]byte(big), f.now); err != nil {
		t.Errorf("%d-byte token with a 16 KiB limit: %v", len(big), err)
	}
}

func TestJWKSParsing(t *testing.T) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	edPub := ed.Public().(ed25519.PublicKey)
	good := edJWK("ed1", edPub)
	ec := mustECKey()
	ecb, _ := ec.PublicKey.Bytes()
	x, y := base64.RawURLEncoding.EncodeToString(ecb[1:33]), base64.RawURLEncoding.EncodeToString(ecb[33:])
	offCurve := append([]byte(nil), ecb[33:]...)
	offCurve[31] ^= 1
	rsa := `{"kty":"RSA","kid":"r1","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB"}`
	for _, tc := range []struct {
		name          string
		jwks          string
		used, skipped int // used 0: want an error
	}{
		{"one key", `{"keys":[` + good + `]}`, 1, 0},
		{"RSA and encryption keys skipped", `{"keys":[` + rsa + `,` + good + `,{"kty":"EC","crv":"P-256","use":"enc","x":"` + x + `","y":"` + y + `"},{"kty":"OKP","crv":"X25519","x":"` + rfc8037X + `"}]}`, 1, 3},
		{"key_ops without verify skipped", `{"keys":[` + good + `,{"kty":"EC","crv":"P-256","key_ops":["encrypt"],"x":"` + x + `","y":"` + y + `"}]}`, 1, 1},
		{"P-384 skipped", `{"keys":[` + good + `,{"kty":"EC","crv":"P-384","x":"` + x + `","y":"` + y + `"}]}`, 1, 1},
		{"only RSA", `{"keys":[` + rsa + `]}`, 0, 0},
		{"empty", `{"keys":[]}`, 0, 0},
		{"not JSON", `{"keys":[`, 0, 0},
		{"private Ed25519 key", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + rfc8037X + `","d":"` + rfc8037D + `"}]}`, 0, 0},
		{"private RSA key", `{"keys":[` + good + `,{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB"}]}`, 0, 0},
		{"symmetric key", `{"keys":[` + good + `,{"kty":"oct","k":"c2VjcmV0"}]}`, 0, 0},
		{"short x", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}`, 0, 0},
		{"padded x", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + rfc8037X + `="}]}`, 0, 0},
		{"EC point off the curve", `{"keys":[{"kty":"EC","crv":"P-256","x":"` + x + `","y":"` + base64.RawURLEncoding.EncodeToString(offCurve) + `"}]}`, 0, 0},
		{"EC without y", `{"keys":[{"kty":"EC","crv":"P-256","x":"` + x + `"}]}`, 0, 0},
		{"alg contradicts an OKP key", `{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"ES256","x":"` + rfc8037X + `"}]}`, 0, 0},
		{"alg contradicts an EC key", `{"keys":[{"kty":"EC","crv":"P-256","alg":"EdDSA","x":"` + x + `","y":"` + y + `"}]}`, 0, 0},
		{"alg Ed25519 on an OKP key", `{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"Ed25519","x":"` + rfc8037X + `"}]}`, 1, 0},
		{"duplicate kid", `{"keys":[` + good + `,` + edJWK("ed1", edPub) + `]}`, 0, 0},
		{"too many keys", `{"keys":[` + strings.Repeat(rsa+",", 100) + good + `]}`, 0, 0},
	} {
		ks, err := parseJWKS([]byte(tc.jwks))
		switch {
		case tc.used == 0 && err == nil:
			t.Errorf("%s: accepted", tc.name)
		case tc.used > 0 && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case err == nil && (len(ks.keys) != tc.used || ks.skipped != tc.skipped):
			t.Errorf("%s: %d used, %d skipped; want %d, %d", tc.name, len(ks.keys), ks.skipped, tc.used, tc.skipped)
		}
	}
}

// Reload picks up rotated keys, and keeps the old ones when the new file
// is bad.
func TestJWKSReload(t *testing.T) {
	f := newJWTFixture(t)
	_, next, _ := ed25519.GenerateKey(rand.Reader)
	rotated := signJWS(`{"alg":"EdDSA","kid":"ed2"}`, f.claims(nil), edSigner(next))
	old := []byte(f.ed25519Token(nil))
	if _, err := f.v.Verify([]byte(rotated), f.now); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("before reload: %v", err)
	}
	for _, bad := range []string{"", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"ed2"}]}`} {
		if err := os.WriteFile(f.path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := f.v.Reload(); err == nil {
			t.Fatalf("Reload accepted %q", bad)
		}
		if _, err := f.v.Verify(old, f.now); err != nil {
			t.Fatalf("after a failed reload the old key is gone: %v", err)
		}
	}
	os.Remove(f.path)
	if err := f.v.Reload(); err == nil {
		t.Fatal("Reload of a missing file succeeded")
	}
	if err := os.WriteFile(f.path, []byte(`{"keys":[`+edJWK("ed2", next.Public().(ed25519.PublicKey))+`]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.v.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Verify([]byte(rotated), f.now); err != nil {
		t.Errorf("after reload, the new key: %v", err)
	}
	if _, err := f.v.Verify(old, f.now); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("after reload, the removed key: %v, want ErrUnknownKey", err)
	}
	if used, skipped := f.v.Keys(); used != 1 || skipped != 0 {
		t.Errorf("Keys() = %d, %d", used, skipped)
	}
}

func TestJWTConfig(t *testing.T) {
	f := newJWTFixture(t)
	for _, cfg := range []JWTConfig{
		{Issuer: testIssuer, Audience: testAudience},
		{JWKSFile: f.path, Audience: testAudience},
		{JWKSFile: f.path, Issuer: testIssuer},
		{JWKSFile: filepath.Join(t.TempDir(), "missing.json"), Issuer: testIssuer, Audience: testAudience},
	} {
		if _, err := NewJWTVerifier(cfg); err == nil {
			t.Errorf("NewJWTVerifier(%+v) accepted", cfg)
		}
	}
	c := f.v.Config()
	if c.UserClaim != "sub" || c.Leeway != 60*time.Second || c.MaxTokenBytes != 8<<10 {
		t.Errorf("defaults %+v", c)
	}
}

// FuzzVerify mutates valid tokens: a mutant must never verify (every part
// has one encoding, and a signature covers the rest), and nothing may
// panic.
func FuzzVerify(f *testing.F) {
	fx := newJWTFixture(f)
	ed, es := fx.ed25519Token(nil), fx.es256Token(nil)
	f.Add([]byte(ed))
	f.Add([]byte(es))
	f.Add([]byte(rfc8037JWS))
	f.Fuzz(func(t *testing.T, tok []byte) {
		res, err := fx.v.Verify(tok, fx.now)
		// ECDSA signatures are malleable ((r, s) and (r, n-s) both verify),
		// but a random mutation will not find n-s.
		if err == nil && string(tok) != ed && string(tok) != es {
			t.Fatalf("mutant verified: %q -> %+v", tok, res)
		}
	})
}

func BenchmarkJWTVerify(b *testing.B) {
	f := newJWTFixture(b)
	for alg, tok := range map[string][]byte{"EdDSA": []byte(f.ed25519Token(nil)), "ES256": []byte(f.es256Token(nil))} {
		b.Run(alg, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.v.Verify(tok, f.now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
