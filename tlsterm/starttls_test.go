package tlsterm

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/logging"
)

// starttlsServer speaks plaintext first (a greeting, then lines) and
// upgrades the connection in place on "STARTTLS\n", as IMAP's STARTTLS and
// POP3's STLS do (package mailproxy): AcceptFrom on a gnet.Conn that has
// been open and used in plaintext. After the upgrade it echoes over TLS.
type starttlsServer struct {
	echoServer
}

func (s *starttlsServer) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	s.opened.Add(1)
	return []byte("hello\n"), gnet.None
}

func (s *starttlsServer) OnTraffic(c gnet.Conn) gnet.Action {
	if _, ok := c.Context().(*Conn); ok {
		return s.echoServer.OnTraffic(c)
	}
	buf, _ := c.Peek(-1)
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		return gnet.None
	}
	if string(buf[:i]) != "STARTTLS" {
		_, _ = c.Write([]byte("plain " + string(buf[:i+1])))
		_, _ = c.Discard(i + 1)
		return gnet.None
	}
	_, _ = c.Write([]byte("go\n"))
	// Whatever follows the command was sent before the answer: discarded,
	// never taken as TLS (RFC 2595 section 3.1).
	_, _ = c.Discard(c.InboundBuffered())
	c.SetContext(s.term.AcceptFrom(c, c.RemoteAddr()))
	return gnet.None
}

func TestAcceptFromOpenPlaintextConn(t *testing.T) {
	certs := newStandardCerts(t)
	term := newTerm(t, Settings{Certificates: certs.pairs})
	s := &starttlsServer{echoServer{term: term, booted: make(chan struct{})}}
	addr := freeAddr(t)
	errc := make(chan error, 1)
	go func() {
		errc <- gnet.Run(s, "tcp://"+addr, gnet.WithMulticore(true), gnet.WithNumEventLoop(2),
			gnet.WithLogLevel(logging.ErrorLevel), gnet.WithLogger(quietGnet{}))
	}()
	select {
	case <-s.booted:
	case err := <-errc:
		t.Fatalf("gnet.Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("gnet did not boot")
	}
	t.Cleanup(func() { _ = s.eng.Stop(t.Context()); <-errc })
	var nc net.Conn
	var err error
	for range 100 {
		if nc, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(nc)
	expectLine := func(want string) {
		t.Helper()
		if l, err := r.ReadString('\n'); err != nil || l != want {
			t.Fatalf("got %q (%v), want %q", l, err, want)
		}
	}
	expectLine("hello\n")
	_, _ = nc.Write([]byte("ping\n"))
	expectLine("plain ping\n")
	_, _ = nc.Write([]byte("STARTTLS\ninjected\n"))
	expectLine("go\n")
	time.Sleep(20 * time.Millisecond) // the injected line reaches the server before the ClientHello
	tc := tls.Client(nc, certs.clientConfig("imap.example.test"))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake on the upgraded connection: %v", err)
	}
	if err := roundTrip(tc, "over tls\n"); err != nil {
		t.Fatal(err)
	}
	// The injected plaintext was not read as TLS: a second round trip
	// works and the session is intact.
	if err := roundTrip(tc, "again\n"); err != nil {
		t.Fatal(err)
	}
}
