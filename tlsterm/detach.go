package tlsterm

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
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
// is the returned net.Conn (the crypto/tls connection itself, or one on
// tlsterm's own record layer with the same semantics: Read, Write,
// CloseWrite, Close, deadlines, ConnectionState), which reads and writes nc, a duplicate of the gnet connection's socket
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
	if c.rl != nil {
		o.in = append(o.in, c.rl.hdr[:c.rl.nhdr]...) // a header read ahead of its body
	}
	o.in = append(o.in, c.in...)
	if n := c.gc.InboundBuffered(); n > 0 {
		b, _ := c.gc.Peek(n)
		o.in = append(o.in, b...)
		_, _ = c.gc.Discard(n)
	}
	c.in = nil
	c.off = o
	if c.rl != nil {
		r := c.rl
		r.nhdr = 0
		c.rl = nil // OnClose and the loop's methods no longer touch it
		return &recordConn{o: o, r: r, st: c.st}, nil
	}
	return c.tc, nil
}

// Read reads ciphertext: first what the loop had read, then the socket.
func (o *offWire) Read(p []byte) (int, error) { return o.read(p) }

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

// recordConn is a detached TLS 1.3 connection on tlsterm's own record layer
// (record13.go): blocking reads and writes on the socket's duplicate, one
// reader and one writer at a time, as crypto/tls allows.
type recordConn struct {
	o  *offWire
	r  *records13
	st *tls.ConnectionState

	rmu   sync.Mutex
	rbuf  []byte // the record being read, decrypted in place
	plain []byte // its application data not yet returned
	rerr  error

	wmu  sync.Mutex
	wbuf []byte
	werr error
	shut bool // close_notify sent
}

// Read returns application data; io.EOF after the peer's close_notify.
func (rc *recordConn) Read(p []byte) (int, error) {
	rc.rmu.Lock()
	defer rc.rmu.Unlock()
	for len(rc.plain) == 0 {
		if rc.rerr != nil {
			return 0, rc.rerr
		}
		if len(p) == 0 {
			return 0, nil
		}
		rc.rerr = rc.readRecord()
	}
	n := copy(p, rc.plain)
	rc.plain = rc.plain[n:]
	return n, nil
}

// readRecord reads and handles one record; application data is left in
// plain.
func (rc *recordConn) readRecord() error {
	r := rc.r
	if cap(rc.rbuf) < recordHeaderLen+maxCiphertext13 {
		rc.rbuf = make([]byte, recordHeaderLen+maxCiphertext13)
	}
	hdr := rc.rbuf[:recordHeaderLen]
	if _, err := io.ReadFull(rc.o, hdr); err != nil {
		return err // io.EOF between records: the peer closed without close_notify
	}
	n, alert := checkHeader((*[recordHeaderLen]byte)(hdr))
	if alert != 0 {
		return rc.fail(AlertError{Description: alert})
	}
	body := rc.rbuf[recordHeaderLen : recordHeaderLen+n]
	if _, err := io.ReadFull(rc.o, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	typ, content, alert := r.open(hdr, body)
	if alert != 0 {
		return rc.fail(AlertError{Description: alert})
	}
	got, err := r.handle(typ, content)
	switch {
	case err != nil:
		return rc.fail(err)
	case got == gotEOF:
		return io.EOF
	case got == gotData:
		rc.plain = content
	}
	return nil
}

// fail sends the alert for a local error; the connection is unusable.
func (rc *recordConn) fail(err error) error {
	if ae, ok := err.(AlertError); ok && !ae.Remote {
		rc.wmu.Lock()
		if rc.werr == nil && !rc.shut {
			if b, aerr := rc.r.appendAlert(rc.wbuf[:0], alertLevelFatal, ae.Description); aerr == nil {
				_, _ = rc.o.nc.Write(b)
			}
		}
		rc.werr = err
		rc.wmu.Unlock()
	}
	return err
}

// Write encrypts p into records and writes them, 64 KiB of plaintext at
// a time.
func (rc *recordConn) Write(p []byte) (int, error) {
	rc.wmu.Lock()
	defer rc.wmu.Unlock()
	switch {
	case rc.werr != nil:
		return 0, rc.werr
	case rc.shut:
		return 0, errShutdown
	}
	total := 0
	for first := true; first || len(p) > 0; first = false {
		buf, err := rc.r.appendKeyUpdate(rc.wbuf[:0])
		s := sealer{r: rc.r, buf: buf, open: -1, err: err}
		n := min(len(p), writeFlushAt)
		s.write(p[:n])
		s.close()
		rc.wbuf = s.buf
		if s.err == nil && len(s.buf) > 0 {
			_, s.err = rc.o.nc.Write(s.buf)
		}
		if s.err != nil {
			rc.werr = s.err
			return total, s.err
		}
		total += n
		p = p[n:]
	}
	return total, nil
}

// CloseWrite sends close_notify (RFC 8446 section 6.1); Read goes on.
func (rc *recordConn) CloseWrite() error {
	rc.wmu.Lock()
	defer rc.wmu.Unlock()
	if rc.werr != nil || rc.shut {
		return rc.werr
	}
	rc.shut = true
	b, err := rc.r.appendAlert(rc.wbuf[:0], alertLevelWarning, alertCloseNotify)
	if err == nil {
		_, err = rc.o.nc.Write(b)
	}
	return err
}

// Close sends close_notify, waiting at most 5 seconds for the socket to
// take it (as crypto/tls does), and closes the socket.
func (rc *recordConn) Close() error {
	rc.wmu.Lock()
	pending := rc.werr == nil && !rc.shut
	rc.wmu.Unlock()
	if pending {
		_ = rc.o.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_ = rc.CloseWrite()
	}
	return rc.o.nc.Close()
}

// ConnectionState returns the handshake's state.
func (rc *recordConn) ConnectionState() tls.ConnectionState { return *rc.st }

func (rc *recordConn) LocalAddr() net.Addr                { return rc.o.nc.LocalAddr() }
func (rc *recordConn) RemoteAddr() net.Addr               { return rc.o.nc.RemoteAddr() }
func (rc *recordConn) SetDeadline(t time.Time) error      { return rc.o.nc.SetDeadline(t) }
func (rc *recordConn) SetReadDeadline(t time.Time) error  { return rc.o.nc.SetReadDeadline(t) }
func (rc *recordConn) SetWriteDeadline(t time.Time) error { return rc.o.nc.SetWriteDeadline(t) }
