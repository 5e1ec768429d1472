package tlsterm

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
)

var (
	// ErrHandshakeInProgress is returned by Write, Writev and Close's
	// close_notify step when the handshake has not completed.
	ErrHandshakeInProgress = errors.New("tlsterm: handshake in progress")
	// ErrHandshakeQueueFull is returned by OnTraffic when every handshake
	// slot is busy and the wait queue is full.
	ErrHandshakeQueueFull = errors.New("tlsterm: handshake queue full")
	// ErrHandshakeTimeout is the error a handshake fails with when it does
	// not finish within the handshake timeout.
	ErrHandshakeTimeout = errors.New("tlsterm: handshake timeout")
	// ErrInputOverflow is returned by OnTraffic when a client sends more
	// than the handshake input bound before its handshake completed.
	ErrInputOverflow = errors.New("tlsterm: too much input during the handshake")
	// ErrPlainHTTP is returned by OnTraffic when a client sent a plaintext
	// HTTP request instead of a ClientHello; it has been answered 400.
	ErrPlainHTTP = errors.New("tlsterm: plain HTTP request on a TLS port")
)

// plainHTTPResponse answers a plaintext HTTP request sent to a TLS port,
// as nginx does ("The plain HTTP request was sent to HTTPS port"): a
// client or an operator with curl sees why rather than a reset.
var plainHTTPResponse = []byte("HTTP/1.1 400 Bad Request\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Length: " + strconv.Itoa(len(plainHTTPBody)) + "\r\n" +
	"Connection: close\r\n\r\n" + plainHTTPBody)

const plainHTTPBody = "400 Bad Request: this port expects TLS; a plain HTTP request was sent to an HTTPS port.\n"

// Answers of plainHTTP.
const (
	notHTTP = iota
	isHTTP
	maybeHTTP // too few bytes to tell yet
)

// maxMethodLen bounds the method token plainHTTP looks for; the longest
// registered HTTP method ("BASELINE-CONTROL", RFC 3253) has 16 bytes.
const maxMethodLen = 20

// plainHTTP tells from the first bytes a client sent whether they start
// an HTTP request line (a method token, then a space; RFC 9112 section 3)
// rather than a TLS record, which starts with its content type, 20 to 24
// (0x16 for the ClientHello's handshake record; RFC 8446 section 5.1), or
// an SSL 2 hello, which starts with a byte >= 0x80. Only a method that
// starts with a letter counts, so that other protocols ("SSH-2.0-...")
// are left to fail as bad ClientHellos.
func plainHTTP(b []byte) int {
	if len(b) == 0 || !isLetter(b[0]) {
		return notHTTP
	}
	for i := 1; i < len(b) && i <= maxMethodLen; i++ {
		switch c := b[i]; {
		case c == ' ':
			return isHTTP
		case !isTchar(c):
			return notHTTP
		}
	}
	if len(b) > maxMethodLen {
		return notHTTP
	}
	return maybeHTTP
}

