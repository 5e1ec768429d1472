package gateway_test

// The gateway as a load-balancer pool member: its health pages, the
// component states and the drain they start, and the health of the
// mailbox servers behind it (active checks, outlier detection).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"frontdoor/directory"
	"frontdoor/gateway"
	"frontdoor/internal/gwtest"
	"frontdoor/internal/testbed"
	"frontdoor/mailboxd"
)

// adminOn is the [admin] section of a test gateway: the admin endpoint on
// a port of its own.
func adminOn(t testing.TB) string {
	return fmt.Sprintf("[admin]\naddress = \"127.0.0.1:%d\"\n", testbed.FreePort(t, "127.0.0.1"))
}

// probe GETs (or HEADs) url on a new connection and returns the status,
// the body and the Retry-After field.
func probe(t testing.TB, method, url string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp.StatusCode, string(body), resp.Header.Get("Retry-After")
}

// healthOf is the status and body of a protocol's health page.
func healthOf(t testing.TB, g *gwtest.Gateway, prefix string) (int, string) {
	t.Helper()
	st, body, _ := probe(t, "GET", "http://"+g.Addr+prefix+"/healthcheck.htm")
	return st, body
}

// postState sets a component's state through the admin endpoint and
// returns the HTTP status and the raw answer.
func postState(t testing.TB, g *gwtest.Gateway, component, state string) (int, []byte) {
	t.Helper()
	body, _ := json.Marshal(gateway.StateRequest{Component: component, State: state})
	resp, err := http.Post("http://"+g.AdminAddr()+"/state", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// setState is postState that must succeed.
func setState(t testing.TB, g *gwtest.Gateway, component, state string) {
	t.Helper()
	if code, out := postState(t, g, component, state); code != 200 {
		t.Fatalf("POST /state %s %s: %d %s", component, state, code, out)
	}
}

// backendHealth is the /stats health of server name's endpoint.
func backendHealth(t *testing.T, g *gwtest.Gateway, name string) gateway.BackendHealth {
	t.Helper()
	return backendOf(t, g, name).Health
}

// syncBuffer is a log sink tests read while the gateway writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestHealthPages: each protocol's health page is the gateway's own
// answer (anonymous even on an authenticating protocol, never forwarded,
// HEAD framed right), 200 while the protocol can serve and 503 with the
// reason when its component or ServerWideOffline is inactive or no healthy
// server holds an active database, which a directory reload changes at
// once. Requests are served all along.
func TestHealthPages(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	m2 := testbed.StartMailboxd(t, "mbx2")
	g := gwtest.Start(t, gwtest.Options{ProtocolExtra: `auth = ["basic"]`,
		Extra: adminOn(t) + "[backend]\nhealth_interval = \"100ms\"\nhealth_timeout = \"100ms\"\noutlier_consecutive_failures = 0\n"}, m1, m2)
	before := m1.Stats(t).Requests + m2.Stats(t).Requests
	base := "http://" + g.Addr

	// 200 "200 OK<br/>ID" for every protocol, without credentials.
	for _, prefix := range []string{"/owa", "/EWS", "/ews", "/Microsoft-Server-ActiveSync"} {
		if st, body := healthOf(t, g, prefix); st != 200 || body != "200 OK<br/>gw-test\n" {
			t.Errorf("%s/healthcheck.htm: %d %q", prefix, st, body)
		}
	}
	if st, body, _ := probe(t, "GET", base+"/mapi/HealthCheck.HTM?x=1"); st != 200 || !strings.HasPrefix(body, "200 OK") {
		t.Errorf("case-insensitive page with a query: %d %q", st, body)
	}
	// HEAD: the GET's head, no body; the connection stays usable.
	c := g.Dial(t)
	c.Send(t, "HEAD /owa/healthcheck.htm HTTP/1.1\r\nHost: h\r\n\r\nGET /owa/healthcheck.htm HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, body := readResponse(t, c, "HEAD"); resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != int64(len("200 OK<br/>gw-test\n")) || resp.Close {
		t.Errorf("HEAD: %d length %d close %v body %q", resp.StatusCode, resp.ContentLength, resp.Close, body)
	}
	if resp, body := readResponse(t, c, "GET"); resp.StatusCode != 200 || string(body) != "200 OK<br/>gw-test\n" {
		t.Errorf("GET after HEAD: %d %q", resp.StatusCode, body)
	}
	if st, _, _ := probe(t, "POST", base+"/owa/healthcheck.htm"); st != 405 {
		t.Errorf("POST to the health page: %d, want 405", st)
	}
	// Only the page itself: other paths authenticate as before.
	if st, _, _ := probe(t, "GET", base+"/owa/healthcheck.htm/x"); st != 401 {
		t.Errorf("/owa/healthcheck.htm/x: %d, want 401", st)
	}
	if got := m1.Stats(t).Requests + m2.Stats(t).Requests; got != before {
		t.Errorf("the mailbox servers saw %d requests: health probes were forwarded", got-before)
	}
	snap := g.Snapshot()
	if snap.Health.ProbesOK != 7 || snap.Requests != 2 {
		t.Errorf("probes_ok %d, requests %d; want 7 probes and the 2 other requests", snap.Health.ProbesOK, snap.Requests)
	}

	aliceOWA := func() int {
		req, _ := http.NewRequest("GET", base+"/owa/", nil)
		req.Header.Set("Authorization", basic("alice", gwtest.Password))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	// A protocol's component: its page only, at once.
	setState(t, g, "owa", "inactive")
	if st, body := healthOf(t, g, "/owa"); st != 503 || body != "503 Service Unavailable<br/>gw-test: component owa is inactive\n" {
		t.Errorf("owa inactive: /owa %d %q", st, body)
	}
	if st, _ := healthOf(t, g, "/EWS"); st != 200 {
		t.Errorf("owa inactive: /EWS %d", st)
	}
	if st := aliceOWA(); st != 200 {
		t.Errorf("owa inactive: a request got %d; inactive protocols still serve", st)
	}
	// ServerWideOffline: every page, whatever the protocol's own state.
	setState(t, g, "serverwideoffline", "inactive") // case does not matter
	setState(t, g, "owa", "active")
	for _, prefix := range []string{"/owa", "/EWS"} {
		if st, body := healthOf(t, g, prefix); st != 503 || !strings.Contains(body, "ServerWideOffline is inactive") {
			t.Errorf("ServerWideOffline inactive: %s %d %q", prefix, st, body)
		}
	}
	setState(t, g, "ServerWideOffline", "active")
	for _, prefix := range []string{"/owa", "/EWS"} {
		if st, _ := healthOf(t, g, prefix); st != 200 {
			t.Errorf("all active again: %s %d", prefix, st)
		}
	}
	if code, out := postState(t, g, "pop3", "inactive"); code != 400 || !strings.Contains(string(out), "unknown component") {
		t.Errorf("unknown component: %d %s", code, out)
	}
	if code, out := postState(t, g, "owa", "offline"); code != 400 {
		t.Errorf("bad state: %d %s", code, out)
	}
	snap = g.Snapshot()
	if len(snap.Health.Components) != 1+len(gwtest.Protocols) || snap.Health.Components[0].Component != "ServerWideOffline" ||
		snap.Health.Protocols["owa"].Status != 200 || snap.Health.ProbesFailed != 3 {
		t.Errorf("/stats health: %+v", snap.Health)
	}

	// No healthy server holds an active database: 503, and a directory
	// reload that moves the databases changes the page without waiting
	// for a check.
	failHealth(t, m2, 503)
	if !waitFor(5*time.Second, func() bool { return !backendHealth(t, g, "mbx2").Healthy }) {
		t.Fatal("mbx2 not marked unhealthy")
	}
	if st, _ := healthOf(t, g, "/owa"); st != 200 {
		t.Errorf("mbx1 still healthy and active: /owa %d", st)
	}
	moved := strings.Replace(gwtest.DirectoryTOML(m1, m2), "active = \"mbx1\"", "active = \"mbx2\"", 1)
	g.SetDirectory(mustDirectory(t, moved))
	if st, body := healthOf(t, g, "/owa"); st != 503 || !strings.Contains(body, "no healthy mailbox server holds an active database for owa") {
		t.Errorf("every active database on unhealthy mbx2: /owa %d %q", st, body)
	}
	g.SetDirectory(mustDirectory(t, gwtest.DirectoryTOML(m1, m2)))
	if st, _ := healthOf(t, g, "/owa"); st != 200 {
		t.Errorf("DB01 back on mbx1: /owa %d", st)
	}
}

// failHealth makes m's health page answer status (200 restores it).
func failHealth(t testing.TB, m *testbed.Mailboxd, status int) {
	t.Helper()
	resp, err := http.Post(m.URL(fmt.Sprintf("%s?status=%d", mailboxd.HealthControlPath, status)), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("mailboxd health control: %s", resp.Status)
	}
}

func mustDirectory(t testing.TB, text string) *directory.Directory {
	t.Helper()
	d, err := directory.Parse("directory.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestHealthPageWhileStopping: a probe read while the gateway drains
// (its head was partly there when the drain began) answers 503 and
// closes. (A connection made during the drain is refused with 503 before
// any request: TestGracefulDrain.)
func TestHealthPageWhileStopping(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := startGateway(t, gwOptions{Engine: fastSweep}, m1)
	c := g.Dial(t)
	c.Send(t, "GET /owa/healthcheck.htm HTTP/1.1\r\nHost: h\r\n")
	time.Sleep(50 * time.Millisecond)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		g.Stop(t)
	}()
	if !waitFor(5*time.Second, func() bool { return g.Snapshot().Health.Protocols["owa"].Status == 503 }) {
		t.Fatal("the drain did not begin")
	}
	c.Send(t, "\r\n")
	resp, body := readResponse(t, c, "GET")
	if resp.StatusCode != 503 || !resp.Close || string(body) != "503 Service Unavailable<br/>gw-test: stopping\n" {
		t.Errorf("probe during the drain: %d close %v %q", resp.StatusCode, resp.Close, body)
	}
	readToClose(t, c, 5*time.Second)
	<-stopped
}

// kaClient is a keep-alive HTTP client that counts the connections it
// opens and the requests that failed.

type kaClient struct {
	*http.Client
	dials, closes, ok, failed atomic.Int64
	lastErr                   atomic.Value
}

func newKAClient(conns int) *kaClient {
	k := &kaClient{}
	d := &net.Dialer{Timeout: 5 * time.Second}
	k.Client = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: conns,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			k.dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
	}}
	return k
}

// run sends GETs of url from n goroutines until stop is closed.
func (k *kaClient) run(wg *sync.WaitGroup, stop <-chan struct{}, n int, url string) {
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := k.Get(url)
				if err != nil {
					k.failed.Add(1)
					k.lastErr.Store(err.Error())
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch {
				case err != nil || resp.StatusCode != 200:
					k.failed.Add(1)
					k.lastErr.Store(fmt.Sprintf("%s %v", resp.Status, err))
				default:
					k.ok.Add(1)
				}
				if resp.Close {
					k.closes.Add(1)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
}

// TestComponentDrainWithoutFailedRequests is the load balancer's drain:
// keep-alive clients send requests continuously while a component goes
// inactive. Its health page answers 503 at once; its connections are kept
// through the grace period (no new connection); then every response says
// "Connection: close" and idle connections are closed, so its clients
// reconnect for each request (the load balancer would have sent them
// elsewhere); other protocols' connections are untouched until
// ServerWideOffline. Back to active, connections are kept alive again.
// Not one request fails.
func TestComponentDrainWithoutFailedRequests(t *testing.T) {
	const grace = time.Second
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := startGateway(t, gwOptions{Loops: 2, Engine: fastSweep,
		Extra: adminOn(t) + fmt.Sprintf("[state]\ndrain_grace = %q\n", grace)}, m1)
	base := "http://" + g.Addr
	owa, ews := newKAClient(4), newKAClient(2)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	owa.run(&wg, stop, 4, base+"/owa/u/alice@example.test/inbox")
	ews.run(&wg, stop, 2, base+"/EWS/u/carol@example.test/Exchange.asmx")
	stopped := false
	stopClients := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopClients()
	// Idle keep-alive connections: one that served OWA, one EWS, one that
	// never sent a request.
	idleOWA, idleEWS, fresh := g.Dial(t), g.Dial(t), g.Dial(t)
	for _, ic := range []struct {
		c    *gwtest.Client
		path string
	}{{idleOWA, "/owa/u/alice@example.test/"}, {idleEWS, "/EWS/u/alice@example.test/"}} {
		ic.c.Send(t, "GET "+ic.path+" HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp, _ := readResponse(t, ic.c, "GET"); resp.StatusCode != 200 {
			t.Fatalf("idle connection's request: %d", resp.StatusCode)
		}
	}
	stillOpen := func(c *gwtest.Client) bool {
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := c.R.ReadByte()
		return isTimeout(err)
	}
	time.Sleep(300 * time.Millisecond)

	// owa inactive: 503 at once, connections kept during the grace.
	d0, e0 := owa.dials.Load(), ews.dials.Load()
	setState(t, g, "owa", "inactive")
	t0 := time.Now()
	if st, _ := healthOf(t, g, "/owa"); st != 503 {
		t.Errorf("owa inactive: health %d, want 503 at once", st)
	}
	time.Sleep(grace - 300*time.Millisecond)
	if d, c := owa.dials.Load()-d0, owa.closes.Load(); d != 0 || c != 0 {
		t.Errorf("during the grace: %d new owa connections and %d Connection: close answers, want none", d, c)
	}
	if !stillOpen(idleOWA) {
		t.Error("idle owa connection closed during the grace")
	}
	okDuringGrace := owa.ok.Load()

	// After the grace: owa connections end, EWS ones do not.
	time.Sleep(time.Until(t0.Add(grace + 700*time.Millisecond)))
	if d := owa.dials.Load() - d0; d < 10 || owa.closes.Load() < 10 {
		t.Errorf("after the grace: %d new owa connections, %d Connection: close answers; want every request on a new one", d, owa.closes.Load())
	}
	if owa.ok.Load() <= okDuringGrace {
		t.Error("owa requests stopped being served after the grace")
	}
	readToClose(t, idleOWA, 2*time.Second)
	if !stillOpen(idleEWS) || !stillOpen(fresh) {
		t.Error("owa inactive closed an EWS connection or one that never sent a request")
	}
	if d := ews.dials.Load() - e0; d != 0 || ews.closes.Load() != 0 {
		t.Errorf("owa inactive: %d new EWS connections, %d closes; want none", d, ews.closes.Load())
	}

	// Active again: connections are kept alive again.
	setState(t, g, "owa", "active")
	if st, _ := healthOf(t, g, "/owa"); st != 200 {
		t.Errorf("owa active: health %d", st)
	}
	time.Sleep(200 * time.Millisecond)
	d1 := owa.dials.Load()
	time.Sleep(500 * time.Millisecond)
	if d := owa.dials.Load() - d1; d != 0 {
		t.Errorf("owa active again: %d new connections in 500ms, want none (keep-alive)", d)
	}

	// ServerWideOffline: every protocol. The connection that never sent a
	// request stays open (closing it could cut off a first request on its
	// way); its first request is answered with Connection: close.
	e1 := ews.dials.Load()
	setState(t, g, "ServerWideOffline", "inactive")
	time.Sleep(grace + 700*time.Millisecond)
	if d := ews.dials.Load() - e1; d < 5 {
		t.Errorf("ServerWideOffline: %d new EWS connections after the grace, want one per request", d)
	}
	readToClose(t, idleEWS, 2*time.Second)
	if !stillOpen(fresh) {
		t.Error("ServerWideOffline closed a connection that never sent a request")
	}
	fresh.Send(t, "GET /mapi/u/alice@example.test/ HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, _ := readResponse(t, fresh, "GET"); resp.StatusCode != 200 || !resp.Close {
		t.Errorf("first request after ServerWideOffline's grace: %d close %v, want 200 and close", resp.StatusCode, resp.Close)
	}
	readToClose(t, fresh, 2*time.Second)
	setState(t, g, "ServerWideOffline", "active")
	time.Sleep(200 * time.Millisecond)
	stopClients()

	t.Logf("owa: %d ok, %d connections, %d closes; ews: %d ok, %d connections, %d closes",
		owa.ok.Load(), owa.dials.Load(), owa.closes.Load(), ews.ok.Load(), ews.dials.Load(), ews.closes.Load())
	for name, k := range map[string]*kaClient{"owa": owa, "ews": ews} {
		if n := k.failed.Load(); n != 0 {
			t.Errorf("%s: %d failed requests (last: %v), want 0", name, n, k.lastErr.Load())
		}
	}
}

// TestBackendHealthActive: a server that fails its health checks is marked
// unhealthy within a few intervals (its mailboxes get 503 with
// Retry-After, the others are served); with no healthy server holding an
// active database the health pages answer 503; good checks bring the
// servers back. Transitions are logged.
func TestBackendHealthActive(t *testing.T) {
	const interval = 200 * time.Millisecond
	m1 := testbed.StartMailboxd(t, "mbx1")
	m2 := testbed.StartMailboxd(t, "mbx2")
	var log syncBuffer
	g := startGateway(t, gwOptions{Loops: 2, Log: &log, Extra: fmt.Sprintf(
		"[backend]\nhealth_interval = %q\nhealth_timeout = %q\nunhealthy_threshold = 3\nhealthy_threshold = 2\noutlier_consecutive_failures = 0\n",
		interval, interval)}, m1, m2)
	c := g.Dial(t)
	if st, err := get(c, "alice@example.test"); err != nil || st != 200 {
		t.Fatalf("alice: %d %v", st, err)
	}
	// The first round of checks runs at start.
	waitFor(2*time.Second, func() bool { return !backendHealth(t, g, "mbx1").LastCheck.IsZero() })
	if h := backendHealth(t, g, "mbx1"); !h.Healthy || h.LastCheck.IsZero() || h.LastError != "" {
		t.Errorf("mbx1 at start: %+v", h)
	}
	// Detection: 3 failed checks, within 3 intervals plus slack for the
	// check already under way and scheduling.
	bound := 5*interval + time.Second
	failHealth(t, m1, 503)
	t0 := time.Now()
	if !waitFor(bound, func() bool { return !backendHealth(t, g, "mbx1").Healthy }) {
		t.Fatalf("mbx1 not unhealthy within %v: %+v", bound, backendHealth(t, g, "mbx1"))
	}
	t.Logf("mbx1 marked unhealthy %v after its page began to fail", time.Since(t0))
	if h := backendHealth(t, g, "mbx1"); !strings.Contains(h.Reason, "3 consecutive failed health checks") || !strings.Contains(h.Reason, "503") {
		t.Errorf("reason: %q", h.Reason)
	}
	before := m1.Stats(t).Requests
	c.Send(t, aliceGET(""))
	resp, body := readResponse(t, c, "GET")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "2" || !strings.Contains(string(body), "unhealthy") {
		t.Errorf("alice on unhealthy mbx1: %d Retry-After %q %q", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if got := m1.Stats(t).Requests; got != before {
		t.Errorf("the unhealthy server got %d requests", got-before)
	}
	if st, err := get(c, "bob@example.test"); err != nil || st != 200 {
		t.Errorf("bob on healthy mbx2: %d %v", st, err)
	}
	if st, _ := healthOf(t, g, "/owa"); st != 200 {
		t.Errorf("mbx2 healthy and active for DB02: health %d", st)
	}
	// mbx2 dies: nothing left to serve.
	m2.Stop()
	if !waitFor(bound, func() bool { return !backendHealth(t, g, "mbx2").Healthy }) {
		t.Fatalf("stopped mbx2 not unhealthy within %v", bound)
	}
	if st, body := healthOf(t, g, "/owa"); st != 503 || !strings.Contains(body, "no healthy mailbox server") {
		t.Errorf("no healthy server: health %d %q", st, body)
	}
	// Back: 2 good checks.
	failHealth(t, m1, 200)
	m2.Restart(t)
	for _, name := range []string{"mbx1", "mbx2"} {
		if !waitFor(bound, func() bool { return backendHealth(t, g, name).Healthy }) {
			t.Fatalf("%s not healthy again within %v: %+v", name, bound, backendHealth(t, g, name))
		}
	}
	if st, _ := healthOf(t, g, "/owa"); st != 200 {
		t.Errorf("servers back: health %d", st)
	}
	for _, who := range []string{"alice@example.test", "bob@example.test"} {
		if st, err := get(c, who); err != nil || st != 200 {
			t.Errorf("%s after recovery: %d %v", who, st, err)
		}
	}
	out := log.String()
	if strings.Count(out, "mailbox server unhealthy") != 2 || strings.Count(out, "mailbox server healthy again") != 2 {
		t.Errorf("transitions not logged once each:\n%s", out)
	}
}

// TestBackendOutlierDetection: consecutive failures on live traffic (5xx
// answers, failed connects) mark a server unhealthy at once, between two
// active checks; a success in between resets the count; the active
// checks bring the server back.
func TestBackendOutlierDetection(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	m2 := testbed.StartMailboxd(t, "mbx2")
	var log syncBuffer
	g := startGateway(t, gwOptions{Loops: 2, Log: &log, Extra: "[backend]\nhealth_interval = \"1s\"\nhealth_timeout = \"500ms\"\n" +
		"healthy_threshold = 2\nunhealthy_threshold = 3\noutlier_consecutive_failures = 5\nreconnect_min = \"50ms\"\nreconnect_max = \"200ms\"\n"}, m1, m2)
	c := g.Dial(t)
	fail := func(n int) {
		t.Helper()
		for range n {
			c.Send(t, aliceGET("X-Mailboxd-Status: 500\r\n"))
			if resp, _ := readResponse(t, c, "GET"); resp.StatusCode != 500 {
				t.Fatalf("a 500 from the server came back as %d", resp.StatusCode)
			}
		}
	}
	fail(4)
	if st, err := get(c, "alice@example.test"); err != nil || st != 200 {
		t.Fatalf("alice: %d %v", st, err)
	}
	fail(4) // 4 + success + 4: no run of 5
	if h := backendHealth(t, g, "mbx1"); !h.Healthy || h.Ejections != 0 {
		t.Fatalf("ejected without 5 consecutive failures: %+v", h)
	}
	fail(1) // the fifth in a row
	before := m1.Stats(t).Requests
	c.Send(t, aliceGET(""))
	resp, body := readResponse(t, c, "GET")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("after 5 consecutive 500s: %d %q, want 503 from the gateway", resp.StatusCode, body)
	}
	if got := m1.Stats(t).Requests; got != before {
		t.Errorf("the ejected server got %d requests", got-before)
	}
	if !waitFor(2*time.Second, func() bool {
		h := backendHealth(t, g, "mbx1")
		return h.Ejections == 1 && strings.Contains(h.Reason, "500 response")
	}) {
		t.Errorf("ejection not recorded: %+v", backendHealth(t, g, "mbx1"))
	}
	// Its checks pass: back within 2 intervals (and one under way).
	if !waitFor(4*time.Second, func() bool { return backendHealth(t, g, "mbx1").Healthy }) {
		t.Fatal("ejected mbx1 did not come back")
	}
	if st, err := get(c, "alice@example.test"); err != nil || st != 200 {
		t.Errorf("alice after recovery: %d %v", st, err)
	}

	// Failed connects: mbx2 is killed; its pools' dials fail and eject it
	// long before 3 failed checks would.
	if st, err := get(c, "bob@example.test"); err != nil || st != 200 {
		t.Fatalf("bob: %d %v", st, err)
	}
	m2.Stop()
	t0 := time.Now()
	var st int
	for time.Since(t0) < 5*time.Second {
		var err error
		if st, err = get(c, "bob@example.test"); err != nil {
			t.Fatal(err)
		}
		if st == 503 {
			break
		}
		if st != 502 {
			t.Fatalf("bob's server down: %d", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st != 503 {
		t.Fatal("mbx2 not ejected by failed connects")
	}
	t.Logf("mbx2 ejected %v after it was killed", time.Since(t0))
	if !waitFor(2*time.Second, func() bool { return strings.Contains(backendHealth(t, g, "mbx2").Reason, "outlier") }) {
		t.Errorf("mbx2: %+v", backendHealth(t, g, "mbx2"))
	}
	if n := strings.Count(log.String(), "consecutive failures on live traffic"); n != 2 {
		t.Errorf("%d ejections logged, want 2:\n%s", n, log.String())
	}
}

// TestBackendHealthTLS: servers reached over TLS are checked over TLS,
// verified like the pools' connections: a server whose certificate does
// not verify is unhealthy.
func TestBackendHealthTLS(t *testing.T) {
	tmp := t.TempDir()
	ca := newTestCA(t, tmp, "backend-ca")
	other := newTestCA(t, tmp, "other-ca")
	m := startTLSMailboxd(t, "mbx-tls", ca.leaf(t, "mbx-tls.example.test"))
	plain := testbed.StartMailboxd(t, "mbx-plain")
	keys := `tls_server_name = "mbx-tls.example.test"`
	checks := "\nhealth_interval = \"100ms\"\nhealth_timeout = \"100ms\"\nunhealthy_threshold = 2\n"
	g := upstreamGateway(t, m, keys, fmt.Sprintf("tls_ca = %q", ca.pem)+checks, plain)
	hs := m.handshakes.Load()
	if !waitFor(5*time.Second, func() bool { return m.handshakes.Load() > hs+1 }) {
		t.Fatal("no TLS health checks")
	}
	if h := backendHealth(t, g, m.name); !h.Healthy || h.LastCheck.IsZero() || h.LastError != "" {
		t.Errorf("TLS server with a good certificate: %+v", h)
	}
	bad := upstreamGateway(t, m, keys, fmt.Sprintf("tls_ca = %q", other.pem)+checks, plain)
	if !waitFor(5*time.Second, func() bool { return !backendHealth(t, bad, m.name).Healthy }) {
		t.Fatalf("TLS server whose certificate does not verify stays healthy: %+v", backendHealth(t, bad, m.name))
	}
	if h := backendHealth(t, bad, m.name); !strings.Contains(h.Reason, "TLS handshake") {
		t.Errorf("reason %q", h.Reason)
	}
}

// TestStateCommandsOnRunningBinary: `frontdoor state set|get` drive a
// running `frontdoor run` through its admin endpoint; the states are in
// the state file and survive a restart (the health page answers 503 from
// the first probe after it).
func TestStateCommandsOnRunningBinary(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort(t, "127.0.0.1"))
	admin := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort(t, "127.0.0.1"))
	stateFile := filepath.Join(dir, "var", "state.json")
	cfgFile := filepath.Join(dir, "frontdoor.toml")
	writeFile(t, cfgFile, fmt.Sprintf(`directory = "directory.toml"
gateway_id = "fd-test"
[engine]
loops = 2
[admin]
address = %q
[state]
file = "var/state.json"
[[listener]]
name = "http"
address = %q
[[protocol]]
name = "owa"
path_prefix = "/owa"
backend_port = 1
[[protocol]]
name = "ews"
path_prefix = "/EWS"
backend_port = 1
`, admin, addr))
	writeFile(t, filepath.Join(dir, "directory.toml"), gwtest.DirectoryTOML(m1))
	health := func(prefix string) int {
		t.Helper()
		st, _, _ := probe(t, "GET", "http://"+addr+prefix+"/healthcheck.htm")
		return st
	}
	// start runs the gateway and returns once it answers (whatever the
	// health page says).
	start := func() *testbed.Process {
		t.Helper()
		p := testbed.StartProcess(t, "run", "--config", cfgFile)
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
		if !waitFor(10*time.Second, func() bool {
			resp, err := c.Get("http://" + addr + "/EWS/healthcheck.htm")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil
		}) {
			t.Fatalf("gateway not answering:\n%s", p.Output())
		}
		return p
	}
	stop := func(p *testbed.Process) {
		t.Helper()
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code, err := p.Wait(20 * time.Second); code != 0 || err != nil {
			t.Fatalf("gateway exit %d %v\n%s", code, err, p.Output())
		}
	}
	state := func(args ...string) (int, string) {
		t.Helper()
		p := testbed.StartProcess(t, append([]string{"state"}, args...)...)
		code, err := p.Wait(20 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return code, p.Output()
	}

	gw := start()
	if _, err := os.Stat(stateFile); err != nil {
		t.Fatalf("state file not created at start: %v", err)
	}
	if health("/owa") != 200 || health("/EWS") != 200 {
		t.Fatal("health pages not 200 at start")
	}
	if code, out := state("set", "--component", "owa", "--state", "inactive", "--admin", admin); code != 0 || !strings.HasPrefix(out, "owa: inactive since ") {
		t.Fatalf("state set: exit %d %q", code, out)
	}
	if health("/owa") != 503 || health("/EWS") != 200 {
		t.Errorf("after state set owa inactive: /owa %d /EWS %d", health("/owa"), health("/EWS"))
	}
	code, out := state("get", "--admin", admin)
	if code != 0 || !regexp.MustCompile(`(?m)^owa +inactive +\d{4}-`).MatchString(out) || !regexp.MustCompile(`(?m)^ServerWideOffline +active +- `).MatchString(out) {
		t.Errorf("state get: exit %d\n%s", code, out)
	}
	code, out = state("get", "--admin", admin, "--json")
	var listed []gateway.ComponentState
	if err := json.Unmarshal([]byte(out), &listed); code != 0 || err != nil || len(listed) != 3 || listed[1].Component != "owa" || listed[1].State != "inactive" {
		t.Errorf("state get --json: exit %d %v\n%s", code, err, out)
	}
	if code, out := state("set", "--component", "pop3", "--state", "inactive", "--admin", admin); code != 2 || !strings.Contains(out, `unknown component "pop3"`) {
		t.Errorf("unknown component: exit %d %q", code, out)
	}
	var file struct{ Components []gateway.ComponentState }
	data, err := os.ReadFile(stateFile)
	if err == nil {
		err = json.Unmarshal(data, &file)
	}
	if err != nil || len(file.Components) != 3 || file.Components[1].State != "inactive" || !file.Components[1].Since.Equal(listed[1].Since) {
		t.Errorf("state file: %v\n%s", err, data)
	}

	// A restart keeps it, from the first answer on.
	stop(gw)
	if code, out := state("get", "--admin", admin); code != 1 || !strings.Contains(out, "is the gateway running") {
		t.Errorf("state get with no gateway: exit %d %q", code, out)
	}
	gw = start()
	if health("/owa") != 503 || health("/EWS") != 200 {
		t.Errorf("after the restart: /owa %d /EWS %d, want 503 and 200", health("/owa"), health("/EWS"))
	}
	if !strings.Contains(gw.Output(), "component inactive since before the start") {
		t.Errorf("restart did not log the inactive component:\n%s", gw.Output())
	}
	if code, out := state("set", "--component", "owa", "--state", "active", "--admin", admin); code != 0 || !strings.HasPrefix(out, "owa: active") {
		t.Fatalf("state set active: exit %d %q", code, out)
	}
	if code, _ := state("set", "--component", "serverwideoffline", "--state", "inactive", "--admin", admin); code != 0 {
		t.Fatal("ServerWideOffline inactive")
	}
	stop(gw)
	gw = start()
	if health("/owa") != 503 || health("/EWS") != 503 {
		t.Errorf("ServerWideOffline across a restart: /owa %d /EWS %d, want 503", health("/owa"), health("/EWS"))
	}
	// A state that cannot be written does not take effect: exit 1.
	if err := os.RemoveAll(filepath.Dir(stateFile)); err != nil {
		t.Fatal(err)
	}
	if code, out := state("set", "--component", "ServerWideOffline", "--state", "active", "--admin", admin); code != 1 || !strings.Contains(out, "component state not changed") {
		t.Errorf("unwritable state file: exit %d %q", code, out)
	}
	if health("/EWS") != 503 {
		t.Error("ServerWideOffline went active although the state file was not written")
	}
}
