package tlsterm

import (
	"errors"
	"net"
	"time"
)

// offWire is the transport of a connection moved off its event loop
// (Detach): ciphertext the loop had read but not decrypted, then the
// socket itself, read and written with blocking calls by the goroutines
// that own the connection from then on.
type offWire struct {
	nc net.Conn
	in []byte
}

// ErrNotDetachable is returned by Detach for a connection in the middle of
// a handshake or a write, or already closing.
var ErrNotDetachable = errors.New("tlsterm: connection cannot leave its event loop now")

// Detach moves an open TLS connection off its event loop: from now on it
// is the returned net.Conn (the crypto/tls connection itself), which reads
// and writes nc, a duplicate of the gnet connection's socket
// (gnet.Conn.Dup, net.FileConn), with blocking calls and deadlines. Use it
// for a long-lived stream that needs TCP backpressure, which gnet cannot
// give. Call it on the loop, with nothing waiting in gnet's outbound
// buffer, after taking (Peek) and discarding the plaintext already
// decrypted: what crypto/tls holds and the ciphertext the loop read
// follow in order. The caller then closes the gnet connection by returning
// gnet.Close from the callback; OnClose must not touch the moved state, and
// does not. Close the returned net.Conn when done.
func (c *Conn) Detach(nc net.Conn) (net.Conn, error) {
	if c.hs != nil || c.flags&fOpen == 0 || c.flags&(fBusy|fClosed|fClosing|fFailed) != 0 ||
		c.gc.OutboundBuffered() > 0 || c.pw > c.pr {
		return nil, ErrNotDetachable
	}
	o := &offWire{nc: nc}
	o.in = append(o.in, c.in...)
	if n := c.gc.InboundBuffered(); n > 0 {
		b, _ := c.gc.Peek(n)
		o.in = append(o.in, b...)
		_, _ = c.gc.Discard(n)
	}
	c.in = nil
	c.off = o
	return c.tc, nil
}

func (o *offWire) read(p []byte) (int, error) {
	if len(o.in) > 0 {
		n := copy(p, o.in)
		if o.in = o.in[n:]; len(o.in) == 0 {
			o.in = nil
		}
		return n, nil
	}
	return o.nc.Read(p)
}

func (o *offWire) setDeadline(t time.Time, read, write bool) error {
	switch {
	case read && write:
		return o.nc.SetDeadline(t)
	case read:
		return o.nc.SetReadDeadline(t)
	default:
		return o.nc.SetWriteDeadline(t)
	}
}
