package gateway_test

// Connection lifecycle end to end: the client-side timeouts enforced by the
// per-loop sweep, and the graceful drain (in process and as a real process
// stopped with SIGTERM).

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"frontdoor/directory"
	"frontdoor/gateway"
	"frontdoor/gateway/config"
	"frontdoor/internal/gwtest"
	"frontdoor/internal/testbed"
	"frontdoor/mailboxd"
)

// gwOptions is gwtest.Options plus keys of the [engine] section, which
// gwtest.Start writes itself (so [engine] cannot be repeated in its Extra).
type gwOptions struct {
	Loops  int    // engine.loops (default 1)
	Engine string // more [engine] keys, e.g. "sweep_interval = \"50ms\"\n"
	Extra  string // other sections, appended
	Log    io.Writer
}

// startGateway runs an in-process gateway like gwtest.Start, with the
// [engine] section under the test's control.
func startGateway(t *testing.T, o gwOptions, servers ...*testbed.Mailboxd) *gwtest.Gateway {
	t.Helper()
	cfg, dir, addr := gatewayConfig(t, o, servers...)
	return gwtest.StartWith(t, cfg, dir, addr, o.Log)
}

func gatewayConfig(t *testing.T, o gwOptions, servers ...*testbed.Mailboxd) (*config.Config, *directory.Directory, string) {
	t.Helper()
	if o.Loops == 0 {
		o.Loops = 1
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort(t, "127.0.0.1"))
	var b strings.Builder
	fmt.Fprintf(&b, "directory = \"directory.toml\"\ngateway_id = \"gw-test\"\n[engine]\nloops = %d\n%s", o.Loops, o.Engine)
	fmt.Fprintf(&b, "[[listener]]\nname = \"http\"\naddress = %q\n", addr)
	for _, p := range gwtest.Protocols {
		name, prefix, _ := strings.Cut(p, ":")
		fmt.Fprintf(&b, "[[protocol]]\nname = %q\npath_prefix = %q\nbackend_port = 1\n", name, prefix)
	}
	b.WriteString(o.Extra)
	cfg, err := config.Parse("test.toml", []byte(b.String()))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, b.String())
	}
	dir, err := directory.Parse("directory.toml", []byte(gwtest.DirectoryTOML(servers...)))
	if err != nil {
		t.Fatalf("directory: %v", err)
	}
	return cfg, dir, addr
}

