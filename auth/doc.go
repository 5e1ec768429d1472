// Package auth holds frontdoor's authentication primitives: credential
// parsing, bearer-token verification, the auth-result cache, failed-login
// throttling and the verification worker pool.
//
// # Where each piece runs
//
// The gateway authenticates clients on its event loops, which must never
// block. The pieces split along that line:
//
//   - On the loop, per request, without allocating: ParseBasic and
//     ParseBearer read the Authorization field, Hasher.Sum1/Sum2 turn the
//     credential into a cache Key, Cache.Get answers from earlier
//     verifications, Throttle.Check refuses addresses and accounts that are
//     guessing, and Pool.Submit hands a cache miss to a worker (or says the
//     pool is full, which the caller answers with 503).
//   - On the Pool's workers: the expensive part, a password hash (package
//     auth/password) or JWTVerifier.Verify, followed by Cache.Put and
//     Throttle.Failure or Throttle.Success.
//
// The loop therefore pays for a verification once per credential and cache
// lifetime; every later request with the same credential is a cache hit.
//
// # Negative results
//
// Cache stores whatever the caller puts in it; it has no notion of failure.
// Whether to remember rejections is the caller's decision, with two
// cautions: a cached rejection of a password must not outlive a password
// change, and remembering rejections is no substitute for Throttle, which
// limits guesses whether or not they repeat.
//
// # JWT: the standard library rather than a JWT package
//
// JWTVerifier is written on crypto/ed25519, crypto/ecdsa and encoding/json
// instead of github.com/golang-jwt/jwt/v5. It accepts two algorithms, and
// what makes JWT verification safe is mostly what a general library leaves
// to its caller: binding the header's alg to the type of the key that kid
// selects (the algorithm-confusion attacks of RFC 8725 section 2.1), reading
// keys only from the configured JWK Set and never from the token (jwk, jku,
// x5u), matching claim names exactly (encoding/json's struct decoding folds
// case, so claims are read from a map), and refusing crit. Written out, each
// of these is a few visible lines with a test, and the package adds no
// dependency and no key-type switch we would have to audit.
package auth