func isLetter(c byte) bool { return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' }

// isTchar: a token character (RFC 9110 section 5.6.2).
func isTchar(c byte) bool {
	return isLetter(c) || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// errWouldBlock is what the wire's Read returns on the loop when it has no
// ciphertext. crypto/tls leaves a net.Error whose Temporary method reports
// true out of its sticky read error (conn.go, readRecordOrCCS), keeps the
// partial record it has read, and returns the error from Read.
var errWouldBlock net.Error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "tlsterm: no ciphertext buffered (would block)" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

const (
	// hsInputLimit bounds the ciphertext queued for the handshake goroutine;
	// more waits in gnet's buffer. A ClientHello is at most 64 KiB
	// (crypto/tls's maxHandshake; RFC 8446 section 4 allows 2^24-1 bytes,
	// crypto/tls does not).
	hsInputLimit = 64 << 10
	// hsEarlyLimit bounds gnet's inbound buffer during the handshake until
	// the server has sent its first flight: a client must wait for it
	// (TLS 1.3 without 0-RTT, which crypto/tls does not accept; RFC 8446
	// section 2.3), so only its first flight may be buffered.
	hsEarlyLimit = 2 * hsInputLimit
	// hsLateLimit bounds it afterwards: a client may send application data
	// right after its Finished (RFC 8446 section 4.4.4; RFC 7918 False
	// Start for TLS 1.2) and the window until the loop takes over is short.
	hsLateLimit = 16 << 20
	// writeFlushAt is where a Write's collected records are handed to gnet
	// even before the Write ends.
	writeFlushAt = 64 << 10
	// maxRecordPlaintext is the TLS plaintext record limit, 2^14 bytes
	// (RFC 8446 section 5.1, RFC 5246 section 6.2.1).
	maxRecordPlaintext = 1 << 14
)

// Conn flags. They are owned by the connection's event loop.
const (
	fOpen      uint16 = 1 << iota // handshake complete: the wire is in loop mode
	fStarted                      // the handshake was handed to the pool
	fBusy                         // inside a method that uses the plaintext buffer or the tls.Conn
	fClosed                       // OnClose ran
	fClosing                      // Close was called
	fMore                         // decryption stopped at the plaintext bound
	fPeerEOF                      // the client's close_notify was read
	fFailed                       // the handshake failed or was refused
	fEOFWake                      // a Wake was sent to report close_notify later
	fSynced                       // recs is exact: a Read would-blocked since the handshake
	fFilled                       // the last Read filled its buffer: crypto/tls may hold more plaintext
	fWriteShut                    // close_notify sent (CloseWrite): no more writes
)

// Conn is one TLS connection on an event loop. Its methods must be called
// on that loop (from gnet callbacks or tasks executed there).
//
// Peek, Discard, InboundBuffered, Write, Writev, OutboundBuffered and Close
// behave like gnet.Conn's methods of the same names, on plaintext; see the
// package documentation for the Transport interface they form.
type Conn struct {
	t  *Terminator
	gc gnet.Conn
	tc *tls.Conn
	// hs is the handshake's state; nil once the loop has taken over.
	hs *handshake
	// in is ciphertext the handshake goroutine left unread; it is served
	// before gnet's buffer.
	in []byte
	// pbuf[pr:pw] is decrypted plaintext not yet discarded; pbuf is nil
	// when that is empty.
	pbuf   *[]byte
	pr, pw int
	// wbuf collects the records of one Write so gnet gets them in one call.
	wbuf  *[]byte
	err   error // the fatal error, once there is one
	flags uint16
	// cur follows the record framing of the ciphertext given to
	// crypto/tls, and recs counts the whole records among it that no Read
	// has decrypted yet (or more; see records.go).
	cur  recordCursor
	recs uint32
	// off, once set by Detach, is the wire: the connection has left the
	// loop and is read and written by goroutines with blocking calls.
	off *offWire
	// rl is tlsterm's own record layer (record13.go), set when the loop
	// takes over a TLS 1.3 connection; tc is then nil and st holds the
	// connection's state.
	rl *records13
	st *tls.ConnectionState
}

// handshake is the state shared between the loop and the handshake
// goroutine. It is dropped when the loop takes over.
type handshake struct {
	c *Conn

	// Guarded by the pool's mutex.
	phase    uint8
	inDL     bool
	deadline int64 // on the monotonic clock of mono()
	links    [2]hlink

	mu      sync.Mutex
	cond    sync.Cond
	in      []byte // ciphertext for the goroutine
	pending int    // AsyncWrites the loop has not executed yet
	backlog bool   // the loop left bytes in gnet's buffer (hsInputLimit)
	wrote   bool   // the server sent its first flight
	closed  bool   // OnClose ran: the connection is gone
	expired bool   // the handshake timeout passed
	aborted bool   // the loop refused the connection and counted why
	done    bool   // the goroutine has finished; err is its result
	alert   int16  // last plaintext alert the server sent, -1 if none
	err     error

	local, remote net.Addr
	written       gnet.AsyncCallback

	// nc is the dialled socket of a client handshake (Client.Handshake):
	// the wire reads and writes it directly, blocking, on the dialling
	// goroutine. nil on the server side.
	nc net.Conn

	// Used by the handshake goroutine only (secrets.go): the client's
	// first bytes, up to its random, and the last protected record the
	// server wrote. Then, set under mu before done: the record layer
	// and the state the loop takes over.
	hello   [clientHelloRandomEnd]byte
	nhello  uint8
	last    []byte
	lastBad bool
	rl      *records13
	st      *tls.ConnectionState
}

// Accept wraps a connection accepted on gc's event loop. Call it from
// OnOpen; the handshake's timeout starts now and the handshake itself starts
// when the first bytes arrive.
func (t *Terminator) Accept(gc gnet.Conn) *Conn { return t.AcceptFrom(gc, gc.RemoteAddr()) }

// AcceptFrom is Accept for a connection whose client is not its peer: a
// load balancer named the client in a PROXY protocol header, which gc's
// bytes no longer hold. The handshake's log lines and crypto/tls
// (ClientHelloInfo.Conn.RemoteAddr, for certificate selection) see remote.
func (t *Terminator) AcceptFrom(gc gnet.Conn, remote net.Addr) *Conn {
	c := &Conn{t: t, gc: gc}
	h := &handshake{c: c, alert: -1, local: gc.LocalAddr(), remote: remote}
	h.cond.L = &h.mu
	h.written = h.onWritten
	c.hs = h
	c.tc = tls.Server((*wire)(c), t.cfg)
	t.pool.register(h)
	return c
}

// OnTraffic is called from the loop's OnTraffic for the connection (also
// after a Wake). During the handshake it hands the readable ciphertext to
// the handshake goroutine and returns ready=false. Afterwards it decrypts
// what has arrived, up to the plaintext bound, and returns ready=true: the
// caller may then Peek.
//
// A non-nil error means the connection is finished: the handshake failed or
// was refused, a record failed to decrypt (crypto/tls has sent the alert;
// RFC 8446 section 6.2), or the client sent close_notify and no plaintext is
// left (io.EOF). The caller returns gnet.Close.
func (c *Conn) OnTraffic() (ready bool, err error) {
	if c.flags&fOpen == 0 {
		if c.flags&(fClosed|fFailed) != 0 {
			return false, c.fatal()
		}
		if ok, err := c.handshakeTraffic(); !ok || err != nil {
			return false, err
		}
	}
	if c.flags&(fClosed|fClosing) != 0 {
		return true, net.ErrClosed
	}
	c.flags |= fBusy
	c.fill()
	c.unbusy()
	switch {
	case c.flags&fClosed != 0:
		return true, net.ErrClosed
	case c.err != nil:
		return true, c.err
	case c.flags&fPeerEOF != 0 && c.pw == c.pr:
		return true, io.EOF
	case c.flags&(fPeerEOF|fEOFWake) == fPeerEOF:
		// close_notify came with plaintext the caller has yet to
		// consume: ask for one more OnTraffic, which reports io.EOF if
		// the caller has consumed it by then (as gnet closes on a FIN
		// once the last bytes were offered).
		c.flags |= fEOFWake
		_ = c.gc.Wake(nil)
	}
	return true, nil
}

func (c *Conn) fatal() error {
	if c.err != nil {
		return c.err
	}
	return net.ErrClosed
}

// handshakeTraffic runs on the loop while the handshake is not complete. It
// reports ok when the loop has taken over.
func (c *Conn) handshakeTraffic() (ok bool, err error) {
	h := c.hs
	buf, _ := c.gc.Peek(-1)
	if c.flags&fStarted == 0 {
		// Decided on the loop from the first bytes: no handshake slot, no
		// goroutine for a request that cannot be TLS.
		switch plainHTTP(buf) {
		case isHTTP:
			return false, c.refusePlainHTTP()
		case maybeHTTP:
			return false, nil // wait for more; the handshake timeout runs
		}
	}
	took := 0
	h.mu.Lock()
	if h.done && h.pending == 0 {
		// Every record the goroutine wrote has been passed to gnet (the
		// callbacks ran on this loop), so records written from now on
		// follow them on the wire.
		herr, leftover := h.err, h.in
		h.in = nil
		h.mu.Unlock()
		if herr != nil {
			c.flags |= fFailed
			c.err = herr
			return false, herr
		}
		c.hs = nil
		if len(leftover) > 0 {
			c.in = leftover
		}
		if h.rl != nil {
			// The tls.Conn and what it holds (AEAD states, buffers)
			// become garbage: the record layer and the state are all
			// the connection needs from now on.
			c.rl, c.st, c.tc = h.rl, h.st, nil
		}
		c.flags |= fOpen
		return true, nil
	}
	if !h.done && !h.closed && !h.expired {
		if room := hsInputLimit - len(h.in); room > 0 {
			took = min(len(buf), room)
			if took > 0 {
				h.in = append(h.in, buf[:took]...)
				h.cond.Signal()
			}
		}
		h.backlog = took < len(buf)
	}
	limit := hsEarlyLimit
	if h.wrote {
		limit = hsLateLimit
	}
	h.mu.Unlock()
	if took > 0 {
		_, _ = c.gc.Discard(took) // gnet's Discard(n <= 0) would drop everything
		if c.flags&fStarted == 0 {
			c.flags |= fStarted
			if err := c.t.pool.start(h); err != nil {
				c.flags |= fFailed
				c.err = err
				return false, err
			}
		}
	}
	if c.gc.InboundBuffered() > limit {
		c.t.stats.fail(FailInputOverflow)
		h.mu.Lock()
		h.aborted, h.closed = true, true // a running handshake is not counted again
		h.cond.Broadcast()
		h.mu.Unlock()
		c.flags |= fFailed
		c.err = ErrInputOverflow
		return false, ErrInputOverflow
	}
	return false, nil
}

// refusePlainHTTP answers a plaintext HTTP request with 400 and fails the
// connection; the caller closes it (gnet writes what is buffered first).
// The request is discarded: it was read from the socket already, so the
// close is an orderly one that does not reset the answer away.
func (c *Conn) refusePlainHTTP() error {
	c.t.pool.drop(c.hs)
	_, _ = c.gc.Discard(c.gc.InboundBuffered())
	_, _ = c.gc.Write(plainHTTPResponse)
	c.t.stats.fail(FailPlainHTTP)
	c.t.log.Debug("plain HTTP request on a TLS port", "remote", addrString(c.hs.remote))
	c.flags |= fFailed
	c.err = ErrPlainHTTP
	return ErrPlainHTTP
}

// runHandshake runs on a pool goroutine. It returns the next queued
// handshake for the same goroutine, if any.
func (c *Conn) runHandshake(h *handshake) *handshake {
	// Handshake uses context.Background: no interrupting goroutine. The
	// pool's timer enforces the timeout by failing the wire's Read.
	err := c.tc.Handshake()
	var rl *records13
	var st *tls.ConnectionState
	if err == nil {
		// Counted before the loop may use c.tc or answer the client, so a
		// client that got a response finds its handshake counted.
		cs := c.tc.ConnectionState()
		st = &cs
		c.t.stats.success(st)
		if c.t.ownRecords {
			if rl = h.takeOver(c.t, st); rl != nil {
				c.t.stats.OwnRecords.Add(1)
			}
		}
	} else if c.t.ownRecords {
		h.forgetSecrets(c.t)
	}
	next := c.t.pool.finish(h)
	h.mu.Lock()
	h.done, h.err = true, err
	h.rl, h.st = rl, st
	closed, expired, aborted, alert := h.closed, h.expired, h.aborted, h.alert
	h.mu.Unlock()
	if err == nil {
		if !closed {
			if werr := c.gc.Wake(nil); werr != nil {
				_ = c.gc.Close()
			}
		}
		return next
	}
	if !aborted {
		reason := classify(err, expired, alert)
		c.t.stats.fail(reason)
		c.t.log.Debug("tls handshake failed", "remote", addrString(h.remote), "reason", reason, "err", err)
	}
	_ = c.gc.Close()
	return next
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// fill decrypts into the plaintext buffer until crypto/tls would block,
// the bound is reached, or an error or close_notify is read. It runs on the
// loop after the handshake.
func (c *Conn) fill() {
	if c.rl != nil {
		c.fillRecords()
		return
	}
	bound := c.t.maxPlain
	for c.err == nil && c.flags&(fPeerEOF|fClosed) == 0 {
		if c.pw-c.pr >= bound {
			c.flags |= fMore
			break
		}
		if c.pbuf == nil {
			c.pbuf, c.pr, c.pw = getPlain(0), 0, 0
		}
		b := *c.pbuf
		if c.pw == len(b) {
			if c.pr > 0 {
				c.pw = copy(b, b[c.pr:c.pw])
				c.pr = 0
			} else {
				nb := getPlain(plainClass(len(b)) + 1)
				copy(*nb, b[:c.pw])
				putPlain(c.pbuf)
				c.pbuf, b = nb, *nb
			}
		}
		dst := b[c.pw:min(len(b), c.pr+bound)]
		n, err := c.tc.Read(dst)
		c.pw += n
		if err != nil {
			switch {
			case errors.Is(err, errWouldBlock):
				// crypto/tls decrypted every whole record it was given.
				c.recs = 0
				c.flags |= fSynced
				c.flags &^= fMore | fFilled
			case err == io.EOF:
				c.flags |= fPeerEOF // close_notify (RFC 8446 section 6.1)
				c.flags &^= fMore
			default:
				c.err = err
			}
			break
		}
		if n > 0 && c.flags&fFilled == 0 && c.recs > 0 {
			c.recs-- // this Read decrypted a record (records.go)
		}
		if n == len(dst) {
			c.flags |= fFilled
			continue
		}
		c.flags &^= fFilled
		if c.flags&fSynced != 0 && c.recs == 0 && len(c.in) == 0 && c.gc.InboundBuffered() == 0 {
			// Another Read could only fetch from an empty wire.
			c.flags &^= fMore
			break
		}
	}
	if c.pbuf != nil && c.pw == c.pr {
		putPlain(c.pbuf)
		c.pbuf, c.pr, c.pw = nil, 0, 0
	}
}

// unbusy ends a method that set fBusy; OnClose may have run meanwhile (a
// failed write closes a gnet connection synchronously).
func (c *Conn) unbusy() {
	c.flags &^= fBusy
	if c.flags&fClosed != 0 {
		c.release()
	}
}

// release drops the buffers of a closed connection. The plaintext buffer
// is left to the garbage collector rather than pooled: a caller may still
// hold a slice of it from Peek.
func (c *Conn) release() {
	c.pbuf, c.pr, c.pw = nil, 0, 0
	c.in = nil
}

// Peek returns the next n bytes of plaintext without consuming them, or
// everything decrypted so far when n <= 0, like gnet.Conn.Peek; it returns
// io.ErrShortBuffer when fewer than n bytes are available. When an earlier
// call stopped decrypting at the plaintext bound, Peek decrypts more first.
// The slice is valid until the next Discard, Peek or Write call, or the end
// of the callback.
func (c *Conn) Peek(n int) ([]byte, error) {
	if c.flags&fMore != 0 && c.flags&(fBusy|fClosed) == 0 && (n <= 0 || c.pw-c.pr < n) {
		c.flags |= fBusy
		c.fill()
		c.unbusy()
		// Outside OnTraffic nobody sees an error return: close here (the
		// alert has been sent), and let a close_notify reach OnTraffic.
		switch {
		case c.err != nil && c.flags&fClosed == 0:
			_ = c.gc.Close()
		case c.flags&(fPeerEOF|fEOFWake) == fPeerEOF:
			c.flags |= fEOFWake
			_ = c.gc.Wake(nil)
		}
	}
	buffered := c.pw - c.pr
	if n > buffered {
		return nil, io.ErrShortBuffer
	}
	if c.pbuf == nil {
		return nil, nil
	}
	if n <= 0 {
		n = buffered
	}
	return (*c.pbuf)[c.pr : c.pr+n], nil
}

// Discard drops the next n bytes of plaintext and returns how many it
// dropped. Like gnet.Conn.Discard, n <= 0 or n beyond what is buffered
// drops everything decrypted so far; ciphertext not yet decrypted stays.
// A drained buffer goes back to its pool.
func (c *Conn) Discard(n int) (int, error) {
	buffered := c.pw - c.pr
	if n > 0 && n < buffered {
		c.pr += n
		return n, nil
	}
	if c.pbuf != nil {
		putPlain(c.pbuf)
	}
	c.pbuf, c.pr, c.pw = nil, 0, 0
	return buffered, nil
}

// InboundBuffered returns the plaintext waiting plus the ciphertext not yet
// decrypted that tlsterm can see (crypto/tls may hold part of one record
// more). During the handshake it is gnet's count.
func (c *Conn) InboundBuffered() int {
	n := c.pw - c.pr + len(c.in) + c.gc.InboundBuffered()
	if c.rl != nil {
		n += int(c.rl.nhdr)
	}
	return n
}

// OutboundBuffered returns gnet's count of ciphertext bytes not yet written
// to the socket.
func (c *Conn) OutboundBuffered() int { return c.gc.OutboundBuffered() }

func (c *Conn) writable() error {
	switch {
	case c.flags&(fClosed|fClosing|fFailed) != 0:
		return net.ErrClosed
	case c.flags&fOpen == 0:
		return ErrHandshakeInProgress
	case c.flags&fWriteShut != 0:
		return errShutdown
	case c.err != nil && c.rl != nil:
		return c.err // an alert was sent: nothing may follow it
	}
	return nil
}

// Write encrypts p and hands the records to gnet, which copies what the
// socket does not take at once; it never blocks.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.writable(); err != nil {
		return 0, err
	}
	c.beginWrite()
	if c.rl != nil {
		n, err := c.seal(p, nil)
		return n, c.endWrite(err)
	}
	n, err := c.tc.Write(p)
	return n, c.endWrite(err)
}

// Writev is Write for several buffers. Small buffers are coalesced into
// records of up to 2^14 bytes (RFC 8446 section 5.1), so a chunk header, its
// data and its CRLF cost one record rather than three.
func (c *Conn) Writev(bs [][]byte) (int, error) {
	if err := c.writable(); err != nil {
		return 0, err
	}
	c.beginWrite()
	if c.rl != nil {
		n, err := c.seal(nil, bs)
		return n, c.endWrite(err)
	}
	ps := getScratch()
	total := 0
	var err error
	flush := func() {
		if len(*ps) > 0 && err == nil {
			var n int
			n, err = c.tc.Write(*ps)
			total += n
		}
		*ps = (*ps)[:0]
	}
	for _, b := range bs {
		if len(*ps)+len(b) > maxRecordPlaintext {
			flush()
		}
		if len(b) >= maxRecordPlaintext {
			if err == nil {
				var n int
				n, err = c.tc.Write(b)
				total += n
			}
			continue
		}
		*ps = append(*ps, b...)
	}
	flush()
	putScratch(ps)
	return total, c.endWrite(err)
}

func (c *Conn) beginWrite() {
	c.flags |= fBusy
	c.wbuf = getScratch()
}

func (c *Conn) endWrite(err error) error {
	if len(*c.wbuf) > 0 && c.flags&fClosed == 0 {
		if _, werr := c.gc.Write(*c.wbuf); err == nil {
			err = werr
		}
	}
	putScratch(c.wbuf)
	c.wbuf = nil
	c.unbusy()
	return err
}

// Close sends close_notify (RFC 8446 section 6.1, RFC 5246 section 7.2.1)
// if the handshake completed, best effort, then closes the gnet connection
// (asynchronously, like gnet.Conn.Close: OnClose follows).
func (c *Conn) Close() error {
	if c.flags&(fClosed|fClosing) != 0 {
		return nil
	}
	c.flags |= fClosing
	if c.flags&fOpen != 0 && c.flags&fWriteShut == 0 && (c.rl == nil || c.err == nil) {
		c.beginWrite()
		_ = c.endWrite(c.closeNotify())
	}
	return c.gc.Close()
}

// State returns the connection's TLS state after the handshake (the zero
// value before): version, cipher suite, key-exchange group, ALPN protocol,
// resumption, and the verified client-certificate chains. It copies;
// callers on a hot path keep what they need.
func (c *Conn) State() tls.ConnectionState {
	switch {
	case c.flags&fOpen == 0:
		return tls.ConnectionState{}
	case c.st != nil:
		return *c.st
	}
	return c.tc.ConnectionState()
}

// VerifiedLeaf returns the client's certificate when the handshake verified
// it against the listener's client CAs (tls_client_auth request or
// require), else nil. Authentication maps it to a user.
func (c *Conn) VerifiedLeaf() *x509.Certificate {
	if c.flags&fOpen == 0 {
		return nil
	}
	st := c.st
	if st == nil {
		cs := c.tc.ConnectionState()
		st = &cs
	}
	if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return nil
	}
	return st.VerifiedChains[0][0]
}