// startGatewayBounded is startGateway for a test that may wedge an event
// loop: its cleanup waits at most 3 s for the gateway to stop (gwtest's
// waits 30 s) and then reports it and leaves it behind.
func startGatewayBounded(t *testing.T, o gwOptions, servers ...*testbed.Mailboxd) *gwtest.Gateway {
	t.Helper()
	cfg, dir, addr := gatewayConfig(t, o, servers...)
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	g, err := gateway.New(cfg, dir, slog.New(slog.NewTextHandler(logw, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() { done <- g.Serve(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("gateway did not start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not start in 10s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			t.Errorf("gateway did not stop within 3s (an event loop is stuck?)")
		}
	})
	return &gwtest.Gateway{Gateway: g, Addr: addr, Config: cfg, Dir: dir}
}

const fastSweep = "sweep_interval = \"50ms\"\n"

// aliceGET is a keep-alive GET routed to the first mailbox server, with
// extra header lines (each ending in CRLF).
func aliceGET(extra string) string {
	return "GET /owa/ HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\n" + extra + "\r\n"
}

// isTimeout reports a deadline error.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readToClose reads (and discards) from c until the gateway closes it or
// bound passes, failing t on the bound. It returns the bytes read and when
// the close was seen. A reset counts as a close.
func readToClose(t testing.TB, c *gwtest.Client, bound time.Duration) (int64, time.Time) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(bound))
	n, err := io.Copy(io.Discard, c.R)
	at := time.Now()
	if isTimeout(err) {
		t.Fatalf("connection not closed within %v (%d bytes read)", bound, n)
	}
	return n, at
}

// waitFor polls cond every 20ms until it holds or bound passes.
func waitFor(bound time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(bound)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dialSmallRcvBuf opens a client connection whose kernel receive buffer is
// small and fixed (no autotuning), so that response bytes it does not read
// pile up in the gateway. Not tiny: a window below loopback's MSS (64 KiB)
// stalls TCP's sender-side silly-window avoidance, and an orphaned
// (closed) sender then crawls on backed-off window probes.
func dialSmallRcvBuf(t testing.TB, g *gwtest.Gateway) *gwtest.Client {
	t.Helper()
	c := g.Dial(t)
	if err := c.Conn.(*net.TCPConn).SetReadBuffer(128 << 10); err != nil {
		t.Fatal(err)
	}
	return c
}

// checkPattern verifies that body is the first len(body) bytes of the
// mailboxd size-body (Pattern repeated).
func checkPattern(t testing.TB, body []byte) {
	t.Helper()
	block := []byte(strings.Repeat(mailboxd.Pattern, 4096))
	for off := 0; off < len(body); off += len(block) {
		n := min(len(block), len(body)-off)
		if !bytes.Equal(body[off:off+n], block[:n]) {
			i := off
			for i < off+n && body[i] == mailboxd.Pattern[i%len(mailboxd.Pattern)] {
				i++
			}
			t.Fatalf("body differs from the pattern at offset %d: %q", i, body[i:min(i+16, len(body))])
		}
	}
}

func TestClientTimeouts(t *testing.T) {
	const (
		headerRead = 300 * time.Millisecond
		idle       = 400 * time.Millisecond
		bodyRead   = 300 * time.Millisecond
		write      = 500 * time.Millisecond
		slack      = 3 * time.Second // generous upper bound over a timeout
	)
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := startGateway(t, gwOptions{
		Engine: fastSweep,
		Extra: "[timeouts]\nheader_read = \"300ms\"\nidle = \"400ms\"\nbody_read = \"300ms\"\nwrite = \"500ms\"\n" +
			"[backend]\nconns_per_loop = 1\n",
	}, m1)
	core := func(name string) int64 { return g.Snapshot().Core[name] }
	rejects := func(name string) int64 { return g.Snapshot().Rejects[name] }

	t.Run("silent client closed at idle timeout", func(t *testing.T) {
		before := core("timeout_idle")
		t0 := time.Now()
		c := g.Dial(t)
		n, at := readToClose(t, c, idle+slack)
		if el := at.Sub(t0); el < idle {
			t.Errorf("closed after %v, before the idle timeout %v", el, idle)
		}
		if n != 0 {
			t.Errorf("silent client was sent %d bytes", n)
		}
		if d := core("timeout_idle") - before; d != 1 {
			t.Errorf("timeout_idle grew by %d, want 1", d)
		}
	})

	t.Run("half a head gets 408 at header timeout", func(t *testing.T) {
		before, rejBefore := core("timeout_header_read"), rejects("header_timeout")
		reqBefore := m1.Stats(t).Requests
		c := g.Dial(t)
		t0 := time.Now()
		c.Send(t, "GET /owa/ HTTP/1.1\r\nHost: h\r\nX-AnchorMail")
		resp, body := readResponse(t, c, "GET")
		el := time.Since(t0)
		if resp.StatusCode != 408 || !resp.Close {
			t.Fatalf("status %d (close %v): %s", resp.StatusCode, resp.Close, body)
		}
		if el < headerRead || el > headerRead+slack {
			t.Errorf("408 after %v, want it at the header timeout %v", el, headerRead)
		}
		readToClose(t, c, slack)
		if got := m1.Stats(t).Requests; got != reqBefore {
			t.Errorf("mailbox server saw %d requests", got-reqBefore)
		}
		if d := core("timeout_header_read") - before; d != 1 {
			t.Errorf("timeout_header_read grew by %d, want 1", d)
		}
		if d := rejects("header_timeout") - rejBefore; d != 1 {
			t.Errorf("header_timeout rejects grew by %d, want 1", d)
		}
	})

	t.Run("stalled body gets 408 and its backend connection is closed", func(t *testing.T) {
		// Establish the loop's one backend connection first.
		warm := g.Dial(t)
		if st, err := get(warm, "alice@example.test"); err != nil || st != 200 {
			t.Fatalf("warm-up: %d %v", st, err)
		}
		warm.Close()
		before := m1.Stats(t)
		if before.ConnectionsOpen != 1 {
			t.Fatalf("mailbox server has %d gateway connections open, want 1", before.ConnectionsOpen)
		}
		coreBefore, rejBefore := core("timeout_body_read"), rejects("body_timeout")

		c := g.Dial(t)
		c.Send(t, "POST /owa/upload HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\nContent-Length: 1000\r\n\r\n")
		t0 := time.Now()
		c.Send(t, strings.Repeat("b", 100))
		resp, body := readResponse(t, c, "POST")
		el := time.Since(t0)
		if resp.StatusCode != 408 || !resp.Close {
			t.Fatalf("status %d (close %v): %s", resp.StatusCode, resp.Close, body)
		}
		if el < bodyRead || el > bodyRead+slack {
			t.Errorf("408 after %v, want it at the body timeout %v", el, bodyRead)
		}
		readToClose(t, c, slack)
		if d := core("timeout_body_read") - coreBefore; d != 1 {
			t.Errorf("timeout_body_read grew by %d, want 1", d)
		}
		if d := rejects("body_timeout") - rejBefore; d != 1 {
			t.Errorf("body_timeout rejects grew by %d, want 1", d)
		}
		// The server holds part of a request on that connection: the
		// gateway must close it (never reuse it) and dial a new one.
		var st testbed.Stats
		ok := waitFor(5*time.Second, func() bool {
			st = m1.Stats(t)
			return st.ConnectionsAccepted == before.ConnectionsAccepted+1 && st.ConnectionsOpen == 1
		})
		if !ok {
			t.Fatalf("backend connections: accepted %d -> %d, open %d; want the partial one closed and one new",
				before.ConnectionsAccepted, st.ConnectionsAccepted, st.ConnectionsOpen)
		}
		fresh := g.Dial(t)
		for i := 0; i < 3; i++ {
			if st, err := get(fresh, "alice@example.test"); err != nil || st != 200 {
				t.Fatalf("request after the body timeout: %d %v", st, err)
			}
		}
		if got := m1.Stats(t).ConnectionsAccepted; got != before.ConnectionsAccepted+1 {
			t.Errorf("backend connections accepted %d, want %d", got, before.ConnectionsAccepted+1)
		}
	})

	t.Run("keep-alive client closed at idle timeout after a request", func(t *testing.T) {
		before := core("timeout_idle")
		c := g.Dial(t)
		t0 := time.Now()
		c.Send(t, aliceGET(""))
		resp, body := readResponse(t, c, "GET")
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("status %d (close %v): %s", resp.StatusCode, resp.Close, body)
		}
		n, at := readToClose(t, c, idle+slack)
		if el := at.Sub(t0); el < idle {
			t.Errorf("closed %v after the request, before the idle timeout %v", el, idle)
		}
		if n != 0 {
			t.Errorf("%d unexpected bytes after the response", n)
		}
		if d := core("timeout_idle") - before; d < 1 {
			t.Errorf("timeout_idle did not count the close")
		}
	})

	t.Run("client not reading a streaming response closed at write timeout", func(t *testing.T) {
		coreBefore, rejBefore := core("timeout_write"), rejects("write_timeout")
		c := dialSmallRcvBuf(t, g)
		// 16 MiB in 16 KiB chunks 5 ms apart: the response is still
		// streaming from the server (about 5 s) when the client, which
		// reads nothing, has filled the kernel buffers (a few MiB) and
		// then made no progress for the write timeout.
		const size = 16 << 20
		t0 := time.Now()
		c.Send(t, aliceGET(fmt.Sprintf("X-Mailboxd-Size: %d\r\nX-Mailboxd-Chunked: 1\r\nX-Mailboxd-Chunk-Delay: 5ms\r\n", size)))
		if !waitFor(5*time.Second, func() bool { return rejects("write_timeout") > rejBefore }) {
			t.Fatalf("no write_timeout within 5s: %+v", g.Snapshot())
		}
		if el := time.Since(t0); el < write {
			t.Errorf("write timeout after %v, before %v", el, write)
		}
		if n := readAll(t, c); n >= size {
			t.Errorf("client got the whole response (%d bytes): not cut off", n)
		}
		if d := core("timeout_write") - coreBefore; d < 1 {
			t.Errorf("timeout_write did not count the close")
		}
	})
}

// readAll reads what a client still gets until the gateway closes the
// connection (bounded), returning the byte count.
func readAll(t testing.TB, c *gwtest.Client) int64 {
	t.Helper()
	n, _ := readToClose(t, c, 10*time.Second)
	return n
}

// A keep-alive response that the server has sent completely but the client
// is still reading (steadily) is not an idle connection: the idle timeout
// must not cut it short. Its stall bound is the write timeout.
func TestIdleTimeoutDoesNotCutPendingResponse(t *testing.T) {
	const size = 24 << 20
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := startGateway(t, gwOptions{
		Engine: fastSweep,
		Extra: "[timeouts]\nidle = \"300ms\"\nwrite = \"5s\"\n" +
			"[limits]\nmax_response_buffer_bytes = 67108864\n",
	}, m1)
	c := dialSmallRcvBuf(t, g)
	c.Send(t, aliceGET(fmt.Sprintf("X-Mailboxd-Size: %d\r\n", size)))
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(c.R, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.ContentLength != size {
		t.Fatalf("status %d, length %d", resp.StatusCode, resp.ContentLength)
	}
	// Read 256 KiB every 20 ms: about 2 s in all, never stalling anywhere
	// near the write timeout, but well past the idle timeout, while the
	// gateway has had the whole response from the server for most of it.
	body := make([]byte, 0, size)
	buf := make([]byte, 256<<10)
	for len(body) < size {
		n, err := io.ReadFull(resp.Body, buf[:min(len(buf), size-len(body))])
		body = append(body, buf[:n]...)
		if err != nil {
			snap := g.Snapshot()
			t.Fatalf("response cut after %d of %d bytes: %v (core counters %v, clients open %d)",
				len(body), size, err, snap.Core, snap.ClientsOpen)
		}
		time.Sleep(20 * time.Millisecond)
	}
	checkPattern(t, body)
	// Then, with nothing pending, the idle timeout applies.
	if n, _ := readToClose(t, c, 5*time.Second); n != 0 {
		t.Errorf("%d bytes after the response", n)
	}
}

func TestGracefulDrain(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := startGateway(t, gwOptions{Loops: 2, Engine: fastSweep}, m1)

	idle := g.Dial(t)
	if st, err := get(idle, "alice@example.test"); err != nil || st != 200 {
		t.Fatalf("idle client's request: %d %v", st, err)
	}
	before := m1.Stats(t).Requests
	slow := g.Dial(t)
	slow.Send(t, aliceGET("X-Mailboxd-Delay: 1s\r\n"))
	if !waitFor(5*time.Second, func() bool { return m1.Stats(t).Requests == before+1 }) {
		t.Fatal("slow request did not reach the mailbox server")
	}

	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		g.Stop(t)
	}()

	// The idle keep-alive connection closes at once, while the drain still
	// waits for the slow request.
	if n, _ := readToClose(t, idle, 5*time.Second); n != 0 {
		t.Errorf("idle client was sent %d bytes", n)
	}
	select {
	case <-stopped:
		t.Fatal("gateway stopped before the in-flight request was answered")
	default:
	}

	// A connection attempted during the drain: the listener is still open
	// (it closes when the engine stops, after the drain), so it is
	// accepted, answered 503 with Retry-After, and closed.
	late, err := net.DialTimeout("tcp", g.Addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial during the drain: %v", err)
	}
	defer late.Close()
	lc := &gwtest.Client{Conn: late, R: bufio.NewReaderSize(late, 64<<10)}
	resp, body := readResponse(t, lc, "GET")
	if resp.StatusCode != 503 || !resp.Close || resp.Header.Get("Retry-After") == "" || len(body) == 0 {
		t.Errorf("during drain: status %d close %v Retry-After %q body %q",
			resp.StatusCode, resp.Close, resp.Header.Get("Retry-After"), body)
	}
	readToClose(t, lc, 5*time.Second)
	select {
	case <-stopped:
		t.Fatal("gateway stopped before the in-flight request was answered")
	default:
	}

	// The in-flight request completes, told the connection closes.
	resp, body = readResponse(t, slow, "GET")
	if resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("in-flight request: status %d close %v: %s", resp.StatusCode, resp.Close, body)
	}
	if e := echoOf(t, body); e.Server != "mbx1" {
		t.Errorf("answered by %q", e.Server)
	}
	readToClose(t, slow, 5*time.Second)
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not stop within 10s of its last request")
	}
	snap := g.Snapshot()
	if snap.ClientsRefused != 1 || snap.Core["refused_draining"] != 1 {
		t.Errorf("refused %d, refused_draining %d; want 1 and 1", snap.ClientsRefused, snap.Core["refused_draining"])
	}
	if got := m1.Stats(t).Requests; got != before+1 {
		t.Errorf("mailbox server saw %d requests during the drain, want only the slow one", got-before)
	}
	// Stopped: nothing listens any more.
	if c, err := net.DialTimeout("tcp", g.Addr, time.Second); err == nil {
		c.Close()
		t.Errorf("still accepting connections after the stop")
	}
}

