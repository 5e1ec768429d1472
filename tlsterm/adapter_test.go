package tlsterm

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// fakeLoop is an event loop of the test's own: one goroutine runs the
// tasks that AsyncWrite, Wake and Close post and delivers the client's bytes
// to the server Conn, so a test controls exactly which bytes one OnTraffic
// sees. The client end is a net.Conn for crypto/tls's client.
type fakeLoop struct {
	mu    sync.Mutex
	cond  *sync.Cond
	tasks []func()
	c2s   []byte // sent by the client, not yet delivered
	hold  bool   // do not deliver c2s on its own
	s2c   []byte // written by the server, not yet read by the client
	eof   bool   // the server closed
	stop  bool

	// Loop-owned.
	fc      *fakeConn
	tc      *Conn
	onReady func(*Conn) // called after OnTraffic returned ready
	gcWrite int         // gnet-level Write/Writev calls (not AsyncWrite)
	lastErr error       // last error OnTraffic returned
	done    chan struct{}
}

type fakeConn struct {
	gnet.Conn // nil: anything tlsterm should not call panics
	l         *fakeLoop
	in        []byte
	closed    bool
}

func newFakeLoop(t *testing.T, term *Terminator) *fakeLoop {
	l := &fakeLoop{done: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	l.fc = &fakeConn{l: l}
	go l.run()
	t.Cleanup(func() {
		l.mu.Lock()
		l.stop = true
		l.cond.Broadcast()
		l.mu.Unlock()
		<-l.done
	})
	l.do(func() { l.tc = term.Accept(l.fc) })
	return l
}

func (l *fakeLoop) run() {
	defer close(l.done)
	for {
		l.mu.Lock()
		for len(l.tasks) == 0 && (l.hold || len(l.c2s) == 0) && !l.stop {
			l.cond.Wait()
		}
		if l.stop {
			l.mu.Unlock()
			return
		}
		tasks := l.tasks
		l.tasks = nil
		var data []byte
		if !l.hold {
			data, l.c2s = l.c2s, nil
		}
		l.mu.Unlock()
		for _, f := range tasks {
			f()
		}
		if len(data) > 0 {
			l.deliverNow(data)
		}
	}
}

// deliverNow runs on the loop: bytes arrive, OnTraffic runs.
func (l *fakeLoop) deliverNow(data []byte) {
	if l.fc.closed {
		return
	}
	l.fc.in = append(l.fc.in, data...)
	l.traffic()
}

func (l *fakeLoop) traffic() {
	if l.fc.closed {
		return
	}
	ready, err := l.tc.OnTraffic()
	l.lastErr = err
	if err != nil {
		l.closeServer()
		return
	}
	if ready && l.onReady != nil {
		l.onReady(l.tc)
	}
}

func (l *fakeLoop) closeServer() {
	if l.fc.closed {
		return
	}
	l.fc.closed = true
	l.tc.OnClose()
	l.mu.Lock()
	l.eof = true
	l.cond.Broadcast()
	l.mu.Unlock()
}

func (l *fakeLoop) post(f func()) {
	l.mu.Lock()
	l.tasks = append(l.tasks, f)
	l.cond.Broadcast()
	l.mu.Unlock()
}

// do runs f on the loop and waits for it.
func (l *fakeLoop) do(f func()) {
	done := make(chan struct{})
	l.post(func() { f(); close(done) })
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		panic("fake loop task did not run")
	}
}

func (l *fakeLoop) toClient(p []byte) {
	l.mu.Lock()
	l.s2c = append(l.s2c, p...)
	l.cond.Broadcast()
	l.mu.Unlock()
}

// takeC2S removes what the client sent and has not been delivered.
func (l *fakeLoop) takeC2S() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.c2s
	l.c2s = nil
	return b
}

func (l *fakeLoop) setHold(h bool) {
	l.mu.Lock()
	l.hold = h
	l.cond.Broadcast()
	l.mu.Unlock()
}

func (f *fakeConn) Read(p []byte) (int, error) {
	n := copy(p, f.in)
	f.in = f.in[n:]
	if n == 0 && len(p) > 0 {
		return 0, io.ErrShortBuffer
	}
	return n, nil
}

func (f *fakeConn) Peek(n int) ([]byte, error) {
	if n <= 0 {
		return f.in, nil
	}
	if n > len(f.in) {
		return nil, io.ErrShortBuffer
	}
	return f.in[:n], nil
}

