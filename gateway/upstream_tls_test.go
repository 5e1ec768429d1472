package gateway_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"frontdoor/directory"
	"frontdoor/gateway"
	"frontdoor/gateway/config"
	"frontdoor/internal/gwtest"
	"frontdoor/internal/testbed"
	"frontdoor/mailboxd"
)

// testCA is a throw-away certificate authority; nothing leaves t.TempDir().
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string // path of the CA certificate in PEM
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	path := filepath.Join(dir, name+".pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: path}
}

// leaf issues a server certificate for dnsName and 127.0.0.1.
func (ca *testCA) leaf(t *testing.T, dnsName string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: dnsName},
		DNSNames:     []string{dnsName},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// countingListener counts accepted connections: the backend connections
// the gateway opened.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// tlsMailboxd runs mailboxd in-process behind a TLS listener on loopback.
type tlsMailboxd struct {
	name, addr string
	tcp        *countingListener // TCP connections accepted
	handshakes atomic.Int64      // TLS handshakes that reached the server's VerifyConnection
}

func startTLSMailboxd(t *testing.T, name string, cert tls.Certificate) *tlsMailboxd {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &tlsMailboxd{name: name, addr: ln.Addr().String(), tcp: &countingListener{Listener: ln}}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		VerifyConnection: func(tls.ConnectionState) error {
			m.handshakes.Add(1)
			return nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- mailboxd.Run(ctx, mailboxd.Options{Listener: tls.NewListener(m.tcp, cfg), Name: name}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("mailboxd %s did not stop", name)
		}
	})
	return m
}

// upstreamGateway starts a gateway whose directory has the TLS server m
// (with the directory keys tlsKeys) holding alice and the plaintext server
// plain holding bob.
func upstreamGateway(t *testing.T, m *tlsMailboxd, tlsKeys, backend string, plain *testbed.Mailboxd) *gwtest.Gateway {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort(t, "127.0.0.1"))
	var b strings.Builder
	fmt.Fprintf(&b, "directory = \"directory.toml\"\n[engine]\nloops = 2\n[backend]\nconns_per_loop = 2\nreconnect_min = \"50ms\"\nreconnect_max = \"200ms\"\n%s\n", backend)
	fmt.Fprintf(&b, "[[listener]]\nname = \"http\"\naddress = %q\n", addr)
	for _, p := range gwtest.Protocols {
		name, prefix, _ := strings.Cut(p, ":")
		fmt.Fprintf(&b, "[[protocol]]\nname = %q\npath_prefix = %q\nbackend_port = 1\n", name, prefix)
	}
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "test.toml"), []byte(b.String()))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, b.String())
	}
	d := fmt.Sprintf(`[[site]]
name = "site-a"
[[server]]
name = %q
address = %q
site = "site-a"
tls = true
%s
[[server]]
name = %q
address = %q
site = "site-a"
[[database]]
name = "DB01"
active = %q
[[database]]
name = "DB02"
active = %q
[[user]]
login = "alice"
address = "alice@example.test"
database = "DB01"
[[user]]
login = "bob"
address = "bob@example.test"
database = "DB02"
`, m.name, m.addr, tlsKeys, plain.Name(), plain.Addr(), m.name, plain.Name())
	dir, err := directory.Parse("directory.toml", []byte(d))
	if err != nil {
		t.Fatalf("directory: %v", err)
	}
	return gwtest.StartWith(t, cfg, dir, addr, nil)
}

func backendOf(t *testing.T, g *gwtest.Gateway, name string) gateway.BackendSummary {
	t.Helper()
	for _, b := range g.Snapshot().Backends {
		if b.Server == name {
			return b
		}
	}
	t.Fatalf("no backend %s in the snapshot", name)
	return gateway.BackendSummary{}
}

