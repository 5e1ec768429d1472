package directory

import (
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"

	"frontdoor/auth/password"
	"frontdoor/internal/hostport"
	"frontdoor/internal/tomlpos"
)

// Error is one problem in a directory file. Load and Parse return every
// problem they find as a tomlpos.Errors list (its Error method prints one
// "FILE:LINE: KEY: message" line per problem); errors.As with a *Error
// target finds the first.
type Error = tomlpos.Error

// The file's schema. Names and references are resolved into the pointer
// graph of Directory after validation.
type file struct {
	Sites     []siteEntry     `toml:"site"`
	Servers   []serverEntry   `toml:"server"`
	Databases []databaseEntry `toml:"database"`
	Users     []userEntry     `toml:"user"`
}

type siteEntry struct {
	Name        string `toml:"name"`
	ExternalURL string `toml:"external_url"`
}

type serverEntry struct {
	Name          string `toml:"name"`
	Address       string `toml:"address"`
	Site          string `toml:"site"`
	Version       string `toml:"version"`
	TLS           bool   `toml:"tls"`
	TLSServerName string `toml:"tls_server_name"`
}

type databaseEntry struct {
	Name   string   `toml:"name"`
	Active string   `toml:"active"`
	Copies []string `toml:"copies"`
}

type userEntry struct {
	Login        string   `toml:"login"`
	Address      string   `toml:"address"`
	Aliases      []string `toml:"aliases"`
	Database     string   `toml:"database"`
	PasswordHash string   `toml:"password_hash"`
	Disabled     bool     `toml:"disabled"`
	Delegates    []string `toml:"delegates"`
	// KerberosPrincipals map Kerberos client principals to the user.
	KerberosPrincipals []string `toml:"kerberos_principals"`
}

// maxLogin is the longest login, as long as an SMTP local part.
const maxLogin = 64

