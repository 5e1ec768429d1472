package identity

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

// b64 is base64url without padding (RFC 7515 section 2, "Base64url
// Encoding"). Strict also refuses non-zero trailing bits, so that no two
// encodings decode to the same bytes.
var b64 = base64.RawURLEncoding.Strict()

// isB64 reports whether s uses only the base64url alphabet. Go's decoder
// silently skips CR and LF even in Strict mode; checking the alphabet first
// keeps exactly one text per value.
func isB64(s []byte) bool {
	for _, c := range s {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func decodeB64(s string) ([]byte, error) {
	if !isB64([]byte(s)) {
		return nil, fmt.Errorf("not base64url")
	}
	return b64.DecodeString(s)
}

// MaxAssertionSize bounds the assertions Verify accepts, checked before
// anything is decoded. An ML-DSA-44 assertion is about 3.5 KB, an EdDSA one
// about 0.4 KB.
const MaxAssertionSize = 8 << 10

// header is the JOSE Header of an assertion (RFC 7515 section 4).
type header struct {
	alg Alg
	kid string
	typ string
}

// compact is a parsed JWS Compact Serialization (RFC 7515 section 7.1)
// whose signature has not been checked yet.
type compact struct {
	header header
	// signingInput is ASCII(BASE64URL(header) || '.' || BASE64URL(payload)),
	// what the signature covers (RFC 7515 section 5.1, step 5).
	signingInput []byte
	payload      []byte
	signature    []byte
}

// encodeCompact signs payload under a header {"alg","kid","typ"} and
// returns the compact serialization (RFC 7515 section 5.1).
func encodeCompact(k *PrivateKey, typ string, payload []byte) (string, error) {
	h, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{string(k.Alg()), k.KeyID(), typ})
	if err != nil {
		return "", fmt.Errorf("identity: encoding the header: %w", err)
	}
	var b strings.Builder
	sigLen := b64.EncodedLen(k.Alg().signatureSize())
	b.Grow(b64.EncodedLen(len(h)) + 1 + b64.EncodedLen(len(payload)) + 1 + sigLen)
	b.WriteString(b64.EncodeToString(h))
	b.WriteByte('.')
	b.WriteString(b64.EncodeToString(payload))
	sig, err := k.sign([]byte(b.String()))
	if err != nil {
		return "", err
	}
	b.WriteByte('.')
	b.WriteString(b64.EncodeToString(sig))
	return b.String(), nil
}

// parseCompact splits and decodes a compact serialization (RFC 7515
// section 5.2, steps 1 to 7) without checking the signature or the "typ".
// It requires "alg"; "kid" and "typ" are returned when present. Every
// error wraps ErrMalformed.
func parseCompact(value []byte) (*compact, error) {
	if len(value) > MaxAssertionSize {
		return nil, refuse(ErrMalformed, "%d bytes, more than %d", len(value), MaxAssertionSize)
	}
	h, rest, ok1 := bytes.Cut(value, []byte{'.'})
	p, s, ok2 := bytes.Cut(rest, []byte{'.'})
	if !ok1 || !ok2 || bytes.IndexByte(s, '.') >= 0 {
		return nil, refuse(ErrMalformed, "not a JWS compact serialization (want three base64url parts separated by '.')")
	}
	if !isB64(h) || !isB64(p) || !isB64(s) {
		return nil, refuse(ErrMalformed, "a part is not base64url (no padding, no whitespace)")
	}
	c := &compact{signingInput: value[:len(h)+1+len(p)]}
	hdr, err := b64.DecodeString(string(h))
	if err != nil {
		return nil, refuse(ErrMalformed, "header: %v", err)
	}
	if c.header, err = decodeHeader(hdr); err != nil {
		return nil, err
	}
	if c.payload, err = b64.DecodeString(string(p)); err != nil {
		return nil, refuse(ErrMalformed, "payload: %v", err)
	}
	if c.signature, err = b64.DecodeString(string(s)); err != nil {
		return nil, refuse(ErrMalformed, "signature: %v", err)
	}
	return c, nil
}

// decodeHeader decodes the JOSE Header. Member names are matched exactly
// (encoding/json alone would also take "ALG" for "alg"), and "crit" is
// refused because this package implements no extension (RFC 7515 section
// 4.1.11). Key-carrying members such as "jwk", "jku" or "x5u" are ignored:
// the key always comes from the verifier's own set, by "kid".
func decodeHeader(data []byte) (header, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil || m == nil {
		return header{}, refuse(ErrMalformed, "header is not a JSON object")
	}
	if _, ok := m["crit"]; ok {
		return header{}, refuse(ErrMalformed, `header has "crit"; no extension is supported`)
	}
	var h header
	alg, err := stringMember(m, "alg")
	if err != nil || alg == "" {
		return header{}, refuse(ErrMalformed, `header: "alg" missing or not a string`)
	}
	h.alg = Alg(alg)
	if h.alg.signatureSize() == 0 {
		return header{}, refuse(ErrMalformed, "unsupported alg %q", alg)
	}
	if h.kid, err = stringMember(m, "kid"); err != nil {
		return header{}, refuse(ErrMalformed, `header: "kid" is not a string`)
	}
	if h.typ, err = stringMember(m, "typ"); err != nil {
		return header{}, refuse(ErrMalformed, `header: "typ" is not a string`)
	}
	return h, nil
}

// stringMember returns the string member name of m, "" when absent.
func stringMember(m map[string]json.RawMessage, name string) (string, error) {
	raw, ok := m[name]
	if !ok {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", err
	}
	return s, nil
}

// typeMatches reports whether a "typ" value names the media type
// application/<want>: media types compare case-insensitively, and a value
// without '/' has "application/" implied (RFC 7515 section 4.1.9).
func typeMatches(typ, want string) bool {
	if !strings.Contains(typ, "/") {
		typ = "application/" + typ
	}
	return strings.EqualFold(typ, "application/"+want)
}
