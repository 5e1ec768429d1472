package directory

import (
	"errors"
	"io/fs"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"frontdoor/auth/password"
	"frontdoor/examples"
)

// doc joins lines with newlines, so that a test's line N is lines[N-1].
func doc(lines ...string) []byte { return []byte(strings.Join(lines, "\n") + "\n") }

func TestParseExample(t *testing.T) {
	d, err := Parse("directory.toml", examples.Directory)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(d.Sites) != 2 || len(d.Servers) != 2 || len(d.Databases) != 2 || len(d.Users) != 4 {
		t.Fatalf("got %d sites, %d servers, %d databases, %d users; want 2, 2, 2, 4",
			len(d.Sites), len(d.Servers), len(d.Databases), len(d.Users))
	}
	mbx1, mbx2 := d.Server("mbx1"), d.Server("mbx2")
	if mbx1 == nil || mbx2 == nil {
		t.Fatal("Server(mbx1), Server(mbx2) not found")
	}
	if mbx1.Address != "127.0.0.1:18081" || mbx1.Site != d.Site("site-a") || mbx1.Index != 0 || d.Servers[0] != mbx1 || mbx1.Version != (Version{15, 2, 1544, 4}) {
		t.Errorf("mbx1 = %+v", mbx1)
	}
	if mbx2.Address != "127.0.0.1:18082" || mbx2.Site != d.Site("site-b") || mbx2.Index != 1 || d.Servers[1] != mbx2 {
		t.Errorf("mbx2 = %+v", mbx2)
	}
	if s := d.Site("site-b"); s == nil || s.ExternalURL != "https://mail-b.example.test" {
		t.Errorf("Site(site-b) = %+v", s)
	}
	db1, db2 := d.Database("DB01"), d.Database("DB02")
	if db1 == nil || db1.Active != mbx1 || !reflect.DeepEqual(db1.Copies, []*Server{mbx2}) {
		t.Errorf("DB01 = %+v", db1)
	}
	if db2 == nil || db2.Active != mbx2 || !reflect.DeepEqual(db2.Copies, []*Server{mbx1}) {
		t.Errorf("DB02 = %+v", db2)
	}
	for addr, db := range map[string]*Database{"alice@example.test": db1, "a.smith@example.test": db1, "bob@example.test": db2, "carol@example.test": db1, "dave@example.test": db2} {
		if m := d.LookupMailbox([]byte(addr)); m == nil || m.Database != db {
			t.Errorf("LookupMailbox(%q) = %+v, want a mailbox on %s", addr, m, db.Name)
		}
	}
	alice, bob, carol, dave := d.Users[0], d.Users[1], d.Users[2], d.Users[3]
	for i, u := range d.Users {
		if u.Index != i {
			t.Errorf("%s: Index %d, want %d", u.Login, u.Index, i)
		}
	}
	if alice.Login != "alice" || bob.Login != "bob" || carol.Login != "carol" || dave.Login != "dave" {
		t.Errorf("logins %q %q %q %q", alice.Login, bob.Login, carol.Login, dave.Login)
	}
	// The development passwords are "password", as the comment says.
	for _, u := range []*User{alice, bob} {
		if ok, err := password.Verify(u.PasswordHash, []byte("password")); !ok || err != nil {
			t.Errorf("%s: the example password does not verify: %v, %v", u.Login, ok, err)
		}
	}
	if carol.PasswordHash != "" || carol.Disabled || !dave.Disabled || alice.Disabled {
		t.Errorf("carol: hash %q, disabled %v; dave disabled %v; alice disabled %v", carol.PasswordHash, carol.Disabled, dave.Disabled, alice.Disabled)
	}
	if !reflect.DeepEqual(alice.Delegates, []*User{carol}) || !carol.MayOpen(alice) || carol.MayOpen(bob) {
		t.Errorf("alice's delegates %v: want carol", alice.Delegates)
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join("..", "examples", "directory.toml")
	if _, err := Load(path); err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "nope.toml")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing file: err = %v, want fs.ErrNotExist", err)
	}
}