// Load reads and validates the directory file at path; errors name the file
// as path.
func Load(path string) (*Directory, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse decodes and validates a directory read from the file name (used in
// error messages). The format is described in docs/directory.md. Decoding is
// strict: unknown keys, wrong types, duplicates, dangling references and
// malformed names, addresses, versions and password hashes are errors, all
// reported at once.
func Parse(name string, data []byte) (*Directory, error) {
	d, _, _, err := parse(name, data)
	return d, err
}

// parse is Parse that also returns the decoded file and its position
// index, for in-place edits (SetActive).
func parse(name string, data []byte) (*Directory, *file, *tomlpos.Doc, error) {
	var f file
	doc, err := tomlpos.Decode(name, data, &f)
	if err != nil {
		return nil, nil, nil, err
	}
	d := build(doc, &f)
	if err := doc.Err(); err != nil {
		return nil, nil, nil, err
	}
	return d, &f, doc, nil
}

// build validates f, reporting problems to doc, and links its entries into a
// Directory. The result is only meaningful when doc has no errors.
func build(doc *tomlpos.Doc, f *file) *Directory {
	d := &Directory{
		byAddress:   make(map[string]*User),
		byLogin:     make(map[string]*User, len(f.Users)),
		byServer:    make(map[string]*Server, len(f.Servers)),
		bySite:      make(map[string]*Site, len(f.Sites)),
		byDatabase:  make(map[string]*Database, len(f.Databases)),
		byPrincipal: make(map[string]*User),
	}
	v := checker{Doc: doc}

	// A directory that routes nowhere is a mistake, most likely a file
	// caught half-written or truncated: refused, so a reload never swaps
	// every mailbox out of service.
	if len(f.Servers) == 0 {
		v.Report("server", "at least one [[server]] is required")
	}

	siteAt := make(map[string]string)
	for i, e := range f.Sites {
		at := fmt.Sprintf("site[%d]", i)
		if v.name(at+".name", e.Name) {
			v.unique(siteAt, e.Name, at+".name", "site")
		}
		if e.ExternalURL != "" {
			if err := checkExternalURL(e.ExternalURL); err != nil {
				v.Report(at+".external_url", "%q: %v", e.ExternalURL, err)
			}
		}
		s := &Site{Name: e.Name, ExternalURL: e.ExternalURL}
		d.Sites = append(d.Sites, s)
		if _, dup := d.bySite[e.Name]; !dup {
			d.bySite[e.Name] = s
		}
	}

	serverAt := make(map[string]string)
	for i, e := range f.Servers {
		at := fmt.Sprintf("server[%d]", i)
		if v.name(at+".name", e.Name) {
			v.unique(serverAt, e.Name, at+".name", "server")
		}
		host := ""
		if v.Required(at+".address", e.Address) {
			var err error
			if host, _, err = splitAddress(e.Address); err != nil {
				v.Report(at+".address", "%q: %v", e.Address, err)
			}
		}
		s := &Server{Name: e.Name, Address: e.Address, Index: i, TLS: e.TLS}
		if v.Has(at + ".version") {
			switch ver, err := ParseVersion(e.Version); {
			case e.Version == "":
				v.Report(at+".version", "must not be empty (leave it out when the version is unknown)")
			case err != nil:
				v.Report(at+".version", "%q: %v; want up to 4 dot-separated numbers, e.g. \"15.2.1544.4\"", e.Version, err)
			case ver == Version{}:
				v.Report(at+".version", "%q: the zero version means unknown; leave the key out instead", e.Version)
			default:
				s.Version = ver
			}
		}
		if e.TLS {
			s.TLSServerName = host
		}
		switch {
		case !v.Has(at + ".tls_server_name"):
		case !e.TLS:
			v.Report(at+".tls_server_name", "only with tls = true")
		case e.TLSServerName == "":
			v.Report(at+".tls_server_name", "must not be empty (leave it out to check the host of the address, %q)", host)
		default:
			if _, ok := hostport.CanonicalHost(e.TLSServerName); !ok || strings.ContainsAny(e.TLSServerName, "[]") {
				v.Report(at+".tls_server_name", "%q: must be a host name or an IP address", e.TLSServerName)
			} else {
				s.TLSServerName = e.TLSServerName
			}
		}
		if v.Required(at+".site", e.Site) {
			if s.Site = d.bySite[e.Site]; s.Site == nil {
				v.Report(at+".site", "unknown site %q%s", e.Site, defined(f.Sites, func(s siteEntry) string { return s.Name }))
			}
		}
		d.Servers = append(d.Servers, s)
		if _, dup := d.byServer[e.Name]; !dup {
			d.byServer[e.Name] = s
		}
	}
	serverNames := func(s serverEntry) string { return s.Name }

	databaseAt := make(map[string]string)
	for i, e := range f.Databases {
		at := fmt.Sprintf("database[%d]", i)
		if v.name(at+".name", e.Name) {
			v.unique(databaseAt, e.Name, at+".name", "database")
		}
		db := &Database{Name: e.Name}
		if v.Required(at+".active", e.Active) {
			if db.Active = d.byServer[e.Active]; db.Active == nil {
				v.Report(at+".active", "unknown server %q%s", e.Active, defined(f.Servers, serverNames))
			}
		}
		copyAt := make(map[string]string)
		for j, name := range e.Copies {
			cat := fmt.Sprintf("%s.copies[%d]", at, j)
			s := d.byServer[name]
			switch {
			case s == nil:
				v.Report(cat, "unknown server %q%s", name, defined(f.Servers, serverNames))
			case name == e.Active:
				v.Report(cat, "%q holds the active copy (active = %q); copies lists the passive copies only", name, e.Active)
			default:
				if v.unique(copyAt, name, cat, "copy on server") {
					db.Copies = append(db.Copies, s)
				}
			}
		}
		d.Databases = append(d.Databases, db)
		if _, dup := d.byDatabase[e.Name]; !dup {
			d.byDatabase[e.Name] = db
		}
	}

	// Users in two passes: delegates may name users defined further down.
	addressAt := make(map[string]string) // lower-cased address or alias -> path
	principalAt := make(map[string]string)
	loginAt := make(map[string]string) // lower-cased login -> path
	for i, e := range f.Users {
		at := fmt.Sprintf("user[%d]", i)
		u := &User{Login: e.Login, Address: e.Address, Aliases: e.Aliases, Disabled: e.Disabled, Index: i}
		v.login(d, loginAt, at+".login", e.Login, u)
		v.address(d, addressAt, at+".address", e.Address, u)
		for j, alias := range e.Aliases {
			v.address(d, addressAt, fmt.Sprintf("%s.aliases[%d]", at, j), alias, u)
		}
		if v.Required(at+".database", e.Database) {
			if u.Database = d.byDatabase[e.Database]; u.Database == nil {
				v.Report(at+".database", "unknown database %q%s", e.Database,
					defined(f.Databases, func(db databaseEntry) string { return db.Name }))
			}
		}
		if v.Has(at + ".password_hash") {
			if e.PasswordHash == "" {
				v.Report(at+".password_hash", "must not be empty (leave it out for a user without password authentication)")
			} else if err := password.Check(e.PasswordHash); err != nil {
				// The hash itself stays out of the message: it is
				// not for logs.
				v.Report(at+".password_hash", "%s", strings.TrimPrefix(err.Error(), "password: "))
			} else {
				u.PasswordHash = e.PasswordHash
			}
		}
		for j, p := range e.KerberosPrincipals {
			v.principal(d, principalAt, fmt.Sprintf("%s.kerberos_principals[%d]", at, j), p, u)
		}
		d.Users = append(d.Users, u)
	}
	for i, e := range f.Users {
		u := d.Users[i]
		delegateAt := make(map[*User]string)
		for j, name := range e.Delegates {
			path := fmt.Sprintf("user[%d].delegates[%d]", i, j)
			if !v.Required(path, name) {
				continue
			}
			var del *User
			if strings.Contains(name, "@") {
				del = d.byAddress[strings.ToLower(name)]
			} else {
				del = d.byLogin[strings.ToLower(name)]
			}
			switch first, dup := delegateAt[del]; {
			case del == nil:
				v.Report(path, "unknown user %q (name a user by login or SMTP address)", name)
			case del == u:
				v.Report(path, "%q is this user, who always opens their own mailbox", name)
			case dup:
				v.Report(path, "%q is user %q again (first at line %d, %s)", name, del.Login, v.Line(first), first)
			default:
				delegateAt[del] = path
				u.Delegates = append(u.Delegates, del)
			}
		}
	}
	return d
}

// checker reports problems found in values to a Doc.
type checker struct{ *tomlpos.Doc }

// name checks a required site, server or database name. Names are matched
// exactly (case-sensitively) and may contain spaces, as Exchange database
// names often do, but not at either end.
func (v checker) name(path, s string) bool {
	if !v.Required(path, s) {
		return false
	}
	if len(s) > 128 || s != strings.TrimSpace(s) || strings.IndexFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0 {
		v.Report(path, "%q: must be at most 128 characters, without control characters or surrounding spaces", s)
		return false
	}
	return true
}

// unique reports key when seen already has it, naming where it was first
// used, else records it as used at path. It returns whether key was new.
func (v checker) unique(seen map[string]string, key, path, what string) bool {
	if first, dup := seen[key]; dup {
		v.Report(path, "duplicate %s %q (first at line %d, %s)", what, key, v.Line(first), first)
		return false
	}
	seen[key] = path
	return true
}

// login checks a user's login and indexes it. Logins are limited to
// characters that need no quoting anywhere (protocol commands, logs, URLs)
// and have no "@", so that a sign-in name with one is always an address.
func (v checker) login(d *Directory, seen map[string]string, path, login string, u *User) {
	if !v.Required(path, login) {
		return
	}
	if len(login) > maxLogin || strings.Trim(login, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != "" {
		v.Report(path, "%q: must be at most %d characters of A-Z, a-z, 0-9, \".\", \"_\" and \"-\"", login, maxLogin)
		return
	}
	key := strings.ToLower(login)
	if first, dup := seen[key]; dup {
		v.Report(path, "login %q is already used (line %d, %s); logins match case-insensitively", login, v.Line(first), first)
		return
	}
	seen[key] = path
	d.byLogin[key] = u
}

// address checks a user's primary address or alias and indexes it.
func (v checker) address(d *Directory, seen map[string]string, path, addr string, u *User) {
	if !v.Required(path, addr) {
		return
	}
	if err := checkSMTPAddress(addr); err != nil {
		v.Report(path, "%q: %v", addr, err)
		return
	}
	key := strings.ToLower(addr)
	if first, dup := seen[key]; dup {
		v.Report(path, "address %q is already used (line %d, %s); addresses match case-insensitively", addr, v.Line(first), first)
		return
	}
	seen[key] = path
	d.byAddress[key] = u
}

// maxPrincipal bounds a Kerberos principal name as written.
const maxPrincipal = 256

// principal checks a Kerberos client principal and indexes it. Principal
// names and realms are case-sensitive (RFC 4120 6.1, 6.2), so it is
// matched exactly; the realm is required, so that a name from another
// realm can never match by accident.
func (v checker) principal(d *Directory, seen map[string]string, path, p string, u *User) {
	if !v.Required(path, p) {
		return
	}
	at := strings.LastIndexByte(p, '@')
	switch {
	case len(p) > maxPrincipal || strings.IndexFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0:
		v.Report(path, "%q: must be at most %d characters, without spaces or control characters", p, maxPrincipal)
		return
	case at <= 0 || at == len(p)-1:
		v.Report(path, "%q: must be name@REALM (the realm is required)", p)
		return
	}
	if first, dup := seen[p]; dup {
		v.Report(path, "principal %q is already used (line %d, %s)", p, v.Line(first), first)
		return
	}
	seen[p] = path
	d.byPrincipal[p] = u
	u.KerberosPrincipals = append(u.KerberosPrincipals, p)
}

// defined lists the names defined in a section, for "unknown" messages.
func defined[T any](entries []T, name func(T) string) string {
	if len(entries) == 0 {
		return " (none defined)"
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if n := name(e); n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	const show = 8 // enough to spot a typo without flooding the terminal
	if len(names) > show {
		return fmt.Sprintf(" (defined: %s, ... %d more)", strings.Join(names[:show], ", "), len(names)-show)
	}
	return " (defined: " + strings.Join(names, ", ") + ")"
}

// checkExternalURL checks a site's external URL: absolute http(s) with a host
// and nothing that cannot prefix a redirect target.
func checkExternalURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil, u.Scheme != "http" && u.Scheme != "https", u.Host == "", u.Opaque != "":
		return fmt.Errorf(`must be an absolute http or https URL, e.g. "https://mail.example.com"`)
	case u.User != nil:
		return fmt.Errorf("must not contain user information")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return fmt.Errorf("must not have a query or fragment")
	}
	return nil
}
