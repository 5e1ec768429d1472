package identity

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/cloudflare/circl/sign/ed25519"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
)

// Alg is a JWS "alg" value (RFC 7515 section 4.1.1) this package signs and
// verifies with. Every key is bound to exactly one Alg.
type Alg string

const (
	// EdDSA is Ed25519 (RFC 8032, the pure variant) as JOSE names it in
	// RFC 8037 section 3.1. Signatures are 64 bytes.
	EdDSA Alg = "EdDSA"
	// MLDSA44 is ML-DSA-44 (FIPS 204) with an empty context string, as
	// JOSE names it in draft-ietf-cose-dilithium. Signatures are 2420
	// bytes.
	MLDSA44 Alg = "ML-DSA-44"
)

// ParseAlg returns the Alg that s names: its JOSE name ("EdDSA",
// "ML-DSA-44") or the command-line spellings "ed25519" and "ml-dsa-44",
// case-insensitively.
func ParseAlg(s string) (Alg, error) {
	switch strings.ToLower(s) {
	case "eddsa", "ed25519":
		return EdDSA, nil
	case "ml-dsa-44", "mldsa44":
		return MLDSA44, nil
	}
	return "", fmt.Errorf("identity: unknown algorithm %q: want ed25519 or ml-dsa-44", s)
}

// signatureSize is the exact length of a signature made with a, so that a
// verifier can refuse any other length before doing any work.
func (a Alg) signatureSize() int {
	switch a {
	case EdDSA:
		return ed25519.SignatureSize
	case MLDSA44:
		return mldsa44.SignatureSize
	}
	return 0
}

// seedSize is the length of a private key as key files store it: the
// RFC 8032 private key for Ed25519 and the FIPS 204 key generation seed ξ
// for ML-DSA; both are 32 bytes.
const seedSize = 32

// maxKeyIDLen bounds a key id; thumbprints (the default) are 43 bytes.
const maxKeyIDLen = 128

// checkKeyID reports whether kid can name a key: 1 to 128 printable ASCII
// characters other than space. A kid ends up in logs and on command lines.
func checkKeyID(kid string) error {
	if kid == "" || len(kid) > maxKeyIDLen {
		return fmt.Errorf("identity: key id %q: want 1 to %d characters", kid, maxKeyIDLen)
	}
	for i := 0; i < len(kid); i++ {
		if c := kid[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("identity: key id %q: only printable ASCII without spaces is allowed", kid)
		}
	}
	return nil
}

// PublicKey is a verification key: an algorithm, a key id and the public
// key. It is immutable and safe for concurrent use.
type PublicKey struct {
	kid string
	alg Alg
	raw []byte // encoded public key: 32 bytes (Ed25519) or 1312 (ML-DSA-44)
	ed  ed25519.PublicKey
	ml  *mldsa44.PublicKey
}

// newPublicKey decodes raw, the public key in its JWK encoding.
func newPublicKey(alg Alg, kid string, raw []byte) (*PublicKey, error) {
	k := &PublicKey{kid: kid, alg: alg, raw: bytes.Clone(raw)}
	switch alg {
	case EdDSA:
		if len(raw) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("Ed25519 public key is %d bytes, want %d", len(raw), ed25519.PublicKeySize)
		}
		k.ed = ed25519.PublicKey(k.raw)
	case MLDSA44:
		k.ml = new(mldsa44.PublicKey)
		if err := k.ml.UnmarshalBinary(raw); err != nil {
			return nil, fmt.Errorf("ML-DSA-44 public key is %d bytes, want %d", len(raw), mldsa44.PublicKeySize)
		}
	default:
		return nil, fmt.Errorf("unsupported algorithm %q", alg)
	}
	return k, nil
}

// KeyID returns the key's "kid".
func (k *PublicKey) KeyID() string { return k.kid }

// Alg returns the one algorithm the key verifies.
func (k *PublicKey) Alg() Alg { return k.alg }

