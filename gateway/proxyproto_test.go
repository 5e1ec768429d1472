package gateway_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	pp "github.com/pires/go-proxyproto"

	"frontdoor/internal/gwtest"
	"frontdoor/internal/testbed"
)

// The load balancer of these tests connects from lbAddr, which the
// gateway trusts; anyone else connects from 127.0.0.1. Linux routes all
// of 127.0.0.0/8 to loopback.
const (
	lbAddr       = "127.0.0.2"
	proxyTrusted = "proxy_protocol_from = [\"127.0.0.2/32\"]\n"
)

// proxyDialer dials the gateway from src and, when version is 1 or 2,
// sends a PROXY protocol header naming client, written by go-proxyproto
// (a different implementation from the gateway's parser), as HAProxy's
// send-proxy does. With coalesce the header goes out in one write with
// the connection's first bytes (a request, a ClientHello).
func proxyDialer(src string, version byte, client string, coalesce bool) func(context.Context, string, string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil || version == 0 {
			return c, err
		}
		raw, err := pp.HeaderProxyFromAddrs(version, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(client)), c.RemoteAddr()).Format()
		if err != nil {
			c.Close()
			return nil, err
		}
		if coalesce {
			return &prefixConn{Conn: c, prefix: raw}, nil
		}
		if _, err := c.Write(raw); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
}

// prefixConn sends prefix with the first Write.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Write(p []byte) (int, error) {
	if c.prefix == nil {
		return c.Conn.Write(p)
	}
	b := append(c.prefix, p...)
	c.prefix = nil
	if _, err := c.Conn.Write(b); err != nil {
		return 0, err
	}
	return len(p), nil
}

