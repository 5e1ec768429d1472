package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"frontdoor/identity"
)

func cmdIdentityKeygen(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("identity keygen", "--out FILE [--alg ed25519|ml-dsa-44] [--kid ID] [--public FILE] [--keep N]",
		"Create the identity key file FILE (a JWK Set of private keys, mode 0600) with one\n"+
			"new key, or rotate it: put a new key first and keep at most --keep keys, the\n"+
			"new one included. The first key signs the identity assertions a gateway adds\n"+
			"to forwarded requests; the others are kept so that their public halves can\n"+
			"stay published. With --public, also write the public keys of FILE, the set\n"+
			"mailbox servers verify with (mode 0644). Files are replaced atomically; their\n"+
			"directories are created if they do not exist. Prints what the files hold.\n"+
			"\n"+
			"Rotation without refusals: run this with --public, copy the public set to\n"+
			"every mailbox server, then the private file to every gateway, and rotate\n"+
			"again only after the old key's assertions have expired. See docs/identity.md.")
	out := fs.String("out", "", "private key `FILE` to create or rotate (required)")
	algName := fs.String("alg", "ed25519", "signature `ALGORITHM` of the new key: ed25519 or ml-dsa-44")
	kid := fs.String("kid", "", "key `ID` of the new key (default: its RFC 7638 thumbprint)")
	public := fs.String("public", "", "also write the public key set to `FILE`")
	keep := fs.Int("keep", 2, "keep at most `N` keys in FILE, the new one included")
	if code, done := parse(fs, args, stdout, stderr); done {
		return code
	}
	alg, algErr := identity.ParseAlg(*algName)
	switch {
	case fs.NArg() > 0:
		return usageError(fs, stderr, "unexpected argument %q", fs.Arg(0))
	case *out == "":
		return usageError(fs, stderr, "--out is required")
	case algErr != nil:
		return usageError(fs, stderr, "--alg %q: want ed25519 or ml-dsa-44", *algName)
	case *keep < 1:
		return usageError(fs, stderr, "--keep %d: must be at least 1", *keep)
	case *public != "" && filepath.Clean(*public) == filepath.Clean(*out):
		return usageError(fs, stderr, "--public must name another file than --out")
	}
	key, err := identity.GenerateKey(alg, *kid)
	if err != nil {
		return usageError(fs, stderr, "--kid: %v", strings.TrimPrefix(err.Error(), "identity: "))
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "frontdoor identity keygen: %v\n", err)
		return exitFailure
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o700); err != nil {
		return fail(err)
	}
	keys, err := identity.RotateKeyFile(*out, key, *keep)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "%s: %s, signing with %s (%s)\n", *out, plural(len(keys), "key"), key.KeyID(), key.Alg())
	if *public == "" {
		return exitOK
	}
	pubs := make([]*identity.PublicKey, len(keys))
	ids := make([]string, len(keys))
	for i, k := range keys {
		pubs[i], ids[i] = k.Public(), k.KeyID()
	}
	if err := os.MkdirAll(filepath.Dir(*public), 0o755); err != nil {
		return fail(err)
	}
	if err := identity.WritePublicKeyFile(*public, pubs); err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "%s: %s: %s\n", *public, plural(len(pubs), "public key"), strings.Join(ids, ", "))
	return exitOK
}

// plural returns "1 key" or "n keys".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func cmdIdentityVerify(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("identity verify", "--keys FILE [--audience AUD] [--leeway DURATION]",
		"Read one identity assertion from standard input, verify it with the public key\n"+
			"set FILE as a mailbox server would, and print its claims (exit 0) or why it is\n"+
			"refused (exit 1). The input may be the bare assertion or a whole header line\n"+
			"such as \"X-Frontdoor-Identity: eyJ...\", as copied from a request log.")
	keys := fs.String("keys", "", "public key set `FILE` (required)")
	audience := fs.String("audience", identity.DefaultAudience, "the `AUD` the assertion must be for")
	leeway := fs.Duration("leeway", identity.DefaultLeeway, "clock skew tolerated on iat and exp (`DURATION`)")
	if code, done := parse(fs, args, stdout, stderr); done {
		return code
	}
	switch {
	case fs.NArg() > 0:
		return usageError(fs, stderr, "unexpected argument %q", fs.Arg(0))
	case *keys == "":
		return usageError(fs, stderr, "--keys is required")
	case *leeway < 0:
		return usageError(fs, stderr, "--leeway %s: must not be negative", *leeway)
	}
	v, err := identity.LoadVerifier(*keys)
	if err != nil {
		fmt.Fprintf(stderr, "frontdoor identity verify: %v\n", err)
		return exitUsage
	}
	v.Audience, v.Leeway = *audience, *leeway

	// A little more than the largest assertion, so that an oversized one
	// is refused for its size rather than cut.
	in, err := io.ReadAll(io.LimitReader(stdin, identity.MaxAssertionSize+1024))
	if err != nil {
		fmt.Fprintf(stderr, "frontdoor identity verify: reading standard input: %v\n", err)
		return exitFailure
	}
	value := bytes.TrimSpace(in)
	if name, rest, ok := bytes.Cut(value, []byte{':'}); ok && !bytes.ContainsAny(name, ". \t") {
		value = bytes.TrimSpace(rest) // "Header-Name: value"
	}
	c, err := v.Verify(value, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "frontdoor identity verify: %v\n", err)
		return exitFailure
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, f := range [][2]string{
		{"user", c.User},
		{"mailbox", c.Mailbox},
		{"database", c.Database},
		{"method", string(c.Method)},
		{"client", addrString(c)},
		{"issuer", c.Issuer},
		{"audience", c.Audience},
		{"issued", c.IssuedAt.Format(time.RFC3339)},
		{"expires", c.Expires.Format(time.RFC3339)},
		{"key", c.KeyID},
	} {
		fmt.Fprintf(tw, "%s\t%s\n", f[0], f[1])
	}
	tw.Flush()
	return exitOK
}

// addrString is the client address, or "" when the assertion has none.
func addrString(c identity.Claims) string {
	if !c.Client.IsValid() {
		return ""
	}
	return c.Client.String()
}