// Thumbprint returns the key's JWK Thumbprint (RFC 7638) with SHA-256,
// base64url-encoded: a name for the key that depends only on the key.
// GenerateKey uses it as the default key id.
func (k *PublicKey) Thumbprint() string {
	// The required members only, in lexicographic order, no whitespace
	// (RFC 7638 section 3.2): crv, kty, x for OKP (RFC 8037 section 2);
	// alg, kty, pub for AKP (draft-ietf-cose-dilithium). The values are
	// base64url or fixed names, so no JSON escaping is needed.
	var s string
	switch k.alg {
	case EdDSA:
		s = `{"crv":"Ed25519","kty":"OKP","x":"` + b64.EncodeToString(k.raw) + `"}`
	case MLDSA44:
		s = `{"alg":"ML-DSA-44","kty":"AKP","pub":"` + b64.EncodeToString(k.raw) + `"}`
	}
	sum := sha256.Sum256([]byte(s))
	return b64.EncodeToString(sum[:])
}

// verify reports whether sig is a valid signature of msg by k.
func (k *PublicKey) verify(msg, sig []byte) bool {
	if len(sig) != k.alg.signatureSize() {
		return false
	}
	switch k.alg {
	case EdDSA:
		return ed25519.Verify(k.ed, msg, sig)
	case MLDSA44:
		// JOSE uses ML-DSA with the empty context string.
		return mldsa44.Verify(k.ml, msg, nil, sig)
	}
	return false
}

// PrivateKey is a signing key with its public half. It is immutable and
// safe for concurrent use.
type PrivateKey struct {
	pub  *PublicKey
	seed []byte
	ed   ed25519.PrivateKey
	ml   *mldsa44.PrivateKey
}

// GenerateKey returns a new random key for alg named kid, or, when kid is
// empty, named by its JWK Thumbprint (see PublicKey.Thumbprint). A kid is 1
// to 128 printable ASCII characters without spaces.
func GenerateKey(alg Alg, kid string) (*PrivateKey, error) {
	if kid != "" {
		if err := checkKeyID(kid); err != nil {
			return nil, err
		}
	}
	seed := make([]byte, seedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, fmt.Errorf("identity: generating a key: %w", err)
	}
	k, err := newPrivateKey(alg, kid, seed)
	if err != nil {
		return nil, err
	}
	if kid == "" {
		k.pub.kid = k.pub.Thumbprint()
	}
	return k, nil
}

// newPrivateKey derives the key pair for alg from seed. kid is checked by
// the callers that take it from outside.
func newPrivateKey(alg Alg, kid string, seed []byte) (*PrivateKey, error) {
	if len(seed) != seedSize {
		return nil, fmt.Errorf("identity: %s private key is %d bytes, want %d", alg, len(seed), seedSize)
	}
	k := &PrivateKey{seed: bytes.Clone(seed)}
	var pub []byte
	switch alg {
	case EdDSA:
		k.ed = ed25519.NewKeyFromSeed(seed)
		pub = k.ed[ed25519.SeedSize:]
	case MLDSA44:
		var s [mldsa44.SeedSize]byte
		copy(s[:], seed)
		var pk *mldsa44.PublicKey
		pk, k.ml = mldsa44.NewKeyFromSeed(&s)
		pub = pk.Bytes()
	default:
		return nil, fmt.Errorf("identity: unsupported algorithm %q", alg)
	}
	var err error
	if k.pub, err = newPublicKey(alg, kid, pub); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	return k, nil
}

// KeyID returns the key's "kid".
func (k *PrivateKey) KeyID() string { return k.pub.kid }

// Alg returns the one algorithm the key signs with.
func (k *PrivateKey) Alg() Alg { return k.pub.alg }

// Public returns the key's public half, with the same key id.
func (k *PrivateKey) Public() *PublicKey { return k.pub }

// sign signs msg. Ed25519 is deterministic; ML-DSA uses the hedged
// variant, mixing fresh randomness into the per-signature nonce (FIPS 204
// section 3.4 recommends it over the deterministic one).
func (k *PrivateKey) sign(msg []byte) ([]byte, error) {
	switch k.pub.alg {
	case EdDSA:
		return ed25519.Sign(k.ed, msg), nil
	case MLDSA44:
		sig := make([]byte, mldsa44.SignatureSize)
		if err := mldsa44.SignTo(k.ml, msg, nil, true, sig); err != nil {
			return nil, fmt.Errorf("identity: ML-DSA-44 signing: %w", err)
		}
		return sig, nil
	}
	return nil, fmt.Errorf("identity: unsupported algorithm %q", k.pub.alg)
}

