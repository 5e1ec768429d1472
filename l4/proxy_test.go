package l4

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
	pp "github.com/pires/go-proxyproto"
)

// echoAcceptor greets each client with the address l4 gives it, then echoes
// what it sends: what the protocol layer sees once l4 is done with the
// PROXY header.
type echoAcceptor struct{}

func (echoAcceptor) NewLoop(*Loop) {}
func (echoAcceptor) Accept(cc ClientConn) (ClientHandler, []byte, gnet.Action) {
	return &echoConn{ClientConn: cc}, []byte("remote " + cc.Remote.String() + " " + cc.RemoteAddr().String() + "\n"), gnet.None
}
func (echoAcceptor) Refusal(*Listener, string) []byte { return nil }
func (echoAcceptor) Release(*Loop)                    {}

type echoConn struct{ ClientConn }

func (e *echoConn) OnTraffic(c gnet.Conn) gnet.Action {
	b, _ := c.Peek(-1)
	_, _ = c.Write(b)
	_, _ = c.Discard(len(b))
	return gnet.None
}
func (e *echoConn) OnClose(gnet.Conn, error) {}
func (e *echoConn) Drain(bool)               { _ = e.Conn.Close() }

// trustedPeer is the address trusted test clients connect from; others
// connect from 127.0.0.1. Linux routes all of 127.0.0.0/8 to loopback.
var trustedPeer = netip.MustParseAddr("127.0.0.2")

type proxyFixture struct {
	srv  *Server
	addr string
	ln   *Listener
	stop func()
}

func startProxyServer(t *testing.T, mode ProxyMode, timeout time.Duration) *proxyFixture {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	srv, err := NewServer(Options{
		Listeners: []ListenerSpec{{Name: "pp", Address: addr,
			Proxy: ProxyPolicy{Mode: mode, From: []netip.Prefix{netip.PrefixFrom(trustedPeer, 32)}}}},
		Loops:              2,
		SweepInterval:      10 * time.Millisecond,
		ProxyHeaderTimeout: timeout,
		Log:                slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, echoAcceptor{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- srv.Serve(ctx, func() DrainOptions { return DrainOptions{Timeout: time.Second} }, func() { close(ready) })
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start")
	}
	f := &proxyFixture{srv: srv, addr: addr, ln: srv.Listeners()[0]}
	f.stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("server did not stop")
		}
	}
	t.Cleanup(func() { f.stop() })
	return f
}

// dial connects from trustedPeer or, when trusted is false, 127.0.0.1.
func (f *proxyFixture) dial(t *testing.T, trusted bool) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if trusted {
		d.LocalAddr = &net.TCPAddr{IP: trustedPeer.AsSlice()}
	}
	c, err := d.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// greeting reads the echo server's first line: the client address l4
// handed over, as a netip.AddrPort and as a net.Addr.
func greeting(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("no greeting: %v", err)
	}
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "remote" || f[1] != f[2] {
		t.Fatalf("greeting %q", line)
	}
	return f[1]
}

// expectClosed checks that the server closes the connection without
// sending anything.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 64))
	if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d bytes, %v; want the connection closed", n, err)
	}
}

func header(t *testing.T, version byte, src, dst string) []byte {
	t.Helper()
	h := pp.HeaderProxyFromAddrs(version, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)), net.TCPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func echo(t *testing.T, c net.Conn, br *bufio.Reader, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
		t.Fatalf("echo %q, %v; want %q", got, err, msg)
	}
}

