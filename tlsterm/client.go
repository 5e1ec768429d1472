package tlsterm

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// Client is the client side of tlsterm: connections the gateway opens to
// its backends over TLS. The handshake runs on the dialling goroutine over
// the real socket, blocking, with a deadline; afterwards the socket is
// enrolled on an event loop and records are read and written there through
// the same *Conn the server side uses.
//
// That works because crypto/tls is bound to the wire (a *Conn seen as a
// net.Conn), not to the socket: during the client handshake the wire
// forwards to the dialled net.Conn, and once Attach has given it the
// loop's gnet.Conn it reads gnet's inbound buffer like a server Conn. Bytes
// crypto/tls read past the handshake stay in its own input buffer; bytes it
// did not read stay in the kernel's socket buffer, which gnet reads from
// the duplicated descriptor. Nothing is lost at the switch.
type Client struct {
	t Terminator // only maxPlain and log are used
}

// NewClient returns a Client whose connections buffer up to maxPlaintext
// decrypted bytes before decryption waits for the application to consume
// (the plaintext bound of Settings.MaxPlaintextBuffer). log may be nil.
func NewClient(maxPlaintext int, log *slog.Logger) *Client {
	if log == nil {
		log = slog.Default()
	}
	if maxPlaintext <= 0 {
		maxPlaintext = 64 << 10
	}
	return &Client{t: Terminator{maxPlain: maxPlaintext, log: log}}
}

// ClientConfig returns a tls.Config for connections to one server: TLS 1.2
// or later (TLS 1.2 with the AEAD suites of the server side), the server
// certificate verified against roots (the system roots when nil) for
// serverName, and a small session cache so reconnects resume.
func ClientConfig(roots *x509.CertPool, serverName string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		CipherSuites:       tls12Suites,
		RootCAs:            roots,
		ServerName:         serverName,
		NextProtos:         []string{"http/1.1"},
		ClientSessionCache: tls.NewLRUClientSessionCache(16),
	}
}

// LoadCAFile reads a PEM bundle of CA certificates.
func LoadCAFile(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseCAs(path, data)
}

// ParseCAs parses data, a PEM bundle of CA certificates read from path
// (named in the error).
func ParseCAs(path string, data []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificate found", path)
	}
	return pool, nil
}

// Handshake runs a TLS client handshake over nc, which must be a fresh
// connection, within timeout. It blocks: call it from the dialling
// goroutine, never from a loop. On success the returned Conn is ready for
// Attach once nc has been enrolled on a loop; nc itself must not be used
// again except to enroll or close it. On failure nc is left to the caller.
func (cl *Client) Handshake(nc net.Conn, cfg *tls.Config, timeout time.Duration) (*Conn, error) {
	c := &Conn{t: &cl.t}
	h := &handshake{c: c, alert: -1, nc: nc, local: nc.LocalAddr(), remote: nc.RemoteAddr()}
	c.hs = h
	c.tc = tls.Client((*wire)(c), cfg)
	if timeout > 0 {
		_ = nc.SetDeadline(time.Now().Add(timeout))
	}
	err := c.tc.Handshake()
	_ = nc.SetDeadline(time.Time{})
	if err != nil {
		reason := classify(err, errors.Is(err, os.ErrDeadlineExceeded), h.alert)
		cl.t.stats.fail(reason)
		cl.t.log.Debug("backend tls handshake failed", "remote", addrString(h.remote), "reason", reason, "err", err)
		return nil, err
	}
	st := c.tc.ConnectionState()
	cl.t.stats.success(&st)
	c.hs = nil
	c.flags |= fOpen
	return c, nil
}

// Stats returns the client's handshake counters, as Terminator.Stats does
// for a listener. The failure reasons read from the client's side:
// bad_certificate is a server certificate that failed verification (CA or
// name), peer_alert a server that refused the handshake with an alert,
// timeout a handshake that did not finish within its timeout. Running and
// Queued stay 0: client handshakes run on the dialling goroutine.
func (cl *Client) Stats() *Stats { return &cl.t.stats }

// Attach gives a Conn returned by Handshake the gnet connection its socket
// was enrolled as. Call it from OnOpen, before any other method.
func (c *Conn) Attach(gc gnet.Conn) { c.gc = gc }
