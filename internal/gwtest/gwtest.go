// Package gwtest runs a gateway in the test process, in front of reference
// mailbox servers running as separate processes (internal/testbed), so
// tests can drive it over loopback and read its counters directly.
package gwtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"frontdoor/directory"
	"frontdoor/gateway"
	"frontdoor/gateway/config"
	"frontdoor/internal/testbed"
)

// Gateway is a gateway serving on a loopback port for one test.
type Gateway struct {
	*gateway.Gateway
	Addr   string
	Config *config.Config
	Dir    *directory.Directory
	cancel context.CancelFunc
	done   chan error
}

// Options shapes the generated configuration.
type Options struct {
	// Loops is engine.loops (default 2).
	Loops int
	// Extra is TOML appended to the generated config (sections such as
	// [limits] or [timeouts]; the generated part sets only top-level keys,
	// [engine], the listener and the protocols).
	Extra string
	// Log receives the gateway's log; nil discards it.
	Log io.Writer
	// TLS makes the listener a TLS one with a self-signed certificate
	// generated into CertDir (a temp dir when empty).
	TLS bool
	// CertDir holds the TLS listener's cert.pem and key.pem.
	CertDir string
	// ListenerExtra is TOML appended to the [[listener]] table (e.g.
	// hsts = "max-age=60").
	ListenerExtra string
	// ProtocolExtra is TOML appended to every [[protocol]] table (e.g.
	// auth = ["basic"]).
	ProtocolExtra string
	// Directory, when set, rewrites the generated directory file (to
	// add kerberos_principals to a user, say).
	Directory func(string) string
}

// Protocols served by every generated config, all on the mailbox servers'
// one port.
var Protocols = []string{"owa:/owa", "ews:/EWS", "mapi:/mapi", "eas:/Microsoft-Server-ActiveSync", "autodiscover:/autodiscover"}

// Start runs a gateway in front of servers: servers[0] holds DB01 (alice,
// carol), servers[1] (if any) DB02 (bob).
func Start(t testing.TB, opts Options, servers ...*testbed.Mailboxd) *Gateway {
	t.Helper()
	if opts.Loops == 0 {
		opts.Loops = 2
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort(t, "127.0.0.1"))
	var b strings.Builder
	fmt.Fprintf(&b, "directory = \"directory.toml\"\ngateway_id = \"gw-test\"\n[engine]\nloops = %d\n", opts.Loops)
	fmt.Fprintf(&b, "[[listener]]\nname = \"http\"\naddress = %q\n", addr)
	if opts.TLS {
		if opts.CertDir == "" {
			opts.CertDir = t.TempDir()
		}
		fmt.Fprintf(&b, "tls = true\ntls_self_signed = true\ncertificates = [{ cert = %q, key = %q }]\n",
			filepath.Join(opts.CertDir, "cert.pem"), filepath.Join(opts.CertDir, "key.pem"))
	}
	b.WriteString(opts.ListenerExtra)
	for _, p := range Protocols {
		name, prefix, _ := strings.Cut(p, ":")
		fmt.Fprintf(&b, "[[protocol]]\nname = %q\npath_prefix = %q\nbackend_port = 1\n%s\n", name, prefix, opts.ProtocolExtra)
	}
	b.WriteString(opts.Extra)
	cfg, err := config.Parse("gwtest.toml", []byte(b.String()))
	if err != nil {
		t.Fatalf("gwtest config: %v\n%s", err, b.String())
	}
	dirText := DirectoryTOML(servers...)
	if opts.Directory != nil {
		dirText = opts.Directory(dirText)
	}
	dir, err := directory.Parse("directory.toml", []byte(dirText))
	if err != nil {
		t.Fatalf("gwtest directory: %v", err)
	}
	return StartWith(t, cfg, dir, addr, opts.Log)
}

// Password is alice's and bob's password in the test directory, and
// PasswordHash its argon2id hash (the one examples/directory.toml uses).
const (
	Password     = "password"
	PasswordHash = "$argon2id$v=19$m=19456,t=2,p=1$U5J9Fqj5EA24ywokalMCeg$0Bhp1D65o9rqMC7NJ9KoPOGE0oJoU+ONw2I0l9cPTdo"
)

// DirectoryTOML is the test directory for the given servers.
func DirectoryTOML(servers ...*testbed.Mailboxd) string {
	var b strings.Builder
	b.WriteString("[[site]]\nname = \"site-a\"\nexternal_url = \"https://mail-a.example.test\"\n")
	for _, m := range servers {
		fmt.Fprintf(&b, "[[server]]\nname = %q\naddress = %q\nsite = \"site-a\"\n", m.Name(), m.Addr())
	}
	b.WriteString("[[database]]\nname = \"DB01\"\nactive = \"" + servers[0].Name() + "\"\n")
	b.WriteString("[[user]]\nlogin = \"alice\"\naddress = \"alice@example.test\"\naliases = [\"a.smith@example.test\"]\ndatabase = \"DB01\"\n")
	b.WriteString("password_hash = \"" + PasswordHash + "\"\n")
	b.WriteString("[[user]]\nlogin = \"carol\"\naddress = \"carol@example.test\"\ndatabase = \"DB01\"\n")
	if len(servers) > 1 {
		b.WriteString("[[database]]\nname = \"DB02\"\nactive = \"" + servers[1].Name() + "\"\n")
		b.WriteString("[[user]]\nlogin = \"bob\"\naddress = \"bob@example.test\"\ndatabase = \"DB02\"\n")
		b.WriteString("password_hash = \"" + PasswordHash + "\"\n")
	}
	return b.String()
}

// StartWith runs a gateway for a ready config whose single listener is addr.
func StartWith(t testing.TB, cfg *config.Config, dir *directory.Directory, addr string, logw io.Writer) *Gateway {
	t.Helper()
	if logw == nil {
		logw = io.Discard
	}
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelInfo}))
	g, err := gateway.New(cfg, dir, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gw := &Gateway{Gateway: g, Addr: addr, Config: cfg, Dir: dir, cancel: cancel, done: make(chan error, 1)}
	ready := make(chan struct{})
	go func() { gw.done <- g.Serve(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-gw.done:
		t.Fatalf("gateway did not start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not start in 10s")
	}
	t.Cleanup(func() { gw.Stop(t) })
	return gw
}

// Stop drains and stops the gateway (idempotent).
func (g *Gateway) Stop(t testing.TB) {
	if g.cancel == nil {
		return
	}
	g.cancel()
	g.cancel = nil
	select {
	case <-g.done:
	case <-time.After(30 * time.Second):
		t.Error("gateway did not stop within 30s")
	}
}

// Dial opens a client connection to the gateway.
func (g *Gateway) Dial(t testing.TB) *Client {
	t.Helper()
	c, err := net.DialTimeout("tcp", g.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &Client{Conn: c, R: bufio.NewReaderSize(c, 64<<10)}
}

// Client is a raw HTTP/1.1 client connection: tests write exact bytes.
type Client struct {
	net.Conn
	R *bufio.Reader
}

// Send writes raw bytes with a write deadline.
func (c *Client) Send(t testing.TB, s string) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatalf("send: %v", err)
	}
}
