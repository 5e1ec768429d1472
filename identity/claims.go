package identity

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"time"
)

// Method is how the gateway authenticated the client: the HTTP
// authentication scheme it checked. It travels as the only element of the
// "amr" (authentication methods references) array, the shape OpenID
// Connect Core section 2 and RFC 8176 give that claim; the values are
// frontdoor's own, not RFC 8176 registry values.
type Method string

// The methods a gateway signs.
const (
	MethodBasic       Method = "basic"       // RFC 7617 user name and password
	MethodBearer      Method = "bearer"      // RFC 6750 OAuth 2.0 bearer token
	MethodCertificate Method = "certificate" // TLS client certificate
	MethodNegotiate   Method = "negotiate"   // RFC 4559 Kerberos (frontdoor refuses NTLM)
)

// DefaultAudience is the "aud" a Signer writes when Claims.Audience is
// empty and the audience a new Verifier requires.
const DefaultAudience = "frontdoor-backend"

// Claims is what an assertion says about one authenticated request's
// user. Times have one-second resolution (NumericDate, RFC 7519 section 2).
type Claims struct {
	// User is the login the client authenticated as ("sub", RFC 7519
	// section 4.1.2). Required.
	User string
	// Mailbox is the primary SMTP address of the mailbox the request is
	// for ("mbx").
	Mailbox string
	// Database is the mailbox database that holds it ("db").
	Database string
	// Method is how the user authenticated ("amr").
	Method Method
	// Client is the client's IP address as the gateway saw it ("cip").
	// Sign writes IPv4-mapped IPv6 addresses as IPv4.
	Client netip.Addr
	// Issuer names the gateway that signed ("iss", RFC 7519 section
	// 4.1.1), e.g. its gateway id.
	Issuer string
	// Audience is who the assertion is for ("aud", RFC 7519 section
	// 4.1.3). Sign writes DefaultAudience when it is empty.
	Audience string
	// IssuedAt ("iat", RFC 7519 section 4.1.6) and Expires ("exp",
	// section 4.1.4) bound the assertion's validity. Both are required.
	IssuedAt time.Time
	Expires  time.Time
	// KeyID is the "kid" of the key that signed. Verify fills it in, for
	// logs and for watching a key rotation; Sign ignores it.
	KeyID string
}

// wireClaims is the JWT Claims Set a Signer writes, in this member order.
type wireClaims struct {
	Sub string   `json:"sub"`
	Mbx string   `json:"mbx,omitempty"`
	DB  string   `json:"db,omitempty"`
	Amr []string `json:"amr,omitempty"`
	Cip string   `json:"cip,omitempty"`
	Iss string   `json:"iss,omitempty"`
	Aud string   `json:"aud"`
	Iat int64    `json:"iat"`
	Exp int64    `json:"exp"`
}

// known reports whether m is one of the Method constants.
func (m Method) known() bool {
	switch m {
	case MethodBasic, MethodBearer, MethodCertificate, MethodNegotiate:
		return true
	}
	return false
}

// checkText refuses control characters in a string claim. A backend may
// copy these values into headers or logs; CR and LF there would let a
// value forge lines.
func checkText(name, v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("%q contains control character %#x", name, c)
		}
	}
	return nil
}

// encodeClaims checks c and returns the JSON claims set.
func encodeClaims(c Claims) ([]byte, error) {
	if c.User == "" {
		return nil, errors.New("identity: claims: User is required")
	}
	if c.Method != "" && !c.Method.known() {
		return nil, fmt.Errorf("identity: claims: unknown method %q", c.Method)
	}
	if c.IssuedAt.IsZero() || c.Expires.IsZero() {
		return nil, errors.New("identity: claims: IssuedAt and Expires are required")
	}
	iat, exp := c.IssuedAt.Unix(), c.Expires.Unix()
	if exp <= iat {
		return nil, fmt.Errorf("identity: claims: Expires %s is not after IssuedAt %s (at one-second resolution)",
			c.Expires.UTC().Format(time.RFC3339), c.IssuedAt.UTC().Format(time.RFC3339))
	}
	if c.Audience == "" {
		c.Audience = DefaultAudience
	}
	w := wireClaims{Sub: c.User, Mbx: c.Mailbox, DB: c.Database, Iss: c.Issuer, Aud: c.Audience, Iat: iat, Exp: exp}
	if c.Method != "" {
		w.Amr = []string{string(c.Method)}
	}
	if c.Client.IsValid() {
		w.Cip = c.Client.Unmap().String()
	}
	for _, f := range [...]struct{ name, v string }{
		{"sub", w.Sub}, {"mbx", w.Mbx}, {"db", w.DB}, {"iss", w.Iss}, {"aud", w.Aud},
	} {
		if err := checkText(f.name, f.v); err != nil {
			return nil, fmt.Errorf("identity: claims: %w", err)
		}
	}
	return json.Marshal(w)
}