func (f *fakeConn) Discard(n int) (int, error) {
	if n <= 0 || n >= len(f.in) {
		m := len(f.in)
		f.in = nil
		return m, nil
	}
	f.in = f.in[n:]
	return n, nil
}

func (f *fakeConn) InboundBuffered() int  { return len(f.in) }
func (f *fakeConn) OutboundBuffered() int { return 0 }
func (f *fakeConn) LocalAddr() net.Addr   { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443} }
func (f *fakeConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
}

func (f *fakeConn) Write(p []byte) (int, error) {
	if f.closed {
		return 0, net.ErrClosed
	}
	f.l.gcWrite++
	f.l.toClient(p)
	return len(p), nil
}

func (f *fakeConn) Writev(bs [][]byte) (int, error) {
	return f.Write(bytes.Join(bs, nil))
}

func (f *fakeConn) AsyncWrite(b []byte, cb gnet.AsyncCallback) error {
	f.l.post(func() {
		var err error
		if f.closed {
			err = net.ErrClosed
		} else {
			f.l.toClient(b)
		}
		if cb != nil {
			_ = cb(f, err)
		}
	})
	return nil
}

func (f *fakeConn) Wake(cb gnet.AsyncCallback) error {
	f.l.post(func() {
		f.l.traffic()
		if cb != nil {
			_ = cb(f, nil)
		}
	})
	return nil
}

func (f *fakeConn) Close() error {
	f.l.post(f.l.closeServer)
	return nil
}

// clientEnd is the client's net.Conn.
type clientEnd struct{ l *fakeLoop }

func (c clientEnd) Read(p []byte) (int, error) {
	l := c.l
	l.mu.Lock()
	defer l.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for len(l.s2c) == 0 && !l.eof {
		if time.Now().After(deadline) {
			return 0, os.ErrDeadlineExceeded
		}
		waitCond(l.cond, 50*time.Millisecond)
	}
	if len(l.s2c) == 0 {
		return 0, io.EOF
	}
	n := copy(p, l.s2c)
	l.s2c = l.s2c[n:]
	return n, nil
}

// waitCond waits on c for at most d (a timer broadcasts).
func waitCond(c *sync.Cond, d time.Duration) {
	t := time.AfterFunc(d, func() {
		c.L.Lock()
		c.Broadcast()
		c.L.Unlock()
	})
	c.Wait()
	t.Stop()
}

func (c clientEnd) Write(p []byte) (int, error) {
	c.l.mu.Lock()
	c.l.c2s = append(c.l.c2s, p...)
	c.l.cond.Broadcast()
	c.l.mu.Unlock()
	return len(p), nil
}

func (c clientEnd) Close() error {
	c.l.post(c.l.closeServer)
	return nil
}

func (c clientEnd) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c clientEnd) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c clientEnd) SetDeadline(time.Time) error      { return nil }
func (c clientEnd) SetReadDeadline(time.Time) error  { return nil }
func (c clientEnd) SetWriteDeadline(time.Time) error { return nil }

// fakeSetup is a Terminator, a fake loop with one accepted Conn, and a TLS
// client connected to it.
func fakeSetup(t *testing.T, s Settings, ccfg *tls.Config) (*fakeLoop, *tls.Conn, *standardCerts) {
	t.Helper()
	certs := newStandardCerts(t)
	s.Certificates = certs.pairs
	term := newTerm(t, s)
	l := newFakeLoop(t, term)
	if ccfg == nil {
		ccfg = certs.clientConfig("mail.example.test")
	}
	return l, tls.Client(clientEnd{l}, ccfg), certs
}

// startHandshake starts the client's handshake on a goroutine (its result
// comes on errc) and returns the ClientHello it sent, which the caller
// delivers. The loop must hold the client's bytes (setHold).
func (l *fakeLoop) startHandshake(t *testing.T, client *tls.Conn) (errc chan error, hello []byte) {
	t.Helper()
	errc = make(chan error, 1)
	go func() { errc <- client.Handshake() }()
	waitFor(t, 10*time.Second, "the ClientHello", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.c2s) > 0
	})
	return errc, l.takeC2S()
}

// handshake completes the client's handshake and waits until the loop has
// taken over on the server.
func (l *fakeLoop) handshake(t *testing.T, client *tls.Conn) {
	t.Helper()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the loop to take over", func() bool {
		var ok bool
		l.do(func() { ok = l.tc.HandshakeComplete() })
		return ok
	})
}