// jwk is one JSON Web Key (RFC 7517 section 4) of the two kinds this
// package knows, public or private:
//
//	{"kid":..., "kty":"OKP", "alg":"EdDSA", "crv":"Ed25519", "x":..., "d":...}  (RFC 8037 section 2)
//	{"kid":..., "kty":"AKP", "alg":"ML-DSA-44", "pub":..., "priv":...}         (draft-ietf-cose-dilithium)
//
// "d" and "priv" are the 32-byte private key (Ed25519) or seed (ML-DSA).
// Field order is the order keys are written in.
type jwk struct {
	Kid  string `json:"kid"`
	Kty  string `json:"kty"`
	Use  string `json:"use,omitempty"`
	Alg  string `json:"alg,omitempty"`
	Crv  string `json:"crv,omitempty"`
	X    string `json:"x,omitempty"`
	D    string `json:"d,omitempty"`
	Pub  string `json:"pub,omitempty"`
	Priv string `json:"priv,omitempty"`
}

// jwkSet is a JWK Set (RFC 7517 section 5). Keys stay raw until decoded
// one by one, so that an error can say which key is wrong.
type jwkSet struct {
	Keys []json.RawMessage `json:"keys"`
}

// publicJWK returns k as a public JWK.
func publicJWK(k *PublicKey) jwk {
	j := jwk{Kid: k.kid, Use: "sig", Alg: string(k.alg)}
	switch k.alg {
	case EdDSA:
		j.Kty, j.Crv, j.X = "OKP", "Ed25519", b64.EncodeToString(k.raw)
	case MLDSA44:
		j.Kty, j.Pub = "AKP", b64.EncodeToString(k.raw)
	}
	return j
}

// privateJWK returns k as a private JWK: the public one plus the seed.
func privateJWK(k *PrivateKey) jwk {
	j := publicJWK(k.pub)
	switch k.pub.alg {
	case EdDSA:
		j.D = b64.EncodeToString(k.seed)
	case MLDSA44:
		j.Priv = b64.EncodeToString(k.seed)
	}
	return j
}

// errSkip marks a JWK of a kind this package does not use. A JWK Set may
// hold such keys (RFC 7517 section 5 says to ignore keys whose "kty" is
// not understood); skipping them lets an older backend keep working with a
// set that also carries keys for algorithms added later.
var errSkip = errors.New("key of an unsupported kind")

// decodeJWK decodes one JWK into its algorithm, key id, public key and,
// when present, private key seed. It returns errSkip for keys of other
// kinds and a descriptive error for a malformed key of a supported kind.
func decodeJWK(raw []byte) (alg Alg, kid string, pub, seed []byte, err error) {
	var j jwk
	if err := json.Unmarshal(raw, &j); err != nil {
		return "", "", nil, nil, fmt.Errorf("not a JSON object: %v", err)
	}
	if j.Use != "" && j.Use != "sig" {
		return "", "", nil, nil, errSkip
	}
	var pubText, seedText string
	switch {
	case j.Kty == "OKP" && j.Crv == "Ed25519" && (j.Alg == "" || j.Alg == string(EdDSA)):
		alg, pubText, seedText = EdDSA, j.X, j.D
	case j.Kty == "AKP" && j.Alg == string(MLDSA44):
		alg, pubText, seedText = MLDSA44, j.Pub, j.Priv
	default:
		return "", "", nil, nil, errSkip
	}
	if err := checkKeyID(j.Kid); err != nil {
		return "", "", nil, nil, errors.New(strings.TrimPrefix(err.Error(), "identity: "))
	}
	if pub, err = decodeB64(pubText); err != nil || len(pub) == 0 {
		return "", "", nil, nil, fmt.Errorf("key %q: public key: missing or not base64url", j.Kid)
	}
	if seedText != "" {
		if seed, err = decodeB64(seedText); err != nil {
			return "", "", nil, nil, fmt.Errorf("key %q: private key: not base64url", j.Kid)
		}
	}
	return alg, j.Kid, pub, seed, nil
}