// decodedClaims is a verified claims set before the time and audience
// checks.
type decodedClaims struct {
	Claims
	notBefore time.Time // "nbf", zero when absent
	audiences []string
}

// decodeClaims decodes a JWT Claims Set (RFC 7519 section 4). Member names
// are matched exactly; members it does not know are ignored, as RFC 7519
// section 4 requires. Every error wraps ErrMalformed.
func decodeClaims(data []byte) (*decodedClaims, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil || m == nil {
		return nil, refuse(ErrMalformed, "claims set is not a JSON object")
	}
	var d decodedClaims
	c := &d.Claims
	for _, f := range [...]struct {
		name     string
		dst      *string
		required bool
	}{
		{"sub", &c.User, true}, {"mbx", &c.Mailbox, false}, {"db", &c.Database, false}, {"iss", &c.Issuer, false},
	} {
		v, err := stringMember(m, f.name)
		switch {
		case err != nil:
			return nil, refuse(ErrMalformed, "%q is not a string", f.name)
		case f.required && v == "":
			return nil, refuse(ErrMalformed, "%q is missing", f.name)
		}
		if err := checkText(f.name, v); err != nil {
			return nil, refuse(ErrMalformed, "%v", err)
		}
		*f.dst = v
	}
	if raw, ok := m["amr"]; ok {
		var amr []string
		if err := json.Unmarshal(raw, &amr); err != nil || len(amr) != 1 {
			return nil, refuse(ErrMalformed, `"amr" is not an array of one string`)
		}
		if err := checkText("amr", amr[0]); err != nil {
			return nil, refuse(ErrMalformed, "%v", err)
		}
		c.Method = Method(amr[0])
	}
	if raw, ok := m["cip"]; ok {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, refuse(ErrMalformed, `"cip" is not a string`)
		}
		addr, err := netip.ParseAddr(s)
		if err != nil {
			return nil, refuse(ErrMalformed, `"cip" %q is not an IP address`, s)
		}
		c.Client = addr
	}
	// "aud" is one string or an array of strings (RFC 7519 section 4.1.3).
	raw, ok := m["aud"]
	if !ok {
		return nil, refuse(ErrMalformed, `"aud" is missing`)
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		d.audiences = []string{one}
	} else if err := json.Unmarshal(raw, &d.audiences); err != nil {
		return nil, refuse(ErrMalformed, `"aud" is neither a string nor an array of strings`)
	}
	if len(d.audiences) == 1 {
		c.Audience = d.audiences[0]
	}
	var err error
	if c.IssuedAt, err = numericDate(m, "iat", true); err != nil {
		return nil, err
	}
	if c.Expires, err = numericDate(m, "exp", true); err != nil {
		return nil, err
	}
	if d.notBefore, err = numericDate(m, "nbf", false); err != nil {
		return nil, err
	}
	return &d, nil
}

// maxNumericDate keeps NumericDates where float64 is exact and time.Time
// has no trouble (2^53 seconds is some 285 million years).
const maxNumericDate = 1 << 53

// numericDate decodes a NumericDate member (RFC 7519 section 2): seconds
// since the epoch, an integer or not; fractions are dropped.
func numericDate(m map[string]json.RawMessage, name string, required bool) (time.Time, error) {
	raw, ok := m[name]
	if !ok {
		if required {
			return time.Time{}, refuse(ErrMalformed, "%q is missing", name)
		}
		return time.Time{}, nil
	}
	raw = bytes.TrimSpace(raw)
	if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		if n < 0 || n > maxNumericDate {
			return time.Time{}, refuse(ErrMalformed, "%q %d is out of range", name, n)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		return time.Time{}, refuse(ErrMalformed, "%q is not a number", name)
	}
	if math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, refuse(ErrMalformed, "%q %v is out of range", name, f)
	}
	return time.Unix(int64(f), 0).UTC(), nil
}