// The real binary: SIGTERM drains in-flight requests and exits 0.
func TestSIGTERMDrainsBinary(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort(t, "127.0.0.1"))
	const drain = 5 * time.Second
	cfgText := fmt.Sprintf(`directory = "directory.toml"
[engine]
loops = 2
[timeouts]
drain = "5s"
[[listener]]
name = "http"
address = %q
[[protocol]]
name = "owa"
path_prefix = "/owa"
backend_port = 1
`, addr)
	cfgFile := filepath.Join(dir, "frontdoor.toml")
	if err := os.WriteFile(cfgFile, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "directory.toml"), []byte(gwtest.DirectoryTOML(m1)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := testbed.StartProcess(t, "run", "--config", cfgFile)
	testbed.WaitHTTP(t, "http://"+addr+"/owa/u/alice@example.test/", 10*time.Second)

	before := m1.Stats(t).Requests
	slow := (&gwtest.Gateway{Addr: addr}).Dial(t)
	slow.Send(t, aliceGET("X-Mailboxd-Delay: 1500ms\r\n"))
	if !waitFor(5*time.Second, func() bool { return m1.Stats(t).Requests == before+1 }) {
		t.Fatal("slow request did not reach the mailbox server")
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	resp, body := readResponse(t, slow, "GET")
	if resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("in-flight request: status %d close %v: %s", resp.StatusCode, resp.Close, body)
	}
	// Exit within the drain timeout (plus a little for the engine's stop
	// and the process's exit).
	code, err := p.Wait(drain + 2*time.Second - time.Since(t0))
	if err != nil || code != 0 {
		t.Fatalf("after SIGTERM: exit code %d, %v\n%s", code, err, p.Output())
	}
	if !strings.Contains(p.Output(), "drained") {
		t.Errorf("log does not report a completed drain:\n%s", p.Output())
	}
}

