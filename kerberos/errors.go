package kerberos

import (
	"errors"
	"fmt"
)

// Reason classifies why a token was refused; the gateway counts refusals
// by it.
type Reason uint8

// The refusal reasons.
const (
	// ReasonBadToken: not a SPNEGO or Kerberos token, an AP-REQ that does
	// not decrypt or verify, or a mechanism other than Kerberos.
	ReasonBadToken Reason = iota
	// ReasonTooLarge: the token is longer than the configured bound.
	ReasonTooLarge
	// ReasonNTLM: an NTLM token (raw NTLMSSP, or SPNEGO offering only
	// NTLM). frontdoor does not accept NTLM: clients fall back to
	// Kerberos or Basic.
	ReasonNTLM
	// ReasonWrongService: a ticket for a service principal the keytab
	// does not hold (KRB_AP_ERR_NOT_US, RFC 4120 3.2.3).
	ReasonWrongService
	// ReasonNoKey: a ticket for our service principal under a key
	// version or encryption type the keytab does not hold
	// (KRB_AP_ERR_BADKEYVER): a rotation not yet distributed to this
	// instance, or an old key removed too early.
	ReasonNoKey
	// ReasonExpired: the ticket's end time has passed (beyond the clock
	// skew) or its start time has not come (KRB_AP_ERR_TKT_EXPIRED,
	// KRB_AP_ERR_TKT_NYV).
	ReasonExpired
	// ReasonSkew: the authenticator's time is further from this clock
	// than the allowed skew (KRB_AP_ERR_SKEW).
	ReasonSkew
	// ReasonReplay: this authenticator was seen before (KRB_AP_ERR_REPEAT).
	ReasonReplay
	// ReasonUnknownPrincipal: the client's realm is not accepted, or the
	// principal maps to no enabled user.
	ReasonUnknownPrincipal

	// NumReasons is the number of reasons, for counter arrays.
	NumReasons
)

var reasonNames = [NumReasons]string{
	"bad_token", "too_large", "ntlm", "wrong_service", "no_key", "expired", "skew", "replay", "unknown_principal",
}

// String returns the reason's name as counters and logs use it
// ("bad_token", "expired", ...).
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Error is a refused token: the reason, and the detail for the log.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string { return "kerberos: " + e.Reason.String() + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func refuse(r Reason, format string, args ...any) error {
	return &Error{Reason: r, Err: fmt.Errorf(format, args...)}
}

// ReasonOf returns the reason of a refusal returned by Accept
// (ReasonBadToken for an error of another kind).
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonBadToken
}
