package tlsterm

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSNISelectsCertificate(t *testing.T) {
	certs := newStandardCerts(t)
	term := newTerm(t, Settings{Certificates: certs.pairs})
	addr, _ := startServer(t, term)

	cases := []struct {
		sni    string
		verify bool // the client verifies the chain and name too
		want   int64
	}{
		{"mail.example.test", true, certs.mail},
		{"imap.example.test", true, certs.imap},
		{"IMAP.Example.Test", true, certs.imap}, // case-insensitive
		{"a.wild.test", true, certs.wild},
		{"smtp.wild.test", true, certs.wild},
		{"wild.test", false, certs.mail},     // the wildcard needs a label
		{"a.b.wild.test", false, certs.mail}, // and exactly one (RFC 6125 6.4.3)
		{"unknown.test", false, certs.mail},  // unknown name: the default
	}
	for _, tc := range cases {
		cfg := certs.clientConfig(tc.sni)
		cfg.InsecureSkipVerify = !tc.verify
		c, err := dialTLS(addr, cfg)
		if err != nil {
			t.Errorf("SNI %q: %v", tc.sni, err)
			continue
		}
		if got := serialOf(c); got != tc.want {
			t.Errorf("SNI %q: got certificate %d, want %d", tc.sni, got, tc.want)
		}
		if err := roundTrip(c, "hello "+tc.sni); err != nil {
			t.Errorf("SNI %q: %v", tc.sni, err)
		}
		c.Close()
	}

	// No SNI at all: a Go client sends none when dialing an IP address
	// (RFC 6066 section 3 forbids literal addresses in server_name).
	c, err := dialTLS(addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := serialOf(c); got != certs.mail {
		t.Errorf("no SNI: got certificate %d, want the default %d", got, certs.mail)
	}
	c.Close()
}

func TestStoreLookupRules(t *testing.T) {
	p := newPKI(t)
	def, defSerial := p.leaf(t, "default", []string{"default.test"}, leafOpts{})
	ec, ecSerial := p.leaf(t, "dual-ec", []string{"dual.example.test", "*.Wild.Example.Test"}, leafOpts{})
	rs, rsSerial := p.leaf(t, "dual-rsa", []string{"dual.example.test"}, leafOpts{rsa: true})
	odd, _ := p.leaf(t, "odd", []string{"f*o.example.test"}, leafOpts{})
	s, err := NewStore([]CertPair{def, ec, rs, odd}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	serial := func(c *tls.Certificate) int64 { return c.Leaf.SerialNumber.Int64() }
	for name, want := range map[string]int64{
		"dual.example.test":         ecSerial,
		"DUAL.example.test.":        ecSerial, // case and trailing dot ignored
		"x.wild.example.test":       ecSerial,
		"X.WILD.EXAMPLE.TEST.":      ecSerial,
		"wild.example.test":         defSerial,
		"foo.example.test":          defSerial, // partial-label wildcard not honoured
		"":                          defSerial,
		"default.test":              defSerial,
		"y.x.wild.example.test":     defSerial,
		"example.test":              defSerial,
		"dual.example.test.invalid": defSerial,
	} {
		if got := serial(s.Lookup(name)); got != want {
			t.Errorf("Lookup(%q) = %d, want %d", name, got, want)
		}
	}
	if w := strings.Join(s.Warnings(), "\n"); !strings.Contains(w, "f*o.example.test") {
		t.Errorf("no warning about the unsupported wildcard: %q", w)
	}

	// Two certificates for one name: a client that can only use RSA gets
	// the RSA one, the others the first listed.
	rsaOnly := &tls.ClientHelloInfo{
		ServerName:        "dual.example.test",
		CipherSuites:      []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		SupportedVersions: []uint16{tls.VersionTLS12},
		SupportedCurves:   []tls.CurveID{tls.X25519},
		SupportedPoints:   []uint8{0},
		SignatureSchemes:  []tls.SignatureScheme{tls.PSSWithSHA256, tls.PKCS1WithSHA256},
	}
	if c, _ := s.GetCertificate(rsaOnly); serial(c) != rsSerial {
		t.Errorf("RSA-only client got %d, want the RSA certificate %d", serial(c), rsSerial)
	}
	modern := *rsaOnly
	modern.CipherSuites = []uint16{tls.TLS_AES_128_GCM_SHA256}
	modern.SupportedVersions = []uint16{tls.VersionTLS13}
	modern.SignatureSchemes = []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.PSSWithSHA256}
	if c, _ := s.GetCertificate(&modern); serial(c) != ecSerial {
		t.Errorf("TLS 1.3 client got %d, want the ECDSA certificate %d", serial(c), ecSerial)
	}
}

func TestDualCertificateByClientCapability(t *testing.T) {
	p := newPKI(t)
	ec, ecSerial := p.leaf(t, "dual-ec", []string{"dual.example.test"}, leafOpts{})
	rs, rsSerial := p.leaf(t, "dual-rsa", []string{"dual.example.test"}, leafOpts{rsa: true})
	term := newTerm(t, Settings{Certificates: []CertPair{ec, rs}})
	addr, _ := startServer(t, term)
	c, err := dialTLS(addr, &tls.Config{RootCAs: p.roots, ServerName: "dual.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if got := serialOf(c); got != ecSerial {
		t.Errorf("default client got %d, want ECDSA %d", got, ecSerial)
	}
	c.Close()
	c, err = dialTLS(addr, &tls.Config{RootCAs: p.roots, ServerName: "dual.example.test", MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}})
	if err != nil {
		t.Fatal(err)
	}
	if got := serialOf(c); got != rsSerial {
		t.Errorf("RSA-only TLS 1.2 client got %d, want RSA %d", got, rsSerial)
	}
	if st := c.ConnectionState(); st.CipherSuite != tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 || st.Version != tls.VersionTLS12 {
		t.Errorf("negotiated %s %x", tls.CipherSuiteName(st.CipherSuite), st.Version)
	}
	c.Close()
}

func waitFailure(t *testing.T, term *Terminator, reason string, n int64) {
	t.Helper()
	waitFor(t, 5*time.Second, "failure."+reason, func() bool { return term.Stats().Failures(reason) >= n })
}

func TestOldVersionsRefused(t *testing.T) {
	certs := newStandardCerts(t)
	term := newTerm(t, Settings{Certificates: certs.pairs})
	addr, _ := startServer(t, term)
	for i, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		cfg := certs.clientConfig("imap.example.test")
		cfg.MinVersion, cfg.MaxVersion = v, v
		c, err := dialTLS(addr, cfg)
		if err == nil {
			c.Close()
			t.Fatalf("TLS %x accepted", v)
		}
		if !strings.Contains(err.Error(), "protocol version") {
			t.Errorf("TLS %x: error %v, want a protocol_version alert", v, err)
		}
		waitFailure(t, term, FailProtocolVersion, int64(i+1))
	}

	// MinVersion "1.3" refuses TLS 1.2.
	term13 := newTerm(t, Settings{Certificates: certs.pairs, MinVersion: "1.3"})
	addr13, _ := startServer(t, term13)
	cfg := certs.clientConfig("mail.example.test")
	cfg.MaxVersion = tls.VersionTLS12
	if c, err := dialTLS(addr13, cfg); err == nil {
		c.Close()
		t.Fatal("TLS 1.2 accepted with MinVersion 1.3")
	}
	waitFailure(t, term13, FailProtocolVersion, 1)
	if c, err := dialTLS(addr13, certs.clientConfig("mail.example.test")); err != nil {
		t.Errorf("TLS 1.3 refused with MinVersion 1.3: %v", err)
	} else {
		c.Close()
	}
}