// TestTemporaryErrorIsNotSticky pins the crypto/tls behaviour the adapter
// depends on, without tlsterm: a read error that is a net.Error with
// Temporary() true is returned but not remembered, and the part of a
// record already read is kept. Every split point of a record is tried, for
// TLS 1.3 and 1.2.
func TestTemporaryErrorIsNotSticky(t *testing.T) {
	certs := newStandardCerts(t)
	cert, err := tls.LoadX509KeyPair(certs.mailPair.CertFile, certs.mailPair.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		c2s, s2c := newMemPipe(), newMemPipe()
		server := tls.Server(memConn{r: c2s, w: s2c}, &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: version})
		client := tls.Client(memConn{r: s2c, w: c2s}, &tls.Config{RootCAs: certs.pki.roots, ServerName: "mail.example.test"})
		errc := make(chan error, 1)
		go func() { errc <- client.Handshake() }()
		if err := server.Handshake(); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		// From here the server's reads report a temporary error when no
		// byte is buffered, as the wire does on the loop.
		c2s.setNonblocking()
		for k := 1; ; k++ {
			msg := fmt.Sprintf("record split at byte %d", k)
			if _, err := client.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			rec := c2s.take()
			if k >= len(rec) {
				break
			}
			buf := make([]byte, 100)
			c2s.feed(rec[:k])
			n, err := server.Read(buf)
			var ne net.Error
			if n != 0 || !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("TLS %x split %d: first part: n=%d err=%v, want the temporary error", version, k, n, err)
			}
			// Again with nothing new: still temporary, nothing lost.
			if n, err = server.Read(buf); n != 0 || !errors.Is(err, errWouldBlock) {
				t.Fatalf("TLS %x split %d: second empty read: n=%d err=%v", version, k, n, err)
			}
			c2s.feed(rec[k:])
			n, err = server.Read(buf)
			if err != nil || string(buf[:n]) != msg {
				t.Fatalf("TLS %x split %d: got %q, %v; want %q (has crypto/tls made temporary errors sticky?)", version, k, buf[:n], err, msg)
			}
		}
	}
}

// memPipe is one direction of an in-memory connection: reads block until
// bytes arrive, or (non-blocking) fail with errWouldBlock.
type memPipe struct {
	mu          sync.Mutex
	cond        *sync.Cond
	buf         []byte
	nonblocking bool
}

func newMemPipe() *memPipe {
	p := &memPipe{}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *memPipe) read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for len(p.buf) == 0 {
		if p.nonblocking {
			return 0, errWouldBlock
		}
		if time.Now().After(deadline) {
			return 0, os.ErrDeadlineExceeded
		}
		waitCond(p.cond, 50*time.Millisecond)
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	return n, nil
}

func (p *memPipe) feed(b []byte) {
	p.mu.Lock()
	p.buf = append(p.buf, b...)
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *memPipe) take() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.buf
	p.buf = nil
	return b
}

func (p *memPipe) setNonblocking() {
	p.mu.Lock()
	p.nonblocking = true
	p.mu.Unlock()
}

type memConn struct{ r, w *memPipe }

func (c memConn) Read(b []byte) (int, error)       { return c.r.read(b) }
func (c memConn) Write(b []byte) (int, error)      { c.w.feed(b); return len(b), nil }
func (c memConn) Close() error                     { return nil }
func (c memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c memConn) SetDeadline(time.Time) error      { return nil }
func (c memConn) SetReadDeadline(time.Time) error  { return nil }
func (c memConn) SetWriteDeadline(time.Time) error { return nil }

// TestRecordSplitAtEveryByte drives the adapter itself: after the
// handshake, records reach OnTraffic split at every byte boundary, and one
// record one byte at a time. Nothing is decrypted early, nothing is lost,
// no error sticks.
func TestRecordSplitAtEveryByte(t *testing.T) { onBothLayers(t, testRecordSplitAtEveryByte) }