// parseKeySet decodes a JWK Set, calling add for each key of a supported
// kind, and checks that key ids are unique and that there is at least one
// such key.
func parseKeySet(data []byte, add func(alg Alg, kid string, pub, seed []byte) error) error {
	var set jwkSet
	if err := json.Unmarshal(data, &set); err != nil {
		return fmt.Errorf("not a JWK Set: %v", err)
	}
	seen := make(map[string]bool, len(set.Keys))
	for i, raw := range set.Keys {
		alg, kid, pub, seed, err := decodeJWK(raw)
		if errors.Is(err, errSkip) {
			continue
		}
		if err != nil {
			return fmt.Errorf("keys[%d]: %v", i, err)
		}
		if seen[kid] {
			return fmt.Errorf("keys[%d]: key id %q appears twice", i, kid)
		}
		seen[kid] = true
		if err := add(alg, kid, pub, seed); err != nil {
			return fmt.Errorf("keys[%d]: key %q: %v", i, kid, err)
		}
	}
	if len(seen) == 0 {
		return errors.New("no EdDSA (OKP Ed25519) or ML-DSA-44 (AKP) key")
	}
	return nil
}

// ParsePublicKeys decodes a public JWK Set, in file order. Keys of other
// kinds are skipped (RFC 7517 section 5); the set must hold at least one
// usable key, each with a unique "kid". A set that carries private keys is
// refused: private keys belong on the gateways only, and a backend that is
// handed one could mint assertions.
func ParsePublicKeys(data []byte) ([]*PublicKey, error) {
	keys, err := parsePublicKeys(data)
	if err != nil {
		return nil, fmt.Errorf("identity: public key set: %w", err)
	}
	return keys, nil
}

// parsePublicKeys is ParsePublicKeys with errors that do not say where.
func parsePublicKeys(data []byte) ([]*PublicKey, error) {
	var keys []*PublicKey
	err := parseKeySet(data, func(alg Alg, kid string, pub, seed []byte) error {
		if seed != nil {
			return errors.New("holds a private key; give backends the public set (frontdoor identity keygen --public)")
		}
		k, err := newPublicKey(alg, kid, pub)
		if err != nil {
			return err
		}
		keys = append(keys, k)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return keys, nil
}

// parsePrivateKeys decodes a private JWK Set, in file order; its errors do
// not say where the set came from. Every usable key must have its private
// part, and the public part must be the one the private part derives: a
// mismatch means the file was edited by hand, and signing with it would
// produce assertions no backend accepts.
func parsePrivateKeys(data []byte) ([]*PrivateKey, error) {
	var keys []*PrivateKey
	err := parseKeySet(data, func(alg Alg, kid string, pub, seed []byte) error {
		if seed == nil {
			return errors.New("has no private key")
		}
		k, err := newPrivateKey(alg, kid, seed)
		if err != nil {
			return errors.New(strings.TrimPrefix(err.Error(), "identity: "))
		}
		if !bytes.Equal(k.pub.raw, pub) {
			return errors.New("the public key is not the one the private key derives")
		}
		keys = append(keys, k)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return keys, nil
}

// MarshalPublicKeys encodes keys as a JWK Set, one key per line, in order.
func MarshalPublicKeys(keys []*PublicKey) []byte {
	js := make([]jwk, len(keys))
	for i, k := range keys {
		js[i] = publicJWK(k)
	}
	return marshalSet(js)
}

// marshalPrivateKeys encodes keys as a private JWK Set, in order.
func marshalPrivateKeys(keys []*PrivateKey) []byte {
	js := make([]jwk, len(keys))
	for i, k := range keys {
		js[i] = privateJWK(k)
	}
	return marshalSet(js)
}

// marshalSet writes {"keys":[...]} with one key per line, which keeps the
// files readable and their diffs small.
func marshalSet(js []jwk) []byte {
	var b bytes.Buffer
	b.WriteString("{\"keys\": [\n")
	for i, j := range js {
		line, err := json.Marshal(j)
		if err != nil {
			panic(err) // strings only: cannot fail
		}
		b.WriteString("  ")
		b.Write(line)
		if i < len(js)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("]}\n")
	return b.Bytes()
}
