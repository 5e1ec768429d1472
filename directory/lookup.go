package directory

import "slices"

// LookupMailbox returns the user whose primary SMTP address or alias is
// addr, compared case-insensitively (ASCII), or nil if there is none or addr
// is longer than an SMTP address can be (320 bytes).
//
// It is on the request path of every routed request and does not allocate:
// addr is lower-cased into a stack array, and indexing a map with
// string(bytes) does not copy the bytes.
func (d *Directory) LookupMailbox(addr []byte) *User {
	if len(addr) > maxAddressLen {
		return nil
	}
	var buf [maxAddressLen]byte
	return d.byAddress[string(lower(buf[:], addr))]
}

// LookupLogin returns the user a sign-in name names, or nil. name is
// compared case-insensitively (ASCII) and may be
//
//   - a login: "alice";
//   - a down-level logon name, DOMAIN\login: "EXAMPLE\alice" (the part after
//     the last backslash is the login; the domain is not checked);
//   - any of the user's SMTP addresses, when name contains "@":
//     "alice@example.test" or an alias.
//
// It does not allocate.
func (d *Directory) LookupLogin(name []byte) *User {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '@' {
			// Logins have no "@", so this can only be an address;
			// "DOMAIN\user@domain" is neither and is not found.
			return d.LookupMailbox(name)
		}
	}
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '\\' {
			name = name[i+1:]
			break
		}
	}
	if len(name) > maxLogin {
		return nil
	}
	var buf [maxLogin]byte
	return d.byLogin[string(lower(buf[:], name))]
}

// lower copies s into buf, lower-casing ASCII letters, and returns the copy.
// buf must be at least as long as s.
func lower(buf, s []byte) []byte {
	for i, c := range s {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return buf[:len(s)]
}

// MayOpen reports whether u may open mailbox, another user's or its own:
// true for its own and for those whose delegates list u. Users are compared
// by identity, so u and mailbox must come from the same snapshot. MayOpen
// does not look at Disabled: a disabled user must not get as far as asking.
// It does not allocate.
func (u *User) MayOpen(mailbox *User) bool {
	if u == nil || mailbox == nil {
		return false
	}
	return u == mailbox || slices.Contains(mailbox.Delegates, u)
}

// LookupPrincipal returns the user a Kerberos client principal
// ("alice@EXAMPLE.TEST") signs in as, or nil. Principals match exactly,
// realm included (RFC 4120 6.1: names are case-sensitive).
func (d *Directory) LookupPrincipal(principal string) *User { return d.byPrincipal[principal] }

// Server returns the server named name (exact match), or nil. It does not
// allocate.
func (d *Directory) Server(name string) *Server { return d.byServer[name] }

// Site returns the site named name (exact match), or nil.
func (d *Directory) Site(name string) *Site { return d.bySite[name] }

// Database returns the database named name (exact match), or nil.
func (d *Directory) Database(name string) *Database { return d.byDatabase[name] }
