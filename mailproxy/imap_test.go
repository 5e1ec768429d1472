package mailproxy_test

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"frontdoor/mailproxy"
	"frontdoor/poolmux"
	"frontdoor/tlsterm"
)

// Listener indexes of the harness.
const (
	lIMAP = iota
	lIMAPS
	lPOP3
	lIMAPPlain
)

func TestIMAPBeforeTLS(t *testing.T) {
	t.Parallel()
	h := startHarness(t, false, nil)
	c := h.dial(t, lIMAP)
	g := c.expect("* OK [CAPABILITY IMAP4rev1 ")
	if !strings.Contains(g, " STARTTLS") || !strings.Contains(g, " LOGINDISABLED") || strings.Contains(g, "AUTH=PLAIN") {
		t.Fatalf("greeting before TLS: %q", g)
	}
	c.send("a CAPABILITY\r\n")
	if l := c.expect("* CAPABILITY "); !strings.Contains(l, "LOGINDISABLED") {
		t.Errorf("capability: %q", l)
	}
	c.expect("a OK")
	c.send("b NOOP\r\nc SELECT INBOX\r\nd LOGIN alice password\r\n")
	c.expect("b OK")
	c.expect("c BAD")
	c.expect("d NO [PRIVACYREQUIRED]")
	c.send("e AUTHENTICATE PLAIN " + plain("", "alice", "password") + "\r\n")
	c.expect("e NO [PRIVACYREQUIRED]")
	c.send("f ID (\"name\" \"test\" \"version\" {3+}\r\n1.0)\r\n")
	c.expect("* ID (")
	c.expect("f OK")
	c.send("+bad NOOP\r\n\r\n")
	c.expect("* BAD")
	c.expect("* BAD")
	c.send("g LOGOUT\r\n")
	if ls := c.closed(); len(ls) != 2 || !strings.HasPrefix(ls[0], "* BYE") || !strings.HasPrefix(ls[1], "g OK") {
		t.Fatalf("logout: %q", ls)
	}
	if n := h.auth.calls.Load(); n != 0 {
		t.Fatalf("credentials checked %d times before TLS", n)
	}
}

func plain(authz, user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(authz + "\x00" + user + "\x00" + pass))
}

// TestIMAPStartTLSLoginRelay logs in over STARTTLS with a synchronizing
// and a non-synchronizing literal; the backend is logged in with the
// master user and its OK (capabilities) reaches the client under the
// client's tag; then bytes are relayed.
func TestIMAPStartTLSLoginRelay(t *testing.T) {
	t.Parallel()
	h := startHarness(t, false, nil)
	c := h.dial(t, lIMAP)
	c.expect("* OK")
	c.send("a STARTTLS\r\n")
	c.expect("a OK")
	c.startTLS(h.roots)
	c.send("b CAPABILITY\r\n")
	if l := c.expect("* CAPABILITY"); strings.Contains(l, "STARTTLS") || strings.Contains(l, "LOGINDISABLED") || !strings.Contains(l, "AUTH=PLAIN") {
		t.Errorf("capability after TLS: %q", l)
	}
	c.expect("b OK")
	c.send("c LOGIN {5}\r\n")
	c.expect("+ ")
	c.send("alice {8+}\r\npassword\r\n")
	c.expect("* CAPABILITY IMAP4rev1 IDLE")
	c.expect("c OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in")
	c.send("d NOOP\r\n")
	c.expect("* ECHO d NOOP")
	if got := h.stub.Logins(); len(got) != 1 || got[0] != `fd1 LOGIN "alice*master" "m-pw"` {
		t.Fatalf("backend login: %q", got)
	}
	if h.auth.pending.Load() != 1 {
		t.Errorf("verifications off the loop: %d, want 1", h.auth.pending.Load())
	}
	st := h.h.Stats()
	if st.LoginsOK.Load() != 1 || st.StartTLS.Load() != 1 || st.Relaying.Load() != 1 {
		t.Errorf("stats: %v", st.Snapshot())
	}
	// The server's end closes the client.
	c.send("QUIT-NOW\r\n")
	c.closed()
}

// TestIMAPStartTLSInjection: plaintext pipelined behind STARTTLS is
// discarded, never run inside the TLS session (RFC 2595 section 3.1).
func TestIMAPStartTLSInjection(t *testing.T) {
	t.Parallel()
	h := startHarness(t, false, nil)
	c := h.dial(t, lIMAP)
	c.expect("* OK")
	c.send("a STARTTLS\r\nb CAPABILITY\r\n")
	c.expect("a OK")
	time.Sleep(20 * time.Millisecond) // let the injected line reach the server before the handshake
	c.startTLS(h.roots)
	c.send("c NOOP\r\n")
	if l := c.line(); l != "c OK NOOP completed" {
		t.Fatalf("first line inside TLS: %q (the injected command ran?)", l)
	}
}