// An empty file (one truncated, or caught half-written by a reload) routes
// nowhere: it is refused, so a reload never takes every mailbox out of
// service.
func TestEmptyDirectoryIsRefused(t *testing.T) {
	_, err := Parse("empty.toml", nil)
	if err == nil || err.Error() != "empty.toml:1: server: at least one [[server]] is required" {
		t.Fatalf("Parse of an empty file: %v", err)
	}
}

func TestLookupMailbox(t *testing.T) {
	d, err := Parse("d.toml", doc(
		`[[site]]`, `name = "s"`,
		`[[server]]`, `name = "m"`, `address = "10.0.0.1"`, `site = "s"`,
		`[[database]]`, `name = "D"`, `active = "m"`,
		`[[user]]`, `login = "alice"`, `address = "Alice@Example.test"`, `aliases = ["a.smith@example.test", "ALIAS+tag@sub.example.test"]`, `database = "D"`,
		`[[user]]`, `login = "bob"`, `address = "bob@example.test"`, `database = "D"`,
	))
	if err != nil {
		t.Fatal(err)
	}
	alice, bob := d.Users[0], d.Users[1]
	long := strings.Repeat("a", 64) + "@" + strings.Repeat("b", 250) + ".test" // 320 bytes
	for _, tc := range []struct {
		addr string
		want *User
	}{
		{"alice@example.test", alice},
		{"Alice@Example.test", alice},
		{"ALICE@EXAMPLE.TEST", alice},
		{"a.smith@example.test", alice},
		{"A.Smith@EXAMPLE.test", alice},
		{"alias+tag@sub.example.test", alice},
		{"bob@example.test", bob},
		{"BOB@example.TEST", bob},
		{"carol@example.test", nil},
		{"alice@example.tes", nil},
		{"alice", nil},
		{"", nil},
		{"alice@example.test ", nil},
		{long, nil},
		{long + "x", nil},
	} {
		if got := d.LookupMailbox([]byte(tc.addr)); got != tc.want {
			t.Errorf("LookupMailbox(%.40q) = %v, want %v", tc.addr, got, tc.want)
		}
	}
	if alice.Address != "Alice@Example.test" {
		t.Errorf("Address = %q: the address must be kept as written", alice.Address)
	}
}

