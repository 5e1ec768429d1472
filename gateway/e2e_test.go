package gateway_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"strings"
	"sync"
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

func TestMain(m *testing.M) { testbed.Main(m) }

// readResponse reads one response from c with a deadline.
func readResponse(t testing.TB, c *gwtest.Client, method string) (*http.Response, []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	resp, err := http.ReadResponse(c.R, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, body
}

func echoOf(t testing.TB, body []byte) mailboxd.Echo {
	t.Helper()
	var e mailboxd.Echo
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("not a mailboxd echo: %v: %q", err, body)
	}
	return e
}

// expectClosed asserts the gateway closes the connection (EOF, not a timeout).
func expectClosed(t testing.TB, c *gwtest.Client) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := c.R.ReadByte()
	if err == nil {
		t.Fatalf("connection still open: read %q", b)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection not closed within 5s")
	}
}

func TestRoutingByAnchorAndPath(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	m2 := testbed.StartMailboxd(t, "mbx2")
	g := gwtest.Start(t, gwtest.Options{}, m1, m2)
	c := g.Dial(t)
	cases := []struct {
		name, target, anchor, wantServer string
		wantStatus                       int
	}{
		{"anchor alice", "/owa/", "alice@example.test", "mbx1", 200},
		{"anchor bob", "/EWS/Exchange.asmx", "bob@example.test", "mbx2", 200},
		{"anchor alias, case-insensitive", "/mapi/emsmdb/", "A.Smith@Example.TEST", "mbx1", 200},
		{"protocol prefix case-insensitive", "/ews/x", "bob@example.test", "mbx2", 200},
		{"path form", "/owa/u/bob@example.test/inbox", "", "mbx2", 200},
		{"path form percent-encoded", "/Microsoft-Server-ActiveSync/u/carol%40example.test?Cmd=Sync", "", "mbx1", 200},
		{"unknown mailbox", "/owa/", "nobody@example.test", "", 404},
		{"unknown mailbox in path", "/owa/u/nobody@example.test/", "", "", 404},
		{"no routing key", "/owa/", "", "", 400},
		{"no protocol", "/nothing-here", "alice@example.test", "", 404},
		{"prefix is not a segment", "/owab/", "alice@example.test", "", 404},
	}
	for _, tc := range cases {
		req := "GET " + tc.target + " HTTP/1.1\r\nHost: mail.example.test\r\n"
		if tc.anchor != "" {
			req += "X-AnchorMailbox: " + tc.anchor + "\r\n"
		}
		c.Send(t, req+"\r\n")
		resp, body := readResponse(t, c, "GET")
		if resp.StatusCode != tc.wantStatus {
			t.Fatalf("%s: status %d, want %d: %s", tc.name, resp.StatusCode, tc.wantStatus, body)
		}
		if tc.wantStatus != 200 {
			if len(body) == 0 || !strings.Contains(resp.Header.Get("Content-Type"), "text/plain") {
				t.Errorf("%s: local answer needs a clear body, got %q", tc.name, body)
			}
			continue
		}
		if e := echoOf(t, body); e.Server != tc.wantServer || e.Target != tc.target {
			t.Errorf("%s: reached %s with target %q, want %s %q", tc.name, e.Server, e.Target, tc.wantServer, tc.target)
		}
	}
}

func TestPipelinedResponsesInOrder(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	m2 := testbed.StartMailboxd(t, "mbx2")
	g := gwtest.Start(t, gwtest.Options{}, m1, m2)
	c := g.Dial(t)
	// Alternate servers and make the first of each pair slow, so responses
	// would come back out of order if the gateway did not keep them in order.
	var buf bytes.Buffer
	const n = 20
	for i := 0; i < n; i++ {
		who, delay := "alice", ""
		if i%2 == 1 {
			who = "bob"
		} else {
			delay = "X-Mailboxd-Delay: 30ms\r\n"
		}
		fmt.Fprintf(&buf, "GET /owa/?i=%d HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: %s@example.test\r\n%s\r\n", i, who, delay)
	}
	c.Send(t, buf.String()) // all requests in one write
	for i := 0; i < n; i++ {
		resp, body := readResponse(t, c, "GET")
		if resp.StatusCode != 200 {
			t.Fatalf("response %d: %d %s", i, resp.StatusCode, body)
		}
		e := echoOf(t, body)
		want := fmt.Sprintf("/owa/?i=%d", i)
		if e.Target != want {
			t.Fatalf("response %d is for %q, want %q", i, e.Target, want)
		}
		if (i%2 == 0) != (e.Server == "mbx1") {
			t.Fatalf("response %d from %s", i, e.Server)
		}
	}
}

