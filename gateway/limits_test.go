package gateway_test

// What one client, or many, may make the gateway hold: the connection limit,
// the backend queue, response buffering for slow readers, the pipelining
// bound, and a server answering before it has read the request body.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"frontdoor/internal/gwtest"
	"frontdoor/internal/testbed"
)

// checkRefusal503 asserts resp is a gateway 503 with Retry-After and a
// plain-text body explaining it.
func checkRefusal503(t testing.TB, what string, resp *http.Response, body []byte, bodyHas string) {
	t.Helper()
	if resp.StatusCode != 503 {
		t.Fatalf("%s: status %d, want 503: %s", what, resp.StatusCode, body)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "2" {
		t.Errorf("%s: Retry-After %q, want \"2\" (backend.retry_after default)", what, ra)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || !strings.Contains(string(body), bodyHas) {
		t.Errorf("%s: body %q (%s), want text mentioning %q", what, body, resp.Header.Get("Content-Type"), bodyHas)
	}
}

func TestMaxConnections(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	// Two loops: the limit is gateway-wide, not per loop.
	g := startGateway(t, gwOptions{Loops: 2, Extra: "[limits]\nmax_connections = 5\n"}, m1)
	var clients []*gwtest.Client
	for i := 0; i < 5; i++ {
		c := g.Dial(t)
		if st, err := get(c, "alice@example.test"); err != nil || st != 200 {
			t.Fatalf("client %d: %d %v", i, st, err)
		}
		clients = append(clients, c)
	}
	if open := g.Snapshot().ClientsOpen; open != 5 {
		t.Fatalf("ClientsOpen %d, want 5", open)
	}
	reqBefore := m1.Stats(t).Requests

	// The sixth is answered 503 at once, without sending anything, and closed.
	sixth := g.Dial(t)
	resp, body := readResponse(t, sixth, "GET")
	checkRefusal503(t, "sixth connection", resp, body, "busy")
	if !resp.Close {
		t.Errorf("refusal without Connection: close")
	}
	readToClose(t, sixth, 5*time.Second)
	snap := g.Snapshot()
	if snap.ClientsRefused != 1 || snap.Core["refused_max_connections"] != 1 {
		t.Errorf("ClientsRefused %d, refused_max_connections %d; want 1 and 1", snap.ClientsRefused, snap.Core["refused_max_connections"])
	}
	if snap.ClientsOpen != 5 {
		t.Errorf("ClientsOpen %d after the refusal, want 5", snap.ClientsOpen)
	}
	// The five still work.
	for i, c := range clients {
		if st, err := get(c, "alice@example.test"); err != nil || st != 200 {
			t.Fatalf("client %d after the refusal: %d %v", i, st, err)
		}
	}

	// Once one leaves, a new connection is served.
	clients[0].Close()
	if !waitFor(5*time.Second, func() bool { return g.Snapshot().ClientsOpen == 4 }) {
		t.Fatalf("gateway did not notice the close: ClientsOpen %d", g.Snapshot().ClientsOpen)
	}
	next := g.Dial(t)
	if st, err := get(next, "alice@example.test"); err != nil || st != 200 {
		t.Fatalf("connection after one closed: %d %v", st, err)
	}
	if got := m1.Stats(t).Requests - reqBefore; got != 6 {
		t.Errorf("mailbox server saw %d requests after the refusal, want 6", got)
	}
	if n := g.Snapshot().ClientsRefused; n != 1 {
		t.Errorf("ClientsRefused %d, want 1", n)
	}
}

func TestBackendQueueFull(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := startGateway(t, gwOptions{
		Extra: "[backend]\nconns_per_loop = 1\nmax_pipeline = 1\nmax_queue = 2\n",
	}, m1)
	// Establish the one backend connection, so the first slow request is on
	// it at once and exactly two wait in the queue.
	warm := g.Dial(t)
	if st, err := get(warm, "alice@example.test"); err != nil || st != 200 {
		t.Fatalf("warm-up: %d %v", st, err)
	}
	const n = 6
	conns := make([]*gwtest.Client, n)
	for i := range conns {
		conns[i] = g.Dial(t)
	}
	start := time.Now()
	for i, c := range conns {
		c.Send(t, fmt.Sprintf("GET /owa/?i=%d HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\nX-Mailboxd-Delay: 500ms\r\n\r\n", i))
	}
	sendTime := time.Since(start)
	type result struct {
		resp *http.Response
		body []byte
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
			resp, err := http.ReadResponse(c.R, nil)
			if err != nil {
				t.Errorf("client %d: %v", i, err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			results[i] = result{resp, body}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	ok, busy := 0, 0
	for i, r := range results {
		switch r.resp.StatusCode {
		case 200:
			ok++
			if e := echoOf(t, r.body); e.Target != fmt.Sprintf("/owa/?i=%d", i) {
				t.Errorf("client %d got the response for %q", i, e.Target)
			}
		case 503:
			busy++
			checkRefusal503(t, fmt.Sprintf("client %d", i), r.resp, r.body, "queue_full")
		default:
			t.Errorf("client %d: status %d: %s", i, r.resp.StatusCode, r.body)
		}
	}
	t.Logf("%d ok, %d refused (requests sent in %v)", ok, busy, sendTime)
	if ok == 0 || busy == 0 {
		t.Fatalf("%d ok and %d refused: want both", ok, busy)
	}
	// One on the connection plus two queued: all six arrive long before the
	// first one's 500 ms are over, so exactly three fit.
	if sendTime < 200*time.Millisecond && (ok != 3 || busy != 3) {
		t.Errorf("%d ok, %d refused; want 3 and 3 (1 in flight + max_queue 2)", ok, busy)
	}
	snap := g.Snapshot()
	if b := snap.Backends[0]; b.QueueFull != int64(busy) || snap.Rejects["queue_full"] != int64(busy) {
		t.Errorf("QueueFull %d, rejects[queue_full] %d; want %d", b.QueueFull, snap.Rejects["queue_full"], busy)
	}
	// A 503 from the queue leaves the client connection usable.
	for i, r := range results {
		if r.resp.StatusCode == 503 {
			if r.resp.Close {
				t.Errorf("client %d: queue_full 503 closes the connection", i)
				continue
			}
			if st, err := get(conns[i], "alice@example.test"); err != nil || st != 200 {
				t.Errorf("client %d after its 503: %d %v", i, st, err)
			}
		}
	}
}

func TestBackendQueueTimeout(t *testing.T) {
	const queueTimeout = 200 * time.Millisecond
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := startGateway(t, gwOptions{
		Engine: fastSweep,
		Extra:  "[backend]\nconns_per_loop = 1\nmax_pipeline = 1\nqueue_timeout = \"200ms\"\n",
	}, m1)
	warm := g.Dial(t)
	if st, err := get(warm, "alice@example.test"); err != nil || st != 200 {
		t.Fatalf("warm-up: %d %v", st, err)
	}
	before := m1.Stats(t).Requests
	slow := g.Dial(t)
	slow.Send(t, aliceGET("X-Mailboxd-Delay: 1500ms\r\n"))
	if !waitFor(5*time.Second, func() bool { return m1.Stats(t).Requests == before+1 }) {
		t.Fatal("slow request did not reach the mailbox server")
	}
	queued := g.Dial(t)
	t0 := time.Now()
	queued.Send(t, aliceGET(""))
	resp, body := readResponse(t, queued, "GET")
	el := time.Since(t0)
	checkRefusal503(t, "queued request", resp, body, "queue_timeout")
	if el < queueTimeout {
		t.Errorf("503 after %v, before the queue timeout %v", el, queueTimeout)
	}
	// It gave up while the request ahead of it was still being served.
	_ = slow.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := slow.R.Peek(1); !isTimeout(err) {
		t.Errorf("the slow request was answered before the queued one timed out (%v)", err)
	}
	resp, body = readResponse(t, slow, "GET")
	if resp.StatusCode != 200 {
		t.Errorf("slow request: %d %s", resp.StatusCode, body)
	}
	snap := g.Snapshot()
	if snap.Backends[0].QueueTimeout != 1 || snap.Rejects["queue_timeout"] != 1 {
		t.Errorf("QueueTimeout %d, rejects[queue_timeout] %d; want 1 and 1", snap.Backends[0].QueueTimeout, snap.Rejects["queue_timeout"])
	}
	if got := m1.Stats(t).Requests - before; got != 1 {
		t.Errorf("mailbox server saw %d requests, want only the slow one", got)
	}
	// The queued client's connection is still usable.
	if st, err := get(queued, "alice@example.test"); err != nil || st != 200 {
		t.Errorf("after queue_timeout: %d %v", st, err)
	}
}

// A client that does not read a large response must not hold up the others
// sharing its backend connection: its response is taken off the connection
// (detached) and the others move on; the response still arrives intact.
func TestSlowReaderDoesNotStallOthers(t *testing.T) {
	const size = 32 << 20
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := startGateway(t, gwOptions{
		Extra: "[limits]\nclient_buffer_bytes = 65536\nmax_response_buffer_bytes = 67108864\n" +
			"[backend]\nconns_per_loop = 1\n",
	}, m1)
	warm := g.Dial(t)
	if st, err := get(warm, "alice@example.test"); err != nil || st != 200 {
		t.Fatalf("warm-up: %d %v", st, err)
	}
	a := dialSmallRcvBuf(t, g)
	a.Send(t, aliceGET(fmt.Sprintf("X-Mailboxd-Size: %d\r\n", size)))

	const clients, rounds = 20, 20
	deadline := time.Now().Add(10 * time.Second)
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", g.Addr, 5*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(deadline)
			r := bufio.NewReader(c)
			for j := 0; j < rounds; j++ {
				if _, err := fmt.Fprintf(c, "GET /owa/?c=%d&r=%d HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\n\r\n", i, j); err != nil {
					t.Errorf("client %d round %d: %v", i, j, err)
					return
				}
				resp, err := http.ReadResponse(r, nil)
				if err != nil {
					t.Errorf("client %d round %d: %v", i, j, err)
					return
				}
				_, err = io.Copy(io.Discard, resp.Body)
				if err != nil || resp.StatusCode != 200 {
					t.Errorf("client %d round %d: %d %v", i, j, resp.StatusCode, err)
					return
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := ok.Load(); n != clients*rounds {
		t.Fatalf("%d of %d requests succeeded within 10s while one client did not read", n, clients*rounds)
	}
	snap := g.Snapshot()
	if snap.Backends[0].Detached < 1 {
		t.Errorf("Detached %d, want >= 1 (the slow reader's response taken off the shared connection)", snap.Backends[0].Detached)
	}
	if len(snap.Rejects) != 0 {
		t.Errorf("rejects: %v", snap.Rejects)
	}

	// Now A reads everything, byte-exact.
	if err := a.Conn.(*net.TCPConn).SetReadBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	_ = a.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(a.R, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.ContentLength != size {
		t.Fatalf("slow reader: status %d, length %d", resp.StatusCode, resp.ContentLength)
	}
	body := make([]byte, size)
	if n, err := io.ReadFull(resp.Body, body); err != nil {
		t.Fatalf("slow reader got %d of %d bytes: %v", n, size, err)
	}
	checkPattern(t, body)
	// And its connection is still in sync.
	if st, err := get(a, "alice@example.test"); err != nil || st != 200 {
		t.Errorf("slow reader's next request: %d %v", st, err)
	}
}

// A client that never reads a response larger than what the gateway may
// hold for it is cut off, and the shared backend pool recovers.
func TestSlowClientResponseBufferBound(t *testing.T) {
	const size = 16 << 20
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := startGateway(t, gwOptions{
		Extra: "[limits]\nclient_buffer_bytes = 65536\nmax_response_buffer_bytes = 1048576\n" +
			"[backend]\nconns_per_loop = 1\n",
	}, m1)
	c := dialSmallRcvBuf(t, g)
	c.Send(t, aliceGET(fmt.Sprintf("X-Mailboxd-Size: %d\r\n", size)))
	if !waitFor(10*time.Second, func() bool { return g.Snapshot().Rejects["slow_client"] >= 1 }) {
		t.Fatalf("no slow_client reject within 10s: %+v", g.Snapshot())
	}
	if !waitFor(5*time.Second, func() bool { return g.Snapshot().ClientsOpen == 0 }) {
		t.Fatalf("slow client not closed: ClientsOpen %d", g.Snapshot().ClientsOpen)
	}
	if n := readAll(t, c); n >= size {
		t.Errorf("client got %d bytes: the whole response, not cut off", n)
	}
	// Other clients are served (the backend connection carrying the
	// abandoned response was closed and replaced).
	other := g.Dial(t)
	for i := 0; i < 3; i++ {
		if st, err := get(other, "alice@example.test"); err != nil || st != 200 {
			t.Fatalf("request after the slow client: %d %v", st, err)
		}
	}
}

func TestPipelineBound(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := startGateway(t, gwOptions{Extra: "[limits]\nmax_pipeline_bytes = 4096\n"}, m1)

	t.Run("small pipeline served in order", func(t *testing.T) {
		c := g.Dial(t)
		var buf bytes.Buffer
		const n = 10
		for i := 0; i < n; i++ {
			delay := ""
			if i == 0 {
				delay = "X-Mailboxd-Delay: 300ms\r\n"
			}
			fmt.Fprintf(&buf, "GET /owa/?i=%d HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\n%s\r\n", i, delay)
		}
		if buf.Len() > 4096 {
			t.Fatalf("pipeline of %d bytes is over the bound", buf.Len())
		}
		c.Send(t, buf.String())
		for i := 0; i < n; i++ {
			resp, body := readResponse(t, c, "GET")
			if resp.StatusCode != 200 {
				t.Fatalf("response %d: %d %s", i, resp.StatusCode, body)
			}
			if e := echoOf(t, body); e.Target != fmt.Sprintf("/owa/?i=%d", i) {
				t.Fatalf("response %d is for %q", i, e.Target)
			}
		}
		if n := g.Snapshot().Rejects["pipeline_overflow"]; n != 0 {
			t.Errorf("pipeline_overflow %d", n)
		}
	})

	t.Run("64 KiB sent ahead of a slow request", func(t *testing.T) {
		before := m1.Stats(t).Requests
		c := g.Dial(t)
		var buf bytes.Buffer
		buf.WriteString(aliceGET("X-Mailboxd-Delay: 300ms\r\n"))
		for i := 0; buf.Len() < 64<<10; i++ {
			fmt.Fprintf(&buf, "GET /owa/?i=%d HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\n\r\n", i)
		}
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write(buf.Bytes()) // may fail: the gateway closes mid-write
		n, _ := readToClose(t, c, 5*time.Second)
		t.Logf("client read %d bytes before the close", n)
		if !waitFor(2*time.Second, func() bool { return g.Snapshot().Rejects["pipeline_overflow"] == 1 }) {
			t.Errorf("rejects %v, want pipeline_overflow 1", g.Snapshot().Rejects)
		}
		// At most the first request reached the server; none of the
		// pipelined ones.
		time.Sleep(400 * time.Millisecond)
		if got := m1.Stats(t).Requests - before; got > 1 {
			t.Errorf("mailbox server saw %d requests from the overflowing client", got)
		}
		other := g.Dial(t)
		if st, err := get(other, "alice@example.test"); err != nil || st != 200 {
			t.Errorf("request after the overflow: %d %v", st, err)
		}
	})
}

// A server that answers before reading the whole request body (here: an
// oversized header block, which mailboxd refuses with 431 as soon as it has
// read 64 KiB of it) leaves its connection out of sync: the gateway relays
// the answer, tells the client the connection closes, and closes both.
func TestEarlyResponseBeforeBody(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := startGateway(t, gwOptions{
		Extra: "[limits]\nmax_header_bytes = 131072\n[backend]\nconns_per_loop = 1\n",
	}, m1)
	warm := g.Dial(t)
	if st, err := get(warm, "alice@example.test"); err != nil || st != 200 {
		t.Fatalf("warm-up: %d %v", st, err)
	}
	before := m1.Stats(t)

	c := g.Dial(t)
	c.Send(t, "POST /owa/upload HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\n"+
		"Content-Length: 5242880\r\nX-Big: "+strings.Repeat("x", 80<<10)+"\r\n\r\n")
	// Part of the body, then nothing: the answer must not wait for the rest.
	c.Send(t, strings.Repeat("b", 256<<10))
	resp, body := readResponse(t, c, "POST")
	if resp.StatusCode != 431 {
		t.Fatalf("status %d, want the server's 431: %s", resp.StatusCode, body)
	}
	if !resp.Close {
		t.Errorf("early response relayed without Connection: close, although the gateway closes the connection after it (the request body was never finished)")
	}
	if n, _ := readToClose(t, c, 5*time.Second); n != 0 {
		t.Errorf("%d bytes after the early response", n)
	}
	// The backend connection was not reused: a new one serves what follows.
	other := g.Dial(t)
	for i := 0; i < 3; i++ {
		if st, err := get(other, "alice@example.test"); err != nil || st != 200 {
			t.Fatalf("request after the early response: %d %v", st, err)
		}
	}
	if st := m1.Stats(t); st.ConnectionsAccepted != before.ConnectionsAccepted+1 || st.Requests != before.Requests+3 {
		t.Errorf("backend: accepted %d -> %d, requests %d -> %d; want one new connection and 3 requests",
			before.ConnectionsAccepted, st.ConnectionsAccepted, before.Requests, st.Requests)
	}
}