// proxyHTTPClient is an HTTP client whose connections are proxyDialer's.
func proxyHTTPClient(src string, version byte, client string, coalesce bool) *http.Client {
	return &http.Client{
		Timeout: 15 * time.Second,
		Transport: &http.Transport{DialContext: proxyDialer(src, version, client, coalesce), MaxIdleConnsPerHost: 1,
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
}

// rawFrom opens a raw connection to the gateway from src.
func rawFrom(t *testing.T, g *gwtest.Gateway, src string) *gwtest.Client {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", g.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &gwtest.Client{Conn: c, R: bufio.NewReader(c)}
}

// xffOf returns the X-Forwarded-For and X-Forwarded-Proto mailboxd saw.
func xffOf(t *testing.T, body string) (xff, proto string) {
	t.Helper()
	xff, n := echoHeader(t, body, "X-Forwarded-For")
	if n != 1 {
		t.Fatalf("%d X-Forwarded-For fields at the backend", n)
	}
	proto, _ = echoHeader(t, body, "X-Forwarded-Proto")
	return xff, proto
}

func TestProxyProtocolPlaintext(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	var log syncBuffer
	g := gwtest.Start(t, gwtest.Options{
		ListenerExtra: "proxy_protocol = \"required\"\n" + proxyTrusted,
		Extra:         "[timeouts]\nheader_read = \"500ms\"\n",
		Log:           &log,
	}, m1)
	url := "http://" + g.Addr + "/owa/"
	counters := func() map[string]int64 { return g.Snapshot().Proxy["http"] }

	for _, tc := range []struct {
		name     string
		version  byte
		client   string
		coalesce bool
	}{
		{"v1", 1, "203.0.113.7:51000", false},
		{"v2", 2, "198.51.100.23:40000", false},
		{"v2 IPv6, with the first request", 2, "[2001:db8::55]:443", true},
		{"v1 with the first request", 1, "192.0.2.200:1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := proxyHTTPClient(lbAddr, tc.version, tc.client, tc.coalesce)
			defer c.CloseIdleConnections()
			want := netip.MustParseAddrPort(tc.client).Addr().String()
			// Two requests on one keep-alive connection: the address
			// holds for the connection's life.
			for i := 0; i < 2; i++ {
				r := do(t, c, "GET", url, "X-AnchorMailbox", "alice@example.test")
				if r.status != 200 {
					t.Fatalf("status %d: %s", r.status, r.body)
				}
				if xff, proto := xffOf(t, r.body); xff != want || proto != "http" {
					t.Fatalf("X-Forwarded-For %q, X-Forwarded-Proto %q; want %q, http", xff, proto, want)
				}
			}
		})
	}
	t.Run("a client's own X-Forwarded-For is followed by the carried address", func(t *testing.T) {
		c := proxyHTTPClient(lbAddr, 2, "203.0.113.8:1", false)
		defer c.CloseIdleConnections()
		r := do(t, c, "GET", url, "X-AnchorMailbox", "alice@example.test", "X-Forwarded-For", "10.1.2.3")
		if xff, _ := xffOf(t, r.body); xff != "10.1.2.3, 203.0.113.8" {
			t.Errorf("X-Forwarded-For %q", xff)
		}
	})
	t.Run("LOCAL health check: the load balancer's own address", func(t *testing.T) {
		c := rawFrom(t, g, lbAddr)
		c.Send(t, "\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00GET /owa/ HTTP/1.1\r\nHost: x\r\nX-AnchorMailbox: alice@example.test\r\n\r\n")
		resp, body := readResponse(t, c, "GET")
		if xff, _ := xffOf(t, string(body)); resp.StatusCode != 200 || xff != lbAddr {
			t.Errorf("status %d, X-Forwarded-For %q; want 200, %s", resp.StatusCode, xff, lbAddr)
		}
	})
	t.Run("the rejection log names the carried client", func(t *testing.T) {
		c := rawFrom(t, g, lbAddr)
		c.Send(t, "PROXY TCP4 203.0.113.77 192.0.2.1 5000 80\r\nGET /owa/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
		if resp, _ := readResponse(t, c, "GET"); resp.StatusCode != 400 {
			t.Fatalf("status %d, want 400", resp.StatusCode)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(log.String(), "client=203.0.113.77") {
			if time.Now().After(deadline) {
				t.Fatalf("no rejection line with the carried client in:\n%s", log.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	if st := counters(); st["v1"] != 3 || st["v2"] != 3 || st["local"] != 1 {
		t.Errorf("accepted: %v", st)
	}

	for _, tc := range []struct {
		name, from, send, counter string
	}{
		{"required without a header", lbAddr, "GET /owa/ HTTP/1.1\r\nHost: x\r\n\r\n", "rejected.missing"},
		{"untrusted source", "127.0.0.1", "PROXY TCP4 203.0.113.9 192.0.2.1 5000 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", "rejected.untrusted"},
		{"malformed", lbAddr, "PROXY TCP4 203.0.113.9 192.0.2.1 05000 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", "rejected.malformed"},
		{"unsupported", lbAddr, "\r\n\r\n\x00\r\nQUIT\n\x21\x41\x00\x00", "rejected.unsupported"},
		{"too long", lbAddr, "PROXY UNKNOWN " + strings.Repeat("x", 200), "rejected.too_long"},
		{"slow header", lbAddr, "PROXY TCP4 203.0.113.9 ", "rejected.timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := counters()[tc.counter]
			c := rawFrom(t, g, tc.from)
			start := time.Now()
			_, _ = io.WriteString(c, tc.send)
			expectClosed(t, c)
			if tc.counter == "rejected.timeout" && time.Since(start) < 400*time.Millisecond {
				t.Errorf("closed after %v, before header_read (500ms)", time.Since(start))
			}
			if got := counters()[tc.counter]; got != before+1 {
				t.Errorf("%s = %d, want %d (%v)", tc.counter, got, before+1, counters())
			}
		})
	}
	if g.Snapshot().Requests != 10 {
		t.Errorf("requests %d, want 10: a refused connection must not reach HTTP", g.Snapshot().Requests)
	}
	if n := m1.Stats(t).Requests; n != 10 {
		t.Errorf("mailboxd served %d requests, want 10", n)
	}
}

// On a TLS listener the header precedes the ClientHello: the gateway reads
// it, then terminates TLS on the bytes after it.
func TestProxyProtocolTLS(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := gwtest.Start(t, gwtest.Options{TLS: true, ListenerExtra: "proxy_protocol = \"required\"\n" + proxyTrusted}, m1)
	url := "https://" + g.Addr + "/owa/"
	for _, tc := range []struct {
		name     string
		version  byte
		client   string
		coalesce bool
	}{
		{"v1", 1, "203.0.113.70:1234", false},
		{"v2, with the ClientHello", 2, "[2001:db8::70]:1234", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := proxyHTTPClient(lbAddr, tc.version, tc.client, tc.coalesce)
			defer c.CloseIdleConnections()
			r := do(t, c, "GET", url, "X-AnchorMailbox", "alice@example.test")
			want := netip.MustParseAddrPort(tc.client).Addr().String()
			if xff, proto := xffOf(t, r.body); r.status != 200 || xff != want || proto != "https" {
				t.Fatalf("status %d, X-Forwarded-For %q, X-Forwarded-Proto %q; want 200, %s, https", r.status, xff, proto, want)
			}
		})
	}
	t.Run("TLS without a header", func(t *testing.T) {
		c := proxyHTTPClient(lbAddr, 0, "", false)
		defer c.CloseIdleConnections()
		if _, err := c.Get(url); err == nil {
			t.Fatal("a TLS handshake without a PROXY header succeeded on a required listener")
		}
	})
	st := g.Snapshot()
	if p := st.Proxy["http"]; p["v1"] != 1 || p["v2"] != 1 || p["rejected.missing"] != 1 {
		t.Errorf("proxy counters %v", p)
	}
	if h := st.TLS["http"]["handshakes"]; h != 2 {
		t.Errorf("%d TLS handshakes, want 2 (a refused connection never reaches TLS)", h)
	}
}

// optional: the load balancer may send a header or not; anyone else is
// served directly, and a header from them is refused, never believed.
func TestProxyProtocolOptional(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := gwtest.Start(t, gwtest.Options{TLS: true, ListenerExtra: "proxy_protocol = \"optional\"\n" + proxyTrusted}, m1)
	url := "https://" + g.Addr + "/owa/"
	for _, tc := range []struct {
		name     string
		from     string
		version  byte
		wantXFF  string
		wantFail bool
	}{
		{"trusted with a header", lbAddr, 2, "203.0.113.80", false},
		{"trusted without a header", lbAddr, 0, lbAddr, false},
		{"direct client", "127.0.0.1", 0, "127.0.0.1", false},
		{"direct client sending a header", "127.0.0.1", 1, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := proxyHTTPClient(tc.from, tc.version, "203.0.113.80:999", false)
			defer c.CloseIdleConnections()
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set("X-AnchorMailbox", "alice@example.test")
			resp, err := c.Do(req)
			if tc.wantFail {
				if err == nil {
					resp.Body.Close()
					t.Fatal("a header from an untrusted source was served")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if xff, _ := xffOf(t, string(body)); xff != tc.wantXFF {
				t.Errorf("X-Forwarded-For %q, want %q", xff, tc.wantXFF)
			}
		})
	}
	want := map[string]int64{"v1": 0, "v2": 1, "local": 0, "unknown": 0, "direct": 2, "rejected.untrusted": 1, "rejected.missing": 0,
		"rejected.malformed": 0, "rejected.too_long": 0, "rejected.unsupported": 0, "rejected.timeout": 0}
	if got := g.Snapshot().Proxy["http"]; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("proxy counters\n%v\nwant\n%v", got, want)
	}
}

// The carried address is the client's for authentication too: the
// identity assertion's cip and the failed-login throttle's key.
func TestProxyProtocolIdentityAndThrottle(t *testing.T) {
	b := newAccessBed(t)
	b.listenerExtra = "proxy_protocol = \"required\"\n" + proxyTrusted
	g := b.startGateway(t, "", false)
	url := "http://" + g.Addr + "/owa/"

	// Every connection comes from the same load balancer; the throttle
	// tells the clients apart by the addresses it carries.
	attacker := proxyHTTPClient(lbAddr, 1, "203.0.113.66:1", false)
	defer attacker.CloseIdleConnections()
	for i := 0; i < 3; i++ {
		if r := do(t, attacker, "GET", url, "Authorization", basic("alice", fmt.Sprint("guess", i))); r.status != 401 {
			t.Fatalf("attempt %d: %d, want 401", i, r.status)
		}
	}
	if r := do(t, attacker, "GET", url, "Authorization", basic("alice", alicePassword)); r.status != 429 {
		t.Fatalf("after 3 failures from 203.0.113.66: %d, want 429", r.status)
	}
	alice := proxyHTTPClient(lbAddr, 2, "198.51.100.10:5555", false)
	defer alice.CloseIdleConnections()
	r := do(t, alice, "GET", url, "Authorization", basic("alice", alicePassword))
	if r.status != 200 {
		t.Fatalf("alice from 198.51.100.10 through the same load balancer: %d, want 200: %s", r.status, r.body)
	}
	if id := echoOf(t, []byte(r.body)).Identity; id == nil || id.Client != "198.51.100.10" || id.User != "alice" {
		t.Errorf("identity at the backend: %+v, want alice from 198.51.100.10", id)
	}
	if xff, _ := xffOf(t, r.body); xff != "198.51.100.10" {
		t.Errorf("X-Forwarded-For %q", xff)
	}
}
