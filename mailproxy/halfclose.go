package mailproxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"

	"frontdoor/tlsterm"
)

// Half-close (RFC 9293 section 3.6): either side may end its half of the
// connection (shutdown(SHUT_WR), nc -N, a script piping its commands; over
// TLS close_notify, RFC 8446 section 6.1) and still read what the other
// sends. gnet closes a socket as soon as a read returns EOF, so without
// help the answers still to come would be lost.
//
// The client's half-close, while its login is being decided or its
// session relays (stAuth, stDelay, stBackend, stRelay):
//
//   - In OnClose, which gnet calls before it closes its descriptor, the
//     client's socket is duplicated (gnet.Conn.Dup, net.FileConn): the
//     duplicate keeps the TCP connection open, so gnet's close sends no
//     FIN. Over TLS the crypto/tls state moves along (tlsterm.Conn.Detach).
//     What the client sent and the session had not yet taken is kept.
//   - The backend connection stays on the loop. What the client sent is
//     relayed to it, then its write side is shut (shutdown(SHUT_WR) once
//     gnet has written everything; over TLS without close_notify, see
//     shutBackend for why): the server sees the client's half-close.
//   - What the server sends goes to the client through a halfConn: a
//     bounded queue (max_relay_buffer_bytes, the relay's bound and
//     overflow rule) written by one goroutine with blocking writes under
//     FlushTimeout. When the server closes, the queue is flushed and the
//     duplicate closed (close_notify over TLS, then the FIN).
//   - A TLS client's close_notify with the TCP connection left open needs
//     none of this: the connection stays on the loop, which goes on
//     writing to it (upEOF); a FIN after it takes the path above. A FIN
//     without close_notify is taken as a half-close too (RFC 8446 calls it
//     a truncation; the relay passes on only what was sent, and IMAP and
//     POP3 frame their commands themselves).
//
// The server's half-close (its FIN, or close_notify, while the client is
// still sending) is the mirror image, further below: the backend's socket
// is duplicated and written by a halfConn, the client's write side is shut
// once it has taken everything.
//
// A half-closed session costs a duplicate descriptor and a goroutine,
// only while it lasts (Config.MaxHalfClosed bounds how many); it is ended
// by the other side's close, the idle timeout, failover (CheckActive), a
// stop (the loop's drain), the release of its loop after a reload, or a
// write not taken within FlushTimeout.
//
// Not covered: when a side half-closed while gnet still held bytes for it
// (it was not reading what it was sent), gnet's close writes what the
// socket takes at once and drops the rest, and gnet gives no way to take
// those bytes back: such a session is closed as before, counted in
// halfclose_lost. A FIN before the loop has taken a TLS connection over
// from its handshake closes it.

// halfConn is the write side to a peer that half-closed (the client, or
// the server): an l4.Transport whose reads serve what the peer had sent
// before its EOF and whose writes are queued for the writer goroutine.
type halfConn struct {
	nc net.Conn  // the duplicate of the peer's socket
	w  io.Writer // nc, or the detached crypto/tls connection
	// tlsc is the detached crypto/tls connection (nil on plaintext):
	// closing it sends close_notify.
	tlsc    net.Conn
	timeout time.Duration // FlushTimeout: each write, and the final flush
	// in is what the peer sent before its EOF, not yet taken (the
	// client's commands pipelined behind its login; nil for a server).
	in []byte
	// ended is called once, from the writer goroutine, when it is done.
	ended func()

	queued atomic.Int64  // bytes written to the queue and not yet to the socket
	kick   chan struct{} // wakes the writer; capacity 1

	mu       sync.Mutex
	q        [][]byte
	finish   bool      // Close was called: flush, then close
	finishBy time.Time // when the flush is given up
}

func newHalfConn(nc net.Conn, w io.Writer, tlsc net.Conn, in []byte, timeout time.Duration, ended func()) *halfConn {
	return &halfConn{nc: nc, w: w, tlsc: tlsc, in: in, timeout: timeout, ended: ended, kick: make(chan struct{}, 1)}
}

