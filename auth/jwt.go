package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"sync/atomic"
	"time"
)

// JWTConfig configures a JWTVerifier.
type JWTConfig struct {
	// JWKSFile is the path of the JWK Set (RFC 7517 section 5) holding the
	// identity provider's public keys. Required.
	JWKSFile string
	// Issuer must equal the token's "iss" claim exactly (RFC 7519 section
	// 4.1.1). Required: a verifier that trusts any issuer trusts anyone the
	// keys' owner signs for (RFC 8725 section 3.8).
	Issuer string
	// Audience must be the token's "aud" claim, or one of its elements
	// (RFC 7519 section 4.1.3). Required, so a token minted for another
	// service cannot be replayed here (RFC 8725 section 3.9).
	Audience string
	// UserClaim names the claim holding the user name. Default "sub".
	UserClaim string
	// Leeway is the clock skew allowed on exp, nbf and iat. Default 60s;
	// negative for none.
	Leeway time.Duration
	// MaxTokenBytes bounds the token accepted. Default 8 KiB.
	MaxTokenBytes int
}

// Result is a verified token's identity.
type Result struct {
	User string
	// Expires is the token's "exp": a cache entry must not outlive it.
	Expires time.Time
}

// Verify's errors, one per reason, for counters and logs. None carries
// text from the token.
var (
	ErrTooLarge       = errors.New("auth: token larger than MaxTokenBytes")
	ErrMalformed      = errors.New("auth: malformed token")
	ErrUnsupportedAlg = errors.New("auth: token algorithm not accepted")
	ErrUnknownKey     = errors.New("auth: no key for the token's kid and algorithm")
	ErrBadSignature   = errors.New("auth: bad token signature")
	ErrExpired        = errors.New("auth: token expired")
	ErrNotYetValid    = errors.New("auth: token not yet valid")
	ErrIssuer         = errors.New("auth: token issuer not accepted")
	ErrAudience       = errors.New("auth: token audience not accepted")
	ErrMissingUser    = errors.New("auth: token has no user claim")
)

// JWTVerifier verifies bearer tokens that are JWTs (RFC 7519) in the JWS
// compact serialization (RFC 7515 section 7.1), signed with Ed25519 or
// ES256 by a key in the configured JWK Set. It is safe for concurrent use;
// Verify is meant for the worker Pool, not the event loop (it allocates,
// and a signature check costs tens of microseconds).
//
// What it refuses, beyond bad signatures:
//
//   - every other alg: "none", HMAC (which would otherwise verify a token
//     "signed" with the public key as the secret), RSA, other curves;
//   - an alg that does not fit the key kid selects: a key verifies only
//     the algorithm of its type and curve (RFC 8725 section 3.1);
//   - keys the token brings: "jwk", "jku", "x5u" and "x5c" are ignored,
//     keys come only from the JWK Set (RFC 8725 section 3.10), and kid is
//     only a map key;
//   - "crit": it names extensions that must be understood (RFC 7515
//     section 4.1.11), and none is;
//   - a token without "exp" (an endless bearer token is a password that
//     cannot be changed), or outside exp, nbf and iat give or take the
//     leeway;
//   - an issuer or audience other than the configured ones, and a token
//     without the user claim.
//
// The header's "typ" is not checked: providers send "JWT", "at+jwt" (RFC
// 9068) or nothing, and the issuer and audience checks already keep other
// kinds of token from the same provider out unless they name this
// audience.
//
// Header parameter and claim names are matched exactly (RFC 7515 section
// 4, RFC 7519 section 4): the JSON is read into maps, not structs, because
// encoding/json would match a struct field to "EXP" or "Aud" as well. A
// duplicated name takes its last value, which RFC 7519 section 4 permits.
type JWTVerifier struct {
	cfg    JWTConfig
	leeway time.Duration
	keys   atomic.Pointer[keySet]
}

// NewJWTVerifier checks cfg, fills in its defaults and loads the JWK Set.
func NewJWTVerifier(cfg JWTConfig) (*JWTVerifier, error) {
	if cfg.JWKSFile == "" || cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("auth: JWT verification needs a JWKS file, an issuer and an audience")
	}
	if cfg.UserClaim == "" {
		cfg.UserClaim = "sub"
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 60 * time.Second
	}
	if cfg.MaxTokenBytes <= 0 {
		cfg.MaxTokenBytes = 8 << 10
	}
	v := &JWTVerifier{cfg: cfg, leeway: max(cfg.Leeway, 0)}
	if err := v.Reload(); err != nil {
		return nil, err
	}
	return v, nil
}

