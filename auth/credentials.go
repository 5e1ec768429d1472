package auth

import (
	"bytes"
	"encoding/base64"
)

// BasicScratchSize is the scratch size callers should give ParseBasic:
// room for a user name as long as an SMTP address (320 bytes, RFC 5321
// section 4.5.3.1) and a password of Active Directory's 256 characters in
// UTF-8 (up to 768 bytes), with margin. Credentials that decode to more
// than the scratch given are refused, so this is also the size bound.
const BasicScratchSize = 2048

// basicEncoding is RFC 7617's base64: the standard alphabet with padding
// (RFC 4648 section 4). Strict refuses non-zero padding bits, so each
// credential has exactly one encoding and one cache key.
var basicEncoding = base64.StdEncoding.Strict()

// Scheme splits an Authorization field value into its auth-scheme and what
// follows the one or more spaces after it (RFC 9110 section 11.4:
// credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]). Spaces
// and tabs around the whole value are ignored, as a field parser would
// have removed them (RFC 9110 section 5.5). rest is empty when the value is
// only a scheme. Both results alias value; Scheme does not allocate.
func Scheme(value []byte) (scheme, rest []byte) {
	value = trimOWS(value)
	sp := bytes.IndexByte(value, ' ')
	if sp < 0 {
		return value, nil
	}
	scheme, rest = value[:sp], value[sp+1:]
	for len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	return scheme, rest
}

// ParseBasic parses the value of an Authorization field carrying Basic
// credentials (RFC 7617 section 2): the scheme "Basic" in any case, one or
// more spaces, then base64 of user-id ":" password. The credentials are
// decoded into scratch, which user and pass then alias; ParseBasic does not
// allocate. It refuses, with ok false:
//
//   - another scheme, or anything but base64 characters after it;
//   - base64 without its padding, or with non-zero padding bits;
//   - credentials that do not fit in scratch (see BasicScratchSize);
//   - no ':' or an empty user-id (the user-id cannot contain ':', so the
//     first one ends it);
//   - an empty password: an LDAP simple bind with an empty password is an
//     unauthenticated bind that succeeds (RFC 4513 section 5.1.2), the
//     classic way a directory check is fooled, so it never gets that far;
//   - control characters in either part (RFC 7617 section 2 forbids CTLs,
//     RFC 5234 appendix B.1), which no keyboard produces and which would
//     reach logs and backend protocols.
//
// Non-ASCII bytes are allowed: RFC 7617 section 2.1 lets a server announce
// UTF-8, and what a client sent without it is for the password check to
// judge, not the parser.
func ParseBasic(value, scratch []byte) (user, pass []byte, ok bool) {
	scheme, cred := Scheme(value)
	if !equalFold(scheme, "basic") || len(cred) == 0 {
		return nil, nil, false
	}
	// The decoder skips CR and LF; checking the alphabet first keeps
	// "one credential, one encoding" and refuses folded or smuggled bytes.
	for _, c := range cred {
		if !isBase64Std(c) && c != '=' {
			return nil, nil, false
		}
	}
	if basicEncoding.DecodedLen(len(cred)) > len(scratch) {
		return nil, nil, false
	}
	n, err := basicEncoding.Decode(scratch, cred)
	if err != nil {
		return nil, nil, false
	}
	dec := scratch[:n]
	colon := bytes.IndexByte(dec, ':')
	if colon <= 0 || colon == len(dec)-1 {
		return nil, nil, false
	}
	for _, c := range dec {
		if c < 0x20 || c == 0x7f {
			return nil, nil, false
		}
	}
	return dec[:colon], dec[colon+1:], true
}

// ParseBearer parses the value of an Authorization field carrying a bearer
// token (RFC 6750 section 2.1): the scheme "Bearer" in any case, one or
// more spaces, then a b64token, 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
// "+" / "/" ) *"=". token aliases value; ParseBearer does not allocate. It
// does not bound the token's length: the verifier does (JWTConfig's
// MaxTokenBytes), and the field as a whole is bounded by the header limit.
func ParseBearer(value []byte) (token []byte, ok bool) {
	scheme, tok := Scheme(value)
	if !equalFold(scheme, "bearer") || len(tok) == 0 {
		return nil, false
	}
	i := 0
	for i < len(tok) && isB64token(tok[i]) {
		i++
	}
	if i == 0 {
		return nil, false
	}
	for j := i; j < len(tok); j++ {
		if tok[j] != '=' {
			return nil, false
		}
	}
	return tok, true
}

func isB64token(c byte) bool {
	return isAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
}

func isBase64Std(c byte) bool { return isAlnum(c) || c == '+' || c == '/' }

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// equalFold reports whether b equals lower (given in lower case) ignoring
// ASCII case, as auth-schemes are compared (RFC 9110 section 11.1).
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
