// Package directory is frontdoor's source of truth for who the users are
// and where their mailboxes live: user (login, SMTP addresses, password
// hash, delegates) → mailbox database → the mailbox server holding the
// database's active copy → that server's address, version and site.
//
// A Directory is an immutable snapshot, loaded from a file by Load or Parse
// (format: docs/directory.md). A Live holds the current snapshot of a
// Source, reloads it when the source changes and swaps the new one in
// atomically; a request uses one snapshot from start to end.
package directory

// Directory is one loaded and validated directory snapshot. Build it with
// Load or Parse (a Directory literal lacks the lookup indexes: its lookups
// find nothing); it is read-only afterwards, so any number of goroutines may
// use it at once.
type Directory struct {
	Sites     []*Site
	Servers   []*Server
	Databases []*Database
	Users     []*User

	// Generation numbers the snapshots a Live publishes: 1 for the first,
	// one more for each reload. It is 0 for a Directory that no Live
	// published.
	Generation uint64

	// Indexes built by Parse, keyed by lower-cased primary address and
	// alias, lower-cased login, and name.
	byAddress  map[string]*User
	byLogin    map[string]*User
	byServer   map[string]*Server
	bySite     map[string]*Site
	byDatabase map[string]*Database
	// byPrincipal is keyed by Kerberos principal, exactly as written.
	byPrincipal map[string]*User
}

// Site is a datacenter or AD site that mailbox servers belong to.
type Site struct {
	Name        string
	ExternalURL string
}

// Server is a mailbox server.
type Server struct {
	Name string
	// Address is "host" or "host:port"; with a port, every protocol is
	// served on that port, without one the protocol's backend_port applies.
	Address string
	Site    *Site
	// Version is the server's build, e.g. 15.2.1544.4; zero when the
	// directory does not say.
	Version Version
	// TLS is set when the gateway reaches the server over TLS; the
	// server's certificate must then be valid for TLSServerName (by
	// default the host of Address).
	TLS           bool
	TLSServerName string
	// Index is the server's position in Directory.Servers (dense, from 0).
	Index int
}

// Database is a mailbox database with one active copy and passive copies.
type Database struct {
	Name   string
	Active *Server
	Copies []*Server
}

// User is a person or service account and the one mailbox it owns. It
// signs in by Login (or an SMTP address) and its mailbox is reached by its
// primary SMTP address or an alias.
type User struct {
	Login    string
	Address  string // primary SMTP address, as written
	Aliases  []string
	Database *Database
	// PasswordHash is a PHC string (argon2id or bcrypt, checked by
	// package auth/password at load); empty when the user has no password
	// and cannot use password authentication.
	PasswordHash string
	// Disabled users keep their mailbox and routing but must not sign in.
	Disabled bool
	// Delegates are the other users who may open this user's mailbox.
	Delegates []*User
	// KerberosPrincipals are the Kerberos client principals
	// ("alice@EXAMPLE.TEST") that sign in as this user with HTTP
	// Negotiate; each names its realm.
	KerberosPrincipals []string
	// Index is the user's position in Directory.Users (dense, from 0).
	Index int
}