func TestForwardedHeadersExact(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := gwtest.Start(t, gwtest.Options{}, m1)
	c := g.Dial(t)
	c.Send(t, "GET /owa/?a=1 HTTP/1.1\r\n"+
		"Host: mail.example.test\r\n"+
		"user-agent: Outlook/16.0\r\n"+
		"X-AnchorMailbox: alice@example.test\r\n"+
		"Connection: keep-alive, X-Hop-Custom\r\n"+
		"X-Hop-Custom: secret\r\n"+
		"Keep-Alive: timeout=5\r\n"+
		"Proxy-Connection: keep-alive\r\n"+
		"TE: trailers\r\n"+
		"Upgrade: websocket\r\n"+
		"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"+
		"X-Forwarded-For: 203.0.113.7\r\n"+
		"Cookie: a=b; c=d\r\n"+
		"X-Forwarded-Proto: https\r\n"+
		"x-forwarded-for: 198.51.100.2\r\n"+
		"Accept:  text/html  \r\n"+
		"\r\n")
	resp, body := readResponse(t, c, "GET")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	got := echoOf(t, body).Headers
	want := [][2]string{
		{"Host", "mail.example.test"},
		{"user-agent", "Outlook/16.0"},
		{"X-AnchorMailbox", "alice@example.test"},
		{"Cookie", "a=b; c=d"},
		{"Accept", "text/html"},
		{"X-Forwarded-For", "203.0.113.7, 198.51.100.2, 127.0.0.1"},
		{"X-Forwarded-Proto", "http"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("forwarded headers\n got  %v\n want %v", got, want)
	}
	if resp.Header.Get("X-Mailboxd-Server") != "mbx1" {
		t.Errorf("response headers not relayed: %v", resp.Header)
	}
}

// Each framing the gateway refuses: the status, the connection closed, and
// nothing reaching the mailbox server.
func TestFramingRejections(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := gwtest.Start(t, gwtest.Options{Extra: "[limits]\nmax_body_bytes = 1000\n"}, m1)
	const anchor = "X-AnchorMailbox: alice@example.test\r\n"
	big := strings.Repeat("a", 17<<10)
	cases := []struct {
		name, req string
		status    int
		// streamed: the head was already forwarded when the body turned
		// out malformed; the server sees an aborted request (its
		// connection is closed), not a complete one.
		streamed bool
	}{
		{"CL and TE", "POST /owa/ HTTP/1.1\r\nHost: h\r\n" + anchor + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, false},
		{"duplicate CL", "POST /owa/ HTTP/1.1\r\nHost: h\r\n" + anchor + "Content-Length: 4\r\nContent-Length: 4\r\n\r\nabcd", 400, false},
		{"CL list", "POST /owa/ HTTP/1.1\r\nHost: h\r\n" + anchor + "Content-Length: 4, 4\r\n\r\nabcd", 400, false},
		{"CL signed", "POST /owa/ HTTP/1.1\r\nHost: h\r\n" + anchor + "Content-Length: +4\r\n\r\nabcd", 400, false},
		{"HTTP/1.0 with TE", "POST /owa/ HTTP/1.0\r\nHost: h\r\n" + anchor + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, false},
		{"TE not chunked-final", "POST /owa/ HTTP/1.1\r\nHost: h\r\n" + anchor + "Transfer-Encoding: gzip\r\n\r\n", 400, false},
		{"TE unknown coding", "POST /owa/ HTTP/1.1\r\nHost: h\r\n" + anchor + "Transfer-Encoding: foo, chunked\r\n\r\n0\r\n\r\n", 501, false},
		{"TE chunked twice", "POST /owa/ HTTP/1.1\r\nHost: h\r\n" + anchor + "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400, false},
		{"TE gzip,chunked", "POST /owa/ HTTP/1.1\r\nHost: h\r\n" + anchor + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, false},
		{"bare LF", "GET /owa/ HTTP/1.1\nHost: h\n" + "X-AnchorMailbox: alice@example.test\n\n", 400, false},
		{"bare LF in one line", "GET /owa/ HTTP/1.1\r\nHost: h\nX-A: b\r\n" + anchor + "\r\n", 400, false},
		{"obs-fold", "GET /owa/ HTTP/1.1\r\nHost: h\r\n" + anchor + "X-Long: a\r\n b\r\n\r\n", 400, false},
		{"NUL in value", "GET /owa/ HTTP/1.1\r\nHost: h\r\n" + anchor + "X-A: a\x00b\r\n\r\n", 400, false},
		{"control byte in value", "GET /owa/ HTTP/1.1\r\nHost: h\r\n" + anchor + "X-A: a\x01b\r\n\r\n", 400, false},
		{"space before colon", "GET /owa/ HTTP/1.1\r\nHost: h\r\n" + anchor + "X-A : b\r\n\r\n", 400, false},
		{"missing Host", "GET /owa/ HTTP/1.1\r\n" + anchor + "\r\n", 400, false},
		{"duplicate Host", "GET /owa/ HTTP/1.1\r\nHost: h\r\nHost: i\r\n" + anchor + "\r\n", 400, false},
		{"header block too large", "GET /owa/ HTTP/1.1\r\nHost: h\r\n" + anchor + "X-Big: " + big + "\r\n\r\n", 431, false},
		{"body too large", "POST /owa/ HTTP/1.1\r\nHost: h\r\n" + anchor + "Content-Length: 1001\r\n\r\n", 413, false},
		{"bad chunk size", "POST /owa/ HTTP/1.1\r\nHost: h\r\n" + anchor + "Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400, true},
		{"HTTP/2 request line", "GET /owa/ HTTP/2.0\r\nHost: h\r\n" + anchor + "\r\n", 505, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := m1.Stats(t).Requests
			c := g.Dial(t)
			c.Send(t, tc.req)
			resp, body := readResponse(t, c, "GET")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.status, body)
			}
			if !resp.Close {
				t.Errorf("rejection without Connection: close")
			}
			expectClosed(t, c)
			if after := m1.Stats(t).Requests; after != before && !tc.streamed {
				t.Fatalf("mailbox server saw %d requests", after-before)
			}
		})
	}
	if n := g.Snapshot().Rejects["content_length_and_transfer_encoding"]; n != 1 {
		t.Errorf("CL+TE counter = %d, want 1", n)
	}
}

