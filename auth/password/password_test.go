package password

import (
	"strings"
	"testing"
)

// Known answers computed by other implementations, so that a hash this
// package writes or reads means what it means everywhere else.
var knownAnswers = []struct {
	name, hash, password string
}{
	// The Argon2 reference implementation's own test vectors
	// (phc-winner-argon2, src/test.c, Argon2id version 0x13), reproduced
	// with its command line tool:
	//   echo -n password | argon2 somesalt -id -t 2 -m 16 -p 1 -l 32 -e
	{"argon2id reference m=64MiB", "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", "password"},
	//   echo -n password | argon2 somesalt -id -t 2 -k 256 -p 2 -l 32 -e
	{"argon2id reference p=2", "$argon2id$v=19$m=256,t=2,p=2$c29tZXNhbHQ$bQk8UB/VmZZF4Oo79iDXuL5/0ttZwg2f/5U52iv1cDc", "password"},
	// The reference tool with this package's default parameters:
	//   echo -n password | argon2 saltsaltsaltsalt -id -t 2 -k 19456 -p 1 -l 32 -e
	{"argon2id reference, default params", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$T95q7S205tf9WI4HhYOZDIQmMMAbntacGXTIku0gXT8", "password"},

	// Openwall's crypt_blowfish test vectors (wrapper.c), the reference
	// for bcrypt's $2a$, $2b$ and $2y$.
	{"bcrypt 2a", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U"},
	{"bcrypt 2a longer", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK", "U*U*"},
	{"bcrypt 2a, 72 bytes count", "$2a$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui",
		"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789chars after 72 are ignored"},
	{"bcrypt 2y, high bit", "$2y$05$/OK.fbVrR/bpIqNJ5ianF.Sa7shbm4.OzKpvFnX1pQLmQW96oUlCq", "\xa3"},
	{"bcrypt 2b, high bits", "$2b$05$/OK.fbVrR/bpIqNJ5ianF.CE5elHaaO4EbggVDjb8P19RukzXSM3e", "\xff\xff\xa3"},
	// Apache's htpasswd (APR's bcrypt): htpasswd -bnBC 10 "" password
	{"bcrypt htpasswd", "$2y$10$DdoweBK2A9F7YsvaHjojVunnuG9ZhVuTmSxUcXxbE.Q0SgeV4pl4S", "password"},
}

func TestKnownAnswers(t *testing.T) {
	for _, tc := range knownAnswers {
		t.Run(tc.name, func(t *testing.T) {
			if err := Check(tc.hash); err != nil {
				t.Fatalf("Check: %v", err)
			}
			ok, err := Verify(tc.hash, []byte(tc.password))
			if err != nil || !ok {
				t.Fatalf("Verify(right password) = %v, %v; want true", ok, err)
			}
			// Wrong in the first bytes: bcrypt ignores bytes past the 72nd.
			for _, wrong := range []string{"x" + tc.password, tc.password[1:], "", string(tc.password[0]^0x20) + tc.password[1:]} {
				if ok, err := Verify(tc.hash, []byte(wrong)); ok || err != nil {
					t.Errorf("Verify(%q) = %v, %v; want false, nil", wrong, ok, err)
				}
			}
		})
	}
}

// bcrypt ignores what follows the first 72 bytes: the vector above says so
// and so does every implementation; make the consequence explicit.
func TestBcryptIgnoresPast72Bytes(t *testing.T) {
	const hash = "$2a$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui"
	prefix := "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	if ok, _ := Verify(hash, []byte(prefix+"anything else")); !ok {
		t.Error("bytes after the 72nd changed the result")
	}
	if ok, _ := Verify(hash, []byte(prefix[:71])); ok {
		t.Error("71 bytes matched a 72-byte password")
	}
}

func TestHashRoundTrip(t *testing.T) {
	h, err := Hash([]byte("correct horse battery staple"))
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "$argon2id$v=19$m=19456,t=2,p=1$"
	if !strings.HasPrefix(h, prefix) {
		t.Fatalf("Hash = %q, want prefix %q", h, prefix)
	}
	fields := strings.Split(h, "$")
	if len(fields[4]) != 22 || len(fields[5]) != 43 { // 16 and 32 bytes, unpadded base64
		t.Errorf("salt %q, key %q: want 16 and 32 bytes", fields[4], fields[5])
	}
	if ok, err := Verify(h, []byte("correct horse battery staple")); !ok || err != nil {
		t.Errorf("Verify(own hash) = %v, %v", ok, err)
	}
	if ok, err := Verify(h, []byte("correct horse battery stapl")); ok || err != nil {
		t.Errorf("Verify(wrong) = %v, %v", ok, err)
	}
	h2, _ := Hash([]byte("correct horse battery staple"))
	if h2 == h {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
}

func TestHashWith(t *testing.T) {
	p := Params{Memory: 64, Iterations: 1, Parallelism: 2, SaltLength: 8, KeyLength: 16}
	h, err := HashWith([]byte("pw"), p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=2$") {
		t.Errorf("HashWith = %q", h)
	}
	if ok, err := Verify(h, []byte("pw")); !ok || err != nil {
		t.Errorf("Verify = %v, %v", ok, err)
	}
	for _, tc := range []struct {
		p    Params
		want string
	}{
		{Params{Memory: MaxMemory + 1, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}, "memory m=1048577 KiB exceeds 1048576 KiB"},
		{Params{Memory: 64, Iterations: 11, Parallelism: 1, SaltLength: 16, KeyLength: 32}, "iterations t=11 out of range 1..10"},
		{Params{Memory: 64, Iterations: 0, Parallelism: 1, SaltLength: 16, KeyLength: 32}, "iterations t=0 out of range"},
		{Params{Memory: 256, Iterations: 1, Parallelism: 17, SaltLength: 16, KeyLength: 32}, "parallelism p=17 out of range 1..16"},
		{Params{Memory: 8, Iterations: 1, Parallelism: 2, SaltLength: 16, KeyLength: 32}, "below 8 KiB per lane"},
		{Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLength: 4, KeyLength: 32}, "salt length 4 out of range 8..64"},
		{Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 8}, "key length 8 out of range 16..64"},
	} {
		if _, err := HashWith([]byte("pw"), tc.p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("HashWith(%+v): err = %v, want %q", tc.p, err, tc.want)
		}
	}
}

func TestMalformed(t *testing.T) {
	const salt, key = "c29tZXNhbHQ", "CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	argon := func(mid string) string { return "$argon2id$" + mid }
	for _, tc := range []struct{ hash, want string }{
		{"", "empty hash"},
		{"password", "not a supported PHC string"},
		{"{SSHA}abc", "not a supported PHC string"},
		{"$argon2i$v=19$m=65536,t=2,p=1$" + salt + "$" + key, "only the argon2id variant"},
		{"$argon2d$v=19$m=65536,t=2,p=1$" + salt + "$" + key, "only the argon2id variant"},
		{argon("m=65536,t=2,p=1$" + salt + "$" + key), "without v=19"},
		{argon("v=16$m=65536,t=2,p=1$" + salt + "$" + key), "only v=19"},
		{argon("v=019$m=65536,t=2,p=1$" + salt + "$" + key), "only v=19"},
		{argon("v=19$t=2,m=65536,p=1$" + salt + "$" + key), "want \"m=M,t=T,p=P\""},
		{argon("v=19$m=65536,t=2$" + salt + "$" + key), "want \"m=M,t=T,p=P\""},
		{argon("v=19$m=65536,t=2,p=1,data=eA$" + salt + "$" + key), "want \"m=M,t=T,p=P\""},
		{argon("v=19$m=065536,t=2,p=1$" + salt + "$" + key), "m=065536: not a decimal number"},
		{argon("v=19$m=+65536,t=2,p=1$" + salt + "$" + key), "m=+65536: not a decimal number"},
		{argon("v=19$m=,t=2,p=1$" + salt + "$" + key), "m=: not a decimal number"},
		{argon("v=19$m=99999999999999999999,t=2,p=1$" + salt + "$" + key), "number too large"},
		{argon("v=19$m=65536,t=2,p=1$" + salt + "$"), "key length 0 out of range"},
		{argon("v=19$m=65536,t=2,p=1$" + salt), "malformed argon2id hash"},
		{argon("v=19$m=65536,t=2,p=1$" + salt + "$" + key + "$"), "malformed argon2id hash"},
		{argon("v=19$m=65536,t=2,p=1$" + salt + "=$" + key), "salt is not unpadded standard base64"},
		{argon("v=19$m=65536,t=2,p=1$" + salt + "$" + key + "="), "key is not unpadded standard base64"},
		{argon("v=19$m=65536,t=2,p=1$c29tZXNhbHR$" + key), "salt is not unpadded standard base64"}, // non-zero trailing bits
		{argon("v=19$m=65536,t=2,p=1$c29tZQ$" + key), "salt of 4 bytes"},
		{"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOe", "malformed bcrypt hash"},
		{"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeWW", "malformed bcrypt hash"},
		{"$2x$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", `bcrypt version "$2x$" not supported`},
		{"$2$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeWx", "malformed bcrypt hash"},
		{"$2a$5x$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "malformed bcrypt cost"},
		{"$2a$03$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "bcrypt cost 3 out of range 4..16"},
		{"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOe!", `character '!' not in bcrypt's base64 alphabet`},
	} {
		if err := Check(tc.hash); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%q) = %v, want %q", tc.hash, err, tc.want)
		}
		if ok, err := Verify(tc.hash, []byte("password")); ok || err == nil {
			t.Errorf("Verify(%q) = %v, %v; want false and an error", tc.hash, ok, err)
		}
	}
}

// A hostile or careless directory must not be able to make one login cost
// gigabytes of memory or minutes of CPU: such hashes are refused before any
// hashing (these tests would take that long, or run out of memory, if they
// were not).
func TestOutOfBoundsRefused(t *testing.T) {
	const salt, key = "c29tZXNhbHQ", "CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	for _, tc := range []struct{ params, want string }{
		{"m=1048577,t=2,p=1", "memory m=1048577 KiB exceeds 1048576 KiB (1 GiB)"},
		{"m=4294967297,t=1,p=1", "memory m=4294967297 KiB exceeds"}, // 2^32+1: no wrap to 1
		{"m=65536,t=11,p=1", "iterations t=11 out of range 1..10"},
		{"m=65536,t=4294967296,p=1", "iterations t=4294967296 out of range"},
		{"m=65536,t=0,p=1", "iterations t=0 out of range"},
		{"m=65536,t=2,p=17", "parallelism p=17 out of range 1..16"},
		{"m=65536,t=2,p=257", "parallelism p=257 out of range"}, // no wrap to 1
		{"m=65536,t=2,p=0", "parallelism p=0 out of range"},
		{"m=15,t=2,p=2", "below 8 KiB per lane"},
	} {
		h := "$argon2id$v=19$" + tc.params + "$" + salt + "$" + key
		if err := Check(h); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%s) = %v, want %q", tc.params, err, tc.want)
		}
		if _, err := Verify(h, []byte("password")); err == nil {
			t.Errorf("Verify(%s): no error", tc.params)
		}
	}
	if err := Check("$2b$17$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"); err == nil || !strings.Contains(err.Error(), "bcrypt cost 17 out of range 4..16") {
		t.Errorf("bcrypt cost 17: %v", err)
	}
	if err := Check("$2b$31$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"); err == nil {
		t.Error("bcrypt cost 31 accepted")
	}
	// The bounds themselves are accepted.
	if err := Check("$argon2id$v=19$m=1048576,t=10,p=16$" + salt + "$" + key); err != nil {
		t.Errorf("at the bounds: %v", err)
	}
}

// VerifyDummy must cost what verifying a real default hash costs: it
// verifies against a hash made with DefaultParams, once.
func TestVerifyDummy(t *testing.T) {
	VerifyDummy([]byte("guess"))
	h := dummyHash()
	p, err := parse(h)
	if err != nil {
		t.Fatalf("dummy hash %q: %v", h, err)
	}
	if p.bcrypt || p.params != DefaultParams {
		t.Errorf("dummy hash params %+v, want %+v", p.params, DefaultParams)
	}
	if dummyHash() != h {
		t.Error("the dummy hash is not computed once")
	}
	if ok, _ := Verify(h, []byte("guess")); ok {
		t.Error("the dummy hash matches a guess")
	}
}

func BenchmarkVerifyArgon2id(b *testing.B) {
	h, err := Hash([]byte("password"))
	if err != nil {
		b.Fatal(err)
	}
	pw := []byte("password")
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := Verify(h, pw); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