func TestNonAEADSuiteRefused(t *testing.T) {
	certs := newStandardCerts(t)
	term := newTerm(t, Settings{Certificates: certs.pairs})
	addr, _ := startServer(t, term)
	for _, suite := range []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA} {
		cfg := certs.clientConfig("imap.example.test")
		cfg.MaxVersion = tls.VersionTLS12
		cfg.CipherSuites = []uint16{suite}
		if c, err := dialTLS(addr, cfg); err == nil {
			c.Close()
			t.Fatalf("%s accepted", tls.CipherSuiteName(suite))
		}
	}
	waitFailure(t, term, FailUnsupported, 2)

	// The AEAD suites of TLS 1.2 work, with both certificate types.
	for _, tc := range []struct {
		sni   string
		suite uint16
	}{
		{"imap.example.test", tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		{"imap.example.test", tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256},
		{"mail.example.test", tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
		{"mail.example.test", tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
	} {
		cfg := certs.clientConfig(tc.sni)
		cfg.MaxVersion = tls.VersionTLS12
		cfg.CipherSuites = []uint16{tc.suite}
		c, err := dialTLS(addr, cfg)
		if err != nil {
			t.Errorf("%s: %v", tls.CipherSuiteName(tc.suite), err)
			continue
		}
		if err := roundTrip(c, "tls1.2"); err != nil {
			t.Errorf("%s: %v", tls.CipherSuiteName(tc.suite), err)
		}
		c.Close()
	}
	snap := term.Stats().Snapshot()
	if snap["version.tls1.2"] != 4 || snap["cipher.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"] != 1 {
		t.Errorf("counters: tls1.2=%d chacha-rsa=%d", snap["version.tls1.2"], snap["cipher.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"])
	}
}

func TestConfigPolicy(t *testing.T) {
	certs := newStandardCerts(t)
	term := newTerm(t, Settings{Certificates: certs.pairs})
	cfg := term.Config()
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %x", cfg.MinVersion)
	}
	if cfg.CurvePreferences != nil {
		t.Errorf("CurvePreferences set (%v): the post-quantum default would be lost", cfg.CurvePreferences)
	}
	if len(cfg.NextProtos) != 1 || cfg.NextProtos[0] != "http/1.1" {
		t.Errorf("NextProtos %v", cfg.NextProtos)
	}
	info := map[uint16]*tls.CipherSuite{}
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		info[s.ID] = s
	}
	for _, id := range cfg.CipherSuites {
		s := info[id]
		if s == nil || s.Insecure || !strings.HasPrefix(s.Name, "TLS_ECDHE_") ||
			!(strings.Contains(s.Name, "_GCM_") || strings.Contains(s.Name, "CHACHA20_POLY1305")) {
			t.Errorf("suite %s is not an ECDHE AEAD suite", tls.CipherSuiteName(id))
		}
	}

	for _, bad := range []Settings{
		{},
		{Certificates: certs.pairs, MinVersion: "1.1"},
		{Certificates: certs.pairs, ClientAuth: "require"},
		{Certificates: certs.pairs, ClientAuth: "maybe", ClientCAFile: certs.pki.caFile},
		{Certificates: certs.pairs, ClientCAFile: certs.pki.caFile},
		{Certificates: certs.pairs, MaxPlaintextBuffer: 100},
		{Certificates: certs.pairs, HSTS: "includeSubDomains"},
		{Certificates: certs.pairs, HSTS: "max-age=abc"},
		{Certificates: certs.pairs, HSTS: "max-age=1; bogus"},
	} {
		if term, err := NewTerminator(bad, quietLog()); err == nil {
			term.Close()
			t.Errorf("accepted %+v", bad)
		}
	}
	term2 := newTerm(t, Settings{Certificates: certs.pairs, HSTS: "max-age=31536000; includeSubDomains; preload"})
	if term2.HSTS() != "max-age=31536000; includeSubDomains; preload" {
		t.Errorf("HSTS %q", term2.HSTS())
	}
}

