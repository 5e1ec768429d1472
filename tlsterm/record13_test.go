package tlsterm

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestOwnRecordLayer: TLS 1.3 connections go on tlsterm's record layer
// (their crypto/tls state is dropped) in every way a handshake can end:
// with a session ticket, resumed, without tickets, and after a client
// certificate (tickets then follow the client's flight); a megabyte goes
// through both ways. TLS 1.2 and CryptoTLSRecords keep crypto/tls's.
func TestOwnRecordLayer(t *testing.T) {
	certs := newStandardCerts(t)
	cases := []struct {
		name    string
		s       Settings
		maxVers uint16
		cert    bool
		own     bool
	}{
		{"tls1.3", Settings{}, 0, false, true},
		{"tls1.3 no tickets", Settings{DisableSessionTickets: true}, 0, false, true},
		{"tls1.3 client certificate", Settings{ClientAuth: "require", ClientCAFile: certs.pki.caFile}, 0, true, true},
		{"tls1.2", Settings{}, tls.VersionTLS12, false, false},
		{"crypto/tls records", Settings{CryptoTLSRecords: true}, 0, false, false},
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s
			s.Certificates = certs.pairs
			term := newTerm(t, s)
			addr, _ := startServer(t, term)
			cfg := certs.clientConfig("mail.example.test")
			cfg.MaxVersion = tc.maxVers
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			if tc.cert {
				pair, _ := certs.pki.leaf(t, "alice", nil, leafOpts{client: true})
				cert, err := tls.LoadX509KeyPair(pair.CertFile, pair.KeyFile)
				if err != nil {
					t.Fatal(err)
				}
				cfg.Certificates = []tls.Certificate{cert}
			}
			for i := range 2 { // the second connection resumes, if tickets are on
				c, err := dialTLS(addr, cfg)
				if err != nil {
					t.Fatal(err)
				}
				for _, msg := range []string{"hello\n", string(big), "bye\n"} {
					if err := roundTrip(c, msg); err != nil {
						t.Fatalf("connection %d: %d bytes: %v", i, len(msg), err)
					}
				}
				if i == 1 && !tc.s.DisableSessionTickets && c.ConnectionState().DidResume != true {
					t.Error("the second connection did not resume")
				}
				c.Close()
			}
			want := int64(0)
			if tc.own {
				want = 2
			}
			if n := term.Stats().OwnRecords.Load(); n != want {
				t.Errorf("%d connections on the own record layer, want %d", n, want)
			}
			if n := term.secrets.pending(); n != 0 {
				t.Errorf("%d handshakes' secrets left in the key log", n)
			}
		})
	}
}

// TestOwnRecordLayerDropsCryptoTLS: once the loop has taken over, the
// connection holds the record layer and its state, not the tls.Conn.
func TestOwnRecordLayerDropsCryptoTLS(t *testing.T) {
	l, client, _ := fakeSetup(t, Settings{}, nil)
	l.handshake(t, client)
	l.do(func() {
		if l.tc.rl == nil || l.tc.tc != nil || l.tc.st == nil {
			t.Errorf("rl=%p tc=%p st=%p; want the record layer and state only", l.tc.rl, l.tc.tc, l.tc.st)
		}
		if st := l.tc.State(); st.Version != tls.VersionTLS13 || st.NegotiatedProtocol != "" && st.NegotiatedProtocol != "http/1.1" {
			t.Errorf("State: version %x, ALPN %q", st.Version, st.NegotiatedProtocol)
		}
	})
}

// TestServerKeyUpdate: the KeyUpdate tlsterm sends (the answer to a
// peer's request) is understood by crypto/tls's client, generation after
// generation: the write key derivation (RFC 8446 section 7.2) matches the
// standard library's.
func TestServerKeyUpdate(t *testing.T) {
	c := echoClient(t)
	for i := range 3 {
		if err := roundTrip(c, "?keyupdate\n"); err != nil {
			t.Fatalf("generation %d: %v", i+1, err)
		}
		if err := roundTrip(c, fmt.Sprintf("after update %d\n", i+1)); err != nil {
			t.Fatalf("after generation %d: %v", i+1, err)
		}
	}
}

