//go:build !race

package perf

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"frontdoor/identity"
	"frontdoor/internal/gwtest"
	"frontdoor/internal/krb5kdc"
	"frontdoor/internal/testbed"
)

func TestMain(m *testing.M) { testbed.Main(m) }

// A request as a browser sends it to OWA: enough fields that parsing,
// X-AnchorMailbox lookup and re-serialization all do real work.
const owaRequest = "GET /owa/service.svc?action=GetFolder HTTP/1.1\r\n" +
	"Host: mail.example.test\r\n" +
	"User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n" +
	"Accept: application/json\r\n" +
	"Accept-Language: en-US,en;q=0.9\r\n" +
	"Cookie: X-OWA-CANARY=abcdef0123456789; ClientId=0123456789ABCDEF\r\n" +
	"X-AnchorMailbox: alice@example.test\r\n" +
	"X-Forwarded-For: 198.51.100.7\r\n" +
	"Connection: keep-alive\r\n" +
	"X-Mailboxd-Size: 100\r\n" +
	"\r\n"

// The allocation gates: a keep-alive request through parse, route, forward
// and respond allocates nothing in steady state, one at a time and
// pipelined. The gateway runs in this process (AllocsPerRun counts the
// whole process), the mailbox server in another.
func TestHotPathAllocations(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := gwtest.Start(t, gwtest.Options{Loops: 1}, m1)
	for _, tc := range []struct {
		name  string
		depth int
	}{{"keep-alive", 1}, {"pipelined", 4}} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewKeepAliveClient(t, g.Addr, owaRequest, tc.depth)
			gateZeroAllocs(t, c, fmt.Sprintf("%d request(s)", tc.depth))
		})
	}
}

// TestTLSHotPathAllocations gates the same keep-alive requests over TLS.
// The gateway allocates nothing: after the handshake its TLS 1.3
// connections run on tlsterm's own record layer (tlsterm/record13.go),
// which decrypts and encrypts in place. What is left is the test client's:
// it is crypto/tls, whose every tls.Conn.Read that has to fetch ciphertext
// allocates a 32-byte atLeastReader (Go 1.26, crypto/tls conn.go
// readFromUntil), once per round here (the response is one record: head and
// body go out in one write). The gate holds that count, so an allocation
// of the gateway's shows as a second. With four pipelined requests (one
// record) the client reads one to four response records from the wire, as
// the writes happen to arrive: that round is held to at most 4, which any
// per-request allocation of the gateway's (four more) exceeds.
func TestTLSHotPathAllocations(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := gwtest.Start(t, gwtest.Options{Loops: 1, TLS: true}, m1)
	t.Run("keep-alive", func(t *testing.T) {
		c := NewTLSKeepAliveClient(t, g.Addr, owaRequest, 1)
		gateAllocs(t, c, "request over TLS", cryptoTLSAllocsPerRound, false)
	})
	t.Run("pipelined", func(t *testing.T) {
		c := NewTLSKeepAliveClient(t, g.Addr, owaRequest, 4)
		gateAllocs(t, c, "4 pipelined requests over TLS", 4, true)
	})
}

// cryptoTLSAllocsPerRound is the allocations the client's crypto/tls makes
// in one round of TestTLSHotPathAllocations's keep-alive case (see there).
const cryptoTLSAllocsPerRound = 1

// TestAuthenticatedHotPathAllocations gates the authenticated path: a
// keep-alive GET with Basic credentials already in the auth cache (keyed
// hash, cache lookup, the cached identity assertion added to the forwarded
// request) allocates nothing.
func TestAuthenticatedHotPathAllocations(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	keys := filepath.Join(t.TempDir(), "identity.json")
	k, err := identity.GenerateKey(identity.EdDSA, "perf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := identity.RotateKeyFile(keys, k, 1); err != nil {
		t.Fatal(err)
	}
	g := gwtest.Start(t, gwtest.Options{Loops: 1, ProtocolExtra: `auth = ["basic"]`,
		Extra: fmt.Sprintf("[identity]\nkey_file = %q\n", keys)}, m1)
	cred := base64.StdEncoding.EncodeToString([]byte("alice:" + gwtest.Password))
	req := strings.Replace(owaRequest, "X-AnchorMailbox: alice@example.test\r\n", "Authorization: Basic "+cred+"\r\n", 1)
	c := NewKeepAliveClient(t, g.Addr, req, 1)
	gateZeroAllocs(t, c, "authenticated request")
	if v := g.Snapshot().Auth["verifications"]; v != 1 {
		t.Errorf("%d password verifications for 4,000 requests, want 1 (the cache)", v)
	}
}