// Config returns the configuration in force, defaults filled in.
func (v *JWTVerifier) Config() JWTConfig { return v.cfg }

// Reload reads the JWK Set file again, for key rotation. If the file cannot
// be read or is not a valid set, Reload returns the error and the keys in
// use stay in use: a bad edit must not turn away every client.
func (v *JWTVerifier) Reload() error {
	ks, err := readJWKS(v.cfg.JWKSFile)
	if err != nil {
		return fmt.Errorf("auth: JWK Set %s: %w", v.cfg.JWKSFile, err)
	}
	v.keys.Store(ks)
	return nil
}

// Keys returns how many keys of the JWK Set are in use, and how many were
// skipped as not for Ed25519 or ES256 signatures.
func (v *JWTVerifier) Keys() (used, skipped int) {
	ks := v.keys.Load()
	return len(ks.keys), ks.skipped
}

// Verify checks token at time now and returns who it identifies, or one of
// the Err values above (possibly wrapped with detail; test with
// errors.Is). It does not keep token, which may be reused after it returns.
func (v *JWTVerifier) Verify(token []byte, now time.Time) (Result, error) {
	if len(token) > v.cfg.MaxTokenBytes {
		return Result{}, ErrTooLarge
	}
	payload, err := verifyJWS(v.keys.Load(), token)
	if err != nil {
		return Result{}, err
	}
	return v.checkClaims(payload, now)
}

// verifyJWS checks a compact JWS against ks and returns its payload. It is
// the signature layer alone, which the RFC examples exercise.
func verifyJWS(ks *keySet, token []byte) ([]byte, error) {
	// Exactly three parts (RFC 7515 section 7.1); five would be a JWE.
	dot1 := bytes.IndexByte(token, '.')
	if dot1 < 0 {
		return nil, fmt.Errorf("%w: not three parts", ErrMalformed)
	}
	dot2 := dot1 + 1 + bytes.IndexByte(token[dot1+1:], '.')
	if dot2 == dot1 || bytes.IndexByte(token[dot2+1:], '.') >= 0 {
		return nil, fmt.Errorf("%w: not three parts", ErrMalformed)
	}
	header, err := decodePart(token[:dot1])
	if err != nil {
		return nil, err
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(header, &hdr); err != nil || hdr == nil {
		return nil, fmt.Errorf("%w: header is not a JSON object", ErrMalformed)
	}
	var algName, kid string
	if err := stringMember(hdr, "alg", &algName); err != nil || algName == "" {
		return nil, fmt.Errorf("%w: no alg", ErrMalformed)
	}
	if err := stringMember(hdr, "kid", &kid); err != nil {
		return nil, err
	}
	if _, ok := hdr["crit"]; ok {
		return nil, fmt.Errorf("%w: crit names extensions this verifier does not implement", ErrMalformed)
	}
	alg := parseAlg(algName)
	if alg == algUnsupported {
		return nil, ErrUnsupportedAlg
	}
	key := ks.find(kid, alg)
	if key == nil {
		return nil, ErrUnknownKey
	}
	sig, err := decodePart(token[dot2+1:])
	if err != nil {
		return nil, err
	}
	if !verifySignature(key, token[:dot2], sig) {
		return nil, ErrBadSignature
	}
	return decodePart(token[dot1+1 : dot2])
}

// verifySignature checks sig over the JWS signing input (the ASCII of the
// first two parts and the dot between, RFC 7515 section 5.2) with key, by
// key's one algorithm.
func verifySignature(key *publicKey, input, sig []byte) bool {
	switch key.alg {
	case algEd25519:
		// RFC 8037 section 3.1: the signature is Ed25519's 64 bytes over
		// the signing input itself. crypto/ed25519 refuses non-canonical
		// encodings, so signatures are not malleable.
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(key.ed, input, sig)
	case algES256:
		// RFC 7518 section 3.4: R and S as 32 big-endian bytes each,
		// concatenated; not the ASN.1 DER that crypto/ecdsa's
		// VerifyASN1 expects. Verify refuses R or S out of [1, n-1].
		if len(sig) != 64 {
			return false
		}
		h := sha256.Sum256(input)
		r := new(big.Int).SetBytes(sig[:32])
		s := new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(key.ec, h[:], r, s)
	}
	return false
}

// decodePart decodes one base64url part. The alphabet is checked first
// because the decoder silently skips CR and LF.
func decodePart(b []byte) ([]byte, error) {
	for _, c := range b {
		if !isAlnum(c) && c != '-' && c != '_' {
			return nil, fmt.Errorf("%w: not base64url", ErrMalformed)
		}
	}
	out := make([]byte, b64url.DecodedLen(len(b)))
	n, err := b64url.Decode(out, b)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64url", ErrMalformed)
	}
	return out[:n], nil
}