func testRecordSplitAtEveryByte(t *testing.T, s Settings) {
	l, client, _ := fakeSetup(t, s, nil)
	l.handshake(t, client)
	l.setHold(true)
	check := func(step string, wantReady bool, want string) {
		t.Helper()
		var (
			got string
			err error
		)
		l.do(func() {
			var ready bool
			ready, err = l.tc.OnTraffic()
			if ready != wantReady {
				err = fmt.Errorf("ready=%t", ready)
			}
			if want == "" && l.tc.pbuf != nil {
				err = errors.New("a plaintext buffer is held with nothing in it")
			}
			b, _ := l.tc.Peek(-1)
			got = string(b)
			l.tc.Discard(len(b))
		})
		if err != nil || got != want {
			t.Fatalf("%s: got %q, %v; want %q", step, got, err, want)
		}
	}
	for k := 1; ; k++ {
		msg := fmt.Sprintf("split at %d", k)
		client.Write([]byte(msg))
		rec := l.takeC2S()
		if k >= len(rec) {
			l.do(func() { l.fc.in = append(l.fc.in, rec...) })
			check("whole record", true, msg)
			break
		}
		l.do(func() { l.fc.in = append(l.fc.in, rec[:k]...) })
		check(fmt.Sprintf("split %d, first part", k), true, "")
		l.do(func() { l.fc.in = append(l.fc.in, rec[k:]...) })
		check(fmt.Sprintf("split %d, second part", k), true, msg)
	}
	msg := "one byte at a time"
	client.Write([]byte(msg))
	rec := l.takeC2S()
	for i := range rec {
		l.do(func() { l.fc.in = append(l.fc.in, rec[i]) })
		want := ""
		if i == len(rec)-1 {
			want = msg
		}
		check(fmt.Sprintf("byte %d of %d", i+1, len(rec)), true, want)
	}
}

// TestDataWithClientFinished: the client's Finished and its first request
// arrive in one read, so crypto/tls's handshake goroutine reads the
// request's record too. The Wake after the handshake must surface it.
func TestDataWithClientFinished(t *testing.T) { onBothLayers(t, testDataWithClientFinished) }