// Peek serves what the peer sent before its EOF.
func (hc *halfConn) Peek(n int) ([]byte, error) {
	if n > len(hc.in) {
		return nil, io.ErrShortBuffer
	}
	if n <= 0 {
		return hc.in, nil
	}
	return hc.in[:n], nil
}

// Discard drops what was taken of it.
func (hc *halfConn) Discard(n int) (int, error) {
	if n <= 0 || n >= len(hc.in) {
		n = len(hc.in)
		hc.in = nil
		return n, nil
	}
	hc.in = hc.in[n:]
	return n, nil
}

// InboundBuffered counts what the peer sent that is not yet taken.
func (hc *halfConn) InboundBuffered() int { return len(hc.in) }

// Write queues a copy of p for the peer.
func (hc *halfConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	hc.mu.Lock()
	if hc.finish {
		hc.mu.Unlock()
		return 0, net.ErrClosed
	}
	hc.q = append(hc.q, append([]byte(nil), p...))
	hc.queued.Add(int64(len(p)))
	hc.mu.Unlock()
	hc.wake()
	return len(p), nil
}

// Writev queues every buffer.
func (hc *halfConn) Writev(bs [][]byte) (int, error) {
	n := 0
	for _, b := range bs {
		m, err := hc.Write(b)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// OutboundBuffered counts the bytes queued and not yet written: the relay
// holds it to max_relay_buffer_bytes.
func (hc *halfConn) OutboundBuffered() int { return int(hc.queued.Load()) }

// Close asks the writer to write what is queued, within FlushTimeout, and
// then close the connection: close_notify over TLS, then the FIN.
func (hc *halfConn) Close() error {
	hc.mu.Lock()
	if !hc.finish {
		hc.finish = true
		hc.finishBy = time.Now().Add(hc.timeout)
	}
	hc.mu.Unlock()
	hc.wake()
	return nil
}

func (hc *halfConn) wake() {
	select {
	case hc.kick <- struct{}{}:
	default:
	}
}

// run is the writer goroutine: it writes the queue with blocking writes,
// each bounded by FlushTimeout (a client that takes nothing for that long
// is gone), the last flush after Close by FlushTimeout in all.
func (hc *halfConn) run() {
	defer hc.ended()
	for {
		hc.mu.Lock()
		batch, fin, by := hc.q, hc.finish, hc.finishBy
		hc.q = nil
		hc.mu.Unlock()
		if len(batch) == 0 && !fin {
			<-hc.kick
			continue
		}
		for i, b := range batch {
			deadline := time.Now().Add(hc.timeout)
			if fin {
				deadline = by
			}
			_ = hc.nc.SetWriteDeadline(deadline)
			_, err := hc.w.Write(b)
			hc.queued.Add(-int64(len(b)))
			batch[i] = nil
			if err != nil {
				hc.mu.Lock()
				hc.finish = true // later writes fail at once
				hc.mu.Unlock()
				_ = hc.nc.Close()
				return
			}
		}
		if !fin {
			continue
		}
		hc.mu.Lock()
		rest := len(hc.q)
		hc.mu.Unlock()
		if rest > 0 {
			continue
		}
		if hc.tlsc != nil {
			// close_notify (RFC 8446 section 6.1), then the socket.
			_ = hc.nc.SetWriteDeadline(by)
			_ = hc.tlsc.Close()
		}
		_ = hc.nc.Close()
		return
	}
}

// halfClose is called from OnClose when the client's read side ended (a
// FIN): it keeps the session going on a duplicate of the client's socket,
// as the package comment above says, and reports whether it did. It
// reports false when the session is in no state to be continued or gnet
// still held bytes for the client (counted: halfclose_lost).
func (s *session) halfClose(c gnet.Conn) bool {
	switch s.state {
	case stAuth, stDelay, stBackend, stRelay:
	default:
		return false
	}
	h := s.h
	if c.OutboundBuffered() > 0 {
		// gnet writes what the socket takes once and drops the rest,
		// and its buffer cannot be taken over.
		h.stats.HalfCloseLost.Add(1)
		h.log.Debug("mail client half-closed with bytes still queued for it: closing as before",
			"protocol", s.proto.String(), "queued", c.OutboundBuffered())
		return false
	}
	if !h.reserveHalf() {
		h.log.Debug("mail client half-closed beyond max half-closed sessions: closing", "protocol", s.proto.String())
		return false
	}
	// What the client sent that the session has not taken yet (pipelined
	// behind a login being checked): over TLS, Peek decrypts what the
	// plaintext bound left as ciphertext.
	var in []byte
	for {
		buf, _ := s.io.Peek(-1)
		if len(buf) == 0 {
			break
		}
		in = append(in, buf...)
		_, _ = s.io.Discard(len(buf))
	}
	nc, w, tlsc, ok := h.takeSocket(c, s.tc, "mail-client")
	if !ok {
		return false
	}
	lp := s.Loop
	hc := newHalfConn(nc, w, tlsc, in, h.cfg.FlushTimeout, func() {
		// Counted here: after a stop the loop may run no more tasks.
		h.halfOpen.Add(-1)
		h.stats.HalfClosed.Add(-1)
		_ = lp.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			lp.Tick()
			s.halfEnded()
			return nil
		}))
	})
	s.hc = hc
	s.io = hc
	s.upEOF = true
	h.stats.HalfCloses.Add(1)
	h.stats.HalfClosed.Add(1)
	s.ls.half[s] = struct{}{}
	go hc.run()
	// l4 took the session's deadline off its list before OnClose: put it
	// back where it was.
	now := s.Loop.Now()
	switch s.state {
	case stDelay:
		s.ls.delay.Arm(&s.Deadline, s, now)
	case stRelay:
		s.armIdle()
		s.relayUp()
		s.shutBackend()
	default:
		s.ls.login.Arm(&s.Deadline, s, now)
	}
	return true
}