// The drain is bounded: a request still in flight when timeouts.drain has
// passed does not keep the gateway from stopping; its client is cut off.
func TestDrainTimeoutBoundsStop(t *testing.T) {
	const drain, delay = 500 * time.Millisecond, 5 * time.Second
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := startGateway(t, gwOptions{Engine: fastSweep, Extra: "[timeouts]\ndrain = \"500ms\"\n"}, m1)
	before := m1.Stats(t).Requests
	slow := g.Dial(t)
	slow.Send(t, aliceGET("X-Mailboxd-Delay: 5s\r\n"))
	if !waitFor(5*time.Second, func() bool { return m1.Stats(t).Requests == before+1 }) {
		t.Fatal("slow request did not reach the mailbox server")
	}
	t0 := time.Now()
	stopped := make(chan time.Duration, 1)
	go func() {
		g.Stop(t)
		stopped <- time.Since(t0)
	}()
	select {
	case el := <-stopped:
		if el < drain {
			t.Errorf("stopped after %v, before the drain timeout %v: the in-flight request was not waited for", el, drain)
		}
	case <-time.After(delay - time.Second):
		t.Fatalf("gateway still stopping after %v with timeouts.drain %v", delay-time.Second, drain)
	}
	// The client gets no 200. Depending on which of its connections the
	// stopping engine closes first, it sees a bare close or the gateway's
	// 502 for the lost backend connection, announced as the last response.
	_ = slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(slow.R)
	if isTimeout(err) {
		t.Fatal("cut-off client not closed within 5s")
	}
	if len(rest) > 0 {
		t.Logf("cut-off client got %q", rest)
		resp, rerr := http.ReadResponse(bufio.NewReader(bytes.NewReader(rest)), nil)
		if rerr != nil || resp.StatusCode != 502 || !resp.Close {
			t.Errorf("cut-off client was sent %q", rest)
		}
	}
}