// HandshakeComplete reports whether the loop has taken over the
// connection after a successful handshake.
func (c *Conn) HandshakeComplete() bool { return c.flags&fOpen != 0 }

// OnClose must be called from the loop's OnClose for the connection. It
// cancels a handshake that is queued or running and releases buffers.
func (c *Conn) OnClose() {
	if c.flags&fClosed != 0 {
		return
	}
	c.flags |= fClosed
	if h := c.hs; h != nil {
		c.t.pool.drop(h)
		h.mu.Lock()
		h.closed = true
		h.cond.Broadcast()
		h.mu.Unlock()
	}
	if c.flags&fBusy == 0 {
		c.release()
	}
}

// wire is the net.Conn crypto/tls reads and writes: a *Conn seen through
// another method set. During the handshake it is used by the handshake
// goroutine only, afterwards by the loop only.
type wire Conn

func (w *wire) Read(p []byte) (int, error) {
	c := (*Conn)(w)
	if o := c.off; o != nil {
		return o.read(p)
	}
	if h := c.hs; h != nil {
		return h.read(p)
	}
	if len(c.in) > 0 {
		n := copy(p, c.in)
		if c.in = c.in[n:]; len(c.in) == 0 {
			c.in = nil
		}
		c.recs += uint32(c.cur.advance(p[:n]))
		return n, nil
	}
	if len(p) == 0 {
		return 0, nil
	}
	// gnet's Read copies from its inbound ring and the loop's read buffer
	// and consumes what it copied.
	if n, _ := c.gc.Read(p); n > 0 {
		c.recs += uint32(c.cur.advance(p[:n]))
		return n, nil
	}
	return 0, errWouldBlock
}