func TestProxyRequired(t *testing.T) {
	f := startProxyServer(t, ProxyRequired, 300*time.Millisecond)
	st := &f.ln.Proxy

	t.Run("v1 and data in one segment", func(t *testing.T) {
		c, br := f.dial(t, true)
		h := header(t, 1, "203.0.113.9:40000", "198.51.100.1:443")
		if _, err := c.Write(append(h, "ping\n"...)); err != nil {
			t.Fatal(err)
		}
		if got := greeting(t, br); got != "203.0.113.9:40000" {
			t.Fatalf("client %s", got)
		}
		if line, _ := br.ReadString('\n'); line != "ping\n" {
			t.Fatalf("echo %q: the bytes after the header must reach the protocol, once", line)
		}
	})
	t.Run("v2 TCP6 with TLVs", func(t *testing.T) {
		c, br := f.dial(t, true)
		h := pp.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(netip.MustParseAddrPort("[2001:db8::7]:5555")),
			net.TCPAddrFromAddrPort(netip.MustParseAddrPort("[2001:db8::1]:443")))
		if err := h.SetTLVs([]pp.TLV{{Type: pp.PP2_TYPE_AUTHORITY, Value: []byte("mail.example.test")}, {Type: pp.PP2_TYPE_NOOP, Value: make([]byte, 100)}}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.WriteTo(c); err != nil {
			t.Fatal(err)
		}
		if got := greeting(t, br); got != "[2001:db8::7]:5555" {
			t.Fatalf("client %s", got)
		}
		echo(t, c, br, "hello")
	})
	t.Run("v2 IPv4-mapped source is unmapped", func(t *testing.T) {
		c, br := f.dial(t, true)
		if _, err := c.Write(header(t, 2, "[::ffff:192.0.2.44]:1000", "[2001:db8::1]:443")); err != nil {
			t.Fatal(err)
		}
		if got := greeting(t, br); got != "192.0.2.44:1000" {
			t.Fatalf("client %s", got)
		}
	})
	t.Run("split byte by byte", func(t *testing.T) {
		c, br := f.dial(t, true)
		h := header(t, 2, "192.0.2.33:1234", "198.51.100.1:443")
		for i := range h {
			if _, err := c.Write(h[i : i+1]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Millisecond)
		}
		if got := greeting(t, br); got != "192.0.2.33:1234" {
			t.Fatalf("client %s", got)
		}
		echo(t, c, br, "after")
	})
	t.Run("v2 LOCAL and v1 UNKNOWN use the peer", func(t *testing.T) {
		for _, raw := range [][]byte{
			append([]byte("\r\n\r\n\x00\r\nQUIT\n"), 0x20, 0x00, 0x00, 0x00),
			[]byte("PROXY UNKNOWN\r\n"),
		} {
			c, br := f.dial(t, true)
			if _, err := c.Write(raw); err != nil {
				t.Fatal(err)
			}
			if got := greeting(t, br); got != c.LocalAddr().String() {
				t.Fatalf("client %s, want the peer %s", got, c.LocalAddr())
			}
		}
	})
	if st.V1.Load() != 1 || st.V2.Load() != 3 || st.Local.Load() != 1 || st.Unknown.Load() != 1 {
		t.Errorf("accepted counters %v", st.Snapshot())
	}

	for _, tc := range []struct {
		name   string
		send   string
		reason int
	}{
		{"no header", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", ProxyMissing},
		{"TLS without a header", "\x16\x03\x01\x00\xa5\x01", ProxyMissing},
		{"malformed v1", "PROXY TCP4 192.0.2.1 198.51.100.1 080 443\r\nGET", ProxyMalformed},
		{"bare LF", "PROXY UNKNOWN\n", ProxyMalformed},
		{"v1 too long", "PROXY UNKNOWN " + strings.Repeat("x", 120), ProxyTooLong},
		{"v2 too long", "\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff", ProxyTooLong},
		{"v2 version 3", "\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c", ProxyUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := st.Rejected[tc.reason].Load()
			c, _ := f.dial(t, true)
			if _, err := io.WriteString(c, tc.send); err != nil {
				t.Fatal(err)
			}
			expectClosed(t, c)
			if got := st.Rejected[tc.reason].Load(); got != before+1 {
				t.Errorf("rejected.%s = %d, want %d", proxyRejectNames[tc.reason], got, before+1)
			}
		})
	}
	t.Run("slow header times out", func(t *testing.T) {
		c, _ := f.dial(t, true)
		if _, err := io.WriteString(c, "PROXY TCP4 192.0.2.1"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		expectClosed(t, c)
		if d := time.Since(start); d < 250*time.Millisecond {
			t.Errorf("closed after %v, before the 300ms timeout", d)
		}
		if st.Rejected[ProxyTimeout].Load() != 1 {
			t.Errorf("counters %v", st.Snapshot())
		}
		if n := f.srv.Stats().Counter("timeout_proxy_header").Load(); n != 1 {
			t.Errorf("timeout_proxy_header = %d", n)
		}
	})
	t.Run("untrusted peer closed at accept", func(t *testing.T) {
		c, _ := f.dial(t, false)
		_, _ = c.Write(header(t, 1, "192.0.2.1:1", "192.0.2.2:2"))
		expectClosed(t, c)
		if st.Rejected[ProxyUntrusted].Load() != 1 {
			t.Errorf("counters %v", st.Snapshot())
		}
	})
	waitOpen(t, f.srv, 0)
}

func TestProxyOptional(t *testing.T) {
	f := startProxyServer(t, ProxyOptional, 300*time.Millisecond)
	st := &f.ln.Proxy

	t.Run("trusted with a header", func(t *testing.T) {
		c, br := f.dial(t, true)
		if _, err := c.Write(header(t, 2, "192.0.2.8:999", "198.51.100.1:443")); err != nil {
			t.Fatal(err)
		}
		if got := greeting(t, br); got != "192.0.2.8:999" {
			t.Fatalf("client %s", got)
		}
	})
	t.Run("trusted without a header", func(t *testing.T) {
		c, br := f.dial(t, true)
		if _, err := io.WriteString(c, "PUT"); err != nil {
			t.Fatal(err)
		}
		if got := greeting(t, br); got != c.LocalAddr().String() {
			t.Fatalf("client %s", got)
		}
		if b, err := br.Peek(3); err != nil || string(b) != "PUT" {
			t.Fatalf("the sniffed bytes must reach the protocol: %q, %v", b, err)
		}
	})
	t.Run("untrusted without a header is direct", func(t *testing.T) {
		c, br := f.dial(t, false)
		if _, err := io.WriteString(c, "POST"); err != nil {
			t.Fatal(err)
		}
		if got := greeting(t, br); got != c.LocalAddr().String() {
			t.Fatalf("client %s", got)
		}
		if b, err := br.Peek(4); err != nil || string(b) != "POST" {
			t.Fatalf("echo %q, %v", b, err)
		}
	})
	t.Run("untrusted with a header is closed", func(t *testing.T) {
		for _, v := range []byte{1, 2} {
			c, _ := f.dial(t, false)
			if _, err := c.Write(header(t, v, "192.0.2.66:1", "198.51.100.1:443")); err != nil {
				t.Fatal(err)
			}
			expectClosed(t, c)
		}
	})
	t.Run("trusted malformed is closed", func(t *testing.T) {
		c, _ := f.dial(t, true)
		_, _ = io.WriteString(c, "PROXY TCP9\r\n")
		expectClosed(t, c)
	})
	t.Run("silent client times out", func(t *testing.T) {
		c, _ := f.dial(t, false)
		expectClosed(t, c)
	})
	want := map[string]int64{"v1": 0, "v2": 1, "local": 0, "unknown": 0, "direct": 2, "rejected.untrusted": 2,
		"rejected.missing": 0, "rejected.malformed": 1, "rejected.too_long": 0, "rejected.unsupported": 0, "rejected.timeout": 1}
	if got := st.Snapshot(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("counters\n%v\nwant\n%v", got, want)
	}
	waitOpen(t, f.srv, 0)
}

// A drain closes connections still waiting for their header at once.
func TestProxyDrain(t *testing.T) {
	f := startProxyServer(t, ProxyRequired, time.Minute)
	c, _ := f.dial(t, true)
	_, _ = io.WriteString(c, "PROXY TCP4 ")
	waitOpen(t, f.srv, 1)
	go f.srv.Drain(DrainOptions{Timeout: 5 * time.Second})
	expectClosed(t, c)
	waitOpen(t, f.srv, 0)
}

func waitOpen(t *testing.T, s *Server, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.OpenClients() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d open clients, want %d", s.OpenClients(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewServerProxyChecks(t *testing.T) {
	base := Options{ProxyHeaderTimeout: time.Second}
	for _, tc := range []struct {
		opts Options
		spec ListenerSpec
		want string
	}{
		{base, ListenerSpec{Name: "a", Address: "127.0.0.1:1", Proxy: ProxyPolicy{Mode: ProxyRequired}}, "without trusted networks"},
		{Options{}, ListenerSpec{Name: "a", Address: "127.0.0.1:1", Proxy: ProxyPolicy{Mode: ProxyOptional, From: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}, "without a header timeout"},
	} {
		tc.opts.Listeners = []ListenerSpec{tc.spec}
		if _, err := NewServer(tc.opts, echoAcceptor{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.spec, err, tc.want)
		}
	}
}