// TestNegotiateHotPathAllocations gates a connection authenticated by
// HTTP Negotiate: after the one request that carried the Kerberos token
// (verified off the loop against a real MIT KDC's keytab), keep-alive
// requests without credentials are routed by the identity in the
// connection's router slot and allocate nothing.
func TestNegotiateHotPathAllocations(t *testing.T) {
	if err := krb5kdc.Installed(); err != nil {
		t.Skip(err)
	}
	m1 := testbed.StartMailboxd(t, "mbx1")
	dir := t.TempDir()
	kdc, err := krb5kdc.Start(dir, "PERF.TEST")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kdc.Stop)
	keytab := filepath.Join(dir, "http.keytab")
	for _, f := range []func() error{
		func() error { return kdc.AddService("HTTP/mail.example.test") },
		func() error { return kdc.AddUser("alice", "alice-pw") },
		func() error { return kdc.ExportKeytab(keytab, "HTTP/mail.example.test") },
	} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	keys := filepath.Join(dir, "identity.json")
	k, err := identity.GenerateKey(identity.EdDSA, "perf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := identity.RotateKeyFile(keys, k, 1); err != nil {
		t.Fatal(err)
	}
	g := gwtest.Start(t, gwtest.Options{Loops: 1, ProtocolExtra: `auth = ["negotiate", "basic"]`,
		Extra: fmt.Sprintf("[auth]\nkeytab = %q\n[identity]\nkey_file = %q\n", keytab, keys),
		Directory: func(s string) string {
			return strings.Replace(s, "login = \"alice\"\n", "login = \"alice\"\nkerberos_principals = [\"alice@PERF.TEST\"]\n", 1)
		}}, m1)
	cl, err := kdc.Login("alice", "alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Destroy()
	tok, err := cl.Token("HTTP/mail.example.test")
	if err != nil {
		t.Fatal(err)
	}
	plain := strings.Replace(owaRequest, "X-AnchorMailbox: alice@example.test\r\n", "", 1)
	c := NewKeepAliveClient(t, g.Addr, plain, 1)
	// The first request carries the token and authenticates the connection.
	c.req = []byte(strings.Replace(plain, "Connection: keep-alive\r\n",
		"Connection: keep-alive\r\nAuthorization: Negotiate "+base64.StdEncoding.EncodeToString(tok)+"\r\n", 1))
	if err := c.Do(); err != nil {
		t.Fatalf("request with the Negotiate token: %v", err)
	}
	c.req = []byte(plain)
	gateZeroAllocs(t, c, "request on a Negotiate-authenticated connection")
	a := g.Snapshot().Auth
	if a["verifications"] != 1 || a["negotiate_connection_reuse"] < 4000 {
		t.Errorf("verifications %d, connection reuse %d: want 1 and every later request", a["verifications"], a["negotiate_connection_reuse"])
	}
}

// TestAccessLogHotPathAllocations gates the access log: with it on, a
// keep-alive request still allocates nothing (the record is formatted into
// the loop's chunk, chunks go to the writer by pointer, the writer writes
// them to the file). The log file's lines are checked too, so the gate
// cannot pass with a log that writes nothing.
func TestAccessLogHotPathAllocations(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	path := filepath.Join(t.TempDir(), "access.log")
	g := gwtest.Start(t, gwtest.Options{Loops: 1,
		Extra: fmt.Sprintf("[access_log]\npath = %q\nbuffer_bytes = 16777216\n", path)}, m1)
	c := NewKeepAliveClient(t, g.Addr, owaRequest, 1)
	gateZeroAllocs(t, c, "request with the access log on")
	g.Stop(t)
	s := g.Snapshot().AccessLog
	if s["records"] != 4001 || s["dropped_buffer_full"] != 0 {
		t.Fatalf("access log: %v, want 4001 records (warm-up, runs and the one AllocsPerRun adds) and none dropped", s)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), "\n"); n != 4001 || !strings.Contains(string(data), `"path":"/owa/service.svc","user":""`) {
		t.Fatalf("%d lines in the file; first: %.300s", n, data)
	}
}

// TestHealthProbeAllocations gates the health page: a load balancer's
// keep-alive probe of /owa/healthcheck.htm is answered from bytes prepared
// in advance and allocates nothing.
func TestHealthProbeAllocations(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := gwtest.Start(t, gwtest.Options{Loops: 1}, m1)
	c := NewKeepAliveClient(t, g.Addr, "GET /owa/healthcheck.htm HTTP/1.1\r\nHost: fd.example.test\r\nUser-Agent: lb-probe\r\n\r\n", 1)
	gateZeroAllocs(t, c, "health probe")
	// AllocsPerRun calls its function once more, to warm up.
	if n := g.Snapshot().Health.ProbesOK; n != 4001 {
		t.Errorf("%d probes counted, want 4001", n)
	}
}

// gateZeroAllocs warms c up (backend connections, scratch buffers, stream
// pools: 2,000 rounds), then fails t unless 2,000 more rounds allocate
// nothing in this process; what names a round for the message.
// AllocsPerRun calls its function once more than asked, to warm up: 4,001
// rounds in all.
func gateZeroAllocs(t *testing.T, c *KeepAliveClient, what string) {
	t.Helper()
	gateAllocs(t, c, what, 0, false)
}

// gateAllocs is gateZeroAllocs for a path that allocates want times per
// round in code that is not frontdoor's (crypto/tls). Unless atMost, fewer
// fails too, so the gate is tightened when a Go release drops them.
func gateAllocs(t *testing.T, c *KeepAliveClient, what string, want float64, atMost bool) {
	t.Helper()
	for i := 0; i < 2000; i++ {
		if err := c.Do(); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	allocs := testing.AllocsPerRun(2000, func() {
		if e := c.Do(); e != nil && err == nil {
			err = e
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if allocs > want || !atMost && allocs != want {
		t.Fatalf("%v allocations per %s, want %v", allocs, what, want)
	}
}