func (w *wire) Write(p []byte) (int, error) {
	c := (*Conn)(w)
	if o := c.off; o != nil {
		return o.nc.Write(p)
	}
	if h := c.hs; h != nil {
		return h.write(p)
	}
	if c.wbuf != nil {
		*c.wbuf = append(*c.wbuf, p...)
		if len(*c.wbuf) >= writeFlushAt {
			_, err := c.gc.Write(*c.wbuf)
			*c.wbuf = (*c.wbuf)[:0]
			if err != nil {
				return 0, err
			}
		}
		return len(p), nil
	}
	return c.gc.Write(p)
}

// Close is called by crypto/tls only from tls.Conn.Close, which tlsterm
// does not use; it fails a running handshake or closes the connection.
func (w *wire) Close() error {
	c := (*Conn)(w)
	if o := c.off; o != nil {
		return o.nc.Close()
	}
	if h := c.hs; h != nil {
		if h.nc != nil {
			return h.nc.Close()
		}
		h.mu.Lock()
		h.closed = true
		h.cond.Broadcast()
		h.mu.Unlock()
		return nil
	}
	return c.gc.Close()
}

func (w *wire) LocalAddr() net.Addr {
	if o := w.off; o != nil {
		return o.nc.LocalAddr()
	}
	if h := w.hs; h != nil {
		return h.local
	}
	return w.gc.LocalAddr()
}

