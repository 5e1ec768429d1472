package mailproxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"frontdoor/l4"
	"frontdoor/mailproxy"
	"frontdoor/poolmux"
	"frontdoor/tlsterm"
)

// The harness runs an l4.Server whose acceptor is a mailproxy.Handler on
// loopback, with a fake Authenticator (the first check of a credential is
// Pending and woken from another goroutine, as the gateway's workers do)
// and a stub mail server in Go that records what the proxy sent it.

func quietLog() *slog.Logger {
	if os.Getenv("MAILPROXY_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// fakeAuth accepts the users in pw; each credential is "verified" off the
// loop once, then answered at once.
type fakeAuth struct {
	pw      map[string]string
	clients sync.Map // client addresses seen
	backend string   // address of the stub server
	tls     *poolmux.TLS
	mu      sync.Mutex
	seen    map[string]bool
	calls   atomic.Int64
	pending atomic.Int64
}

// setBackend changes where logins go (guarded: Login runs on the loops).
func (a *fakeAuth) setBackend(addr string, t *poolmux.TLS) {
	a.mu.Lock()
	a.backend, a.tls = addr, t
	a.mu.Unlock()
}

func (a *fakeAuth) Login(proto mailproxy.Protocol, user, pass []byte, client netip.Addr, wake func()) mailproxy.Verdict {
	a.calls.Add(1)
	a.clients.Store(client, true)
	key := string(user) + "\x00" + string(pass)
	a.mu.Lock()
	seen := a.seen[key]
	a.seen[key] = true
	a.mu.Unlock()
	if !seen {
		a.pending.Add(1)
		go func() { time.Sleep(time.Millisecond); wake() }()
		return mailproxy.Verdict{Pending: true}
	}
	if p, ok := a.pw[string(user)]; !ok || p != string(pass) {
		return mailproxy.Verdict{}
	}
	a.mu.Lock()
	addr, t := a.backend, a.tls
	a.mu.Unlock()
	return mailproxy.Verdict{OK: true, User: string(user), Backend: mailproxy.Backend{
		Server: "stub", Database: "DB01", Addr: addr, TLS: t}}
}

// stub is a minimal IMAP or POP3 server: it greets, accepts the proxy's
// login, then echoes every line as "* ECHO line" (IMAP) or "+OK line"
// (POP3), and closes on "QUIT-NOW".
type stub struct {
	ln     net.Listener
	pop3   bool
	hold   chan struct{} // closed at the end of the test: HOLD returns
	mu     sync.Mutex
	logins []string
	after  []string // lines read after a HALFCLOSE
}

// After returns the lines the server read after it half-closed.
func (s *stub) After() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.after...)
}

func startStub(t testing.TB, pop3 bool) *stub { return startStubTLS(t, pop3, nil) }

// startStubTLS is startStub with implicit TLS when cfg is not nil.
func startStubTLS(t testing.TB, pop3 bool, cfg *tls.Config) *stub {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	s := &stub{ln: ln, pop3: pop3, hold: make(chan struct{})}
	t.Cleanup(func() { ln.Close(); s.release() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

// release ends the HOLDs (once).
func (s *stub) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.hold:
	default:
		close(s.hold)
	}
}

func (s *stub) Addr() string { return s.ln.Addr().String() }

func (s *stub) Logins() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.logins...)
}

