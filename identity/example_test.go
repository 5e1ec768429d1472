package identity_test

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"frontdoor/identity"
)

// A gateway signs once per authenticated identity; a backend verifies the
// assertion on every request and counts refusals by reason.
func Example() {
	// On the gateway: identity.LoadSigner("/etc/frontdoor/identity.jwks").
	key, err := identity.GenerateKey(identity.EdDSA, "2026-05")
	if err != nil {
		panic(err)
	}
	signer := identity.NewSigner(key)
	now := time.Now()
	assertion, err := signer.Sign(identity.Claims{
		User:     "alice",
		Mailbox:  "alice@example.test",
		Database: "DB01",
		Method:   identity.MethodBasic,
		Client:   netip.MustParseAddr("192.0.2.7"),
		Issuer:   "gw1",
		IssuedAt: now,
		Expires:  now.Add(5 * time.Minute),
	})
	if err != nil {
		panic(err)
	}

	// On the backend: identity.LoadVerifier("/etc/mailbox/identity.pub.jwks").
	verifier, err := identity.NewVerifier(key.Public())
	if err != nil {
		panic(err)
	}
	claims, err := verifier.Verify([]byte(assertion), time.Now())
	if err != nil {
		fmt.Println("403:", identity.Reason(err)) // e.g. "expired"
		return
	}
	fmt.Println(claims.User, claims.Mailbox, claims.Database, claims.Method, claims.Client, claims.KeyID)

	_, err = verifier.Verify([]byte(assertion), now.Add(time.Hour))
	fmt.Println(errors.Is(err, identity.ErrExpired), identity.Reason(err))
	// Output:
	// alice alice@example.test DB01 basic 192.0.2.7 2026-05
	// true expired
}