func (w *wire) RemoteAddr() net.Addr {
	if o := w.off; o != nil {
		return o.nc.RemoteAddr()
	}
	if h := w.hs; h != nil {
		return h.remote
	}
	return w.gc.RemoteAddr()
}

// Deadlines are not supported by gnet; crypto/tls only sets a write
// deadline around close_notify, and the wire's writes never block.
// A detached connection's deadlines are its socket's.
func (w *wire) SetDeadline(t time.Time) error {
	if o := w.off; o != nil {
		return o.setDeadline(t, true, true)
	}
	return nil
}

func (w *wire) SetReadDeadline(t time.Time) error {
	if o := w.off; o != nil {
		return o.setDeadline(t, true, false)
	}
	return nil
}

func (w *wire) SetWriteDeadline(t time.Time) error {
	if o := w.off; o != nil {
		return o.setDeadline(t, false, true)
	}
	return nil
}

// read serves the handshake goroutine: it blocks until the loop has fed
// ciphertext, the connection closed, or the timeout passed.
func (h *handshake) read(p []byte) (int, error) {
	if h.nc != nil {
		n, err := h.nc.Read(p)
		h.c.cur.advance(p[:n])
		return n, err
	}
	h.mu.Lock()
	for len(h.in) == 0 && !h.closed && !h.expired {
		if h.backlog {
			// The loop left bytes in gnet's buffer because this one was
			// full; ask it to run OnTraffic again now that there is room.
			h.backlog = false
			h.mu.Unlock()
			_ = h.c.gc.Wake(nil)
			h.mu.Lock()
			continue
		}
		h.cond.Wait()
	}
	if len(h.in) == 0 {
		expired := h.expired
		h.mu.Unlock()
		if expired {
			return 0, ErrHandshakeTimeout
		}
		return 0, net.ErrClosed
	}
	// Hand over at most the rest of the current record: crypto/tls's
	// raw-input buffer grows to what it is given and is never shrunk, so
	// it stays sized for the largest handshake record (the ClientHello)
	// even when a flight and early application data are queued. It also
	// leaves crypto/tls holding nothing past the client's Finished when
	// the loop takes over.
	c := h.c
	n := copy(p, h.in[:c.cur.rest(h.in)])
	c.cur.advance(p[:n])
	h.noteHello(p[:n])
	h.in = h.in[:copy(h.in, h.in[n:])]
	h.mu.Unlock()
	return n, nil
}