// TestOpenSSLKeyUpdate: OpenSSL's s_client sends KeyUpdates, asking for
// ours ("K") or not ("k"), with each TLS 1.3 cipher suite; tlsterm moves to
// the new read key (and answers with its own), and the echo after each
// update arrives.
func TestOpenSSLKeyUpdate(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	certs := newStandardCerts(t)
	term := newTerm(t, Settings{Certificates: certs.pairs})
	addr, _ := startServer(t, term)
	suites := []string{"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
	for _, suite := range suites {
		t.Run(suite, func(t *testing.T) {
			before := term.Stats().KeyUpdates.Load()
			s := startSClient(t, openssl, addr, certs.pki.caFile, "-ciphersuites", suite)
			s.echo("first line")
			s.command("K")
			s.echo("after an update we asked an answer to")
			s.command("k")
			s.echo("after an update without one")
			s.command("K")
			s.echo("last line")
			if n := term.Stats().KeyUpdates.Load() - before; n != 3 {
				t.Errorf("%d KeyUpdates counted, want 3", n)
			}
		})
	}
	snap := term.Stats().Snapshot()
	for _, suite := range suites {
		if snap["cipher."+suite] != 1 {
			t.Errorf("cipher.%s = %d, want 1", suite, snap["cipher."+suite])
		}
	}
	if snap["own_records"] != 3 || snap["record_alerts"] != 0 {
		t.Errorf("own_records %d, record_alerts %d; want 3, 0", snap["own_records"], snap["record_alerts"])
	}
}

// sClient drives an openssl s_client process line by line.
type sClient struct {
	t      *testing.T
	stdin  io.WriteCloser
	lines  chan string // stdout and stderr lines
	waited time.Duration
}

func startSClient(t *testing.T, openssl, addr, caFile string, args ...string) *sClient {
	t.Helper()
	argv := append([]string{"s_client", "-connect", addr, "-tls1_3", "-CAfile", caFile,
		"-servername", "mail.example.test", "-verify_return_error"}, args...)
	cmd := exec.Command(openssl, argv...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &sClient{t: t, stdin: stdin, lines: make(chan string, 256)}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		pw.Close()
	})
	s.expect("Verify return code: 0 (ok)")
	return s
}

// expect waits, at most 10 seconds, for a line equal to want (or, for a
// want ending in ")", containing it).
func (s *sClient) expect(want string) {
	s.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				s.t.Fatalf("s_client ended before %q", want)
			}
			if line == want || strings.HasSuffix(want, ")") && strings.Contains(line, want) {
				return
			}
		case <-deadline:
			s.t.Fatalf("no %q from s_client within 10s", want)
		}
	}
}

// echo sends a line (s_client reads stdin a line at a time; a line
// starting with Q, R, K or k would be a command) and waits for the echo.
func (s *sClient) echo(line string) {
	s.t.Helper()
	if _, err := io.WriteString(s.stdin, line+"\n"); err != nil {
		s.t.Fatal(err)
	}
	s.expect(line)
}

// command sends an s_client command letter and waits for its report.
func (s *sClient) command(letter string) {
	s.t.Helper()
	if _, err := io.WriteString(s.stdin, letter+"\n"); err != nil {
		s.t.Fatal(err)
	}
	s.expect("KEYUPDATE")
}

// rawClient speaks TLS 1.3 records of its own making to a fake loop's
// server after crypto/tls's client did the handshake: it can send what a
// well-behaved client never would.
type rawClient struct {
	l  *fakeLoop
	rl *records13 // in: the server's key; out: the client's
}