func TestIMAPAuthenticatePlain(t *testing.T) {
	t.Parallel()
	h := startHarness(t, false, func(c *mailproxy.Config) { c.MasterFormat = "" })
	c := h.dialTLS(t, lIMAPS)
	if g := c.expect("* OK [CAPABILITY"); strings.Contains(g, "STARTTLS") || !strings.Contains(g, "SASL-IR") {
		t.Fatalf("greeting over TLS: %q", g)
	}
	c.send("a AUTHENTICATE PLAIN\r\n")
	c.expect("+ ")
	c.send("*\r\n")
	c.expect("a BAD")
	c.send("b AUTHENTICATE PLAIN " + plain("bob", "alice", "password") + "\r\n")
	c.expect("b BAD") // another authorization identity
	c.send("c AUTHENTICATE CRAM-MD5\r\n")
	c.expect("c NO [CANNOT]")
	c.send("d AUTHENTICATE PLAIN\r\n")
	c.expect("+ ")
	c.send(plain("alice", "alice", "password") + "\r\n")
	c.expect("* CAPABILITY")
	c.expect("d OK [CAPABILITY")
	// Master login by SASL PLAIN: the user as authorization identity.
	want := "fd1 AUTHENTICATE PLAIN " + plain("alice", "master", "m-pw")
	if got := h.stub.Logins(); len(got) != 1 || got[0] != want {
		t.Fatalf("backend login: %q, want %q", got, want)
	}
}

// TestIMAPFailedLogins: a failed login is answered NO after the delay;
// MaxFailures ends the connection.
func TestIMAPFailedLogins(t *testing.T) {
	t.Parallel()
	h := startHarness(t, false, func(c *mailproxy.Config) { c.MaxFailures = 2 })
	c := h.dial(t, lIMAPPlain)
	if g := c.expect("* OK"); !strings.Contains(g, "AUTH=PLAIN") || strings.Contains(g, "LOGINDISABLED") {
		t.Fatalf("greeting with plaintext logins allowed: %q", g)
	}
	c.send("a LOGIN alice wrong\r\n")
	c.expect("a NO [AUTHENTICATIONFAILED]")
	c.send("b LOGIN \"alice\" \"wrong again\"\r\n")
	ls := c.closed()
	if len(ls) != 2 || !strings.HasPrefix(ls[0], "b NO [AUTHENTICATIONFAILED]") || !strings.HasPrefix(ls[1], "* BYE") {
		t.Fatalf("second failure: %q", ls)
	}
	if n := h.h.Stats().LoginsFailed.Load(); n != 2 {
		t.Errorf("logins_failed = %d", n)
	}
	// A backend that refuses the master login: NO, the session stays.
	c = h.dial(t, lIMAPPlain)
	c.expect("* OK")
	c.send("a LOGIN nobody password\r\n")
	c.expect("a NO [UNAVAILABLE]")
	c.send("b NOOP\r\n")
	c.expect("b OK")
}

func TestIMAPLimits(t *testing.T) {
	t.Parallel()
	h := startHarness(t, false, func(c *mailproxy.Config) {
		c.MaxLineBytes, c.MaxLiteralBytes, c.MaxCommandBytes = 1024, 2048, 3000
	})
	c := h.dial(t, lIMAPPlain)
	c.expect("* OK")
	// A synchronizing literal over the bound is refused before it is sent.
	c.send("a LOGIN {3000}\r\n")
	c.expect("a BAD [TOOBIG]")
	c.send("b NOOP\r\n")
	c.expect("b OK")
	// Literals within their bound but together over the command's.
	c.send("c LOGIN {2000+}\r\n" + strings.Repeat("x", 2000) + " {2000+}\r\n" + strings.Repeat("y", 2000) + "\r\n")
	if ls := c.closed(); len(ls) != 1 || !strings.HasPrefix(ls[0], "* BYE [TOOBIG]") {
		t.Fatalf("command over its bound: %q", ls)
	}
	// A non-synchronizing literal over LITERAL-'s 4096 (here over the
	// literal bound) cannot be skipped: BYE.
	c = h.dial(t, lIMAPPlain)
	c.expect("* OK")
	c.send("a LOGIN {5000+}\r\n")
	if ls := c.closed(); len(ls) != 1 || !strings.HasPrefix(ls[0], "* BYE [TOOBIG]") {
		t.Fatalf("big non-synchronizing literal: %q", ls)
	}
	// A line over the bound, without its end.
	c = h.dial(t, lIMAPPlain)
	c.expect("* OK")
	c.send("a NOOP " + strings.Repeat("z", 1100))
	if ls := c.closed(); len(ls) != 1 || !strings.HasPrefix(ls[0], "* BYE [TOOBIG]") {
		t.Fatalf("long line: %q", ls)
	}
	if n := h.h.Stats().Overflow.Load(); n != 4 {
		t.Errorf("overflow = %d, want 4", n)
	}
}

