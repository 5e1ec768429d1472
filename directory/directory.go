// Package directory owns the map from mailbox (SMTP address) to mailbox
// database to the mailbox server holding the database's active copy, and from
// server to address and site. A Directory is an immutable snapshot: a reload
// builds a new one and swaps it in.
package directory

// Directory is one loaded and validated directory snapshot. Build it with
// Load or Parse (a Directory literal lacks the lookup indexes: its lookups
// find nothing); it is read-only afterwards, so any number of goroutines may
// use it at once.
type Directory struct {
	Sites     []*Site
	Servers   []*Server
	Databases []*Database
	Mailboxes []*Mailbox

	// Indexes built by Parse. byAddress is keyed by lower-cased primary
	// address and alias.
	byAddress  map[string]*Mailbox
	byServer   map[string]*Server
	bySite     map[string]*Site
	byDatabase map[string]*Database
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

// Mailbox is one mailbox, reachable by its primary SMTP address and aliases.
type Mailbox struct {
	Address  string
	Aliases  []string
	Database *Database
}