func TestLargeBodiesIntact(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := gwtest.Start(t, gwtest.Options{}, m1)
	body := make([]byte, 1<<20)
	for i := range body {
		body[i] = byte(i*7 + i>>11)
	}
	sum := sha256.Sum256(body)
	want := hex.EncodeToString(sum[:])
	c := g.Dial(t)

	t.Run("content-length", func(t *testing.T) {
		c.Send(t, fmt.Sprintf("POST /owa/upload HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\nContent-Length: %d\r\n\r\n", len(body)))
		c.Send(t, string(body))
		resp, rb := readResponse(t, c, "POST")
		e := echoOf(t, rb)
		if resp.StatusCode != 200 || e.BodyBytes != int64(len(body)) || e.BodySHA256 != want {
			t.Fatalf("status %d, server got %d bytes sha %s", resp.StatusCode, e.BodyBytes, e.BodySHA256)
		}
	})
	t.Run("chunked with Expect", func(t *testing.T) {
		c.Send(t, "PUT /owa/upload HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := c.R.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
			t.Fatalf("no 100 Continue: %q %v", line, err)
		}
		if _, err := c.R.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(body); {
			n := min(7919, len(body)-off) // odd chunk sizes
			c.Send(t, fmt.Sprintf("%x;ext=1\r\n%s\r\n", n, body[off:off+n]))
			off += n
		}
		c.Send(t, "0\r\nX-Trailer: x\r\n\r\n")
		resp, rb := readResponse(t, c, "PUT")
		e := echoOf(t, rb)
		if resp.StatusCode != 200 || e.BodyBytes != int64(len(body)) || e.BodySHA256 != want {
			t.Fatalf("status %d, server got %d bytes sha %s", resp.StatusCode, e.BodyBytes, e.BodySHA256)
		}
	})
	t.Run("large chunked response", func(t *testing.T) {
		c.Send(t, "GET /owa/big HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\nX-Mailboxd-Size: 3000000\r\nX-Mailboxd-Chunked: 1\r\n\r\n")
		resp, rb := readResponse(t, c, "GET")
		if resp.StatusCode != 200 || len(rb) != 3000000 || !bytes.Equal(rb[:len(mailboxd.Pattern)], []byte(mailboxd.Pattern)) {
			t.Fatalf("status %d, %d bytes", resp.StatusCode, len(rb))
		}
	})
	t.Run("HEAD", func(t *testing.T) {
		c.Send(t, "HEAD /owa/big HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\nX-Mailboxd-Size: 5000\r\n\r\n")
		resp, rb := readResponse(t, c, "HEAD")
		if resp.StatusCode != 200 || len(rb) != 0 || resp.ContentLength != 5000 {
			t.Fatalf("HEAD: status %d, cl %d, %d body bytes", resp.StatusCode, resp.ContentLength, len(rb))
		}
		// The connection must still be in sync.
		c.Send(t, "GET /owa/ HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\n\r\n")
		if resp, _ := readResponse(t, c, "GET"); resp.StatusCode != 200 {
			t.Fatalf("after HEAD: %d", resp.StatusCode)
		}
	})
}