func TestIMAPTimeouts(t *testing.T) {
	t.Parallel()
	h := startHarness(t, false, func(c *mailproxy.Config) {
		c.LoginTimeout = 200 * time.Millisecond
		c.IMAPIdleTimeout = 200 * time.Millisecond
	})
	c := h.dial(t, lIMAPPlain)
	c.expect("* OK")
	if ls := c.closed(); len(ls) != 1 || !strings.HasPrefix(ls[0], "* BYE") || !strings.Contains(ls[0], "timeout") {
		t.Fatalf("login timeout: %q", ls)
	}
	c = h.dial(t, lIMAPPlain)
	c.expect("* OK")
	c.send("a LOGIN alice password\r\n")
	c.until("a OK")
	if ls := c.closed(); len(ls) != 1 || !strings.HasPrefix(ls[0], "* BYE autologout") {
		t.Fatalf("idle timeout: %q", ls)
	}
}

// TestCheckActive: a session whose database moved gets BYE.
func TestCheckActive(t *testing.T) {
	t.Parallel()
	h := startHarness(t, false, nil)
	c := h.dial(t, lIMAPPlain)
	c.expect("* OK")
	c.send("a LOGIN alice password\r\n")
	c.until("a OK")
	idle := h.dial(t, lIMAPPlain) // not logged in: left alone
	idle.expect("* OK")
	if n := h.h.Stats().Relaying.Load(); n != 1 {
		t.Errorf("relaying = %d before the move, want 1", n)
	}
	h.h.CheckActive(func(db, server string) bool { return !(db == "DB01" && server == "stub") })
	if ls := c.closed(); len(ls) != 1 || !strings.HasPrefix(ls[0], "* BYE [UNAVAILABLE] mailbox moved") {
		t.Fatalf("after the move: %q", ls)
	}
	// The gauge follows the close (on the loop, just after the BYE).
	for i := 0; i < 200 && h.h.Stats().Relaying.Load() != 0; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	if n := h.h.Stats().Relaying.Load(); n != 0 {
		t.Errorf("relaying = %d after the move, want 0", n)
	}
	idle.send("a NOOP\r\n")
	idle.expect("a OK")
}

// TestRelayBound: a client that does not read what the server sends is
// closed once more than MaxRelayBufferBytes wait for it.
func TestRelayBound(t *testing.T) {
	t.Parallel()
	h := startHarness(t, false, func(c *mailproxy.Config) { c.MaxRelayBufferBytes = 256 << 10 })
	c := h.dial(t, lIMAPPlain)
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(16 << 10) // the kernel must not take it all
	}
	c.expect("* OK")
	c.send("a LOGIN alice password\r\n")
	c.until("a OK")
	c.send("f FETCH10M\r\n")
	deadline := time.Now().Add(10 * time.Second)
	for h.h.Stats().Overflow.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if h.h.Stats().Overflow.Load() != 1 {
		t.Fatalf("overflow = %d, want 1", h.h.Stats().Overflow.Load())
	}
	// Reading now finds the connection cut short of the 10 MiB.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _ := io.Copy(io.Discard, c.r)
	if n >= int64(len(bigMessage)) {
		t.Fatalf("read %d bytes: the relay was not cut", n)
	}
}

// TestPROXYProtocol: the header is read before the greeting is sent and
// names the client the authenticator (throttling) sees.
func TestPROXYProtocol(t *testing.T) {
	t.Parallel()
	h := startHarnessProxy(t, false, nil, true)
	c := h.dial(t, lIMAPPlain)
	c.send("PROXY TCP4 192.0.2.7 127.0.0.1 5555 143\r\n")
	c.expect("* OK")
	c.send("a LOGIN alice password\r\n")
	c.until("a OK")
	if _, ok := h.auth.clients.Load(netip.MustParseAddr("192.0.2.7")); !ok {
		t.Fatal("the authenticator did not see the client the PROXY header named")
	}
}

