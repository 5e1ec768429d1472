package identity

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// DefaultLeeway is the clock skew a new Verifier tolerates between the
// gateway that signed and the backend that verifies.
const DefaultLeeway = 60 * time.Second

// Verifier checks assertions against a fixed set of public keys. It keeps
// no state between calls (nothing is cached) and is safe for concurrent
// use, provided its fields are not changed once it is in use.
type Verifier struct {
	// Audience is the "aud" an assertion must name. NewVerifier sets
	// DefaultAudience.
	Audience string
	// Leeway is how far "exp" may lie in the past and "iat" or "nbf" in the
	// future (RFC 7519 sections 4.1.4 and 4.1.5 allow "some small leeway").
	// NewVerifier sets DefaultLeeway.
	Leeway time.Duration

	keys map[string]*PublicKey // by kid; never changed after NewVerifier
	ids  []string              // kids in the order given
}

// NewVerifier returns a Verifier that accepts assertions signed by any of
// keys, each with the one algorithm it is bound to. Key ids must be unique.
func NewVerifier(keys ...*PublicKey) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("identity: a verifier needs at least one key")
	}
	v := &Verifier{Audience: DefaultAudience, Leeway: DefaultLeeway, keys: make(map[string]*PublicKey, len(keys))}
	for _, k := range keys {
		if k == nil {
			return nil, errors.New("identity: nil key")
		}
		if _, dup := v.keys[k.kid]; dup {
			return nil, fmt.Errorf("identity: key id %q appears twice", k.kid)
		}
		v.keys[k.kid] = k
		v.ids = append(v.ids, k.kid)
	}
	return v, nil
}

// LoadVerifier reads a public key file (see ReadPublicKeyFile) and returns
// a Verifier for every key in it. The file is read once: to pick up a new
// set, load a new Verifier.
func LoadVerifier(path string) (*Verifier, error) {
	keys, err := ReadPublicKeyFile(path)
	if err != nil {
		return nil, err
	}
	return NewVerifier(keys...)
}

// KeyIDs returns the ids of the keys v accepts, in the order given.
func (v *Verifier) KeyIDs() []string { return slices.Clone(v.ids) }

// Verify checks the assertion value at time now and returns its claims.
// In order: the length (at most MaxAssertionSize), the compact
// serialization, the header ("typ" must be Type; "alg" must be supported;
// no "crit"), the key (the "kid" must name one of v's keys, bound to the
// header's "alg"), the signature, and only then the claims set: "sub",
// "aud", "iat" and "exp" are required, "aud" must name v.Audience, and
// now must be before "exp" + Leeway and not before "iat" - Leeway (and
// "nbf" - Leeway, if present).
//
// Every error wraps one of ErrMalformed, ErrUnknownKey, ErrBadSignature,
// ErrExpired, ErrNotYetValid or ErrAudience; see Reason.
func (v *Verifier) Verify(value []byte, now time.Time) (Claims, error) {
	c, err := parseCompact(value)
	if err != nil {
		return Claims{}, err
	}
	if !typeMatches(c.header.typ, Type) {
		return Claims{}, refuse(ErrMalformed, "typ %q, want %q", c.header.typ, Type)
	}
	k, ok := v.keys[c.header.kid]
	if !ok {
		return Claims{}, refuse(ErrUnknownKey, "no key %q", c.header.kid)
	}
	// The key decides the algorithm; the header only has to agree. Taking
	// the algorithm from the header is the classic JWT "alg confusion".
	if k.alg != c.header.alg {
		return Claims{}, refuse(ErrUnknownKey, "key %q is for %s, the header says %s", k.kid, k.alg, c.header.alg)
	}
	if !k.verify(c.signingInput, c.signature) {
		return Claims{}, refuse(ErrBadSignature, "key %q (%s)", k.kid, k.alg)
	}
	d, err := decodeClaims(c.payload)
	if err != nil {
		return Claims{}, err
	}
	if !slices.Contains(d.audiences, v.Audience) {
		return Claims{}, refuse(ErrAudience, "aud %q, want %q", d.audiences, v.Audience)
	}
	d.Audience = v.Audience
	// RFC 7519 section 4.1.4: valid only while now is before "exp".
	if !now.Before(d.Expires.Add(v.Leeway)) {
		return Claims{}, refuse(ErrExpired, "exp %s is %s before now (leeway %s)",
			d.Expires.Format(time.RFC3339), now.Sub(d.Expires).Round(time.Second), v.Leeway)
	}
	if d.IssuedAt.After(now.Add(v.Leeway)) {
		return Claims{}, refuse(ErrNotYetValid, "iat %s is %s after now (leeway %s)",
			d.IssuedAt.Format(time.RFC3339), d.IssuedAt.Sub(now).Round(time.Second), v.Leeway)
	}
	if !d.notBefore.IsZero() && d.notBefore.After(now.Add(v.Leeway)) {
		return Claims{}, refuse(ErrNotYetValid, "nbf %s is %s after now (leeway %s)",
			d.notBefore.Format(time.RFC3339), d.notBefore.Sub(now).Round(time.Second), v.Leeway)
	}
	d.KeyID = k.kid
	return d.Claims, nil
}