func TestUpstreamTLS(t *testing.T) {
	tmp := t.TempDir()
	ca := newTestCA(t, tmp, "backend-ca")
	m := startTLSMailboxd(t, "mbx-tls", ca.leaf(t, "mbx-tls.example.test"))
	plain := testbed.StartMailboxd(t, "mbx-plain")
	for _, tc := range []struct{ name, keys string }{
		{"server name", `tls_server_name = "mbx-tls.example.test"`},
		{"address host", ``}, // 127.0.0.1: the certificate's IP address
	} {
		t.Run(tc.name, func(t *testing.T) {
			tcpBefore, hsBefore := m.tcp.n.Load(), m.handshakes.Load()
			g := upstreamGateway(t, m, tc.keys, fmt.Sprintf("tls_ca = %q", ca.pem), plain)
			const clients, perClient = 8, 25
			errs := make(chan error, clients)
			for i := 0; i < clients; i++ {
				go func(i int) {
					c := g.Dial(t)
					// Half pipelined in one write, half one at a time.
					var batch strings.Builder
					for j := 0; j < perClient; j++ {
						who := "alice"
						if j%5 == 4 {
							who = "bob"
						}
						req := fmt.Sprintf("GET /owa/?c=%d&r=%d HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: %s@example.test\r\n\r\n", i, j, who)
						if i%2 == 0 {
							batch.WriteString(req)
						} else {
							c.Send(t, req)
							if err := checkEcho(c, i, j, who); err != nil {
								errs <- err
								return
							}
						}
					}
					if i%2 == 0 {
						c.Send(t, batch.String())
						for j := 0; j < perClient; j++ {
							who := "alice"
							if j%5 == 4 {
								who = "bob"
							}
							if err := checkEcho(c, i, j, who); err != nil {
								errs <- err
								return
							}
						}
					}
					errs <- nil
				}(i)
			}
			for i := 0; i < clients; i++ {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			b := backendOf(t, g, m.name)
			// 2 loops x 2 connections: the TLS pool is the plaintext one.
			if got := m.tcp.n.Load() - tcpBefore; got > 4 || got < 1 {
				t.Errorf("TLS backend accepted %d connections for %d requests, want 1..4", got, clients*perClient*4/5)
			}
			if got := m.handshakes.Load() - hsBefore; got > 4 {
				t.Errorf("%d TLS handshakes, want at most 4", got)
			}
			if !b.TLS || b.DialFailures != 0 || b.Requests != clients*perClient*4/5 || b.Failed != 0 {
				t.Errorf("TLS backend counters %+v", b)
			}
			if p := backendOf(t, g, plain.Name()); p.TLS || p.Requests != clients*perClient/5 || p.Failed != 0 {
				t.Errorf("plaintext backend counters %+v", p)
			}
			// Backend handshakes are counted apart from the listeners'
			// (a replacement connection may still be handshaking).
			snap := g.Snapshot()
			st := snap.BackendTLS
			hs := st["handshakes"]
			if hs < 1 || hs > m.handshakes.Load()-hsBefore || st["version.tls1.3"] != hs || st["group.X25519MLKEM768"] != hs || st["post_quantum"] != hs ||
				st["cipher.TLS_AES_128_GCM_SHA256"]+st["cipher.TLS_AES_256_GCM_SHA384"]+st["cipher.TLS_CHACHA20_POLY1305_SHA256"] != hs ||
				st["failure.bad_certificate"] != 0 || len(snap.TLS) != 0 {
				t.Errorf("backend TLS counters %v for %d handshakes; listener TLS %v", st, hs, snap.TLS)
			}
			if _, ok := st["running"]; ok {
				t.Error("backend TLS counters have the listener pool's gauges")
			}
		})
	}
}

// checkEcho reads one response and checks it is the echo of request j of
// client i from who's server.
func checkEcho(c *gwtest.Client, i, j int, who string) error {
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	resp, err := readResp(c)
	if err != nil {
		return fmt.Errorf("client %d request %d: %v", i, j, err)
	}
	if resp.status != 200 {
		return fmt.Errorf("client %d request %d: status %d: %s", i, j, resp.status, resp.body)
	}
	want := fmt.Sprintf("/owa/?c=%d&r=%d", i, j)
	server := "mbx-tls"
	if who == "bob" {
		server = "mbx-plain"
	}
	if !strings.Contains(resp.body, `"target":"`+want+`"`) && !strings.Contains(resp.body, `"target": "`+want+`"`) {
		return fmt.Errorf("client %d request %d: answer for another request: %s", i, j, resp.body)
	}
	if !strings.Contains(resp.body, `"`+server+`"`) {
		return fmt.Errorf("client %d request %d: not answered by %s: %s", i, j, server, resp.body)
	}
	return nil
}

type simpleResp struct {
	status int
	body   string
}

func readResp(c *gwtest.Client) (simpleResp, error) {
	resp, err := readHTTP(c)
	if err != nil {
		return simpleResp{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return simpleResp{resp.StatusCode, string(body)}, err
}

func TestUpstreamTLSVerificationFails(t *testing.T) {
	tmp := t.TempDir()
	ca := newTestCA(t, tmp, "backend-ca")
	other := newTestCA(t, tmp, "other-ca")
	m := startTLSMailboxd(t, "mbx-tls", ca.leaf(t, "mbx-tls.example.test"))
	plain := testbed.StartMailboxd(t, "mbx-plain")
	for _, tc := range []struct{ name, keys, backend string }{
		{"wrong server name", `tls_server_name = "other.example.test"`, fmt.Sprintf("tls_ca = %q", ca.pem)},
		{"untrusted CA", `tls_server_name = "mbx-tls.example.test"`, fmt.Sprintf("tls_ca = %q", other.pem)},
		{"system roots", `tls_server_name = "mbx-tls.example.test"`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := upstreamGateway(t, m, tc.keys, tc.backend, plain)
			c := g.Dial(t)
			for i := 0; i < 3; i++ {
				c.Send(t, "GET /owa/ HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\n\r\n")
				r, err := readResp(c)
				if err != nil {
					t.Fatal(err)
				}
				if r.status != 502 {
					t.Fatalf("status %d, want 502: %s", r.status, r.body)
				}
			}
			// The plaintext server in the same gateway is unaffected.
			c.Send(t, "GET /owa/ HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: bob@example.test\r\n\r\n")
			if r, err := readResp(c); err != nil || r.status != 200 || !strings.Contains(r.body, "mbx-plain") {
				t.Fatalf("plaintext server: %v %d %s", err, r.status, r.body)
			}
			b := backendOf(t, g, m.name)
			if b.DialFailures == 0 || b.ConnsOpen != 0 || b.Requests != 0 {
				t.Errorf("TLS backend counters %+v, want dial failures and nothing open or sent", b)
			}
			if st := g.Snapshot().BackendTLS; st["failure.bad_certificate"] == 0 || st["handshakes"] != 0 {
				t.Errorf("backend TLS counters %v, want bad_certificate failures", st)
			}
		})
	}
}

func TestUpstreamTLSCAErrors(t *testing.T) {
	tmp := t.TempDir()
	m := &tlsMailboxd{name: "mbx-tls", addr: "127.0.0.1:1"}
	bad := filepath.Join(tmp, "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{bad, "no PEM certificate found"},
		{filepath.Join(tmp, "missing.pem"), "no such file"},
	} {
		cfgText := fmt.Sprintf("directory = \"d.toml\"\n[backend]\ntls_ca = %q\n[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n[[protocol]]\nname = \"owa\"\npath_prefix = \"/owa\"\nbackend_port = 1\n", tc.path)
		cfg, err := config.Parse("f.toml", []byte(cfgText))
		if err != nil {
			t.Fatal(err)
		}
		dir, err := directory.Parse("d.toml", []byte(fmt.Sprintf("[[site]]\nname = \"s\"\n[[server]]\nname = %q\naddress = %q\nsite = \"s\"\ntls = true\n", m.name, m.addr)))
		if err != nil {
			t.Fatal(err)
		}
		_, err = gateway.New(cfg, dir, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "f.toml:3: backend.tls_ca: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("tls_ca %s: error %v, want f.toml:3: backend.tls_ca: ...%s", tc.path, err, tc.want)
		}
	}
}

func readHTTP(c *gwtest.Client) (*http.Response, error) {
	return http.ReadResponse(c.R, &http.Request{Method: "GET"})
}

// TestUpstreamTLSStreams sends large responses (many records, more than the
// plaintext bound), an upload, and a response after which the server closes,
// over a TLS backend connection.
func TestUpstreamTLSStreams(t *testing.T) {
	tmp := t.TempDir()
	ca := newTestCA(t, tmp, "backend-ca")
	m := startTLSMailboxd(t, "mbx-tls", ca.leaf(t, "mbx-tls.example.test"))
	plain := testbed.StartMailboxd(t, "mbx-plain")
	g := upstreamGateway(t, m, "", fmt.Sprintf("tls_ca = %q", ca.pem), plain)
	c := g.Dial(t)
	const size = 3 << 20
	for _, extra := range []string{"", "X-Mailboxd-Chunked: true\r\n"} {
		c.Send(t, fmt.Sprintf("GET /owa/big HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\nX-Mailboxd-Size: %d\r\n%s\r\n", size, extra))
		resp, body := readResponse(t, c, "GET")
		if resp.StatusCode != 200 || len(body) != size {
			t.Fatalf("%q: status %d, %d bytes, want 200 and %d", extra, resp.StatusCode, len(body), size)
		}
		checkPattern(t, body)
	}
	upload := strings.Repeat("0123456789abcdef", 20000) // 320000 bytes, written exclusively
	c.Send(t, fmt.Sprintf("POST /owa/up HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\nContent-Length: %d\r\n\r\n%s", len(upload), upload))
	resp, body := readResponse(t, c, "POST")
	if e := echoOf(t, body); resp.StatusCode != 200 || e.BodyBytes != int64(len(upload)) || e.Server != m.name {
		t.Fatalf("upload: status %d, echo %+v", resp.StatusCode, e)
	}
	// The server closes its end (close_notify, FIN) after answering; the
	// pool dials again and the next requests are served.
	for i := 0; i < 5; i++ {
		c.Send(t, "GET /owa/ HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\nX-Mailboxd-Close: true\r\n\r\n")
		if resp, body := readResponse(t, c, "GET"); resp.StatusCode != 200 || echoOf(t, body).Server != m.name {
			t.Fatalf("close %d: status %d: %s", i, resp.StatusCode, body)
		}
	}
	if b := backendOf(t, g, m.name); b.Failed != 0 || b.DialFailures != 0 {
		t.Errorf("TLS backend counters %+v", b)
	}
}

// TestUpstreamTLSCAReload: a reload (SIGHUP) reads [backend] tls_ca
// again; new backend connections are verified against the new bundle. A
// bad bundle is refused with an error naming the key.
func TestUpstreamTLSCAReload(t *testing.T) {
	tmp := t.TempDir()
	oldCA := newTestCA(t, tmp, "old-ca")
	newCA := newTestCA(t, tmp, "new-ca")
	m := startTLSMailboxd(t, "mbx-tls", newCA.leaf(t, "mbx-tls.example.test"))
	plain := testbed.StartMailboxd(t, "mbx-plain")
	caFile := filepath.Join(tmp, "backend-ca.pem")
	install := func(data []byte) {
		tmpFile := caFile + ".tmp"
		if err := os.WriteFile(tmpFile, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmpFile, caFile); err != nil {
			t.Fatal(err)
		}
	}
	read := func(path string) []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	install(read(oldCA.pem))
	g := upstreamGateway(t, m, `tls_server_name = "mbx-tls.example.test"`, fmt.Sprintf("tls_ca = %q", caFile), plain)
	get := func() int {
		c := g.Dial(t)
		defer c.Close()
		c.Send(t, "GET /owa/ HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\n\r\n")
		r, err := readResp(c)
		if err != nil {
			t.Fatal(err)
		}
		return r.status
	}
	if s := get(); s != 502 {
		t.Fatalf("status %d with the old CA, want 502", s)
	}
	if st := g.Snapshot().BackendTLS; st["failure.bad_certificate"] == 0 {
		t.Fatalf("backend TLS counters %v", st)
	}

	// Unchanged file: nothing to do, no error.
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	install(append(read(oldCA.pem), read(newCA.pem)...))
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	// Every loop's pool redials after its backoff; until then a loop whose
	// pool is still down answers 502 at once. Wait for a run of 200s on
	// new client connections (which land on either loop).
	deadline := time.Now().Add(10 * time.Second)
	for ok := 0; ok < 8; {
		if get() == 200 {
			ok++
			continue
		}
		ok = 0
		if time.Now().After(deadline) {
			t.Fatalf("no run of 200s after the CA reload; backend TLS counters %v", g.Snapshot().BackendTLS)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// That 200 came through one loop's pool; let the other loop's end
	// its backoff too (reconnect_max is 200ms).
	time.Sleep(500 * time.Millisecond)

	install([]byte("not a certificate\n"))
	if err := g.Reload(); err == nil || !strings.Contains(err.Error(), "backend.tls_ca") || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("reload of a bad bundle: %v", err)
	}
	if s := get(); s != 200 {
		t.Errorf("status %d after a refused reload", s)
	}
}
