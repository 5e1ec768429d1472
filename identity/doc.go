// Package identity mints and verifies frontdoor's identity assertions: the
// short-lived, signed statement a gateway attaches to every request it
// forwards ("this request is alice's, for mailbox alice@example.test on
// DB01, authenticated with basic auth from 192.0.2.7"), so that a mailbox
// server can trust the user's identity on a connection the gateway shares
// among many users.
//
// An assertion is a JWT (RFC 7519) in JWS Compact Serialization (RFC 7515
// section 7.1), so any JOSE library can read one:
//
//	BASE64URL(header) "." BASE64URL(claims) "." BASE64URL(signature)
//
// The protected header is {"alg":ALG,"kid":KID,"typ":"frontdoor-id+jwt"}
// with ALG "EdDSA" (Ed25519, RFC 8037) or "ML-DSA-44" (FIPS 204, named as
// in draft-ietf-cose-dilithium). The claims are "sub" (user login), "mbx"
// (primary SMTP address of the mailbox), "db" (mailbox database), "amr"
// (["basic"], ["bearer"], ["certificate"] or ["negotiate"]), "cip" (client
// IP address), "iss" (gateway id), "aud" ("frontdoor-backend" unless
// configured otherwise), "iat" and "exp". See [Claims].
//
// Keys live in JWK Sets (RFC 7517 section 5): a private set on the gateways,
// whose first key signs, and the matching public set on the backends,
// every key of which verifies. Each key is bound to one algorithm, so a
// verifier never takes the algorithm from the assertion. Rotation is by
// key id: see [RotateKeyFile]. docs/identity.md describes the format, the
// key files and the rotation procedure for operators and backend authors.
//
// Signing and verifying use github.com/cloudflare/circl (sign/ed25519 and
// sign/mldsa/mldsa44): Go's standard library has no ML-DSA.
package identity