// reserveHalf takes one of the MaxHalfClosed places (counting a refusal in
// halfclose_lost); a failure after it gives the place back.
func (h *Handler) reserveHalf() bool {
	if h.halfOpen.Add(1) > int64(h.cfg.MaxHalfClosed) {
		h.halfOpen.Add(-1)
		h.stats.HalfCloseLost.Add(1)
		return false
	}
	return true
}

// halfEnded runs on the loop when a half-closed session's writer is done:
// after closeNow, or on its own when a write failed (the client reset the
// connection, or took nothing for FlushTimeout): the session ends then.
func (s *session) halfEnded() {
	delete(s.ls.half, s)
	if s.state != stClosed {
		s.state = stClosed
		s.Disarm()
		s.finish()
	}
}

// endHalfClosed ends the half-closed sessions of the loop with the
// protocol's farewell, which the client can still read: a stop, or the
// loop's Acceptor being released (its deadlines are swept no more).
func (ls *loopState) endHalfClosed(text string) {
	for s := range ls.half {
		if s.state != stClosed {
			s.bye(text)
		}
	}
}

// shutBackend propagates the client's half-close to the server once
// everything the client sent has been relayed: shutdown(SHUT_WR) (RFC 9293
// section 3.6) once gnet has written all it holds for the server; until
// then the loop's sweep looks again (shutWait). When the server had
// half-closed first, both directions are done: the session ends (its queue
// for the server is flushed, then the FIN).
//
// To a TLS server the FIN goes without a close_notify, against RFC 8446
// section 6.1's "MUST send a close_notify before closing its write side",
// on purpose: close_notify is a record, that is data, and a server that
// closes after BYE (Dovecot after LOGOUT, the usual pipeline's end)
// without having read it makes its kernel answer with a reset (RFC 1122
// section 4.2.2.13), which destroys the answers still on their way to
// the gateway: measured with the test stub, most of a 1 MiB FETCH was
// lost. A FIN is not data and cannot cause that reset. The server's TLS
// stack reports a truncation (crypto/tls io.ErrUnexpectedEOF, OpenSSL
// "unexpected eof while reading") where a clean close would be: it only
// reads commands, which were all delivered, so nothing is cut short.
func (s *session) shutBackend() {
	b := s.be
	if !s.upEOF || b == nil || b.state != beRelay || b.shut || s.io.InboundBuffered() > 0 {
		return
	}
	b.shut = true
	if b.hc != nil {
		s.closeNow()
		return
	}
	s.shutWhenFlushed(b.gc, func() bool { return s.be == b && b.state == beRelay && b.hc == nil }, 0, nil)
}

