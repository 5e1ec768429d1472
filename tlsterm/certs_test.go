package tlsterm

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestReloadKeepsOldSetOnError(t *testing.T) {
	p := newPKI(t)
	orig, origSerial := p.leaf(t, "mail", []string{"mail.example.test"}, leafOpts{})
	live := CertPair{CertFile: orig.CertFile + ".live", KeyFile: orig.KeyFile + ".live"}
	copyFile := func(from, to string, mode os.FileMode) {
		t.Helper()
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, to, b, mode)
	}
	copyFile(orig.CertFile, live.CertFile, 0o644)
	copyFile(orig.KeyFile, live.KeyFile, 0o600)

	term := newTerm(t, Settings{Certificates: []CertPair{live}})
	store := term.Store()
	addr, _ := startServer(t, term)
	servedSerial := func() int64 {
		t.Helper()
		c, err := dialTLS(addr, &tls.Config{RootCAs: p.roots, ServerName: "mail.example.test"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return serialOf(c)
	}
	before := store.Lookup("mail.example.test")

	other, _ := p.leaf(t, "other", []string{"mail.example.test"}, leafOpts{})
	unrelated := newPKI(t)
	foreign, _ := unrelated.leaf(t, "foreign", []string{"mail.example.test"}, leafOpts{})
	foreignLeaf, _ := os.ReadFile(foreign.CertFile)
	block, _ := pem.Decode(foreignLeaf)
	ownChain, _ := os.ReadFile(orig.CertFile)
	ownLeaf, _ := pem.Decode(ownChain)

	for _, tc := range []struct {
		name      string
		cert, key []byte
		wantFile  string
		wantText  string
	}{
		{"corrupt certificate", []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), nil, live.CertFile, ""},
		{"empty certificate file", []byte{}, nil, live.CertFile, ""},
		{"key of another certificate", nil, mustRead(t, other.KeyFile), live.KeyFile, "private key does not match"},
		{"chain out of order", append(pemBlock("CERTIFICATE", ownLeaf.Bytes), pemBlock("CERTIFICATE", block.Bytes)...), nil, live.CertFile, "not signed by"},
	} {
		if tc.cert != nil {
			writeTestFile(t, live.CertFile, tc.cert, 0o644)
		}
		if tc.key != nil {
			writeTestFile(t, live.KeyFile, tc.key, 0o600)
		}
		err := store.Reload()
		if err == nil {
			t.Fatalf("%s: Reload succeeded", tc.name)
		}
		if !strings.Contains(err.Error(), tc.wantFile) || !strings.Contains(err.Error(), tc.wantText) {
			t.Errorf("%s: error %q, want it to name %s and say %q", tc.name, err, tc.wantFile, tc.wantText)
		}
		if store.Lookup("mail.example.test") != before {
			t.Fatalf("%s: the loaded certificate was replaced", tc.name)
		}
		if got := servedSerial(); got != origSerial {
			t.Fatalf("%s: serving %d, want the old %d", tc.name, got, origSerial)
		}
		copyFile(orig.CertFile, live.CertFile, 0o644)
		copyFile(orig.KeyFile, live.KeyFile, 0o600)
	}

	// A good new pair replaces the old one for new handshakes.
	next, nextSerial := p.leaf(t, "next", []string{"mail.example.test"}, leafOpts{})
	copyFile(next.CertFile, live.CertFile, 0o644)
	copyFile(next.KeyFile, live.KeyFile, 0o600)
	if err := store.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(); got != nextSerial {
		t.Errorf("after reload serving %d, want %d", got, nextSerial)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWatchReloadsChangedFiles(t *testing.T) {
	p := newPKI(t)
	pair, _ := p.leaf(t, "mail", []string{"mail.example.test"}, leafOpts{})
	s, err := NewStore([]CertPair{pair}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Watch(ctx, 10*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()

	next, nextSerial := p.leaf(t, "next", []string{"mail.example.test"}, leafOpts{})
	// Replace the key first: between the two writes the pair does not
	// match, and that half-done state must not be served.
	writeTestFile(t, pair.KeyFile, mustRead(t, next.KeyFile), 0o600)
	time.Sleep(30 * time.Millisecond)
	writeTestFile(t, pair.CertFile, mustRead(t, next.CertFile), 0o644)
	waitFor(t, 5*time.Second, "the new certificate", func() bool {
		return s.Lookup("mail.example.test").Leaf.SerialNumber.Int64() == nextSerial
	})
}

func TestExpiryReported(t *testing.T) {
	p := newPKI(t)
	soon, _ := p.leaf(t, "soon", []string{"soon.example.test"}, leafOpts{notAfter: time.Now().Add(5 * 24 * time.Hour)})
	later, _ := p.leaf(t, "later", []string{"later.example.test"}, leafOpts{})
	var logged bytes.Buffer
	s, err := NewStore([]CertPair{later, soon}, slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatal(err)
	}
	exp := s.Expiring(time.Now())
	if len(exp) != 1 || exp[0].CertFile != soon.CertFile {
		t.Fatalf("Expiring = %+v, want only %s", exp, soon.CertFile)
	}
	if w := strings.Join(s.Warnings(), "\n"); !strings.Contains(w, soon.CertFile) || !strings.Contains(w, "expires") {
		t.Errorf("warnings %q", w)
	}
	if !strings.Contains(logged.String(), "expires") || !strings.Contains(logged.String(), "level=WARN") {
		t.Errorf("not logged as a warning: %s", logged.String())
	}
	if exp := s.Expiring(time.Now().Add(30 * 24 * time.Hour)); len(exp) != 2 {
		t.Errorf("in 30 days: %d expiring, want 2", len(exp))
	}
}

func TestOCSPStaple(t *testing.T) {
	p := newPKI(t)
	pair, _ := p.leaf(t, "mail", []string{"mail.example.test"}, leafOpts{})
	pair.OCSPFile = pair.CertFile + ".ocsp"
	// Not a real OCSP response, but DER-shaped: tlsterm staples bytes, it
	// does not validate them.
	staple := []byte{0x30, 0x03, 0x0a, 0x01, 0x00}
	writeTestFile(t, pair.OCSPFile, staple, 0o644)
	term := newTerm(t, Settings{Certificates: []CertPair{pair}})
	addr, _ := startServer(t, term)
	c, err := dialTLS(addr, &tls.Config{RootCAs: p.roots, ServerName: "mail.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.ConnectionState().OCSPResponse; !bytes.Equal(got, staple) {
		t.Errorf("stapled %x, want %x", got, staple)
	}
	writeTestFile(t, pair.OCSPFile, []byte("not DER"), 0o644)
	if err := term.Store().Reload(); err == nil || !strings.Contains(err.Error(), pair.OCSPFile) {
		t.Errorf("bad OCSP file: %v", err)
	}
}

func TestWriteSelfSigned(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath, err := WriteSelfSigned(dir, []string{"localhost", "127.0.0.1", "::1", "mail.example.test."}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %#o", fi.Mode().Perm())
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	leaf := pair.Leaf
	if _, ok := pair.PrivateKey.(*ecdsa.PrivateKey); !ok {
		t.Errorf("key type %T", pair.PrivateKey)
	}
	if leaf.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("public key %v, want ECDSA", leaf.PublicKeyAlgorithm)
	}
	if got := strings.Join(leaf.DNSNames, ","); got != "localhost,mail.example.test" {
		t.Errorf("DNS names %q", got)
	}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Errorf("IP addresses %v", leaf.IPAddresses)
	}
	if d := time.Until(leaf.NotAfter); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("valid for %v more", d)
	}
	// It serves, and a client that trusts it verifies name and IP.
	term := newTerm(t, Settings{Certificates: []CertPair{{CertFile: certPath, KeyFile: keyPath}}})
	addr, _ := startServer(t, term)
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	for _, name := range []string{"localhost", "127.0.0.1"} {
		c, err := dialTLS(addr, &tls.Config{RootCAs: roots, ServerName: name})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		c.Close()
	}
	// Writing again replaces the files, and the key keeps mode 0600.
	os.Chmod(keyPath, 0o644)
	if _, _, err := WriteSelfSigned(dir, []string{"localhost"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(keyPath); fi.Mode().Perm() != 0o600 {
		t.Errorf("rewritten key mode %#o", fi.Mode().Perm())
	}
	if _, _, err := WriteSelfSigned(dir, nil, time.Hour); err == nil {
		t.Error("no hosts accepted")
	}
}