func TestPostQuantumKeyExchange(t *testing.T) {
	certs := newStandardCerts(t)
	term := newTerm(t, Settings{Certificates: certs.pairs})
	addr, _ := startServer(t, term)
	c, err := dialTLS(addr, certs.clientConfig("mail.example.test")) // Go's defaults
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st := c.ConnectionState()
	if st.CurveID != tls.X25519MLKEM768 || st.Version != tls.VersionTLS13 {
		t.Fatalf("client negotiated %v over %x, want X25519MLKEM768 over TLS 1.3", st.CurveID, st.Version)
	}
	if st.NegotiatedProtocol != "" {
		t.Errorf("ALPN %q without the client offering any", st.NegotiatedProtocol)
	}
	line, err := serverState(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("304 %d - false", tls.X25519MLKEM768); line != want {
		t.Errorf("server state %q, want %q", line, want)
	}
	s := term.Stats()
	snap := s.Snapshot()
	for k, want := range map[string]int64{
		"handshakes": 1, "post_quantum": 1, "group.X25519MLKEM768": 1, "group.X25519": 0,
		"version.tls1.3": 1, "resumed": 0, "running": 0, "queued": 0, "failure.timeout": 0,
	} {
		if got, ok := snap[k]; !ok || got != want {
			t.Errorf("Snapshot[%q] = %d (present %t), want %d", k, got, ok, want)
		}
	}
	if got := snap["cipher."+tls.CipherSuiteName(st.CipherSuite)]; got != 1 {
		t.Errorf("cipher counter for %s = %d", tls.CipherSuiteName(st.CipherSuite), got)
	}

	// A classical-only client still works and is counted apart.
	cfg := certs.clientConfig("mail.example.test")
	cfg.CurvePreferences = []tls.CurveID{tls.X25519}
	c2, err := dialTLS(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c2.Close()
	// The client finishes first in TLS 1.3; the server counts when it has
	// read the client's Finished.
	waitFor(t, 5*time.Second, "the second handshake", func() bool { return s.Handshakes.Load() == 2 })
	if s.Group(tls.X25519) != 1 || s.PostQuantum.Load() != 1 {
		t.Errorf("counters after an X25519 client: X25519=%d post_quantum=%d", s.Group(tls.X25519), s.PostQuantum.Load())
	}

	// ALPN: http/1.1 is the only protocol; a client offering only h2 is
	// refused (RFC 7301 section 3.2).
	cfg = certs.clientConfig("mail.example.test")
	cfg.NextProtos = []string{"h2", "http/1.1"}
	c3, err := dialTLS(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p := c3.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Errorf("ALPN %q", p)
	}
	c3.Close()
	cfg.NextProtos = []string{"h2"}
	if c4, err := dialTLS(addr, cfg); err == nil {
		c4.Close()
		t.Errorf("a client offering only h2 was accepted")
	}
}

func TestClientCertificates(t *testing.T) {
	certs := newStandardCerts(t)
	client, _ := certs.pki.leaf(t, "alice", nil, leafOpts{client: true})
	stranger := newPKI(t)
	other, _ := stranger.leaf(t, "mallory", nil, leafOpts{client: true})
	load := func(p CertPair) []tls.Certificate {
		c, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{c}
	}

	term := newTerm(t, Settings{Certificates: certs.pairs, ClientAuth: "require", ClientCAFile: certs.pki.caFile})
	addr, _ := startServer(t, term)
	cfg := certs.clientConfig("mail.example.test")
	cfg.Certificates = load(client)
	c, err := dialTLS(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if line, err := serverState(c); err != nil || !strings.Contains(line, " alice ") {
		t.Errorf("server state %q, %v; want the verified subject alice", line, err)
	}
	c.Close()

	// Without a certificate, or with one from another CA: refused. In TLS
	// 1.3 the client learns it on its first read.
	for i, certsFor := range [][]tls.Certificate{nil, load(other)} {
		cfg := certs.clientConfig("mail.example.test")
		cfg.Certificates = certsFor
		c, err := dialTLS(addr, cfg)
		if err == nil {
			err = roundTrip(c, "let me in")
			c.Close()
		}
		if err == nil {
			t.Errorf("case %d: accepted", i)
		}
		waitFailure(t, term, FailBadCertificate, int64(i+1))
	}
	if n := term.Stats().ClientCertificates.Load(); n != 1 {
		t.Errorf("client_certificates = %d", n)
	}

	// "request": no certificate is fine, a bad one is not.
	termReq := newTerm(t, Settings{Certificates: certs.pairs, ClientAuth: "request", ClientCAFile: certs.pki.caFile})
	addrReq, _ := startServer(t, termReq)
	c, err = dialTLS(addrReq, certs.clientConfig("mail.example.test"))
	if err != nil {
		t.Fatal(err)
	}
	if line, err := serverState(c); err != nil || !strings.Contains(line, " - ") {
		t.Errorf("server state %q, %v", line, err)
	}
	c.Close()
}

func TestSessionTicketsSharedAcrossTerminators(t *testing.T) {
	certs := newStandardCerts(t)
	keyFile := filepath.Join(t.TempDir(), "ticket-keys")
	if err := CreateOrRotateKeyFile(keyFile, time.Now(), 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	settings := Settings{Certificates: certs.pairs, TicketKeyFile: keyFile}
	termA, termB := newTerm(t, settings), newTerm(t, settings)
	addrA, _ := startServer(t, termA)
	addrB, _ := startServer(t, termB)

	cache := tls.NewLRUClientSessionCache(8)
	connect := func(addr string) bool {
		t.Helper()
		cfg := certs.clientConfig("mail.example.test")
		cfg.ClientSessionCache = cache
		c, err := dialTLS(addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// TLS 1.3 tickets arrive after the handshake (RFC 8446 section
		// 4.6.1); the client stores them when it reads.
		if err := roundTrip(c, "ticket please"); err != nil {
			t.Fatal(err)
		}
		return c.ConnectionState().DidResume
	}
	if connect(addrA) {
		t.Fatal("first connection resumed")
	}
	if !connect(addrB) {
		t.Fatal("ticket from A not accepted by B sharing the key file")
	}
	if n := termB.Stats().Resumed.Load(); n != 1 {
		t.Errorf("B resumed = %d", n)
	}

	// A corrupt file is refused and the keys in use stay.
	good, _ := os.ReadFile(keyFile)
	writeTestFile(t, keyFile, []byte("1700000000 not-base64!\n"), 0o600)
	if err := termB.TicketKeys().Reload(); err == nil || !strings.Contains(err.Error(), keyFile) {
		t.Errorf("corrupt key file: error %v, want one naming %s", err, keyFile)
	}
	writeTestFile(t, keyFile, good, 0o644)
	if err := termB.TicketKeys().Reload(); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Errorf("world-readable key file: error %v", err)
	}
	if !connect(addrB) {
		t.Fatal("keys lost after refused reloads")
	}

	// Rotate the old key out: B's tickets no longer decrypt, the client
	// falls back to a full handshake.
	writeTestFile(t, keyFile, good, 0o600)
	if err := CreateOrRotateKeyFile(keyFile, time.Now().Add(time.Hour), 30*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := termB.TicketKeys().Reload(); err != nil {
		t.Fatal(err)
	}
	if termB.TicketKeys().Len() != 1 {
		t.Fatalf("%d keys after rotation, want 1", termB.TicketKeys().Len())
	}
	if connect(addrB) {
		t.Fatal("resumed with a ticket whose key was rotated out")
	}
	// And the new ticket from B resumes at B again.
	if !connect(addrB) {
		t.Fatal("no resumption with the new key")
	}
}

func TestTicketKeysPolledFromFile(t *testing.T) {
	certs := newStandardCerts(t)
	keyFile := filepath.Join(t.TempDir(), "ticket-keys")
	if err := CreateOrRotateKeyFile(keyFile, time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
	term := newTerm(t, Settings{Certificates: certs.pairs, TicketKeyFile: keyFile, TicketPoll: 20 * time.Millisecond})
	if err := CreateOrRotateKeyFile(keyFile, time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the rotated key file to be picked up", func() bool { return term.TicketKeys().Len() == 2 })
}

func TestHandshakeTimeout(t *testing.T) {
	certs := newStandardCerts(t)
	const timeout = 300 * time.Millisecond
	term := newTerm(t, Settings{Certificates: certs.pairs, HandshakeTimeout: timeout})
	addr, srv := startServer(t, term)

	measure := func(send []byte) time.Duration {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		if len(send) > 0 {
			if _, err := c.Write(send); err != nil {
				t.Fatal(err)
			}
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := io.Copy(io.Discard, c)
		if err != nil {
			t.Fatalf("read: %v (after %d bytes)", err, n)
		}
		return time.Since(start)
	}
	// A client that never sends a byte (no handshake goroutine is started
	// for it), then one that stalls inside its ClientHello record.
	for _, send := range [][]byte{nil, {0x16, 0x03, 0x01, 0x02, 0x00, 0x01}} {
		if d := measure(send); d < timeout-50*time.Millisecond || d > timeout+3*time.Second {
			t.Errorf("sent %d bytes: closed after %v, want about %v", len(send), d, timeout)
		}
	}
	waitFailure(t, term, FailTimeout, 2)
	waitFor(t, 5*time.Second, "OnClose", func() bool { return srv.closed.Load() >= 3 })
	if r, q := term.Stats().Running.Load(), term.Stats().Queued.Load(); r != 0 || q != 0 {
		t.Errorf("running=%d queued=%d after the timeouts", r, q)
	}

}

// TestPlainHTTPAnswered400: a plaintext HTTP request on a TLS port gets a
// 400 that says why, then the connection is closed, at once (no
// handshake slot, no timeout), and counted as plain_http.
func TestPlainHTTPAnswered400(t *testing.T) {
	certs := newStandardCerts(t)
	term := newTerm(t, Settings{Certificates: certs.pairs, HandshakeTimeout: 20 * time.Second})
	addr, _ := startServer(t, term)
	for i, req := range []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "POST /owa/ HTTP/1.0\r\nContent-Length: 0\r\n\r\n", "get /", "GE|T / HTTP/1.1\r\n\r\n"} {
		start := time.Now()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// "|" splits the request into two writes: the method is not
		// complete in the first.
		first, rest, split := strings.Cut(req, "|")
		io.WriteString(c, first)
		if split {
			time.Sleep(100 * time.Millisecond)
			io.WriteString(c, rest)
		}
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		got, err := io.ReadAll(c) // to the server's close
		c.Close()
		if err != nil {
			t.Errorf("%q: %v after %q", req, err, got)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%q: closed after %v, not at once", req, d)
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(got)), nil)
		if err != nil {
			t.Fatalf("%q: answer %q: %v", req, got, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || !resp.Close || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" ||
			!strings.Contains(string(body), "expects TLS") || int64(len(body)) != resp.ContentLength {
			t.Errorf("%q: %d %v %q", req, resp.StatusCode, resp.Header, body)
		}
		waitFailure(t, term, FailPlainHTTP, int64(i+1))
	}
	if n := term.Stats().Failures(FailBadClientHello); n != 0 {
		t.Errorf("%d bad_client_hello", n)
	}
	if st := term.Stats(); st.Running.Load() != 0 || st.Queued.Load() != 0 || st.Handshakes.Load() != 0 {
		t.Errorf("running %d queued %d", st.Running.Load(), st.Queued.Load())
	}
}

func TestPlainHTTPDetection(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"GET / HTTP/1.1", isHTTP},
		{"OPTIONS *", isHTTP},
		{"BASELINE-CONTROL /", isHTTP},
		{"get ", isHTTP},
		{"G", maybeHTTP},
		{"PROPFIND", maybeHTTP},
		{"", notHTTP},
		{"\x16\x03\x01\x02\x00", notHTTP}, // a ClientHello record
		{"\x80\x2e\x01", notHTTP},         // an SSL 2 hello
		{" GET /", notHTTP},
		{"SSH-2.0-OpenSSH_9.6\r\n", notHTTP},
		{"GET\r\n", notHTTP},
		{"ABCDEFGHIJKLMNOPQRSTU", notHTTP}, // longer than any method
		{"1GET /", notHTTP},
	} {
		if got := plainHTTP([]byte(tc.in)); got != tc.want {
			t.Errorf("plainHTTP(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// TestNotTLSRefusedAtOnce: bytes that are neither TLS nor HTTP fail the
// handshake at once, without an answer.
func TestNotTLSRefusedAtOnce(t *testing.T) {
	certs := newStandardCerts(t)
	term := newTerm(t, Settings{Certificates: certs.pairs, HandshakeTimeout: 20 * time.Second})
	addr, _ := startServer(t, term)
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0x01, 0x03, 0x01, 0x00, 0x10, 'x', 'x'})
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, _ := io.ReadAll(c)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("closed after %v, not at once", d)
	}
	if bytes.HasPrefix(got, []byte("HTTP/")) {
		t.Errorf("answered %q", got)
	}
	waitFailure(t, term, FailBadClientHello, 1)
	if n := term.Stats().Failures(FailPlainHTTP); n != 0 {
		t.Errorf("%d plain_http", n)
	}
}

func TestHandshakePoolBound(t *testing.T) {
	certs := newStandardCerts(t)
	const timeout = 3 * time.Second
	term := newTerm(t, Settings{Certificates: certs.pairs, HandshakeTimeout: timeout, MaxHandshakes: 1, HandshakeQueue: 1})
	addr, _ := startServer(t, term)
	st := term.Stats()
	// A stalled client: the header of a 512-byte handshake record and one
	// byte of it.
	stall := func() net.Conn {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	// The second client connects first, silently, so its deadline passes
	// while it waits in the queue behind the first.
	start := time.Now()
	c2, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c1 := stall()
	defer c1.Close()
	waitFor(t, 5*time.Second, "a running handshake", func() bool { return st.Running.Load() == 1 })
	if _, err := c2.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a queued handshake", func() bool { return st.Queued.Load() == 1 })

	c3 := stall()
	defer c3.Close()
	t3 := time.Now()
	c3.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c3); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t3); d > timeout/2 {
		t.Errorf("third client closed after %v, want at once", d)
	}
	waitFailure(t, term, FailQueueFull, 1)

	// The other two end at the handshake timeout: one queued, one running.
	for _, c := range []net.Conn{c2, c1} {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < timeout-100*time.Millisecond {
		t.Errorf("stalled clients closed after %v, before the timeout", d)
	}
	// Usually one is counted timeout (running) and one queue_timeout
	// (queued). On a loaded machine the queued one may get the freed slot
	// just before its own deadline and end as timeout too: both are right,
	// and either way neither may complete.
	waitFor(t, 10*time.Second, "two timeouts", func() bool {
		return term.Stats().Failures(FailTimeout)+term.Stats().Failures(FailQueueTimeout) >= 2
	})
	if term.Stats().Failures(FailTimeout) < 1 {
		t.Errorf("the running handshake was not counted as timeout")
	}
	waitFor(t, 5*time.Second, "an empty pool", func() bool { return st.Running.Load() == 0 && st.Queued.Load() == 0 })

	// The pool is free again.
	c, err := dialTLS(addr, certs.clientConfig("mail.example.test"))
	if err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(c, "after"); err != nil {
		t.Error(err)
	}
	c.Close()
}

func TestQueuedHandshakesComplete(t *testing.T) {
	// More clients than slots, all real: the queue drains and every one
	// completes.
	certs := newStandardCerts(t)
	term := newTerm(t, Settings{Certificates: certs.pairs, MaxHandshakes: 2, HandshakeQueue: 64})
	addr, _ := startServer(t, term)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := dialTLS(addr, certs.clientConfig("mail.example.test"))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if err := roundTrip(c, fmt.Sprintf("client %d", i)); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := term.Stats().Handshakes.Load(); n != 32 {
		t.Errorf("handshakes = %d", n)
	}
}

func TestEchoOneMiBBothWays(t *testing.T) {
	certs := newStandardCerts(t)
	term := newTerm(t, Settings{Certificates: certs.pairs, MaxPlaintextBuffer: 16 << 10})
	addr, _ := startServer(t, term)
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		cfg := certs.clientConfig("mail.example.test")
		cfg.MaxVersion = version
		c, err := dialTLS(addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		data := make([]byte, 1<<20)
		rand.Read(data)
		werr := make(chan error, 1)
		go func() {
			// Uneven writes: records of many sizes, some split across
			// socket reads.
			rest := data
			for i := 1; len(rest) > 0; i++ {
				n := min(len(rest), (i*7919)%40000+1)
				if _, err := c.Write(rest[:n]); err != nil {
					werr <- err
					return
				}
				rest = rest[n:]
			}
			werr <- nil
		}()
		got := make([]byte, len(data))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("TLS %x: read: %v", version, err)
		}
		if err := <-werr; err != nil {
			t.Fatalf("TLS %x: write: %v", version, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("TLS %x: echoed data differs", version)
		}
		c.Close()
	}
}

func TestPipelinedSmallWrites(t *testing.T) {
	c := echoClient(t)
	const n = 3000
	var want bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&want, "request %05d\r\n", i)
	}
	go func() {
		// One record per line, written without waiting for answers.
		for i := 0; i < n; i++ {
			if _, err := fmt.Fprintf(c, "request %05d\r\n", i); err != nil {
				return
			}
		}
	}()
	got := make([]byte, want.Len())
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("pipelined echo differs")
	}
}

func TestServerCloseSendsCloseNotify(t *testing.T) {
	certs := newStandardCerts(t)
	term := newTerm(t, Settings{Certificates: certs.pairs})
	addr, srv := startServer(t, term)
	c, err := dialTLS(addr, certs.clientConfig("mail.example.test"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "?close\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("read after ?close: %v, want io.EOF", err)
	}
	waitFor(t, 5*time.Second, "OnClose", func() bool { return srv.closed.Load() >= 2 }) // incl. startServer's probe
}

func TestHandshakeInputBound(t *testing.T) {
	// While its handshake waits for a slot, a client that keeps sending is
	// cut off once gnet holds more than the bound for a client that has not
	// seen the server's first flight, and it is counted once.
	certs := newStandardCerts(t)
	term := newTerm(t, Settings{Certificates: certs.pairs, MaxHandshakes: 1, HandshakeQueue: 4})
	addr, _ := startServer(t, term)
	st := term.Stats()
	blocker, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close()
	blocker.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01})
	waitFor(t, 5*time.Second, "the slot to be taken", func() bool { return st.Running.Load() == 1 })

	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		c.Write(append([]byte{0x16, 0x03, 0x01, 0x40, 0x00}, make([]byte, 400<<10)...))
	}()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("flooding client: %v, want it closed", err)
	}
	waitFailure(t, term, FailInputOverflow, 1)
	waitFor(t, 5*time.Second, "the queue to empty", func() bool { return st.Queued.Load() == 0 })
	if n := st.Failures(FailEOF) + st.Failures(FailQueueTimeout); n != 0 {
		t.Errorf("the refused client was counted again (%d)", n)
	}
}