// shutPending is a connection whose write side is to be shut once gnet
// has written what it holds for it.
type shutPending struct {
	gc gnet.Conn
	// live reports whether gc is still gnet's and still to be shut (its
	// descriptor may be another connection's once it closed).
	live   func() bool
	until  int64  // when to give up (0: never; the idle timeout bounds it)
	giveUp func() // called then, on the loop
}

// shutWhenFlushed shuts gc's write side now, or once its outbound buffer
// is empty (the loop's sweep looks again).
func (s *session) shutWhenFlushed(gc gnet.Conn, live func() bool, until int64, giveUp func()) {
	if gc.OutboundBuffered() == 0 {
		s.h.shutdownWrite(gc)
		return
	}
	s.ls.shutWait = append(s.ls.shutWait, shutPending{gc: gc, live: live, until: until, giveUp: giveUp})
}

// shutdownWrite shuts a socket's write side: the peer reads EOF after
// what was written (RFC 9293 section 3.6), and may go on writing.
func (h *Handler) shutdownWrite(gc gnet.Conn) {
	if err := syscall.Shutdown(gc.Fd(), syscall.SHUT_WR); err != nil && !errors.Is(err, syscall.ENOTCONN) {
		h.log.Debug("mail half-close: shutdown", "err", err)
	}
}

// sweepShutWait shuts the connections whose outbound buffer has drained
// since they were to be shut, and gives up on those past their time.
func (ls *loopState) sweepShutWait(now int64) {
	if len(ls.shutWait) == 0 {
		return
	}
	var late []func()
	keep := ls.shutWait[:0]
	for _, p := range ls.shutWait {
		switch {
		case !p.live():
		case p.gc.OutboundBuffered() == 0:
			ls.h.shutdownWrite(p.gc)
		case p.until > 0 && now >= p.until:
			late = append(late, p.giveUp)
		default:
			keep = append(keep, p)
		}
	}
	clear(ls.shutWait[len(keep):])
	ls.shutWait = keep
	for _, f := range late {
		f()
	}
}

// The server's half-close: a FIN from the backend (or over TLS its
// close_notify) while the client is still sending. What the server sent
// has been relayed; the client's write side is shut once gnet has
// written all of it (close_notify first over TLS), within FlushTimeout,
// and what the client sends goes on to the server: the backend's socket
// is duplicated in its OnClose and written by a halfConn, as the client's
// is in halfClose. The session ends when the client's read side ends too
// (its FIN or close_notify), when a write to the server fails (most
// servers close rather than half-close after BYE or QUIT: the first
// bytes the client sends after that get a reset), or by the idle timeout,
// failover or a stop. The client sees the server's EOF at the point the
// server sent it, and a client that closes then, as IMAP and POP3
// clients do, ends the session at once.

// serverEOF is told that the server sends nothing more (over TLS its
// close_notify; the backend connection is still on the loop) and reports
// whether the session goes on: only a relaying session whose client is
// still sending does.
func (s *session) serverEOF() bool {
	if s.state != stRelay || s.hc != nil || s.upEOF {
		return false
	}
	if !s.downEOF {
		s.downEOF = true
		s.armIdle()
		s.shutClient()
	}
	return true
}

