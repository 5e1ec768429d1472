package tlsterm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/logging"
)

// Transport is the interface l7 is expected to declare; both gnet.Conn and
// *Conn must satisfy it.
type Transport interface {
	Peek(int) ([]byte, error)
	Discard(int) (int, error)
	InboundBuffered() int
	Write([]byte) (int, error)
	Writev([][]byte) (int, error)
	OutboundBuffered() int
	Close() error
}

var (
	_ Transport = (*Conn)(nil)
	_ Transport = gnet.Conn(nil)
	_ net.Conn  = (*wire)(nil)
)

func quietLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testPKI is a throw-away CA and the leaf certificates it signs, all
// generated into a t.TempDir().
type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  crypto.Signer
	caFile string
	roots  *x509.CertPool
	serial atomic.Int64
}

var rsaKeyOnce = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	p.serial.Store(100)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tlsterm test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(48 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.caKey = key
	p.caFile = filepath.Join(p.dir, "ca.pem")
	writeTestFile(t, p.caFile, pemBlock("CERTIFICATE", der), 0o644)
	p.roots = x509.NewCertPool()
	p.roots.AddCert(p.ca)
	return p
}

type leafOpts struct {
	rsa      bool
	client   bool
	notAfter time.Time
	ips      []net.IP
}

// leaf writes a certificate for names signed by the CA, the chain file
// holding the leaf then the CA. It returns the pair and the serial.
func (p *testPKI) leaf(t testing.TB, cn string, names []string, o leafOpts) (CertPair, int64) {
	t.Helper()
	var signer crypto.Signer
	if o.rsa {
		signer = rsaKeyOnce()
	} else {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		signer = k
	}
	serial := p.serial.Add(1)
	if o.notAfter.IsZero() {
		o.notAfter = time.Now().Add(40 * 24 * time.Hour)
	}
	eku := x509.ExtKeyUsageServerAuth
	if o.client {
		eku = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     names,
		IPAddresses:  o.ips,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     o.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{eku},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, signer.Public(), p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(p.dir, fmt.Sprintf("%s-%d", cn, serial))
	pair := CertPair{CertFile: base + ".crt", KeyFile: base + ".key"}
	writeTestFile(t, pair.CertFile, append(pemBlock("CERTIFICATE", der), pemBlock("CERTIFICATE", p.ca.Raw)...), 0o644)
	writeTestFile(t, pair.KeyFile, pemBlock("PRIVATE KEY", pk), 0o600)
	return pair, serial
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func writeTestFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func newTerm(t testing.TB, s Settings) *Terminator {
	t.Helper()
	term, err := NewTerminator(s, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(term.Close)
	return term
}

// echoServer is a gnet server that terminates TLS with a Terminator and
// echoes plaintext. A line "?state\n" at the start of a read is answered
// with the server's view of the connection instead; "?close\n" closes it
// (with close_notify); "?keyupdate\n" is echoed after a KeyUpdate.
type echoServer struct {
	gnet.BuiltinEventEngine
	term   *Terminator
	eng    gnet.Engine
	booted chan struct{}
	opened atomic.Int64
	closed atomic.Int64
}

func (s *echoServer) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	close(s.booted)
	return gnet.None
}

func (s *echoServer) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	s.opened.Add(1)
	c.SetContext(s.term.Accept(c))
	return nil, gnet.None
}

func (s *echoServer) OnTraffic(c gnet.Conn) gnet.Action {
	tc := c.Context().(*Conn)
	ready, err := tc.OnTraffic()
	if err != nil {
		return gnet.Close
	}
	if !ready {
		return gnet.None
	}
	for {
		buf, _ := tc.Peek(-1)
		if len(buf) == 0 {
			return gnet.None
		}
		switch {
		case bytes.HasPrefix(buf, []byte("?state\n")):
			st := tc.State()
			subject := "-"
			if len(st.VerifiedChains) > 0 {
				subject = st.VerifiedChains[0][0].Subject.CommonName
			}
			fmt.Fprintf(tc, "%x %d %s %t\n", st.Version, st.CurveID, subject, st.DidResume)
			tc.Discard(len("?state\n"))
			continue
		case bytes.HasPrefix(buf, []byte("?keyupdate\n")):
			// As if the client had asked for our KeyUpdate: it goes out
			// before the echo.
			if tc.rl != nil {
				tc.rl.updateOut.Store(true)
			}
			tc.Write([]byte("?keyupdate\n"))
			tc.Discard(len("?keyupdate\n"))
			continue
		case bytes.HasPrefix(buf, []byte("?close\n")):
			tc.Discard(len("?close\n"))
			tc.Close()
			return gnet.None
		}
		if _, err := tc.Write(buf); err != nil {
			return gnet.Close
		}
		tc.Discard(len(buf))
	}
}

func (s *echoServer) OnClose(c gnet.Conn, _ error) gnet.Action {
	s.closed.Add(1)
	if tc, ok := c.Context().(*Conn); ok {
		tc.OnClose()
	}
	return gnet.None
}

// quietGnet drops gnet's own log lines ("Launching gnet ...").
type quietGnet struct{}

func (quietGnet) Debugf(string, ...any) {}
func (quietGnet) Infof(string, ...any)  {}
func (quietGnet) Warnf(string, ...any)  {}
func (quietGnet) Errorf(string, ...any) {}
func (quietGnet) Fatalf(string, ...any) {}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startServer runs an echoServer on a loopback port with two loops and
// stops it at cleanup.
func startServer(t testing.TB, term *Terminator) (string, *echoServer) {
	t.Helper()
	s := &echoServer{term: term, booted: make(chan struct{})}
	addr := freeAddr(t)
	errc := make(chan error, 1)
	go func() {
		errc <- gnet.Run(s, "tcp://"+addr, gnet.WithMulticore(true), gnet.WithNumEventLoop(2),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay), gnet.WithLogLevel(logging.ErrorLevel), gnet.WithLogger(quietGnet{}))
	}()
	select {
	case <-s.booted:
	case err := <-errc:
		t.Fatalf("gnet.Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("gnet did not boot")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.eng.Stop(ctx)
		select {
		case <-errc:
		case <-time.After(5 * time.Second):
			t.Error("gnet did not stop")
		}
	})
	// gnet binds before OnBoot; make sure connections are accepted.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial %s: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return addr, s
}

