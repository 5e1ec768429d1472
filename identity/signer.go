package identity

import "fmt"

// Type is the "typ" header of every assertion (explicit typing, RFC 8725
// section 3.11): it keeps a JWT minted for some other purpose with the same
// keys from passing as an identity assertion, and the other way round.
const Type = "frontdoor-id+jwt"

// Signer mints assertions with one private key. It is safe for concurrent
// use.
type Signer struct {
	key *PrivateKey
}

// NewSigner returns a Signer that signs with k.
func NewSigner(k *PrivateKey) *Signer { return &Signer{key: k} }

// LoadSigner reads a private key file (see ReadPrivateKeyFile) and returns
// a Signer for its first key; the others are older keys kept in the file
// until rotation drops them.
func LoadSigner(path string) (*Signer, error) {
	keys, err := ReadPrivateKeyFile(path)
	if err != nil {
		return nil, err
	}
	return NewSigner(keys[0]), nil
}

// Sign returns the assertion for c: a JWS Compact Serialization (RFC 7515
// section 7.1) of c's JWT Claims Set under the protected header
// {"alg", "kid", "typ": Type}. It refuses claims without User, IssuedAt or
// Expires, with Expires not after IssuedAt, with an unknown Method, or
// with control characters in a string.
//
// Signing costs tens of microseconds (see the package benchmarks), so a
// gateway signs once per authenticated identity and reuses the assertion
// until shortly before it expires, not once per request.
func (s *Signer) Sign(c Claims) (string, error) {
	payload, err := encodeClaims(c)
	if err != nil {
		return "", err
	}
	tok, err := encodeCompact(s.key, Type, payload)
	if err != nil {
		return "", err
	}
	if len(tok) > MaxAssertionSize {
		return "", fmt.Errorf("identity: assertion is %d bytes, more than verifiers accept (%d)", len(tok), MaxAssertionSize)
	}
	return tok, nil
}

// KeyID returns the "kid" of the signing key.
func (s *Signer) KeyID() string { return s.key.KeyID() }

// Alg returns the signing algorithm.
func (s *Signer) Alg() Alg { return s.key.Alg() }

// Public returns the public half of the signing key.
func (s *Signer) Public() *PublicKey { return s.key.Public() }