func TestHostPort(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"127.0.0.1:18081", "127.0.0.1:18081"},
		{"127.0.0.1", "127.0.0.1:443"},
		{"mbx1.example.test", "mbx1.example.test:443"},
		{"mbx1.example.test:8443", "mbx1.example.test:8443"},
		{"::1", "[::1]:443"},
		{"[::1]", "[::1]:443"},
		{"[::1]:8443", "[::1]:8443"},
		{"[fe80::1%eth0]:80", "[fe80::1%eth0]:80"},
		{"fe80::1%eth0", "[fe80::1%eth0]:443"},
	} {
		s := &Server{Address: tc.addr}
		if got := s.HostPort(443); got != tc.want {
			t.Errorf("HostPort(%q, 443) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

// Base lines for error cases: a valid directory, lines 1-14, so each case adds
// exactly the problem it tests.
var base = []string{
	`[[site]]`,                  // 1
	`name = "a"`,                // 2
	`[[server]]`,                // 3
	`name = "m1"`,               // 4
	`address = "10.0.0.1"`,      // 5
	`site = "a"`,                // 6
	`[[database]]`,              // 7
	`name = "D1"`,               // 8
	`active = "m1"`,             // 9
	`[[user]]`,                  // 10
	`address = "alice@ex.test"`, // 11
	`aliases = ["al@ex.test"]`,  // 12
	`database = "D1"`,           // 13
	`login = "alice"`,           // 14
}

func withBase(lines ...string) []byte { return doc(append(append([]string{}, base...), lines...)...) }

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		want []string // every line of the error, exactly
	}{
		// TOML syntax, keys and types.
		{"syntax", withBase(`[[server]]`, `name = "m2`),
			[]string{`d.toml:16: server[1].name: basic strings cannot have new lines`}},
		{"unknown key", withBase(`[[server]]`, `name = "m2"`, `adress = "h"`),
			[]string{`d.toml:17: server[1].adress: unknown key (did you mean "address"?)`}},
		{"unknown section", withBase(`[[users]]`),
			[]string{`d.toml:15: users: unknown table (did you mean "user"?)`}},
		{"old mailbox section", withBase(`[[mailbox]]`),
			[]string{`d.toml:15: mailbox: unknown table (valid keys: site, server, database, user)`}},
		{"copies not an array", withBase(`[[database]]`, `name = "D2"`, `active = "m1"`, `copies = "m1"`),
			[]string{`d.toml:18: database[1].copies: expected an array of strings, got string "m1"`}},
		{"aliases of numbers", withBase(`[[user]]`, `address = "b@ex.test"`, `aliases = [1]`, `database = "D1"`, `login = "u2"`),
			[]string{`d.toml:17: user[1].aliases[0]: expected a string, got integer 1`}},

		// Required keys, reported at their table's line.
		{"empty tables", withBase(`[[site]]`, `[[server]]`, `[[database]]`, `[[user]]`),
			[]string{
				`d.toml:15: site[1].name: required`,
				`d.toml:16: server[1].name: required`,
				`d.toml:16: server[1].address: required`,
				`d.toml:16: server[1].site: required`,
				`d.toml:17: database[1].name: required`,
				`d.toml:17: database[1].active: required`,
				`d.toml:18: user[1].login: required`,
				`d.toml:18: user[1].address: required`,
				`d.toml:18: user[1].database: required`,
			}},
		{"empty name", withBase(`[[site]]`, `name = ""`),
			[]string{`d.toml:16: site[1].name: must not be empty`}},
		{"name with control character", withBase(`[[site]]`, `name = "b\tc"`),
			[]string{`d.toml:16: site[1].name: "b\tc": must be at most 128 characters, without control characters or surrounding spaces`}},
		{"names may have inner spaces", withBase(`[[database]]`, `name = "Mailbox Database 0123"`, `active = "m1"`), nil},

		// Duplicates.
		{"duplicate site", withBase(`[[site]]`, `name = "a"`),
			[]string{`d.toml:16: site[1].name: duplicate site "a" (first at line 2, site[0].name)`}},
		{"duplicate server", withBase(`[[server]]`, `name = "m1"`, `address = "10.0.0.2"`, `site = "a"`),
			[]string{`d.toml:16: server[1].name: duplicate server "m1" (first at line 4, server[0].name)`}},
		{"duplicate database", withBase(`[[database]]`, `name = "D1"`, `active = "m1"`),
			[]string{`d.toml:16: database[1].name: duplicate database "D1" (first at line 8, database[0].name)`}},
		{"duplicate address, other case", withBase(`[[user]]`, `address = "ALICE@ex.test"`, `database = "D1"`, `login = "u2"`),
			[]string{`d.toml:16: user[1].address: address "ALICE@ex.test" is already used (line 11, user[0].address); addresses match case-insensitively`}},
		{"alias is another mailbox's alias", withBase(`[[user]]`, `address = "bob@ex.test"`, `aliases = ["Al@Ex.Test"]`, `database = "D1"`, `login = "u2"`),
			[]string{`d.toml:17: user[1].aliases[0]: address "Al@Ex.Test" is already used (line 12, user[0].aliases[0]); addresses match case-insensitively`}},
		{"alias repeats own address", withBase(`[[user]]`, `address = "bob@ex.test"`, `aliases = ["bob@ex.test"]`, `database = "D1"`, `login = "u2"`),
			[]string{`d.toml:17: user[1].aliases[0]: address "bob@ex.test" is already used (line 16, user[1].address); addresses match case-insensitively`}},
		{"copy listed twice", withBase(`[[server]]`, `name = "m2"`, `address = "10.0.0.2"`, `site = "a"`,
			`[[database]]`, `name = "D2"`, `active = "m1"`, `copies = ["m2", "m2"]`),
			[]string{`d.toml:22: database[1].copies[1]: duplicate copy on server "m2" (first at line 22, database[1].copies[0])`}},

		// Dangling references and the active copy among the copies.
		{"unknown site", withBase(`[[server]]`, `name = "m2"`, `address = "10.0.0.2"`, `site = "b"`),
			[]string{`d.toml:18: server[1].site: unknown site "b" (defined: a)`}},
		{"unknown active", withBase(`[[database]]`, `name = "D2"`, `active = "m9"`),
			[]string{`d.toml:17: database[1].active: unknown server "m9" (defined: m1)`}},
		{"unknown copy", withBase(`[[database]]`, `name = "D2"`, `active = "m1"`, `copies = ["m9"]`),
			[]string{`d.toml:18: database[1].copies[0]: unknown server "m9" (defined: m1)`}},
		{"unknown database", withBase(`[[user]]`, `address = "b@ex.test"`, `database = "D9"`, `login = "u2"`),
			[]string{`d.toml:17: user[1].database: unknown database "D9" (defined: D1)`}},
		{"no sites at all", doc(`[[server]]`, `name = "m"`, `address = "h"`, `site = "a"`),
			[]string{`d.toml:4: server[0].site: unknown site "a" (none defined)`}},
		{"active among copies", withBase(`[[database]]`, `name = "D2"`, `active = "m1"`, `copies = ["m1"]`),
			[]string{`d.toml:18: database[1].copies[0]: "m1" holds the active copy (active = "m1"); copies lists the passive copies only`}},

		// Upstream TLS.
		{"tls not a boolean", withBase(`[[server]]`, `name = "m2"`, `address = "10.0.0.2"`, `site = "a"`, `tls = "yes"`),
			[]string{`d.toml:19: server[1].tls: expected a boolean (true or false), got string "yes"`}},
		{"tls_server_name without tls", withBase(`[[server]]`, `name = "m2"`, `address = "10.0.0.2"`, `site = "a"`, `tls_server_name = "m2.ex.test"`),
			[]string{`d.toml:19: server[1].tls_server_name: only with tls = true`}},
		{"empty tls_server_name", withBase(`[[server]]`, `name = "m2"`, `address = "mbx2.ex.test:443"`, `site = "a"`, `tls = true`, `tls_server_name = ""`),
			[]string{`d.toml:20: server[1].tls_server_name: must not be empty (leave it out to check the host of the address, "mbx2.ex.test")`}},
		{"bad tls_server_name", withBase(`[[server]]`, `name = "m2"`, `address = "10.0.0.2"`, `site = "a"`, `tls = true`, `tls_server_name = "bad_name"`),
			[]string{`d.toml:20: server[1].tls_server_name: "bad_name": must be a host name or an IP address`}},
		{"tls_server_name with port", withBase(`[[server]]`, `name = "m2"`, `address = "10.0.0.2"`, `site = "a"`, `tls = true`, `tls_server_name = "m2.ex.test:443"`),
			[]string{`d.toml:20: server[1].tls_server_name: "m2.ex.test:443": must be a host name or an IP address`}},

		// Site URLs.
		{"external_url not http", withBase(`[[site]]`, `name = "b"`, `external_url = "ftp://mail.ex.test"`),
			[]string{`d.toml:17: site[1].external_url: "ftp://mail.ex.test": must be an absolute http or https URL, e.g. "https://mail.example.com"`}},
		{"external_url relative", withBase(`[[site]]`, `name = "b"`, `external_url = "mail.ex.test"`),
			[]string{`d.toml:17: site[1].external_url: "mail.ex.test": must be an absolute http or https URL, e.g. "https://mail.example.com"`}},
		{"external_url with query", withBase(`[[site]]`, `name = "b"`, `external_url = "https://mail.ex.test/?x=1"`),
			[]string{`d.toml:17: site[1].external_url: "https://mail.ex.test/?x=1": must not have a query or fragment`}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkErrors(t, tc.data, tc.want) })
	}
}