func newRawClient(t *testing.T, s Settings) (*rawClient, *tls.Conn) {
	t.Helper()
	var keys secretLog
	certs := newStandardCerts(t)
	s.Certificates = certs.pairs
	l := newFakeLoop(t, newTerm(t, s))
	ccfg := certs.clientConfig("mail.example.test")
	ccfg.KeyLogWriter = &keys
	client := tls.Client(clientEnd{l}, ccfg)
	l.setHold(true)
	errc, hello := l.startHandshake(t, client)
	random, ok := clientRandom(hello)
	if !ok {
		t.Fatal("no client random in the ClientHello")
	}
	l.do(func() { l.deliverNow(hello) })
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	finished := l.takeC2S()
	l.do(func() { l.deliverNow(finished) })
	waitFor(t, 10*time.Second, "the loop to take over", func() bool {
		var ok bool
		l.do(func() { ok = l.tc.HandshakeComplete() })
		return ok
	})
	cs, ss, ok := keys.take(random)
	if !ok {
		t.Fatal("the client's key log has no traffic secrets")
	}
	// The reverse of the server's record layer: it reads with the server's
	// secret and writes with the client's.
	rl, err := newRecords13(client.ConnectionState().CipherSuite, ss, cs, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Without a session cache Go's client offers no PSK mode, so the
	// server sent no ticket: its next record is number 0 under its
	// application key.
	l.mu.Lock()
	l.s2c = nil
	l.mu.Unlock()
	return &rawClient{l: l, rl: rl}, client
}

// send delivers one record of inner type typ to the server and returns
// what OnTraffic then reports and the plaintext it decrypted.
func (c *rawClient) send(typ uint8, content ...byte) (plain string, err error) {
	rec, serr := c.rl.appendRecord(nil, typ, content...)
	if serr != nil {
		return "", serr
	}
	return c.deliver(rec)
}

func (c *rawClient) deliver(rec []byte) (plain string, err error) {
	c.l.do(func() {
		c.l.fc.in = append(c.l.fc.in, rec...)
		_, err = c.l.tc.OnTraffic()
		b, _ := c.l.tc.Peek(-1)
		plain = string(b)
		c.l.tc.Discard(len(b))
	})
	return plain, err
}

// read decrypts the next record the server sent.
func (c *rawClient) read(t *testing.T) (typ uint8, content []byte) {
	t.Helper()
	var out []byte
	waitFor(t, 10*time.Second, "a record from the server", func() bool {
		c.l.mu.Lock()
		defer c.l.mu.Unlock()
		if len(c.l.s2c) < recordHeaderLen {
			return false
		}
		n := recordHeaderLen + (int(c.l.s2c[3])<<8 | int(c.l.s2c[4]))
		if len(c.l.s2c) < n {
			return false
		}
		out = append([]byte(nil), c.l.s2c[:n]...)
		c.l.s2c = c.l.s2c[n:]
		return true
	})
	typ, content, alert := c.rl.open(out[:recordHeaderLen], out[recordHeaderLen:])
	if alert != 0 {
		t.Fatalf("the server's record does not decrypt: alert %d", alert)
	}
	return typ, content
}

// TestRecordLayerRefuses: what a client may not send after the handshake
// ends the connection with the alert RFC 8446 names, sent to the client
// and counted; what it may send is handled.
func TestRecordLayerRefuses(t *testing.T) {
	keyUpdate := func(req byte) []byte { return []byte{handshakeTypeKeyUpdate, 0, 0, 1, req} }
	cases := []struct {
		name  string
		send  func(c *rawClient) (string, error)
		alert uint8 // 0: accepted
		want  string
	}{
		{"application data with padding", func(c *rawClient) (string, error) {
			rec, start := beginRecord(nil)
			rec = append(rec, "padded"...)
			rec = append(rec, recordTypeApplicationData)
			rec = append(rec, make([]byte, 300)...) // RFC 8446 section 5.4
			rec, err := c.rl.sealRecord(rec, start)
			if err != nil {
				return "", err
			}
			return c.deliver(rec)
		}, 0, "padded"},
		{"empty records, then data", func(c *rawClient) (string, error) {
			for range maxUselessRecords {
				if _, err := c.send(recordTypeApplicationData); err != nil {
					return "", err
				}
			}
			return c.send(recordTypeApplicationData, 'x')
		}, 0, "x"},
		{"too many empty records", func(c *rawClient) (string, error) {
			for range maxUselessRecords {
				if _, err := c.send(recordTypeApplicationData); err != nil {
					return "", err
				}
			}
			return c.send(recordTypeApplicationData)
		}, alertUnexpectedMessage, ""},
		{"user_canceled is ignored", func(c *rawClient) (string, error) {
			if _, err := c.send(recordTypeAlert, alertLevelWarning, alertUserCanceled); err != nil {
				return "", err
			}
			return c.send(recordTypeApplicationData, 'y')
		}, 0, "y"},
		{"key update, then data under the new key", func(c *rawClient) (string, error) {
			if _, err := c.send(recordTypeHandshake, keyUpdate(0)...); err != nil {
				return "", err
			}
			if err := c.rl.out.update(); err != nil {
				return "", err
			}
			return c.send(recordTypeApplicationData, 'z')
		}, 0, "z"},
		{"data under the old key after a key update", func(c *rawClient) (string, error) {
			if _, err := c.send(recordTypeHandshake, keyUpdate(0)...); err != nil {
				return "", err
			}
			return c.send(recordTypeApplicationData, 'z')
		}, alertBadRecordMAC, ""},
		{"key update with an illegal value", func(c *rawClient) (string, error) {
			return c.send(recordTypeHandshake, keyUpdate(2)...)
		}, alertIllegalParameter, ""},
		{"key update not ending its record", func(c *rawClient) (string, error) {
			return c.send(recordTypeHandshake, append(keyUpdate(0), keyUpdate(0)...)...)
		}, alertUnexpectedMessage, ""},
		{"key update of the wrong length", func(c *rawClient) (string, error) {
			return c.send(recordTypeHandshake, handshakeTypeKeyUpdate, 0, 0, 2, 0, 0)
		}, alertDecodeError, ""},
		{"a handshake message split across records", func(c *rawClient) (string, error) {
			return c.send(recordTypeHandshake, handshakeTypeKeyUpdate, 0)
		}, alertUnexpectedMessage, ""},
		{"a session ticket from the client", func(c *rawClient) (string, error) {
			return c.send(recordTypeHandshake, 4, 0, 0, 1, 0)
		}, alertUnexpectedMessage, ""},
		{"a protected change_cipher_spec", func(c *rawClient) (string, error) {
			return c.send(recordTypeChangeCipherSpec, 1)
		}, alertUnexpectedMessage, ""},
		{"only padding", func(c *rawClient) (string, error) {
			return c.send(0, 0, 0)
		}, alertUnexpectedMessage, ""},
		{"a malformed alert", func(c *rawClient) (string, error) {
			return c.send(recordTypeAlert, alertLevelWarning)
		}, alertDecodeError, ""},
		{"a flipped bit", func(c *rawClient) (string, error) {
			rec, _ := c.rl.appendRecord(nil, recordTypeApplicationData, []byte("tampered")...)
			rec[recordHeaderLen+2] ^= 1
			return c.deliver(rec)
		}, alertBadRecordMAC, ""},
		{"an unprotected record", func(c *rawClient) (string, error) {
			return c.deliver([]byte{recordTypeHandshake, 3, 3, 0, 5, handshakeTypeKeyUpdate, 0, 0, 1, 0})
		}, alertUnexpectedMessage, ""},
		{"an oversized record", func(c *rawClient) (string, error) {
			return c.deliver([]byte{recordTypeApplicationData, 3, 3, 0x41, 0x01})
		}, alertRecordOverflow, ""},
		{"a record too short for its tag", func(c *rawClient) (string, error) {
			return c.deliver([]byte{recordTypeApplicationData, 3, 3, 0, 16})
		}, alertBadRecordMAC, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newRawClient(t, Settings{})
			got, err := tc.send(c)
			if tc.alert == 0 {
				if err != nil || got != tc.want {
					t.Fatalf("got %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			var ae AlertError
			if !errors.As(err, &ae) || ae.Description != tc.alert || ae.Remote {
				t.Fatalf("OnTraffic: %v; want our alert %d", err, tc.alert)
			}
			if typ, content := c.read(t); typ != recordTypeAlert || !bytes.Equal(content, []byte{alertLevelFatal, tc.alert}) {
				t.Errorf("the client got type %d %v, want the fatal alert %d", typ, content, tc.alert)
			}
			if n := c.l.tc.t.stats.RecordAlerts.Load(); n != 1 {
				t.Errorf("record_alerts %d, want 1", n)
			}
			c.l.do(func() {
				if _, err := c.l.tc.Write([]byte("after the alert")); err == nil {
					t.Error("Write after a fatal alert succeeded")
				}
			})
		})
	}
}

// TestKeyUpdateRequested: a client's update_requested is answered with a
// KeyUpdate before the next application data, once however many requests
// came (RFC 8446 section 4.6.3), and the data follows under the new key.
func TestKeyUpdateRequested(t *testing.T) {
	c, _ := newRawClient(t, Settings{})
	for range 2 {
		if _, err := c.send(recordTypeHandshake, handshakeTypeKeyUpdate, 0, 0, 1, 1); err != nil {
			t.Fatal(err)
		}
		if err := c.rl.out.update(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.send(recordTypeApplicationData, []byte("ping")...)
	if err != nil || got != "ping" {
		t.Fatalf("got %q, %v", got, err)
	}
	c.l.do(func() {
		if _, err := c.l.tc.Write([]byte("pong")); err != nil {
			t.Error(err)
		}
	})
	typ, content := c.read(t)
	if typ != recordTypeHandshake || !bytes.Equal(content, []byte{handshakeTypeKeyUpdate, 0, 0, 1, 0}) {
		t.Fatalf("first record: type %d %v, want KeyUpdate(update_not_requested)", typ, content)
	}
	if err := c.rl.in.update(); err != nil {
		t.Fatal(err)
	}
	if typ, content = c.read(t); typ != recordTypeApplicationData || string(content) != "pong" {
		t.Fatalf("second record: type %d %q, want the data under the new key", typ, content)
	}
	if n := c.l.tc.t.stats.KeyUpdates.Load(); n != 2 {
		t.Errorf("key_updates %d, want 2", n)
	}
}

// TestDetachOwnRecords: a connection on the own record layer leaves the
// loop with a header read ahead of its body, and the detached connection
// reads the rest, writes, and ends with close_notify both ways.
func TestDetachOwnRecords(t *testing.T) {
	c, _ := newRawClient(t, Settings{})
	rec, _ := c.rl.appendRecord(nil, recordTypeApplicationData, []byte("split ")...)
	more, _ := c.rl.appendRecord(nil, recordTypeApplicationData, []byte("and more")...)
	if got, err := c.deliver(rec[:3]); err != nil || got != "" {
		t.Fatalf("a partial header: %q, %v", got, err)
	}
	srv, peer := net.Pipe()
	var dc net.Conn
	var err error
	c.l.do(func() {
		c.l.fc.in = append(c.l.fc.in, rec[3:5]...) // the header's end, still on the loop
		_, _ = c.l.tc.OnTraffic()
		dc, err = c.l.tc.Detach(srv)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		peer.Close() // first: a writer blocked on the pipe lets go
		dc.Close()
	}()
	if _, ok := dc.(*recordConn); !ok {
		t.Fatalf("Detach returned %T, want the own record layer's connection", dc)
	}
	go func() {
		_, _ = peer.Write(rec[5:])
		_, _ = peer.Write(more)
	}()
	got := make([]byte, len("split and more"))
	if _, err := io.ReadFull(dc, got); err != nil || string(got) != "split and more" {
		t.Fatalf("detached Read: %q, %v", got, err)
	}
	// Writes: two records' worth, then close_notify.
	big := bytes.Repeat([]byte{'w'}, maxRecordPlaintext+10)
	errc := make(chan error, 1)
	go func() {
		if _, err := dc.Write(big); err != nil {
			errc <- err
			return
		}
		errc <- dc.(interface{ CloseWrite() error }).CloseWrite()
	}()
	var plain []byte
	for {
		hdr := make([]byte, recordHeaderLen)
		if _, err := io.ReadFull(peer, hdr); err != nil {
			t.Fatal(err)
		}
		body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
		if _, err := io.ReadFull(peer, body); err != nil {
			t.Fatal(err)
		}
		typ, content, alert := c.rl.open(hdr, body)
		if alert != 0 {
			t.Fatalf("alert %d decrypting the detached connection's record", alert)
		}
		if typ == recordTypeAlert {
			if !bytes.Equal(content, []byte{alertLevelWarning, alertCloseNotify}) {
				t.Fatalf("alert %v, want close_notify", content)
			}
			break
		}
		plain = append(plain, content...)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(plain, big) {
		t.Errorf("peer got %d bytes, want %d", len(plain), len(big))
	}
	if _, err := dc.Write([]byte("x")); err == nil {
		t.Error("Write after CloseWrite succeeded")
	}
	// The peer's close_notify is the detached connection's io.EOF.
	bye, _ := c.rl.appendAlert(nil, alertLevelWarning, alertCloseNotify)
	go func() { _, _ = peer.Write(bye) }()
	if n, err := dc.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("Read after close_notify: %d, %v; want io.EOF", n, err)
	}
}

// TestFragmentedClientHello: a ClientHello split into records too small to
// hold the client random in the first (RFC 8446 section 5.1 allows it)
// keeps crypto/tls's record layer and works; its secrets stay in the key
// log until a sweep, which bounds the log.
func TestFragmentedClientHello(t *testing.T) {
	l, client, _ := fakeSetup(t, Settings{}, nil)
	l.setHold(true)
	errc, hello := l.startHandshake(t, client)
	// Re-frame the handshake message into records of 16 bytes.
	msg := hello[recordHeaderLen:]
	var split []byte
	for len(msg) > 0 {
		n := min(16, len(msg))
		split = append(split, recordTypeHandshake, 3, 1, 0, byte(n))
		split = append(split, msg[:n]...)
		msg = msg[n:]
	}
	l.do(func() { l.deliverNow(split) })
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	l.do(func() { l.deliverNow(l.takeC2S()) })
	l.setHold(false)
	waitFor(t, 10*time.Second, "the loop to take over", func() bool {
		var ok bool
		l.do(func() { ok = l.tc.HandshakeComplete() })
		return ok
	})
	var got []byte
	l.onReady = func(c *Conn) {
		b, _ := c.Peek(-1)
		got = append(got, b...)
		c.Discard(len(b))
	}
	if _, err := client.Write([]byte("still works")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the data", func() bool {
		var n int
		l.do(func() { n = len(got) })
		return n == len("still works")
	})
	term := l.tc.t
	l.do(func() {
		if l.tc.rl != nil || l.tc.tc == nil {
			t.Error("a connection whose client random was not read went on the own record layer")
		}
	})
	if n := term.secrets.pending(); n != 1 {
		t.Errorf("%d entries in the key log, want the one nobody could take", n)
	}
	// Once the log is full, entries older than the handshake timeout go.
	term.secrets.ttl = 0
	term.secrets.max = 1
	_, _ = term.secrets.Write([]byte("CLIENT_TRAFFIC_SECRET_0 " + strings.Repeat("ab", 32) + " " + strings.Repeat("cd", 32) + "\n"))
	if n := term.secrets.pending(); n != 1 {
		t.Errorf("%d entries in the key log after a sweep, want only the new one", n)
	}
}