func TestUnframedResponseIs502(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := gwtest.Start(t, gwtest.Options{}, m1)
	c := g.Dial(t)
	c.Send(t, "GET /owa/ HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\nX-Mailboxd-Unframed: 1\r\n\r\n")
	resp, body := readResponse(t, c, "GET")
	if resp.StatusCode != 502 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	// The client connection is still usable; the backend one was replaced.
	c.Send(t, "GET /owa/ HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\n\r\n")
	if resp, body := readResponse(t, c, "GET"); resp.StatusCode != 200 {
		t.Fatalf("after 502: %d %s", resp.StatusCode, body)
	}
	if n := g.Snapshot().Rejects["unframed_response"]; n != 1 {
		t.Errorf("unframed_response counter = %d", n)
	}
}

// get sends one keep-alive GET on a fresh or given connection.
func get(c *gwtest.Client, anchor string) (int, error) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET /owa/ HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: %s\r\n\r\n", anchor); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(c.R, nil)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

func TestServerKilledUnderLoad(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	m2 := testbed.StartMailboxd(t, "mbx2")
	// Health checks often enough that the restarted server is back
	// within the recovery bound below.
	g := gwtest.Start(t, gwtest.Options{Extra: "[backend]\nreconnect_max = \"500ms\"\nhealth_interval = \"200ms\"\nhealth_timeout = \"200ms\"\n"}, m1, m2)
	var phase atomic.Int32 // 0 both up, 1 mbx2 down, 2 mbx2 restarted
	// down counts the failures of a request to a server that is down:
	// 502 while the gateway tries it, 503 with Retry-After once its
	// failures have marked it unhealthy.
	type tally struct{ ok, down, other [3]atomic.Int64 }
	var alice, bob tally
	stop := make(chan struct{})
	var wg sync.WaitGroup
	worker := func(anchor string, tl *tally) {
		defer wg.Done()
		c := g.Dial(t)
		for i := 0; i < 100000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			p := phase.Load()
			status, err := get(c, anchor)
			switch {
			case err != nil:
				tl.other[p].Add(1)
				return
			case status == 200:
				tl.ok[p].Add(1)
			case status == 502 || status == 503 && anchor == "bob@example.test":
				tl.down[p].Add(1)
			default:
				tl.other[p].Add(1)
			}
		}
	}
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go worker("alice@example.test", &alice)
		go worker("bob@example.test", &bob)
	}
	time.Sleep(500 * time.Millisecond)
	phase.Store(1)
	m2.Stop()
	time.Sleep(time.Second)
	m2.Restart(t)
	// Recovery: bob's requests succeed again within a bounded time.
	deadline := time.Now().Add(10 * time.Second)
	probe := g.Dial(t)
	for {
		if st, err := get(probe, "bob@example.test"); err == nil && st == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("traffic to the restarted server did not recover in 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	phase.Store(2)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	for p := 0; p < 3; p++ {
		t.Logf("phase %d: alice ok=%d down=%d other=%d; bob ok=%d down=%d other=%d", p,
			alice.ok[p].Load(), alice.down[p].Load(), alice.other[p].Load(),
			bob.ok[p].Load(), bob.down[p].Load(), bob.other[p].Load())
	}
	for p := 0; p < 3; p++ {
		if alice.down[p].Load()+alice.other[p].Load() != 0 {
			t.Errorf("phase %d: requests to the healthy server failed", p)
		}
		if bob.other[p].Load() != 0 {
			t.Errorf("phase %d: bob's failures were not 502 or 503", p)
		}
	}
	if alice.ok[1].Load() == 0 || bob.down[1].Load() == 0 || bob.ok[2].Load() == 0 {
		t.Errorf("test did not exercise every phase")
	}
}

