// Package password hashes and verifies user passwords as PHC strings, the
// "$id$params$salt$hash" format of the Password Hashing Competition that
// the directory file stores in password_hash.
//
// New hashes are argon2id (RFC 9106) with OWASP's recommended minimum
// parameters (m=19456 KiB, t=2, p=1). Verify also accepts argon2id hashes
// with other parameters and bcrypt hashes ($2a$, $2b$, $2y$), so that users
// can be moved from another system without resetting their passwords.
//
// The directory file is input too: a hash with absurd parameters would let
// whoever writes it make every login cost gigabytes or minutes. Check and
// Verify refuse argon2id beyond 1 GiB of memory, 10 passes or 16 lanes,
// and bcrypt beyond cost 16.
//
// The package is a leaf: it depends on the standard library and
// golang.org/x/crypto only.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Params are argon2id's cost parameters and output sizes.
type Params struct {
	Memory      uint32 // KiB
	Iterations  uint32 // passes over the memory ("t")
	Parallelism uint8  // lanes ("p")
	SaltLength  uint32 // bytes
	KeyLength   uint32 // bytes of derived key stored in the hash
}

// DefaultParams are what Hash uses: OWASP's Password Storage Cheat Sheet
// minimum for argon2id (19 MiB, 2 passes, 1 lane), a 16-byte salt and a
// 32-byte key. One verification takes a few tens of milliseconds.
var DefaultParams = Params{Memory: 19456, Iterations: 2, Parallelism: 1, SaltLength: 16, KeyLength: 32}

// Bounds on what Check, Verify and HashWith accept.
const (
	MaxMemory      = 1 << 20 // KiB: 1 GiB
	MaxIterations  = 10
	MaxParallelism = 16
	MaxBcryptCost  = 16 // 2^16 rounds: seconds per verification

	minSaltLength = 8 // RFC 9106 section 3.1
	maxSaltLength = 64
	minKeyLength  = 16 // shorter tags are easier to collide with
	maxKeyLength  = 64
)

// argon2Version is the only Argon2 version golang.org/x/crypto implements,
// 1.3, written v=19 in PHC strings. Hashes without v= are version 1.0.
const argon2Version = 19

// b64 is the PHC string format's base64: standard alphabet, no padding.
// Strict rejects encodings with non-zero trailing bits, so that one salt
// or key has exactly one spelling.
var b64 = base64.RawStdEncoding.Strict()

// Hash returns an argon2id PHC string for password with DefaultParams and
// a random salt, e.g.
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>
func Hash(password []byte) (string, error) {
	return HashWith(password, DefaultParams)
}

// HashWith is Hash with other parameters. They must be within the bounds
// Verify accepts, so that every hash made here can be verified.
func HashWith(password []byte, p Params) (string, error) {
	if err := p.check(); err != nil {
		return "", err
	}
	if p.SaltLength < minSaltLength || p.SaltLength > maxSaltLength {
		return "", fmt.Errorf("password: salt length %d out of range %d..%d bytes", p.SaltLength, minSaltLength, maxSaltLength)
	}
	salt := make([]byte, p.SaltLength)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password: %w", err)
	}
	key := argon2.IDKey(password, salt, p.Iterations, p.Memory, p.Parallelism, p.KeyLength)
	return encode(p, salt, key), nil
}