// shutClient shuts the client's write side once it has taken what the
// server sent: close_notify over TLS, then shutdown(SHUT_WR). A client
// that takes nothing for FlushTimeout is closed.
func (s *session) shutClient() {
	if s.clientShut || s.hc != nil || s.state != stRelay {
		return
	}
	s.clientShut = true
	if s.tc != nil {
		_ = s.tc.CloseWrite()
	}
	now := s.Loop.Now()
	s.shutWhenFlushed(s.Conn, func() bool { return s.state == stRelay && s.hc == nil },
		now+int64(s.h.cfg.FlushTimeout), func() {
			s.h.stats.Timeouts.Add(1)
			s.closeNow()
		})
}

// halfClose is called from the backend's OnClose on its EOF (a FIN) and
// reports whether the session goes on with the backend's socket
// duplicated: the server half-closed while the client is still sending.
// It reports false when the session is in no state to go on or gnet
// still held bytes for the server (counted: halfclose_lost).
func (b *backend) halfClose(gc gnet.Conn, prev uint8) bool {
	s := b.s
	h := s.h
	if prev != beRelay || s.state != stRelay || s.hc != nil || s.upEOF || b.io.InboundBuffered() > 0 {
		return false
	}
	if gc.OutboundBuffered() > 0 {
		h.stats.HalfCloseLost.Add(1)
		h.log.Debug("mail server half-closed with bytes still queued for it: closing as before",
			"protocol", s.proto.String(), "queued", gc.OutboundBuffered())
		return false
	}
	if !h.reserveHalf() {
		return false
	}
	nc, w, tlsc, ok := h.takeSocket(gc, b.tc, "mail-backend")
	if !ok {
		return false
	}
	lp := s.Loop
	var hc *halfConn
	hc = newHalfConn(nc, w, tlsc, nil, h.cfg.FlushTimeout, func() {
		h.halfOpen.Add(-1)
		h.stats.HalfClosed.Add(-1)
		_ = lp.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			lp.Tick()
			if s.be == b && b.hc == hc && s.state == stRelay {
				// A write to the server failed: it had closed, not
				// half-closed, or took nothing for FlushTimeout.
				s.closeNow()
			}
			return nil
		}))
	})
	b.hc = hc
	b.io = hc
	b.state = beRelay
	h.stats.HalfClosesServer.Add(1)
	h.stats.HalfClosed.Add(1)
	go hc.run()
	s.serverEOF()
	return true
}

// takeSocket duplicates gc's socket for blocking use after a half-close
// (gnet closes its own descriptor once OnClose returns; the duplicate keeps
// the connection) and, over TLS, moves tc's state along (Detach). w is
// what the session writes to: tlsc over TLS, nc otherwise. On failure the
// place reserveHalf took is given back, the half-close is counted as lost
// and the session closes as before; name labels the descriptor.
func (h *Handler) takeSocket(gc gnet.Conn, tc *tlsterm.Conn, name string) (nc net.Conn, w io.Writer, tlsc net.Conn, ok bool) {
	fail := func(level slog.Level, why string, err error) (net.Conn, io.Writer, net.Conn, bool) {
		h.halfOpen.Add(-1)
		h.stats.HalfCloseLost.Add(1)
		h.log.Log(context.Background(), level, "mail half-close: "+why+": closing", "socket", name, "err", err)
		return nil, nil, nil, false
	}
	fd, err := gc.Dup()
	if err != nil {
		return fail(slog.LevelWarn, "dup failed", err)
	}
	f := os.NewFile(uintptr(fd), name)
	nc, err = net.FileConn(f)
	_ = f.Close()
	if err != nil {
		return fail(slog.LevelWarn, "dup failed", err)
	}
	if tc == nil {
		return nc, nc, nil, true
	}
	if tlsc, err = tc.Detach(nc); err != nil {
		_ = nc.Close()
		return fail(slog.LevelDebug, "TLS connection not detachable", err)
	}
	return nc, tlsc, tlsc, true
}