func TestManyClientsFewBackendConns(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	const loops, clients, rounds = 2, 1000, 3
	g := gwtest.Start(t, gwtest.Options{Loops: loops}, m1)
	conns := make([]*gwtest.Client, clients)
	for i := range conns {
		conns[i] = g.Dial(t)
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for _, c := range conns {
		wg.Add(1)
		go func(c *gwtest.Client) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				if st, err := get(c, "alice@example.test"); err != nil || st != 200 {
					failed.Add(1)
					return
				}
			}
		}(c)
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d clients failed", n)
	}
	st := m1.Stats(t)
	snap := g.Snapshot()
	t.Logf("clients=%d backend accepted=%d open=%d ratio=%.0f", clients, st.ConnectionsAccepted, st.ConnectionsOpen, snap.ClientsPerBackendConn)
	if limit := int64(loops * 2); st.ConnectionsAccepted > limit || snap.BackendConns > limit {
		t.Fatalf("%d backend connections accepted (%d open at the gateway), want at most %d", st.ConnectionsAccepted, snap.BackendConns, limit)
	}
	if snap.ClientsPerBackendConn < float64(clients)/float64(loops*2) {
		t.Errorf("ratio %.1f", snap.ClientsPerBackendConn)
	}
}

// TestQueuedRequestsShareWrites checks that requests queued behind a full
// pipeline go to the server together: when a burst of responses frees the
// pipeline, the queued requests are written with one writev, not one write
// each. A slow request holds the only connection while the rest queue.
func TestQueuedRequestsShareWrites(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	const depth, queued = 4, 12
	g := gwtest.Start(t, gwtest.Options{Loops: 1, Extra: fmt.Sprintf("[backend]\nconns_per_loop = 1\nmax_pipeline = %d\n", depth)}, m1)
	backend := func() gateway.BackendSummary { return g.Snapshot().Backends[0] }

	slow := g.Dial(t)
	slow.Send(t, "GET /owa/ HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\n"+mailboxd.HeaderDelay+": 400ms\r\n\r\n")
	clients := make([]*gwtest.Client, depth-1+queued)
	for i := range clients {
		clients[i] = g.Dial(t)
		clients[i].Send(t, "GET /owa/ HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\n\r\n")
	}
	// The pipeline (the slow request and depth-1 behind it) is full and
	// the rest wait in the queue.
	for i := 0; backend().Queued < queued; i++ {
		if i == 200 {
			t.Fatalf("queued %d, want %d: %+v", backend().Queued, queued, backend())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i, c := range append([]*gwtest.Client{slow}, clients...) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(c.R, nil)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("client %d: status %d", i, resp.StatusCode)
		}
	}
	b := backend()
	// One write each for the pipeline's first depth requests, then the
	// queued ones in writes of up to depth requests each. A write per
	// request (depth+queued writes) is what this guards against; a few
	// extra writes are allowed for responses that arrive split.
	want := int64(depth + queued/depth + 2)
	t.Logf("backend requests=%d writes=%d", b.Requests, b.Writes)
	if b.Requests != depth+queued || b.Writes > want {
		t.Fatalf("%d requests in %d writes, want %d requests in at most %d writes", b.Requests, b.Writes, depth+queued, want)
	}
}