// echoClient starts an echoServer with the standard certificates and
// returns a client connected to it, closed at cleanup.
func echoClient(t *testing.T) *tls.Conn {
	t.Helper()
	certs := newStandardCerts(t)
	addr, _ := startServer(t, newTerm(t, Settings{Certificates: certs.pairs}))
	c, err := dialTLS(addr, certs.clientConfig("mail.example.test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dialTLS(addr string, cfg *tls.Config) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c, nil
}

// roundTrip writes msg and reads it back.
func roundTrip(c *tls.Conn, msg string) error {
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("echo: got %q, want %q", got, msg)
	}
	return nil
}

// serverState asks the echo server for its view of the connection.
func serverState(c *tls.Conn) (string, error) {
	if _, err := io.WriteString(c, "?state\n"); err != nil {
		return "", err
	}
	var line []byte
	b := make([]byte, 1)
	for len(line) < 200 {
		if _, err := c.Read(b); err != nil {
			return "", err
		}
		if b[0] == '\n' {
			return string(line), nil
		}
		line = append(line, b[0])
	}
	return "", fmt.Errorf("state line too long: %q", line)
}

// waitFor polls cond every 5ms for up to d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// standardCerts is the certificate set most tests use: an ECDSA default for
// mail.example.test, an ECDSA wildcard for *.wild.test, and an RSA
// certificate for imap.example.test.
type standardCerts struct {
	pki                          *testPKI
	pairs                        []CertPair
	mail, wild, imap             int64 // serials
	mailPair, wildPair, imapPair CertPair
}

func newStandardCerts(t testing.TB) *standardCerts {
	p := newPKI(t)
	s := &standardCerts{pki: p}
	s.mailPair, s.mail = p.leaf(t, "mail", []string{"mail.example.test"}, leafOpts{})
	s.wildPair, s.wild = p.leaf(t, "wild", []string{"*.wild.test"}, leafOpts{})
	s.imapPair, s.imap = p.leaf(t, "imap", []string{"imap.example.test"}, leafOpts{rsa: true})
	s.pairs = []CertPair{s.mailPair, s.wildPair, s.imapPair}
	return s
}

func (s *standardCerts) clientConfig(name string) *tls.Config {
	return &tls.Config{RootCAs: s.pki.roots, ServerName: name}
}

func serialOf(c *tls.Conn) int64 {
	st := c.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return -1
	}
	return st.PeerCertificates[0].SerialNumber.Int64()
}