// checkClaims applies the claim rules to a verified payload.
func (v *JWTVerifier) checkClaims(payload []byte, now time.Time) (Result, error) {
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(payload, &claims); err != nil || claims == nil {
		return Result{}, fmt.Errorf("%w: claims are not a JSON object", ErrMalformed)
	}
	exp, ok, err := numericDate(claims, "exp")
	if err != nil {
		return Result{}, err
	}
	if !ok {
		return Result{}, fmt.Errorf("%w: no exp", ErrMalformed)
	}
	// RFC 7519 section 4.1.4: valid only before exp.
	if !now.Before(exp.Add(v.leeway)) {
		return Result{}, ErrExpired
	}
	// Section 4.1.5: valid only at or after nbf.
	if nbf, ok, err := numericDate(claims, "nbf"); err != nil {
		return Result{}, err
	} else if ok && now.Before(nbf.Add(-v.leeway)) {
		return Result{}, ErrNotYetValid
	}
	// Section 4.1.6 sets no rule for iat, but a token issued in the future
	// comes from a wrong clock or a forger.
	if iat, ok, err := numericDate(claims, "iat"); err != nil {
		return Result{}, err
	} else if ok && iat.After(now.Add(v.leeway)) {
		return Result{}, ErrNotYetValid
	}
	var iss string
	if err := stringMember(claims, "iss", &iss); err != nil || iss != v.cfg.Issuer {
		return Result{}, ErrIssuer
	}
	if !v.audienceOK(claims["aud"]) {
		return Result{}, ErrAudience
	}
	var user string
	if err := stringMember(claims, v.cfg.UserClaim, &user); err != nil || user == "" {
		return Result{}, ErrMissingUser
	}
	return Result{User: user, Expires: exp}, nil
}

// audienceOK reports whether aud, a string or an array of strings (RFC 7519
// section 4.1.3), is or contains the configured audience.
func (v *JWTVerifier) audienceOK(aud json.RawMessage) bool {
	if aud == nil {
		return false
	}
	var one string
	if json.Unmarshal(aud, &one) == nil {
		return one == v.cfg.Audience
	}
	var many []string
	if json.Unmarshal(aud, &many) != nil {
		return false
	}
	for _, a := range many {
		if a == v.cfg.Audience {
			return true
		}
	}
	return false
}

// stringMember sets *dst to the string member name of obj, if present.
func stringMember(obj map[string]json.RawMessage, name string, dst *string) error {
	raw, ok := obj[name]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil || raw[0] != '"' {
		return fmt.Errorf("%w: %s is not a string", ErrMalformed, name)
	}
	return nil
}

// maxNumericDate is the end of year 9999: later dates are not meant, and
// keeping within it keeps the conversion to time.Time exact.
const maxNumericDate = 253402300799

// numericDate reads a NumericDate claim: seconds since the epoch, possibly
// fractional (RFC 7519 section 2).
func numericDate(claims map[string]json.RawMessage, name string) (t time.Time, ok bool, err error) {
	raw, present := claims[name]
	if !present {
		return time.Time{}, false, nil
	}
	var f float64
	if json.Unmarshal(raw, &f) != nil || raw[0] == 'n' || !(f >= 0 && f <= maxNumericDate) {
		return time.Time{}, false, fmt.Errorf("%w: %s is not a NumericDate", ErrMalformed, name)
	}
	sec := math.Floor(f)
	return time.Unix(int64(sec), int64((f-sec)*1e9)), true, nil
}