func TestServerTLS(t *testing.T) {
	d, err := Parse("d.toml", withBase(
		`[[server]]`, `name = "m2"`, `address = "mbx2.ex.test:8443"`, `site = "a"`, `tls = true`,
		`[[server]]`, `name = "m3"`, `address = "[::1]:8443"`, `site = "a"`, `tls = true`, `tls_server_name = "mbx3.ex.test"`,
		`[[server]]`, `name = "m4"`, `address = "10.0.0.4"`, `site = "a"`, `tls = true`,
	))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, serverName string
		tls              bool
	}{
		{"m1", "", false},
		{"m2", "mbx2.ex.test", true},
		{"m3", "mbx3.ex.test", true},
		{"m4", "10.0.0.4", true},
	} {
		s := d.byServer[tc.name]
		if s.TLS != tc.tls || s.TLSServerName != tc.serverName {
			t.Errorf("%s: TLS %v, server name %q; want %v, %q", tc.name, s.TLS, s.TLSServerName, tc.tls, tc.serverName)
		}
	}
}

func TestServerAddressErrors(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"10.0.0.1:99999", "port out of range"},
		{"10.0.0.1:0", "port out of range"},
		{"10.0.0.1:", `port "" is not a number`},
		{"mbx:https", `port "https" is not a number`},
		{":443", "missing host"},
		{"bad_host", `host "bad_host" is neither an IP address nor a host name`},
		{"10.0.0.256", `host "10.0.0.256" is neither an IP address nor a host name`},
		{"[::1", `missing "]" after IPv6 address`},
		{"[10.0.0.1]:80", `"10.0.0.1" in brackets is not an IPv6 address`},
		{"[::1]x", `want "[IPv6]" or "[IPv6]:port"`},
		{"::1:zz:80", `not an IPv6 address; write an IPv6 address with a port as "[IPv6]:port"`},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			checkErrors(t, withBase(`[[server]]`, `name = "m2"`, `address = "`+tc.addr+`"`, `site = "a"`),
				[]string{`d.toml:17: server[1].address: "` + tc.addr + `": ` + tc.want})
		})
	}
}