// TestConcurrentRequestsShareWrites checks that requests of many clients
// that reach a loop together share backend writes even when no queue
// forms (the pipeline is deep): a request that joins requests in flight is
// written at the end of the loop's event batch, with the others of that
// batch. Without that every request is its own write.
func TestConcurrentRequestsShareWrites(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	const clients, rounds = 64, 30
	g := gwtest.Start(t, gwtest.Options{Loops: 1, Extra: "[backend]\nconns_per_loop = 1\nmax_pipeline = 1024\n"}, m1)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range clients {
		c := g.Dial(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				if st, err := get(c, "alice@example.test"); err != nil || st != 200 {
					failed.Add(1)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d clients failed", n)
	}
	b := g.Snapshot().Backends[0]
	t.Logf("backend requests=%d writes=%d queued now=%d", b.Requests, b.Writes, b.Queued)
	if b.Requests != clients*rounds {
		t.Fatalf("%d backend requests, want %d", b.Requests, clients*rounds)
	}
	// 64 clients on two CPUs: many requests land in each batch. A write
	// per request is the failure; sharing is typically 3-10 to a write.
	if b.Writes > b.Requests*9/10 {
		t.Fatalf("%d requests in %d writes: requests arriving together did not share writes", b.Requests, b.Writes)
	}
}

func TestListenerProtocolsAndAdmin(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	all := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort(t, "127.0.0.1"))
	ewsOnly := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort(t, "127.0.0.1"))
	admin := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort(t, "127.0.0.1"))
	cfg, err := config.Parse("two.toml", []byte(fmt.Sprintf(`directory = "directory.toml"
[[listener]]
name = "all"
address = %q
[[listener]]
name = "ews-only"
address = %q
protocols = ["ews"]
[[protocol]]
name = "owa"
path_prefix = "/owa"
backend_port = 1
[[protocol]]
name = "ews"
path_prefix = "/EWS"
backend_port = 1
[admin]
address = %q
`, all, ewsOnly, admin)))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := directory.Parse("directory.toml", []byte(gwtest.DirectoryTOML(m1)))
	if err != nil {
		t.Fatal(err)
	}
	g := gwtest.StartWith(t, cfg, dir, all, nil)
	status := func(addr, path string) int {
		c := (&gwtest.Gateway{Addr: addr}).Dial(t)
		c.Send(t, "GET "+path+" HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\n\r\n")
		resp, _ := readResponse(t, c, "GET")
		return resp.StatusCode
	}
	for _, tc := range []struct {
		addr, path string
		want       int
	}{{all, "/owa/", 200}, {all, "/EWS/x", 200}, {ewsOnly, "/EWS/x", 200}, {ewsOnly, "/owa/", 404}} {
		if got := status(tc.addr, tc.path); got != tc.want {
			t.Errorf("%s%s: %d, want %d", tc.addr, tc.path, got, tc.want)
		}
	}
	resp, err := http.Get("http://" + g.AdminAddr() + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var snap gateway.Snapshot
	if err := json.NewDecoder(resp.Body).Decode(&snap); err != nil {
		t.Fatal(err)
	}
	if snap.Requests != 4 || snap.BackendConns == 0 || snap.ClientsPerBackendConn <= 0 || len(snap.Backends) != 1 {
		t.Fatalf("admin /stats: %+v", snap)
	}
	if rt := snap.Runtime; rt.MemoryTrimIntervalSeconds != 10 || rt.HeapObjectsBytes == 0 || rt.Goroutines == 0 {
		t.Errorf("admin /stats runtime: %+v", rt)
	}
	r, err := http.Get("http://" + g.AdminAddr() + "/debug/pprof/")
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("pprof index: %v", err)
	}
	r.Body.Close()

	// A trim on demand is counted apart from the automatic ones (which
	// may happen here too: the memory is the whole test process's).
	r, err = http.Post("http://"+g.AdminAddr()+"/debug/memory/trim", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var rt gateway.RuntimeSummary
	err = json.NewDecoder(r.Body).Decode(&rt)
	r.Body.Close()
	if err != nil || r.StatusCode != 200 || rt.MemoryTrimsManual != 1 || rt.HeapLiveBytes == 0 {
		t.Errorf("POST /debug/memory/trim: %d %v %+v", r.StatusCode, err, rt)
	}
	if r, err := http.Get("http://" + g.AdminAddr() + "/debug/memory/trim"); err != nil || r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /debug/memory/trim: %v %v", err, r)
	} else {
		r.Body.Close()
	}
}

// A local answer to HEAD carries the headers of the GET answer and no body
// (RFC 9110 9.3.2); the connection stays in sync for the next request.
func TestLocalAnswerToHEADHasNoBody(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := gwtest.Start(t, gwtest.Options{}, m1)
	c := g.Dial(t)
	c.Send(t, "HEAD /owa/u/nobody@example.test/ HTTP/1.1\r\nHost: h\r\n\r\nGET /owa/u/nobody@example.test/ HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, body := readResponse(t, c, "HEAD")
	if resp.StatusCode != 404 || len(body) != 0 || resp.ContentLength <= 0 {
		t.Fatalf("HEAD: %d, Content-Length %d, body %q; want 404 with a length and no body", resp.StatusCode, resp.ContentLength, body)
	}
	resp, body = readResponse(t, c, "GET")
	if resp.StatusCode != 404 || int64(len(body)) != resp.ContentLength {
		t.Fatalf("GET after HEAD: %d, body %q", resp.StatusCode, body)
	}
}
