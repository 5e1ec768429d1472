package gateway_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"frontdoor/internal/gwtest"
	"frontdoor/internal/testbed"
	"frontdoor/tlsterm"
)

// tlsClient dials the gateway's TLS listener, trusting only the
// certificate in certDir.
func tlsClient(t *testing.T, g *gwtest.Gateway, certDir string, cache tls.ClientSessionCache) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(certDir, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := tls.Dial("tcp", g.Addr, &tls.Config{RootCAs: pool, ServerName: "localhost", ClientSessionCache: cache})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

func tlsGet(t *testing.T, c *tls.Conn, br *bufio.Reader, extra string) (*http.Response, []byte) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(c, "GET /owa/ HTTP/1.1\r\nHost: localhost\r\nX-AnchorMailbox: alice@example.test\r\n"+extra+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestTLSDataPath(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	dir := t.TempDir()
	g := gwtest.Start(t, gwtest.Options{TLS: true, CertDir: dir, ListenerExtra: "hsts = \"max-age=600\"\n"}, m1)
	c, br := tlsClient(t, g, dir, nil)
	if st := c.ConnectionState(); st.NegotiatedProtocol != "" && st.NegotiatedProtocol != "http/1.1" {
		t.Fatalf("ALPN %q", st.NegotiatedProtocol)
	}
	resp, body := tlsGet(t, c, br, "")
	e := echoOf(t, body)
	if resp.StatusCode != 200 || e.Server != "mbx1" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if h := resp.Header.Get("Strict-Transport-Security"); h != "max-age=600" {
		t.Errorf("HSTS %q", h)
	}
	var proto string
	for _, kv := range e.Headers {
		if kv[0] == "X-Forwarded-Proto" {
			proto = kv[1]
		}
	}
	if proto != "https" {
		t.Errorf("X-Forwarded-Proto %q", proto)
	}
	// Go clients negotiate the post-quantum hybrid group by default; the
	// gateway's counters say so.
	if st := g.Snapshot().TLS["http"]; st["handshakes"] != 1 || st["post_quantum"] != 1 || st["version.tls1.3"] != 1 {
		t.Errorf("TLS counters: %v", st)
	}

	// curl (OpenSSL) on the gateway's own TLS 1.3 record layer: a 1 MiB
	// upload and a 1 MiB download, in full-size records both ways.
	t.Run("curl", func(t *testing.T) {
		curl, err := exec.LookPath("curl")
		if err != nil {
			t.Skip("no curl")
		}
		upload := filepath.Join(t.TempDir(), "upload")
		data := bytes.Repeat([]byte("frontdoor "), 100<<10) // 1,024,000 bytes
		if err := os.WriteFile(upload, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(g.Addr)
		base := []string{"-sS", "--max-time", "30", "--tlsv1.3", "--cacert", filepath.Join(dir, "cert.pem"),
			"--resolve", "localhost:" + port + ":127.0.0.1", "-H", "X-AnchorMailbox: alice@example.test"}
		url := "https://localhost:" + port + "/owa/"
		out, err := exec.Command(curl, append(base, "--data-binary", "@"+upload, url)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl upload: %v: %s", err, out)
		}
		sum := sha256.Sum256(data)
		if e := echoOf(t, out); e.BodyBytes != int64(len(data)) || e.BodySHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("mailboxd got %d bytes (sha256 %s), want %d", e.BodyBytes, e.BodySHA256, len(data))
		}
		out, err = exec.Command(curl, append(base, "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
			"-H", "X-Mailboxd-Size: 1048576", url)...).CombinedOutput()
		if err != nil || string(out) != "200 1048576" {
			t.Errorf("curl download: %v: %q, want \"200 1048576\"", err, out)
		}
		if st := g.Snapshot().TLS["http"]; st["own_records"] < 3 || st["record_alerts"] != 0 {
			t.Errorf("own_records %d (want the Go client's and curl's two), record_alerts %d", st["own_records"], st["record_alerts"])
		}
	})

	t.Run("pipelined", func(t *testing.T) {
		var req bytes.Buffer
		for i := 0; i < 10; i++ {
			fmt.Fprintf(&req, "GET /owa/?i=%d HTTP/1.1\r\nHost: localhost\r\nX-AnchorMailbox: alice@example.test\r\n\r\n", i)
		}
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		if _, err := c.Write(req.Bytes()); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10; i++ {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			if e := echoOf(t, b); e.Target != fmt.Sprintf("/owa/?i=%d", i) {
				t.Fatalf("response %d for %q", i, e.Target)
			}
		}
	})
	t.Run("1 MiB both ways", func(t *testing.T) {
		body := bytes.Repeat([]byte("frontdoor-tls-"), 1<<20/14+1)[:1<<20]
		sum := sha256.Sum256(body)
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c, "POST /owa/up HTTP/1.1\r\nHost: localhost\r\nX-AnchorMailbox: alice@example.test\r\nContent-Length: %d\r\n\r\n", len(body))
		if _, err := c.Write(body); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if e := echoOf(t, b); e.BodySHA256 != hex.EncodeToString(sum[:]) {
			t.Fatalf("upload arrived as %d bytes", e.BodyBytes)
		}
		resp, got := tlsGet(t, c, br, "X-Mailboxd-Size: 1048576\r\n")
		if resp.StatusCode != 200 || len(got) != 1<<20 || !strings.HasPrefix(string(got), "0123456789abcdef") {
			t.Fatalf("download: %d, %d bytes", resp.StatusCode, len(got))
		}
	})
}

// Reloading certificates keeps open connections and serves new handshakes
// with the new certificate; a corrupt file is refused and the old one stays.
func TestTLSCertificateReload(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	dir := t.TempDir()
	g := gwtest.Start(t, gwtest.Options{TLS: true, CertDir: dir}, m1)
	old, br := tlsClient(t, g, dir, nil)
	if resp, _ := tlsGet(t, old, br, ""); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	oldSerial := old.ConnectionState().PeerCertificates[0].SerialNumber

	// A new certificate in place of the old one.
	next := t.TempDir()
	if _, _, err := tlsterm.WriteSelfSigned(next, []string{"localhost"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"cert.pem", "key.pem"} {
		b, _ := os.ReadFile(filepath.Join(next, f))
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if resp, _ := tlsGet(t, old, br, ""); resp.StatusCode != 200 {
		t.Fatalf("open keep-alive connection after reload: %d", resp.StatusCode)
	}
	fresh, fbr := tlsClient(t, g, dir, nil)
	if fresh.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(oldSerial) == 0 {
		t.Fatal("new handshake still gets the old certificate")
	}
	if resp, _ := tlsGet(t, fresh, fbr, ""); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	newSerial := fresh.ConnectionState().PeerCertificates[0].SerialNumber

	// A corrupt certificate file: refused, the current one stays.
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), []byte("-----BEGIN CERTIFICATE-----\nnot base64\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err == nil || !strings.Contains(err.Error(), "cert.pem") {
		t.Fatalf("corrupt file accepted or error without the file name: %v", err)
	}
	pem, _ := os.ReadFile(filepath.Join(next, "cert.pem"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := tls.Dial("tcp", g.Addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("handshake after refused reload: %v", err)
	}
	defer c.Close()
	if c.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(newSerial) != 0 {
		t.Fatal("refused reload replaced the certificate")
	}
}

// Two gateways of an array share a ticket key file: a session from one
// resumes on the other.
func TestTLSTicketsAcrossInstances(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	keys := filepath.Join(t.TempDir(), "tickets.keys")
	if err := tlsterm.CreateOrRotateKeyFile(keys, time.Now(), 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	extra := fmt.Sprintf("[tls]\nticket_key_file = %q\n", keys)
	a := gwtest.Start(t, gwtest.Options{TLS: true, CertDir: dir, Extra: extra}, m1)
	b := gwtest.Start(t, gwtest.Options{TLS: true, CertDir: dir, Extra: extra}, m1)
	cache := tls.NewLRUClientSessionCache(8)
	ca, cbr := tlsClient(t, a, dir, cache)
	// TLS 1.3 tickets arrive after the handshake: a request makes the
	// client read them.
	if resp, _ := tlsGet(t, ca, cbr, ""); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	ca.Close()
	cb, bbr := tlsClient(t, b, dir, cache)
	if !cb.ConnectionState().DidResume {
		t.Fatal("a session from instance A did not resume on instance B")
	}
	if resp, _ := tlsGet(t, cb, bbr, ""); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
}

// A plaintext request to the TLS listener is answered 400, saying the port
// expects TLS, and the connection is closed; /stats counts it.
func TestPlainHTTPOnTLSListener(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	dir := t.TempDir()
	g := gwtest.Start(t, gwtest.Options{TLS: true, CertDir: dir}, m1)
	c, err := net.DialTimeout("tcp", g.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(c, "GET /owa/ HTTP/1.1\r\nHost: localhost\r\nX-AnchorMailbox: alice@example.test\r\n\r\n")
	raw, err := io.ReadAll(c) // until the gateway closes
	if err != nil {
		t.Fatalf("%v after %q", err, raw)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "expects TLS") {
		t.Errorf("%d %q", resp.StatusCode, body)
	}
	if st := g.Snapshot().TLS["http"]; st["failure."+tlsterm.FailPlainHTTP] != 1 || st["failure."+tlsterm.FailBadClientHello] != 0 || st["handshakes"] != 0 {
		t.Errorf("TLS counters: %v", st)
	}
	// The listener still serves TLS.
	tc, br := tlsClient(t, g, dir, nil)
	if resp, _ := tlsGet(t, tc, br, ""); resp.StatusCode != 200 {
		t.Errorf("TLS request after the plaintext one: %d", resp.StatusCode)
	}
}