// TestBackendTLS: the backend is reached over TLS, its certificate
// verified; the login and the relay go through tlsterm's client side.
func TestBackendTLS(t *testing.T) {
	t.Parallel()
	h := startHarness(t, false, nil)
	dir := t.TempDir()
	certFile, keyFile, err := tlsterm.WriteSelfSigned(dir, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := tlsterm.LoadCAFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	st := startStubTLS(t, false, &tls.Config{Certificates: []tls.Certificate{pair}})
	h.auth.setBackend(st.Addr(), &poolmux.TLS{Client: tlsterm.NewClient(64<<10, quietLog()), Config: tlsterm.ClientConfig(roots, "127.0.0.1")})
	c := h.dial(t, lIMAPPlain)
	c.expect("* OK")
	c.send("a LOGIN alice password\r\n")
	c.expect("* CAPABILITY")
	c.expect("a OK [CAPABILITY IMAP4rev1 IDLE MOVE]")
	c.send("b NOOP\r\n")
	c.expect("* ECHO b NOOP")
	if got := st.Logins(); len(got) != 1 {
		t.Fatalf("TLS backend logins: %q", got)
	}
	// A server whose certificate does not verify is not logged in to.
	h.auth.setBackend(st.Addr(), &poolmux.TLS{Client: tlsterm.NewClient(64<<10, quietLog()), Config: tlsterm.ClientConfig(roots, "mail.example.test")})
	c = h.dial(t, lIMAPPlain)
	c.expect("* OK")
	c.send("a LOGIN alice password\r\n")
	c.expect("a NO [UNAVAILABLE]")
	if got := st.Logins(); len(got) != 1 {
		t.Fatalf("logged in to a server that failed verification: %q", got)
	}
}

// TestSetMasterPassword: a rotated master password is used by the logins
// that start afterwards.
func TestSetMasterPassword(t *testing.T) {
	t.Parallel()
	h := startHarness(t, false, nil)
	h.h.SetMasterPassword(`new "pw"`)
	c := h.dial(t, lIMAPPlain)
	c.expect("* OK")
	c.send("a LOGIN alice password\r\n")
	c.until("a OK")
	if got := h.stub.Logins(); len(got) != 1 || got[0] != `fd1 LOGIN "alice*master" "new \"pw\""` {
		t.Fatalf("backend login: %q", got)
	}
}

// TestRelayDrainsTLSBacklog: over TLS the proxy decrypts at most the
// plaintext bound (4 KiB in the harness) per readable event; what a burst
// leaves as ciphertext must still be relayed without waiting for more
// bytes from the client (which waits for the answers). 2,000 commands in
// one write, then every echo.
func TestRelayDrainsTLSBacklog(t *testing.T) {
	t.Parallel()
	h := startHarness(t, false, nil)
	c := h.dialTLS(t, lIMAPS)
	c.expect("* OK")
	c.send("a LOGIN alice password\r\n")
	c.until("a OK")
	var burst strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&burst, "c%04d NOOP %s\r\n", i, strings.Repeat("p", 100))
	}
	c.send(burst.String())
	for i := range 2000 {
		want := fmt.Sprintf("* ECHO c%04d NOOP", i)
		if l := c.line(); !strings.HasPrefix(l, want) {
			t.Fatalf("line %d: %.40q, want %q", i, l, want)
		}
	}
}

// TestPreAuthBufferBound: while a failed login's answer is delayed, what
// the client sends waits, bounded by the command bound, not the relay's.
func TestPreAuthBufferBound(t *testing.T) {
	t.Parallel()
	h := startHarness(t, false, func(c *mailproxy.Config) {
		c.FailureDelay = 5 * time.Second
		c.MaxCommandBytes = 4096
	})
	c := h.dial(t, lIMAPPlain)
	c.expect("* OK")
	c.send("a LOGIN alice wrong\r\n")
	c.send(strings.Repeat("b NOOP\r\n", 1024))
	c.closed()
	if n := h.h.Stats().Overflow.Load(); n != 1 {
		t.Errorf("overflow = %d, want 1", n)
	}
}

// TestServerCloseFlushes: the server sends 4 MiB and ends the session at
// once; a client that reads late still gets all of it before the close.
func TestServerCloseFlushes(t *testing.T) {
	t.Parallel()
	h := startHarness(t, false, nil)
	for _, tlsClient := range []bool{false, true} {
		var c *conn
		if tlsClient {
			c = h.dialTLS(t, lIMAPS)
		} else {
			c = h.dial(t, lIMAPPlain)
			_ = c.Conn.(*net.TCPConn).SetReadBuffer(16 << 10)
		}
		c.expect("* OK")
		c.send("a LOGIN alice password\r\n")
		c.until("a OK")
		c.send("BIGQUIT\r\n")
		time.Sleep(300 * time.Millisecond) // the server has sent it all and closed
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := io.Copy(io.Discard, c.r)
		if n != 4<<20 {
			t.Fatalf("tls=%v: got %d bytes (%v), want %d then the close", tlsClient, n, err, 4<<20)
		}
	}
}
