package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// algorithm is a JWS algorithm the verifier accepts. The zero value is every
// other one: "none", HMAC, RSA, other curves.
type algorithm uint8

const (
	algUnsupported algorithm = iota
	// algEd25519 is EdDSA over Ed25519: "EdDSA" with an OKP Ed25519 key
	// (RFC 8037 section 3.1), or its fully-specified name "Ed25519"
	// (RFC 9864 section 2.2), which deprecates the polymorphic one.
	algEd25519
	// algES256 is ECDSA over P-256 with SHA-256 (RFC 7518 section 3.4).
	algES256
)

func parseAlg(s string) algorithm {
	switch s {
	case "EdDSA", "Ed25519":
		return algEd25519
	case "ES256":
		return algES256
	}
	return algUnsupported
}

const (
	// maxJWKSBytes bounds the JWK Set file read: a set of a few dozen keys
	// is a few kilobytes.
	maxJWKSBytes = 1 << 20
	// maxJWKSKeys bounds the keys in a set, usable or not.
	maxJWKSKeys = 100
)

// b64url is the base64url of JOSE: no padding (RFC 7515 section 2), and
// strict, so every value has exactly one encoding.
var b64url = base64.RawURLEncoding.Strict()

// publicKey is one usable key of a JWK Set. Its algorithm follows from its
// type and curve, and it verifies nothing else: that binding is what keeps
// a token's alg from choosing how the key is used.
type publicKey struct {
	kid string
	alg algorithm
	ed  ed25519.PublicKey // algEd25519
	ec  *ecdsa.PublicKey  // algES256
}

// keySet is an immutable, parsed JWK Set, swapped whole on reload.
type keySet struct {
	keys    []publicKey
	byKid   map[string]*publicKey
	skipped int // keys of types, curves or uses this verifier does not use
}

// jwkJSON is the members of a JWK (RFC 7517 section 4) the verifier reads.
// encoding/json matches member names case-insensitively, which is harmless
// here: the set is the operator's configuration, not client input.
type jwkJSON struct {
	Kty    string   `json:"kty"`
	Crv    string   `json:"crv"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
	Kid    string   `json:"kid"`
	Alg    string   `json:"alg"`
	Use    string   `json:"use"`
	KeyOps []string `json:"key_ops"`
	// Private or symmetric material: refused when present.
	D string `json:"d"`
	K string `json:"k"`
}

// readJWKS reads and parses the JWK Set file at path.
func readJWKS(path string) (*keySet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxJWKSBytes)
	}
	return parseJWKS(data)
}

// parseJWKS parses a JWK Set (RFC 7517 section 5). Keys this verifier has
// no use for (RSA, other curves, encryption keys) are skipped, since an
// identity provider's set commonly mixes them; a key it would use but
// cannot trust is an error, so that a broken file is refused whole (and a
// reload keeps the previous keys) instead of half-loaded:
//
//   - private or symmetric material ("d", "k"): the file is meant to be
//     public, and a secret in it is a deployment mistake to stop;
//   - coordinates of the wrong length or not on the curve;
//   - an "alg" that contradicts the key's type and curve;
//   - two usable keys with one "kid", which would make selection ambiguous.
func parseJWKS(data []byte) (*keySet, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, err
	}
	if len(set.Keys) > maxJWKSKeys {
		return nil, fmt.Errorf("%d keys, more than %d", len(set.Keys), maxJWKSKeys)
	}
	ks := &keySet{byKid: make(map[string]*publicKey)}
	for i, raw := range set.Keys {
		var j jwkJSON
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		if j.D != "" || j.K != "" {
			return nil, fmt.Errorf("key %d (kid %q): holds private or symmetric key material", i, j.Kid)
		}
		k, err := parseJWK(&j)
		if err != nil {
			return nil, fmt.Errorf("key %d (kid %q): %w", i, j.Kid, err)
		}
		if k.alg == algUnsupported {
			ks.skipped++
			continue
		}
		ks.keys = append(ks.keys, k)
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("no Ed25519 or P-256 signature key")
	}
	for i := range ks.keys {
		k := &ks.keys[i]
		if k.kid == "" {
			continue
		}
		if _, dup := ks.byKid[k.kid]; dup {
			return nil, fmt.Errorf("kid %q names two keys", k.kid)
		}
		ks.byKid[k.kid] = k
	}
	return ks, nil
}

// parseJWK returns the key j describes, with alg algUnsupported if it is
// not one for verifying Ed25519 or ES256 signatures.
func parseJWK(j *jwkJSON) (publicKey, error) {
	k := publicKey{kid: j.Kid}
	// A key meant for encryption, or not for verifying, is not ours to use
	// (RFC 7517 sections 4.2 and 4.3).
	if j.Use != "" && j.Use != "sig" || j.KeyOps != nil && !slices.Contains(j.KeyOps, "verify") {
		return k, nil
	}
	switch {
	case j.Kty == "OKP" && j.Crv == "Ed25519": // RFC 8037 section 2
		x, err := b64url.DecodeString(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return k, errors.New("x is not a 32-byte base64url Ed25519 public key")
		}
		if j.Alg != "" && parseAlg(j.Alg) != algEd25519 {
			return k, fmt.Errorf("alg %q does not fit an Ed25519 key", j.Alg)
		}
		k.alg, k.ed = algEd25519, ed25519.PublicKey(x)
	case j.Kty == "EC" && j.Crv == "P-256": // RFC 7518 section 6.2.1
		x, errX := b64url.DecodeString(j.X)
		y, errY := b64url.DecodeString(j.Y)
		// Coordinates are full-length, leading zeros kept (section 6.2.1.2).
		if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
			return k, errors.New("x and y are not 32-byte base64url coordinates")
		}
		if j.Alg != "" && j.Alg != "ES256" {
			return k, fmt.Errorf("alg %q does not fit a P-256 key", j.Alg)
		}
		// The uncompressed point form (SEC 1 section 2.3.3); the parser
		// refuses points off the curve, which invalid-curve attacks need.
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return k, err
		}
		k.alg, k.ec = algES256, pub
	}
	return k, nil
}

// find returns the key for a token's kid and alg, or nil. A kid selects
// that key, which must be of the token's algorithm; no kid selects the one
// key of that algorithm, if the set has exactly one.
func (ks *keySet) find(kid string, alg algorithm) *publicKey {
	if kid != "" {
		if k := ks.byKid[kid]; k != nil && k.alg == alg {
			return k
		}
		return nil
	}
	var found *publicKey
	for i := range ks.keys {
		if ks.keys[i].alg == alg {
			if found != nil {
				return nil
			}
			found = &ks.keys[i]
		}
	}
	return found
}