// write serves the handshake goroutine: the records are copied (AsyncWrite
// needs the buffer until the loop has written it) and queued on the loop.
func (h *handshake) write(p []byte) (int, error) {
	if h.nc != nil {
		// Only the dialling goroutine reads alert.
		if a := plaintextAlert(p); a >= 0 {
			h.alert = a
		}
		return h.nc.Write(p)
	}
	b := make([]byte, len(p))
	copy(b, p)
	h.noteWrite(b)
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return 0, net.ErrClosed
	}
	if a := plaintextAlert(p); a >= 0 {
		h.alert = a
	}
	h.wrote = true
	h.pending++
	h.mu.Unlock()
	// gnet queues the task before it signals the loop, so even when
	// AsyncWrite reports an error (the eventfd write failed) the callback
	// runs later and settles pending; the handshake fails and closes.
	if err := h.c.gc.AsyncWrite(b, h.written); err != nil {
		return 0, err
	}
	return len(p), nil
}

// onWritten runs on the loop after an AsyncWrite was executed.
func (h *handshake) onWritten(gnet.Conn, error) error {
	h.mu.Lock()
	h.pending--
	h.mu.Unlock()
	return nil
}

// plaintextAlert returns the description of the last unencrypted alert
// record in p (type 21 with a 2-byte body; RFC 8446 section 6, RFC 5246
// section 7.2), or -1. Encrypted alerts (TLS 1.3 after ServerHello, TLS 1.2
// after ChangeCipherSpec) are not visible here.
func plaintextAlert(p []byte) int16 {
	a := int16(-1)
	for len(p) >= 5 {
		n := int(p[3])<<8 | int(p[4])
		if p[0] == 21 && n == 2 && len(p) >= 7 {
			a = int16(p[6])
		}
		if len(p) < 5+n {
			break
		}
		p = p[5+n:]
	}
	return a
}

