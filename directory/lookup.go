package directory

// LookupMailbox returns the mailbox whose primary SMTP address or alias is
// addr, compared case-insensitively (ASCII), or nil if there is none or addr
// is longer than an SMTP address can be (320 bytes).
//
// It is on the request path of every routed request and does not allocate:
// addr is lower-cased into a stack array, and indexing a map with
// string(bytes) does not copy the bytes.
func (d *Directory) LookupMailbox(addr []byte) *Mailbox {
	if len(addr) > maxAddressLen {
		return nil
	}
	var buf [maxAddressLen]byte
	for i, c := range addr {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return d.byAddress[string(buf[:len(addr)])]
}

// Server returns the server named name (exact match), or nil. It does not
// allocate.
func (d *Directory) Server(name string) *Server { return d.byServer[name] }

// Site returns the site named name (exact match), or nil.
func (d *Directory) Site(name string) *Site { return d.bySite[name] }

// Database returns the database named name (exact match), or nil.
func (d *Directory) Database(name string) *Database { return d.byDatabase[name] }