func testDataWithClientFinished(t *testing.T, s Settings) {
	l, client, _ := fakeSetup(t, s, nil)
	got := make(chan string, 1)
	l.onReady = func(c *Conn) {
		if b, _ := c.Peek(-1); len(b) > 0 {
			got <- string(b)
			c.Discard(len(b))
		}
	}
	l.setHold(true)
	errc, hello := l.startHandshake(t, client)
	l.do(func() { l.deliverNow(hello) })
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	client.Write([]byte("EHLO right after Finished"))
	flight := l.takeC2S() // Finished (and a compatibility CCS) plus the request
	l.do(func() { l.deliverNow(flight) })
	select {
	case s := <-got:
		if s != "EHLO right after Finished" {
			t.Fatalf("got %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request that came with Finished was not delivered")
	}
}

// TestPlaintextBound: decryption stops at MaxPlaintextBuffer, the rest
// stays ciphertext, and Peek decrypts more as the caller consumes, without
// another OnTraffic. A drained buffer is released.
func TestPlaintextBound(t *testing.T) { onBothLayers(t, testPlaintextBound) }

// onBothLayers runs test on tlsterm's own TLS 1.3 record layer (the
// default) and on crypto/tls's (Settings.CryptoTLSRecords).
func onBothLayers(t *testing.T, test func(*testing.T, Settings)) {
	t.Run("own-records", func(t *testing.T) { test(t, Settings{}) })
	t.Run("crypto-tls-records", func(t *testing.T) { test(t, Settings{CryptoTLSRecords: true}) })
}

func testPlaintextBound(t *testing.T, s Settings) {
	const bound = 64 << 10
	s.MaxPlaintextBuffer = bound
	cryptoTLS := s.CryptoTLSRecords
	l, client, _ := fakeSetup(t, s, nil)
	l.handshake(t, client)
	l.setHold(true)
	data := make([]byte, 200<<10)
	rand.Read(data)
	if _, err := client.Write(data); err != nil {
		t.Fatal(err)
	}
	rec := l.takeC2S()
	var (
		first, inbound int
		got            []byte
		released       bool
		err            error
	)
	l.do(func() {
		l.fc.in = append(l.fc.in, rec...)
		var ready bool
		ready, err = l.tc.OnTraffic()
		if !ready {
			err = errors.New("not ready")
		}
		b, _ := l.tc.Peek(-1)
		first, inbound = len(b), l.tc.InboundBuffered()
		for len(got) < len(data) {
			b, _ := l.tc.Peek(-1)
			if len(b) == 0 {
				break
			}
			if len(b) > bound {
				err = fmt.Errorf("Peek returned %d bytes, over the bound", len(b))
				return
			}
			got = append(got, b...)
			l.tc.Discard(len(b))
		}
		released = l.tc.pbuf == nil && l.tc.hs == nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// crypto/tls hands out part of a record; the own layer decrypts whole
	// records, stopping before one that might not fit.
	if low := bound - maxRecordPlaintext; first > bound || first <= low || cryptoTLS && first != bound {
		t.Errorf("first OnTraffic decrypted %d bytes, want the bound %d (own records: more than %d)", first, bound, low)
	}
	if inbound < len(data)-bound {
		t.Errorf("InboundBuffered = %d, want at least the %d bytes not decrypted yet", inbound, len(data)-bound)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("drained %d bytes, want %d intact", len(got), len(data))
	}
	if !released {
		t.Error("plaintext buffer or handshake state kept after draining")
	}
}

// TestGnetSemantics checks Peek, Discard and InboundBuffered against gnet's
// documented behaviour, and the write paths.
func TestGnetSemantics(t *testing.T) { onBothLayers(t, testGnetSemantics) }

func testGnetSemantics(t *testing.T, s Settings) {
	l, client, _ := fakeSetup(t, s, nil)
	l.handshake(t, client)
	l.setHold(true)
	client.Write([]byte("0123456789"))
	rec := l.takeC2S()
	l.do(func() {
		l.fc.in = append(l.fc.in, rec...)
		if ready, err := l.tc.OnTraffic(); !ready || err != nil {
			t.Errorf("OnTraffic: %t %v", ready, err)
		}
		c := l.tc
		if b, err := c.Peek(4); string(b) != "0123" || err != nil {
			t.Errorf("Peek(4) = %q, %v", b, err)
		}
		if b, err := c.Peek(11); b != nil || err != io.ErrShortBuffer {
			t.Errorf("Peek(11) = %q, %v; want io.ErrShortBuffer", b, err)
		}
		if c.InboundBuffered() != 10 {
			t.Errorf("InboundBuffered = %d", c.InboundBuffered())
		}
		if n, _ := c.Discard(3); n != 3 {
			t.Errorf("Discard(3) = %d", n)
		}
		if b, _ := c.Peek(0); string(b) != "3456789" {
			t.Errorf("Peek(0) = %q", b)
		}
		if n, _ := c.Discard(100); n != 7 {
			t.Errorf("Discard(100) = %d, want 7", n)
		}
		if b, err := c.Peek(-1); len(b) != 0 || err != nil {
			t.Errorf("empty Peek(-1) = %q, %v", b, err)
		}
		if c.pbuf != nil {
			t.Error("drained buffer kept")
		}

		// A 50 KiB response is one gnet write, however many records
		// crypto/tls makes of it.
		l.gcWrite = 0
		if n, err := c.Write(make([]byte, 50<<10)); n != 50<<10 || err != nil {
			t.Errorf("Write: %d, %v", n, err)
		}
		if l.gcWrite != 1 {
			t.Errorf("Write made %d gnet writes, want 1", l.gcWrite)
		}
		if n, err := c.Writev([][]byte{[]byte("1a\r\n"), make([]byte, 26), []byte("\r\n")}); n != 32 || err != nil {
			t.Errorf("Writev: %d, %v", n, err)
		}
	})
	// The client sees exactly what was written.
	buf := make([]byte, 50<<10+32)
	if _, err := io.ReadFull(client, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf[50<<10:50<<10+4]) != "1a\r\n" || string(buf[len(buf)-2:]) != "\r\n" {
		t.Errorf("Writev data %q", buf[50<<10:])
	}
}

// TestPeerCloseNotify: the client's close_notify (RFC 8446 section 6.1)
// ends the connection once its plaintext is consumed.
func TestPeerCloseNotify(t *testing.T) { onBothLayers(t, testPeerCloseNotify) }

func testPeerCloseNotify(t *testing.T, s Settings) {
	l, client, _ := fakeSetup(t, s, nil)
	var got []byte
	l.onReady = func(c *Conn) {
		b, _ := c.Peek(-1)
		got = append(got, b...)
		c.Discard(len(b))
	}
	l.handshake(t, client)
	l.setHold(true)
	client.Write([]byte("last words"))
	client.CloseWrite()
	both := l.takeC2S()
	l.do(func() { l.deliverNow(both) })
	var (
		closed bool
		err    error
	)
	// The Wake that reports io.EOF runs as a task after delivery.
	waitFor(t, 10*time.Second, "the close", func() bool {
		l.do(func() { closed, err = l.fc.closed, l.lastErr })
		return closed
	})
	if string(got) != "last words" || !closed || err != io.EOF {
		t.Errorf("got %q, closed=%t, err=%v; want the data, then io.EOF and a close", got, closed, err)
	}
}

// TestServerClose: Close sends close_notify first.
func TestServerClose(t *testing.T) { onBothLayers(t, testServerClose) }

func testServerClose(t *testing.T, s Settings) {
	l, client, _ := fakeSetup(t, s, nil)
	l.handshake(t, client)
	l.do(func() {
		if err := l.tc.Close(); err != nil {
			t.Error(err)
		}
		if _, err := l.tc.Write([]byte("x")); err == nil {
			t.Error("Write after Close succeeded")
		}
	})
	if n, err := client.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Errorf("client read %d, %v; want io.EOF from close_notify", n, err)
	}
}

// TestWriteBeforeHandshake: the plaintext side refuses writes until the
// handshake is done, and a failed handshake fails OnTraffic.
func TestWriteBeforeHandshake(t *testing.T) {
	certs := newStandardCerts(t)
	term := newTerm(t, Settings{Certificates: certs.pairs})
	l := newFakeLoop(t, term)
	l.do(func() {
		if _, err := l.tc.Write([]byte("early")); !errors.Is(err, ErrHandshakeInProgress) {
			t.Errorf("Write during the handshake: %v", err)
		}
		if b, err := l.tc.Peek(-1); len(b) != 0 || err != nil {
			t.Errorf("Peek during the handshake: %q, %v", b, err)
		}
		if st := l.tc.State(); st.HandshakeComplete {
			t.Error("State complete during the handshake")
		}
	})
	clientEnd{l}.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n"))
	waitFor(t, 10*time.Second, "the connection to close", func() bool {
		var closed bool
		l.do(func() { closed = l.fc.closed })
		return closed
	})
	waitFailure(t, term, FailBadClientHello, 1)
}

func TestPlaintextAlert(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want int16
	}{
		{[]byte{21, 3, 3, 0, 2, 2, 70}, 70},
		{[]byte{22, 3, 3, 0, 1, 0, 21, 3, 3, 0, 2, 2, 40}, 40},
		{[]byte{23, 3, 3, 0, 19, 1, 2, 3}, -1}, // encrypted
		{[]byte{21, 3, 3, 0, 26, 1, 2}, -1},    // encrypted TLS 1.2 alert
		{nil, -1},
	} {
		if got := plaintextAlert(tc.in); got != tc.want {
			t.Errorf("plaintextAlert(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// TestRecordsInOneRead: several whole records and the start of one more
// arrive in one read, after the loop has learnt the record framing (the
// first OnTraffic after the handshake reads until crypto/tls would block;
// later ones stop once every whole record is decrypted, records.go). One
// OnTraffic must surface every whole record, and the rest of the last one
// its message when it comes, in every split of that record.
func TestRecordsInOneRead(t *testing.T) { onBothLayers(t, testRecordsInOneRead) }

func testRecordsInOneRead(t *testing.T, s Settings) {
	l, client, _ := fakeSetup(t, s, nil)
	l.handshake(t, client)
	l.setHold(true)
	deliver := func(b []byte) (got string, err error) {
		l.do(func() {
			l.fc.in = append(l.fc.in, b...)
			var ready bool
			if ready, err = l.tc.OnTraffic(); err == nil && !ready {
				err = errors.New("not ready")
			}
			p, _ := l.tc.Peek(-1)
			got = string(p)
			l.tc.Discard(len(p))
		})
		return got, err
	}
	client.Write([]byte("first"))
	if got, err := deliver(l.takeC2S()); err != nil || got != "first" {
		t.Fatalf("first record: %q, %v", got, err)
	}
	for _, k := range []int{0, 1, 4, 5, -1} {
		var batch []byte
		want := ""
		for i := 0; i < 4; i++ {
			msg := fmt.Sprintf("k%d.%d;", k, i)
			client.Write([]byte(msg))
			batch = append(batch, l.takeC2S()...)
			want += msg
		}
		client.Write([]byte("tail"))
		tail := l.takeC2S()
		if k < 0 {
			k = len(tail) - 1
		}
		got, err := deliver(append(batch, tail[:k]...))
		if err != nil || got != want {
			t.Fatalf("4 records and %d bytes of a fifth: %q, %v; want %q", k, got, err, want)
		}
		if got, err = deliver(tail[k:]); err != nil || got != "tail" {
			t.Fatalf("the fifth record's last %d bytes: %q, %v", len(tail)-k, got, err)
		}
	}
}