// childEnv marks a test process started by runInChild.
const childEnv = "FRONTDOOR_GATEWAY_TEST_CHILD"

// runInChild runs test name alone in a child process of the test binary
// (sharing the parent's frontdoor binary), bounded in time, and fails t
// with the child's output if it fails.
func runInChild(t *testing.T, name string) {
	t.Helper()
	bin := testbed.Binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+name+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"=1", testbed.BinaryEnv+"="+bin)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s in a child process: %v\n%s", name, err, out)
	}
}

// A "Connection: close" response that the client reads slowly: the gateway
// has all of it from the server long before the client does, so the
// exchange ends with bytes still pending and the connection lingers until
// they are flushed. Meanwhile the loop serves others, and the client gets
// the whole response, then EOF.
//
// It runs in a child test process: a gateway whose event loop wedges (as
// this test once found, spinning in the sweep) would keep a CPU busy for
// the rest of the parent's tests.
func TestCloseAfterLargeResponseToSlowReader(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		runInChild(t, "TestCloseAfterLargeResponseToSlowReader")
		return
	}
	const size = 16 << 20
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := startGatewayBounded(t, gwOptions{
		Engine: fastSweep,
		Extra:  "[limits]\nmax_response_buffer_bytes = 67108864\n[timeouts]\ndrain = \"500ms\"\n",
	}, m1)
	a := dialSmallRcvBuf(t, g)
	a.Send(t, fmt.Sprintf("GET /owa/ HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\n"+
		"Connection: close\r\nX-Mailboxd-Size: %d\r\n\r\n", size))
	// Give the gateway time to take the whole response off the server
	// connection (loopback: milliseconds) and a few sweeps to pass.
	time.Sleep(300 * time.Millisecond)

	// Another client on the same (only) loop is served.
	b := g.Dial(t)
	_ = b.SetDeadline(time.Now().Add(5 * time.Second))
	b.Send(t, aliceGET(""))
	if resp, err := http.ReadResponse(b.R, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("another client while the slow reader lingers: %v (the event loop is stuck?)", err)
	}

	_ = a.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(a.R, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.ContentLength != size || !resp.Close {
		t.Fatalf("status %d, length %d, close %v", resp.StatusCode, resp.ContentLength, resp.Close)
	}
	body := make([]byte, size)
	if n, err := io.ReadFull(resp.Body, body); err != nil {
		t.Fatalf("got %d of %d bytes: %v", n, size, err)
	}
	checkPattern(t, body)
	if n, _ := readToClose(t, a, 5*time.Second); n != 0 {
		t.Errorf("%d bytes after the response", n)
	}
}