func TestSMTPAddressErrors(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"bob", `bad SMTP address: missing "@"`},
		{"@ex.test", "bad SMTP address: empty local part"},
		{"bob@", "bad SMTP address: empty domain"},
		{".bob@ex.test", `bad SMTP address: local part starts or ends with "." or has ".."`},
		{"bob.@ex.test", `bad SMTP address: local part starts or ends with "." or has ".."`},
		{"b..ob@ex.test", `bad SMTP address: local part starts or ends with "." or has ".."`},
		{"b ob@ex.test", `bad SMTP address: character ' ' not allowed in the local part`},
		{"b@ob@ex.test", `bad SMTP address: character '@' not allowed in the local part`},
		{"bob@ex_ample.test", `bad SMTP address: "ex_ample.test" is not a valid domain`},
		{"bob@-ex.test", `bad SMTP address: "-ex.test" is not a valid domain`},
		{"bob@ex..test", `bad SMTP address: "ex..test" is not a valid domain`},
		{"bob@10.0.0.1", "bad SMTP address: the domain must be a name, not an IP address"},
		{"bøb@ex.test", "bad SMTP address: non-ASCII addresses (SMTPUTF8) are not supported"},
		{strings.Repeat("b", 65) + "@ex.test", "bad SMTP address: local part longer than 64 characters"},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			checkErrors(t, withBase(`[[user]]`, `address = "`+tc.addr+`"`, `database = "D1"`, `login = "u2"`),
				[]string{`d.toml:16: user[1].address: "` + tc.addr + `": ` + tc.want})
		})
	}
	// The odd but valid.
	for _, addr := range []string{"o'brien+tag@ex.test", "a.b.c@sub.ex.test", "x@localhost", "{x}=y@ex.test"} {
		checkErrors(t, withBase(`[[user]]`, `address = "`+addr+`"`, `database = "D1"`, `login = "u2"`), nil)
	}
}

func checkErrors(t *testing.T, data []byte, want []string) {
	t.Helper()
	_, err := Parse("d.toml", data)
	if want == nil {
		if err != nil {
			t.Fatalf("unexpected error:\n%v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error; want:\n%s", strings.Join(want, "\n"))
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}

func TestErrorsAs(t *testing.T) {
	_, err := Parse("x/directory.toml", withBase(`[[user]]`, `address = "b@ex.test"`, `database = "D9"`, `login = "u2"`))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("errors.As(%v, *Error) = false", err)
	}
	if e.File != "x/directory.toml" || e.Line != 17 || e.Key != "user[1].database" {
		t.Errorf("got %+v", e)
	}
}
