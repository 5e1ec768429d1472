package tlsterm

// CloseWrite half-closes the TLS connection: it sends close_notify
// (RFC 8446 section 6.1: each side closes its own write direction, and
// TLS 1.3 lets the other side go on writing) and leaves the connection
// open for reading; Write fails from then on. It does not shut the
// socket's write side: the caller does that once OutboundBuffered is 0,
// for the alert is queued in gnet's buffer like any record. Call it on
// the connection's loop.
func (c *Conn) CloseWrite() error {
	if err := c.writable(); err != nil {
		return err
	}
	c.beginWrite()
	return c.endWrite(c.closeNotify())
}

// PeerClosed reports whether the peer's close_notify has been read: it
// sends nothing more (RFC 8446 section 6.1), though plaintext it sent
// before may still wait to be taken with Peek.
func (c *Conn) PeerClosed() bool { return c.flags&fPeerEOF != 0 }
