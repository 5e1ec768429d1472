package directory

import (
	"strings"
	"testing"
)

// users is a directory with every user feature: logins of every form,
// aliases, delegates named by login and by address (in any case, before
// and after their definition), a password hash and a disabled user.
var users = doc(
	`[[site]]`, `name = "s"`,
	`[[server]]`, `name = "m"`, `address = "10.0.0.1"`, `site = "s"`,
	`[[database]]`, `name = "D"`, `active = "m"`,
	`[[user]]`, `login = "Alice"`, `address = "alice@example.test"`, `aliases = ["a.smith@example.test"]`, `database = "D"`,
	`delegates = ["carol", "Bob.Jones@Example.test"]`,
	`password_hash = "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"`,
	`[[user]]`, `login = "bob.jones_2-x"`, `address = "bob.jones@example.test"`, `database = "D"`, `disabled = true`,
	`[[user]]`, `login = "carol"`, `address = "carol@example.test"`, `database = "D"`, `delegates = ["ALICE"]`,
	`[[user]]`, `login = "`+strings.Repeat("z", 64)+`"`, `address = "zed@example.test"`, `database = "D"`,
)

func TestUsers(t *testing.T) {
	d, err := Parse("d.toml", users)
	if err != nil {
		t.Fatal(err)
	}
	alice, bob, carol, zed := d.Users[0], d.Users[1], d.Users[2], d.Users[3]
	if alice.Login != "Alice" || alice.Database != d.Database("D") || alice.Index != 0 || carol.Index != 2 {
		t.Errorf("alice = %+v", alice)
	}
	if alice.PasswordHash != "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW" || bob.PasswordHash != "" {
		t.Errorf("password hashes %q, %q", alice.PasswordHash, bob.PasswordHash)
	}
	if alice.Disabled || !bob.Disabled {
		t.Errorf("disabled: alice %v, bob %v", alice.Disabled, bob.Disabled)
	}
	if len(alice.Delegates) != 2 || alice.Delegates[0] != carol || alice.Delegates[1] != bob {
		t.Errorf("alice's delegates = %v, want carol and bob", alice.Delegates)
	}
	if len(carol.Delegates) != 1 || carol.Delegates[0] != alice || len(bob.Delegates) != 0 {
		t.Errorf("carol's delegates = %v, bob's %v", carol.Delegates, bob.Delegates)
	}

	for _, tc := range []struct {
		name string
		want *User
	}{
		{"alice", alice},
		{"ALICE", alice},
		{`EXAMPLE\alice`, alice},
		{`example.test\Alice`, alice},
		{`\alice`, alice},
		{`a\b\alice`, alice}, // the part after the last backslash
		{"alice@example.test", alice},
		{"A.Smith@Example.TEST", alice},
		{"bob.jones_2-x", bob},
		{"BOB.JONES@example.test", bob},
		{"carol", carol},
		{strings.Repeat("Z", 64), zed},
		{strings.Repeat("z", 65), nil},
		{`EXAMPLE\` + strings.Repeat("z", 64), zed},
		{"bob", nil}, // not a prefix match
		{"alice@", nil},
		{`EXAMPLE\alice@example.test`, nil}, // neither form
		{`alice\`, nil},
		{"alice ", nil},
		{"", nil},
		{"nobody@example.test", nil},
		{"alice@example.test.", nil},
	} {
		if got := d.LookupLogin([]byte(tc.name)); got != tc.want {
			t.Errorf("LookupLogin(%.40q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestMayOpen(t *testing.T) {
	d, err := Parse("d.toml", users)
	if err != nil {
		t.Fatal(err)
	}
	alice, bob, carol, zed := d.Users[0], d.Users[1], d.Users[2], d.Users[3]
	for _, tc := range []struct {
		who, mailbox *User
		want         bool
	}{
		{alice, alice, true}, // own
		{zed, zed, true},     // own, without any delegates anywhere
		{carol, alice, true}, // alice lists carol
		{bob, alice, true},   // alice lists bob (by address); bob being disabled is not MayOpen's business
		{alice, carol, true}, // carol lists alice
		{alice, bob, false},  // delegation is not symmetric...
		{bob, carol, false},  // ...nor transitive
		{zed, alice, false},
		{nil, alice, false},
		{alice, nil, false},
	} {
		if got := tc.who.MayOpen(tc.mailbox); got != tc.want {
			t.Errorf("%v.MayOpen(%v) = %v, want %v", tc.who, tc.mailbox, got, tc.want)
		}
	}
	// Identity, not equality: the same user from another snapshot is
	// another user.
	d2, _ := Parse("d.toml", users)
	if d2.Users[2].MayOpen(alice) {
		t.Error("a user of another snapshot may open alice's mailbox")
	}
}

func TestUserErrors(t *testing.T) {
	user := func(lines ...string) []byte {
		return withBase(append([]string{`[[user]]`, `address = "u2@ex.test"`, `database = "D1"`}, lines...)...)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want []string
	}{
		{"missing login", user(),
			[]string{`d.toml:15: user[1].login: required`}},
		{"empty login", user(`login = ""`),
			[]string{`d.toml:18: user[1].login: must not be empty`}},
		{"login with @", user(`login = "u2@ex.test"`),
			[]string{`d.toml:18: user[1].login: "u2@ex.test": must be at most 64 characters of A-Z, a-z, 0-9, ".", "_" and "-"`}},
		{"login with space", user(`login = "u 2"`),
			[]string{`d.toml:18: user[1].login: "u 2": must be at most 64 characters of A-Z, a-z, 0-9, ".", "_" and "-"`}},
		{"login with backslash", user(`login = 'EX\u2'`),
			[]string{`d.toml:18: user[1].login: "EX\\u2": must be at most 64 characters of A-Z, a-z, 0-9, ".", "_" and "-"`}},
		{"login not ASCII", user(`login = "zoë"`),
			[]string{`d.toml:18: user[1].login: "zoë": must be at most 64 characters of A-Z, a-z, 0-9, ".", "_" and "-"`}},
		{"login too long", user(`login = "` + strings.Repeat("u", 65) + `"`),
			[]string{`d.toml:18: user[1].login: "` + strings.Repeat("u", 65) + `": must be at most 64 characters of A-Z, a-z, 0-9, ".", "_" and "-"`}},
		{"login not a string", user(`login = 2`),
			[]string{`d.toml:18: user[1].login: expected a string, got integer 2`}},
		{"duplicate login, other case", user(`login = "ALICE"`),
			[]string{`d.toml:18: user[1].login: login "ALICE" is already used (line 14, user[0].login); logins match case-insensitively`}},

		{"disabled not a boolean", user(`login = "u2"`, `disabled = "no"`),
			[]string{`d.toml:19: user[1].disabled: expected a boolean (true or false), got string "no"`}},

		{"empty password_hash", user(`login = "u2"`, `password_hash = ""`),
			[]string{`d.toml:19: user[1].password_hash: must not be empty (leave it out for a user without password authentication)`}},
		{"plain password", user(`login = "u2"`, `password_hash = "hunter2"`),
			[]string{`d.toml:19: user[1].password_hash: not a supported PHC string: want "$argon2id$..." or bcrypt "$2b$..."`}},
		{"argon2i", user(`login = "u2"`, `password_hash = "$argon2i$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"`),
			[]string{`d.toml:19: user[1].password_hash: only the argon2id variant of Argon2 is supported`}},
		{"argon2id too costly", user(`login = "u2"`, `password_hash = "$argon2id$v=19$m=65536,t=99,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"`),
			[]string{`d.toml:19: user[1].password_hash: iterations t=99 out of range 1..10`}},
		{"bcrypt truncated", user(`login = "u2"`, `password_hash = "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGy"`),
			[]string{`d.toml:19: user[1].password_hash: malformed bcrypt hash: want "$2b$CC$" and 53 characters of salt and hash`}},

		{"unknown delegate", user(`login = "u2"`, `delegates = ["alice", "nobody"]`),
			[]string{`d.toml:19: user[1].delegates[1]: unknown user "nobody" (name a user by login or SMTP address)`}},
		{"unknown delegate address", user(`login = "u2"`, `delegates = ["nobody@ex.test"]`),
			[]string{`d.toml:19: user[1].delegates[0]: unknown user "nobody@ex.test" (name a user by login or SMTP address)`}},
		{"delegate by down-level name", user(`login = "u2"`, `delegates = ['EX\alice']`),
			[]string{`d.toml:19: user[1].delegates[0]: unknown user "EX\\alice" (name a user by login or SMTP address)`}},
		{"self as delegate", user(`login = "u2"`, `delegates = ["U2@EX.TEST"]`),
			[]string{`d.toml:19: user[1].delegates[0]: "U2@EX.TEST" is this user, who always opens their own mailbox`}},
		{"same delegate twice", user(`login = "u2"`, `delegates = [`, `  "alice",`, `  "AL@ex.test",`, `]`),
			[]string{`d.toml:21: user[1].delegates[1]: "AL@ex.test" is user "alice" again (first at line 20, user[1].delegates[0])`}},
		{"empty delegate", user(`login = "u2"`, `delegates = [""]`),
			[]string{`d.toml:19: user[1].delegates[0]: must not be empty`}},
		{"delegates not an array", user(`login = "u2"`, `delegates = "alice"`),
			[]string{`d.toml:19: user[1].delegates: expected an array of strings, got string "alice"`}},
		{"delegates before definition", withBase(
			`[[user]]`, `login = "u2"`, `address = "u2@ex.test"`, `database = "D1"`, `delegates = ["u3"]`,
			`[[user]]`, `login = "u3"`, `address = "u3@ex.test"`, `database = "D1"`, `delegates = ["u2", "alice"]`), nil},
	} {
		t.Run(tc.name, func(t *testing.T) { checkErrors(t, tc.data, tc.want) })
	}
}

func TestKerberosPrincipals(t *testing.T) {
	const base = `
[[site]]
name = "s"
[[server]]
name = "m1"
address = "127.0.0.1"
site = "s"
[[database]]
name = "db"
active = "m1"
`
	d, err := Parse("d.toml", []byte(base+`
[[user]]
login = "alice"
address = "alice@example.test"
database = "db"
kerberos_principals = ["alice@EXAMPLE.TEST", "alice@OLD.TEST"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if u := d.LookupPrincipal("alice@EXAMPLE.TEST"); u == nil || u.Login != "alice" {
		t.Fatalf("lookup: %v", u)
	}
	for _, p := range []string{"alice@example.test", "ALICE@EXAMPLE.TEST", "alice", "alice@OTHER.TEST"} {
		if d.LookupPrincipal(p) != nil {
			t.Errorf("%q matched: principals match exactly", p)
		}
	}
	_, err = Parse("d.toml", []byte(base+`
[[user]]
login = "alice"
address = "alice@example.test"
database = "db"
kerberos_principals = ["alice", "a b@X", "bob@EXAMPLE.TEST"]
[[user]]
login = "bob"
address = "bob@example.test"
database = "db"
kerberos_principals = ["bob@EXAMPLE.TEST"]
`))
	if err == nil {
		t.Fatal("bad principals accepted")
	}
	for _, want := range []string{
		`user[0].kerberos_principals[0]: "alice": must be name@REALM`,
		`user[0].kerberos_principals[1]: "a b@X": must be at most`,
		`user[1].kerberos_principals[0]: principal "bob@EXAMPLE.TEST" is already used`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}
}