func (s *stub) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	if s.pop3 {
		fmt.Fprint(c, "+OK stub ready\r\n")
	} else {
		fmt.Fprint(c, "* OK [CAPABILITY IMAP4rev1 LITERAL+] stub ready\r\n")
	}
	loggedIn := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		if !loggedIn {
			s.mu.Lock()
			s.logins = append(s.logins, line)
			s.mu.Unlock()
			switch {
			case s.pop3 && strings.HasPrefix(line, "USER "):
				fmt.Fprint(c, "+OK\r\n")
			case s.pop3:
				fmt.Fprint(c, "+OK Logged in.\r\n")
				loggedIn = true
			case strings.Contains(line, "nobody"):
				fmt.Fprint(c, "fd1 NO [AUTHENTICATIONFAILED] no such user\r\n")
			default:
				fmt.Fprint(c, "* CAPABILITY IMAP4rev1 IDLE\r\nfd1 OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in\r\n")
				loggedIn = true
			}
			continue
		}
		if line == "QUIT-NOW" {
			return
		}
		if line == "BIGQUIT" {
			// 4 MiB, then the end of the session (a POP3 RETR and
			// QUIT pipelined, an IMAP FETCH and LOGOUT).
			_, _ = c.Write(bigMessage[:4<<20])
			return
		}
		if tag, ok := strings.CutSuffix(line, " FETCH1M"); ok && !s.pop3 {
			// A 1 MiB message (the half-close tests).
			fmt.Fprintf(c, "* 1 FETCH (BODY[] {%d}\r\n", 1<<20)
			_, _ = c.Write(bigMessage[:1<<20])
			fmt.Fprintf(c, ")\r\n%s OK FETCH completed\r\n", tag)
			continue
		}
		if tag, ok := strings.CutSuffix(line, " LOGOUT"); ok && !s.pop3 {
			// As a server does (RFC 9051 section 6.1.3): BYE, the
			// tagged OK, then the close.
			fmt.Fprintf(c, "* BYE Logging out\r\n%s OK Logout completed.\r\n", tag)
			return
		}
		if line == "RETR 1" && s.pop3 {
			fmt.Fprintf(c, "+OK %d octets\r\n", 1<<20)
			_, _ = c.Write(bigMessage[:1<<20])
			fmt.Fprint(c, ".\r\n")
			continue
		}
		if strings.HasSuffix(line, " HALFCLOSE") {
			// The server half-closes (RFC 9293 section 3.6; over TLS
			// close_notify first) and records what it reads after.
			fmt.Fprint(c, "* HALF\r\n")
			if tc, ok := c.(*tls.Conn); ok {
				_ = tc.CloseWrite()
				_ = tc.NetConn().(*net.TCPConn).CloseWrite()
			} else {
				_ = c.(*net.TCPConn).CloseWrite()
			}
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				s.mu.Lock()
				s.after = append(s.after, strings.TrimRight(l, "\r\n"))
				s.mu.Unlock()
			}
		}
		if strings.HasSuffix(line, " HOLD") {
			// A server that neither answers nor closes (on a client's
			// half-close too) until the test releases it; it goes on
			// then.
			fmt.Fprint(c, "* HOLDING\r\n")
			<-s.hold
			continue
		}
		if line == "QUIT" && s.pop3 {
			fmt.Fprint(c, "+OK Logging out.\r\n")
			return
		}
		if tag, ok := strings.CutSuffix(line, " FETCH10M"); ok && !s.pop3 {
			// A 10 MiB message, as a FETCH response with a literal.
			fmt.Fprintf(c, "* 1 FETCH (BODY[] {%d}\r\n", len(bigMessage))
			_, _ = c.Write(bigMessage)
			fmt.Fprintf(c, ")\r\n%s OK FETCH completed\r\n", tag)
			continue
		}
		if s.pop3 {
			fmt.Fprintf(c, "+OK %s\r\n", line)
		} else {
			fmt.Fprintf(c, "* ECHO %s\r\n", line)
		}
	}
}