func encode(p Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2Version, p.Memory, p.Iterations, p.Parallelism, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// check reports parameters out of bounds. SaltLength is only checked when
// hashing: a parsed hash's salt length is that of its salt.
func (p Params) check() error {
	switch {
	case p.Parallelism < 1 || p.Parallelism > MaxParallelism:
		return fmt.Errorf("password: parallelism p=%d out of range 1..%d", p.Parallelism, MaxParallelism)
	case p.Iterations < 1 || p.Iterations > MaxIterations:
		return fmt.Errorf("password: iterations t=%d out of range 1..%d", p.Iterations, MaxIterations)
	case p.Memory > MaxMemory:
		return fmt.Errorf("password: memory m=%d KiB exceeds %d KiB (1 GiB)", p.Memory, MaxMemory)
	case p.Memory < 8*uint32(p.Parallelism):
		// Argon2 needs at least 8 KiB per lane (RFC 9106 section 3.1).
		return fmt.Errorf("password: memory m=%d KiB is below 8 KiB per lane (p=%d)", p.Memory, p.Parallelism)
	case p.KeyLength < minKeyLength || p.KeyLength > maxKeyLength:
		return fmt.Errorf("password: key length %d out of range %d..%d bytes", p.KeyLength, minKeyLength, maxKeyLength)
	}
	return nil
}

// Check reports whether hash is a PHC string Verify can use: argon2id
// (version 19, parameters within bounds, base64 salt and key of sane
// lengths) or bcrypt ($2a$, $2b$ or $2y$, cost 4..16). It does no hashing.
func Check(hash string) error {
	_, err := parse(hash)
	return err
}

// Verify reports whether password matches hash. The error is non-nil only
// when hash is malformed or out of bounds (see Check); a wrong password is
// (false, nil). The comparison takes the same time wherever the derived
// keys differ.
//
// bcrypt uses the first 72 bytes of a password and ignores the rest, as
// every bcrypt implementation does.
func Verify(hash string, password []byte) (bool, error) {
	h, err := parse(hash)
	if err != nil {
		return false, err
	}
	if h.bcrypt {
		// CompareHashAndPassword compares with crypto/subtle itself.
		switch err := bcrypt.CompareHashAndPassword([]byte(hash), password); {
		case err == nil:
			return true, nil
		case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
			return false, nil
		default:
			return false, fmt.Errorf("password: %w", err) // unreachable after parse
		}
	}
	key := argon2.IDKey(password, h.salt, h.params.Iterations, h.params.Memory, h.params.Parallelism, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(key, h.key) == 1, nil
}

// dummyHash is a default-params hash of a random password nobody knows,
// made on first use: hashing costs as much as verifying, and a process
// that never authenticates should not pay for it.
var dummyHash = sync.OnceValue(func() string {
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		panic("password: " + err.Error()) // crypto/rand does not fail on supported platforms
	}
	h, err := Hash(secret[:])
	if err != nil {
		panic(err) // DefaultParams are within bounds
	}
	return h
})

// VerifyDummy does the work of verifying password against a default-params
// argon2id hash and discards the result. Call it for a user that does not
// exist (or has no password hash) so that the answer takes as long as for
// a wrong password, and response times do not tell which logins exist.
// (Users whose hashes have other parameters, or are bcrypt, take a
// different time either way.)
func VerifyDummy(password []byte) {
	_, _ = Verify(dummyHash(), password)
}

// parsed is a checked PHC string.
type parsed struct {
	bcrypt    bool
	params    Params // argon2id only
	salt, key []byte // argon2id only
}

// parse checks hash and decodes an argon2id hash's fields.
func parse(hash string) (*parsed, error) {
	switch {
	case strings.HasPrefix(hash, "$argon2id$"):
		return parseArgon2id(hash)
	case strings.HasPrefix(hash, "$2"):
		return &parsed{bcrypt: true}, checkBcrypt(hash)
	case strings.HasPrefix(hash, "$argon2i$"), strings.HasPrefix(hash, "$argon2d$"):
		return nil, errors.New("password: only the argon2id variant of Argon2 is supported")
	case hash == "":
		return nil, errors.New("password: empty hash")
	}
	return nil, errors.New(`password: not a supported PHC string: want "$argon2id$..." or bcrypt "$2b$..."`)
}

// parseArgon2id parses $argon2id$v=19$m=M,t=T,p=P$SALT$KEY, the form the
// reference implementation writes. The parameters are required in that
// order and numbers have no sign or leading zeros, so that a hash has one
// spelling.
func parseArgon2id(hash string) (*parsed, error) {
	fields := strings.Split(hash, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	v, ok := strings.CutPrefix(fields[2], "v=")
	switch {
	case !ok && strings.HasPrefix(fields[2], "m="):
		return nil, errors.New("password: argon2id hash without v=19: Argon2 version 1.0 is not supported")
	case !ok || len(fields) != 6:
		return nil, errors.New(`password: malformed argon2id hash: want "$argon2id$v=19$m=M,t=T,p=P$SALT$KEY"`)
	}
	if n, err := decimal(v); err != nil || n != argon2Version {
		return nil, fmt.Errorf("password: argon2id version v=%s: only v=19 (Argon2 1.3) is supported", v)
	}
	var p Params
	names := [3]string{"m", "t", "p"}
	params := strings.Split(fields[3], ",")
	if len(params) != len(names) {
		return nil, errors.New(`password: malformed argon2id parameters: want "m=M,t=T,p=P"`)
	}
	var vals [3]uint64
	for i, kv := range params {
		val, ok := strings.CutPrefix(kv, names[i]+"=")
		if !ok {
			return nil, errors.New(`password: malformed argon2id parameters: want "m=M,t=T,p=P"`)
		}
		n, err := decimal(val)
		if err != nil {
			return nil, fmt.Errorf("password: argon2id parameter %s=%s: %v", names[i], val, err)
		}
		vals[i] = n
	}
	// Range-check before narrowing so that m=2^32+1 is not read as 1.
	switch {
	case vals[0] > MaxMemory:
		return nil, fmt.Errorf("password: memory m=%d KiB exceeds %d KiB (1 GiB)", vals[0], MaxMemory)
	case vals[1] > MaxIterations:
		return nil, fmt.Errorf("password: iterations t=%d out of range 1..%d", vals[1], MaxIterations)
	case vals[2] > MaxParallelism:
		return nil, fmt.Errorf("password: parallelism p=%d out of range 1..%d", vals[2], MaxParallelism)
	}
	p.Memory, p.Iterations, p.Parallelism = uint32(vals[0]), uint32(vals[1]), uint8(vals[2])
	salt, err := b64.DecodeString(fields[4])
	if err != nil {
		return nil, errors.New("password: argon2id salt is not unpadded standard base64")
	}
	key, err := b64.DecodeString(fields[5])
	if err != nil {
		return nil, errors.New("password: argon2id key is not unpadded standard base64")
	}
	if len(salt) < minSaltLength || len(salt) > maxSaltLength {
		return nil, fmt.Errorf("password: argon2id salt of %d bytes, want %d..%d", len(salt), minSaltLength, maxSaltLength)
	}
	p.SaltLength, p.KeyLength = uint32(len(salt)), uint32(len(key))
	if err := p.check(); err != nil {
		return nil, err
	}
	return &parsed{params: p, salt: salt, key: key}, nil
}

// decimal parses a canonical unsigned decimal number: digits only, no
// leading zeros.
func decimal(s string) (uint64, error) {
	if s == "" || s[0] == '0' && len(s) > 1 || strings.Trim(s, "0123456789") != "" {
		return 0, errors.New("not a decimal number without sign or leading zeros")
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errors.New("number too large")
	}
	return n, nil
}

// bcryptAlphabet is bcrypt's base64 alphabet (not the standard one).
const bcryptAlphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// checkBcrypt checks $2?$CC$ + 22 characters of salt + 31 of hash. $2x$
// (crypt_blowfish's marker for hashes made with its sign-extension bug) and
// other minor versions are refused: x/crypto computes none of them.
func checkBcrypt(hash string) error {
	if len(hash) != 60 || hash[3] != '$' || hash[6] != '$' {
		return errors.New(`password: malformed bcrypt hash: want "$2b$CC$" and 53 characters of salt and hash`)
	}
	switch hash[:4] {
	case "$2a$", "$2b$", "$2y$":
	default:
		return fmt.Errorf("password: bcrypt version %q not supported (want $2a$, $2b$ or $2y$)", hash[:4])
	}
	cost, err := decimalFixed(hash[4:6])
	if err != nil {
		return errors.New("password: malformed bcrypt cost: want two digits")
	}
	if cost < bcrypt.MinCost || cost > MaxBcryptCost {
		return fmt.Errorf("password: bcrypt cost %d out of range %d..%d", cost, bcrypt.MinCost, MaxBcryptCost)
	}
	for i := 7; i < len(hash); i++ {
		if strings.IndexByte(bcryptAlphabet, hash[i]) < 0 {
			return fmt.Errorf("password: malformed bcrypt hash: character %q not in bcrypt's base64 alphabet", hash[i])
		}
	}
	return nil
}

// decimalFixed parses two digits, leading zero included (bcrypt writes
// cost 5 as "05").
func decimalFixed(s string) (int, error) {
	if len(s) != 2 || s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9' {
		return 0, errors.New("not two digits")
	}
	return int(s[0]-'0')*10 + int(s[1]-'0'), nil
}