// Plaintext buffers come in classes of 4 KiB << 2k, up to 1 MiB, each with
// its own pool, so a connection that receives a 500-byte request uses and
// returns a 4 KiB buffer while one that uploads uses up to the bound.
const (
	plainMin     = 4 << 10
	plainClasses = 5
	plainMax     = plainMin << (2 * (plainClasses - 1))
)

var plainPools [plainClasses]sync.Pool

func plainClass(size int) int {
	k := 0
	for s := plainMin; s < size && k < plainClasses-1; s <<= 2 {
		k++
	}
	return k
}

func getPlain(class int) *[]byte {
	if v, _ := plainPools[class].Get().(*[]byte); v != nil {
		return v
	}
	b := make([]byte, plainMin<<(2*class))
	return &b
}

func putPlain(b *[]byte) { plainPools[plainClass(len(*b))].Put(b) }

// Write scratch buffers: records collected during one Write, and the
// plaintext Writev coalesces.
var scratchPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 16<<10)
	return &b
}}

func getScratch() *[]byte { return scratchPool.Get().(*[]byte) }

func putScratch(b *[]byte) {
	if cap(*b) > 4*writeFlushAt {
		return
	}
	*b = (*b)[:0]
	scratchPool.Put(b)
}

// classify names why a handshake failed. crypto/tls does not export the
// alert it sent (only QUIC connections get an AlertError), so tlsterm
// combines the error's type and text with the last plaintext alert the
// server wrote. The specific reasons come first: a client that gives up
// after our alert closes its end, and that close must not hide the alert.
func classify(err error, expired bool, alert int16) string {
	if expired || errors.Is(err, ErrHandshakeTimeout) {
		return FailTimeout
	}
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) {
		return FailBadClientHello
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return FailBadCertificate
	}
	msg := strings.ToLower(err.Error())
	for _, s := range clientCertErrors {
		if strings.Contains(msg, s) {
			return FailBadCertificate
		}
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" {
		return FailPeerAlert
	}
	switch alert {
	case 70: // protocol_version
		return FailProtocolVersion
	case 40, 71, 109, 112, 120: // handshake_failure, insufficient_security, missing_extension, unrecognized_name, no_application_protocol
		return FailUnsupported
	case 42, 43, 44, 45, 46, 48, 49, 116: // certificate alerts, certificate_required
		return FailBadCertificate
	case 10, 47, 50, 86, 110: // unexpected_message, illegal_parameter, decode_error, inappropriate_fallback, unsupported_extension
		return FailBadClientHello
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return FailEOF
	}
	return FailOther
}

// clientCertErrors are texts of crypto/tls server errors about the client
// certificate that come with an alert the wire cannot see (TLS 1.3 sends it
// encrypted).
var clientCertErrors = [...]string{
	"client didn't provide a certificate",
	"failed to parse client certificate",
	"client certificate",
}
