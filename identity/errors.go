package identity

import (
	"errors"
	"fmt"
)

// The reasons Verifier.Verify refuses an assertion. Every error it returns
// wraps exactly one of them (test with errors.Is) and adds what was wrong,
// so a backend can count refusals by reason (see Reason) and log the detail.
var (
	// ErrMalformed: not a compact JWS of this format: too long, not three
	// base64url segments, a header or claims set that is not the expected
	// JSON, a missing or ill-formed required member, an unsupported "alg",
	// a wrong "typ", or a "crit" header (none is understood).
	ErrMalformed = errors.New("malformed assertion")
	// ErrUnknownKey: no key of the verifier has the header's "kid" with the
	// header's "alg". A key is bound to one algorithm, so an assertion that
	// names a known kid with another algorithm lands here too.
	ErrUnknownKey = errors.New("unknown key")
	// ErrBadSignature: the signature does not verify with the named key.
	ErrBadSignature = errors.New("bad signature")
	// ErrExpired: "exp" is in the past by more than the leeway.
	ErrExpired = errors.New("expired")
	// ErrNotYetValid: "iat" (or "nbf", if present) is in the future by more
	// than the leeway.
	ErrNotYetValid = errors.New("not yet valid")
	// ErrAudience: "aud" does not name the verifier's audience.
	ErrAudience = errors.New("wrong audience")
)

// reasons maps each sentinel to its short, stable label.
var reasons = []struct {
	err   error
	label string
}{
	{ErrMalformed, "malformed"},
	{ErrUnknownKey, "unknown_key"},
	{ErrBadSignature, "bad_signature"},
	{ErrExpired, "expired"},
	{ErrNotYetValid, "not_yet_valid"},
	{ErrAudience, "audience"},
}

// Reason returns a short label for the refusal err wraps, for counters and
// metrics: "malformed", "unknown_key", "bad_signature", "expired",
// "not_yet_valid" or "audience"; "" for nil and for any other error.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.label
		}
	}
	return ""
}

// Reasons lists every label Reason can return, in a fixed order, so that a
// backend can pre-create one counter per reason.
func Reasons() []string {
	out := make([]string, len(reasons))
	for i, r := range reasons {
		out[i] = r.label
	}
	return out
}

// refuse wraps a sentinel with a detail: "identity: expired: ...".
func refuse(sentinel error, format string, args ...any) error {
	return fmt.Errorf("identity: %w: %s", sentinel, fmt.Sprintf(format, args...))
}