// bigMessage is the 10 MiB body of the stub's FETCH10M.
var bigMessage = []byte(strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n", 10<<20/64))

type harness struct {
	h     *mailproxy.Handler
	auth  *fakeAuth
	stub  *stub
	addrs []string // by listener: imap (starttls), imaps, pop3 (stls), imap-plain-allowed
	roots *tls.Config
	stop  func() // drains (a stop: idle sessions closed) and stops the server
}

// startHarness serves four listeners: IMAP with STARTTLS, IMAPS, POP3 with
// STLS (all refusing plaintext logins), and IMAP allowing plaintext
// logins. mod adjusts the Config.
func startHarness(t testing.TB, pop3Stub bool, mod func(*mailproxy.Config)) *harness {
	t.Helper()
	return startHarnessProxy(t, pop3Stub, mod, false)
}

// startHarnessProxy is startHarness; with proxy, the plaintext-login IMAP
// listener requires a PROXY protocol header from loopback.
func startHarnessProxy(t testing.TB, pop3Stub bool, mod func(*mailproxy.Config), proxy bool) *harness {
	t.Helper()
	certDir := t.TempDir()
	cert, key, err := tlsterm.WriteSelfSigned(certDir, []string{"localhost", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// The smallest plaintext bound, so that one readable event often
	// leaves ciphertext behind (TestRelayDrainsTLSBacklog).
	term, err := tlsterm.NewTerminator(tlsterm.Settings{Certificates: []tlsterm.CertPair{{CertFile: cert, KeyFile: key}},
		MaxPlaintextBuffer: 4096}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(term.Close)
	st := startStub(t, pop3Stub)
	fa := &fakeAuth{pw: map[string]string{"alice": "password", "nobody": "password"}, backend: st.Addr(), seen: map[string]bool{}}
	cfg := mailproxy.Config{
		Listeners: []mailproxy.Listener{
			{Protocol: mailproxy.IMAP, StartTLS: term},
			{Protocol: mailproxy.IMAP, TLS: term},
			{Protocol: mailproxy.POP3, StartTLS: term},
			{Protocol: mailproxy.IMAP, AllowPlaintextLogin: true},
		},
		Auth:           fa,
		MasterUser:     "master",
		MasterPassword: "m-pw",
		MasterFormat:   "{user}*{master}",
		FailureDelay:   10 * time.Millisecond,
		Log:            quietLog(),
	}
	if mod != nil {
		mod(&cfg)
	}
	mh := mailproxy.NewHandler(cfg, nil)
	var specs []l4.ListenerSpec
	var addrs []string
	for i := range cfg.Listeners {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		addrs = append(addrs, addr)
		specs = append(specs, l4.ListenerSpec{Name: fmt.Sprint("l", i), Address: addr})
	}
	if proxy {
		specs[3].Proxy = l4.ProxyPolicy{Mode: l4.ProxyRequired, From: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	}
	srv, err := l4.NewServer(l4.Options{Listeners: specs, Loops: 2, SweepInterval: 10 * time.Millisecond,
		ProxyHeaderTimeout: 5 * time.Second, Log: quietLog()}, mh)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- srv.Serve(ctx, func() l4.DrainOptions { return l4.DrainOptions{Timeout: time.Second} }, func() { close(ready) })
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start")
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Error("server did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return &harness{h: mh, auth: fa, stub: st, addrs: addrs, stop: stop,
		roots: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // a certificate made for this test
}

// conn is a line-oriented test client.
type conn struct {
	t testing.TB
	net.Conn
	r *bufio.Reader
}

func (h *harness) dial(t testing.TB, i int) *conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", h.addrs[i], 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &conn{t: t, Conn: c, r: bufio.NewReader(c)}
}

func (h *harness) dialTLS(t testing.TB, i int) *conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", h.addrs[i], h.roots)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &conn{t: t, Conn: c, r: bufio.NewReader(c)}
}

// startTLS upgrades c after the server said OK.
func (c *conn) startTLS(cfg *tls.Config) {
	c.t.Helper()
	if c.r.Buffered() > 0 {
		c.t.Fatalf("bytes after the STARTTLS answer: %d", c.r.Buffered())
	}
	tc := tls.Client(c.Conn, cfg)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("handshake: %v", err)
	}
	_ = tc.SetDeadline(time.Time{})
	c.Conn = tc
	c.r = bufio.NewReader(tc)
}

func (c *conn) send(s string) {
	c.t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.Conn, s); err != nil {
		c.t.Fatalf("send %q: %v", s, err)
	}
}

// line reads one line (without CRLF), failing after 10s.
func (c *conn) line() string {
	c.t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// expect reads a line and checks its prefix.
func (c *conn) expect(prefix string) string {
	c.t.Helper()
	l := c.line()
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got %q, want a line starting %q", l, prefix)
	}
	return l
}

// until reads lines until one starts with prefix and returns them all.
func (c *conn) until(prefix string) []string {
	c.t.Helper()
	var ls []string
	for range 100 {
		l := c.line()
		ls = append(ls, l)
		if strings.HasPrefix(l, prefix) {
			return ls
		}
	}
	c.t.Fatalf("no line starting %q in %q", prefix, ls)
	return nil
}

// closed checks that the server closes the connection (after any lines).
func (c *conn) closed() []string {
	c.t.Helper()
	var ls []string
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for range 100 {
		l, err := c.r.ReadString('\n')
		if l != "" {
			ls = append(ls, strings.TrimRight(l, "\r\n"))
		}
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				c.t.Fatalf("connection not closed; got %q", ls)
			}
			return ls
		}
	}
	c.t.Fatalf("connection not closed; got %q", ls)
	return nil
}
