// Package kerberos accepts HTTP Negotiate authentication (RFC 4559): a
// SPNEGO token (RFC 4178) carrying a Kerberos AP-REQ (RFC 4120 3.2, framed
// for GSS-API by RFC 4121 4.1) is verified against a service keytab, and
// the answer is the acceptor's token, with the AP-REP of mutual
// authentication when the client asked for it.
//
// It is written for an array of gateways behind a load balancer sharing one
// service account key: the keytab is reloaded when its file changes
// (Keytab), every key version it holds is accepted, so the account's
// password can roll while tickets of the old and the new kvno are in use,
// and each instance keeps its own bounded replay cache (ReplayCache)
// instead of gokrb5's process-wide, unbounded one.
//
// The parsing and cryptography are github.com/jcmturner/gokrb5/v8's; this
// package composes them with the checks an acceptor owes (RFC 4120 3.2.3:
// the key, the ticket's times, the authenticator's integrity, its client
// name, the clock skew, replay) and classifies each refusal (Reason), so
// an operator can tell a stale keytab from an expired ticket from an
// attack. Verification costs tens of microseconds to milliseconds of CPU
// (AES decryption, ASN.1): callers run it off their event loops.
package kerberos
