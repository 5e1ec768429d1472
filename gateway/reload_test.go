package gateway_test

// Configuration reload (SIGHUP) and binary upgrade (SIGUSR2, frontdoor
// upgrade), on the real binary with mailboxd as a separate process.

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"frontdoor/internal/gwtest"
	"frontdoor/internal/testbed"
	"frontdoor/mailboxd"
	"frontdoor/upgrade"
)

// binBed runs the frontdoor binary on a configuration file the test
// rewrites, in front of one mailboxd.
type binBed struct {
	dir     string
	cfgFile string
	pidFile string
	addr    string
	m1      *testbed.Mailboxd
	proc    *testbed.Process
}

func newBinBed(t *testing.T) *binBed {
	t.Helper()
	b := &binBed{dir: t.TempDir(), m1: testbed.StartMailboxd(t, "mbx1")}
	b.cfgFile = filepath.Join(b.dir, "frontdoor.toml")
	b.pidFile = filepath.Join(b.dir, "frontdoor.pid")
	b.addr = fmt.Sprintf("127.0.0.1:%d", testbed.FreePort(t, "127.0.0.1"))
	writeFile(t, filepath.Join(b.dir, "directory.toml"), gwtest.DirectoryTOML(b.m1))
	return b
}

// config is a complete configuration: two loops, one listener on b.addr,
// the owa protocol, then extra (sections, and more [[protocol]] tables).
func (b *binBed) config(extra string) string {
	return fmt.Sprintf(`directory = "directory.toml"
[engine]
loops = 2
sweep_interval = "50ms"
[[listener]]
name = "http"
address = %q
[[protocol]]
name = "owa"
path_prefix = "/owa"
backend_port = 1
%s`, b.addr, extra)
}

func (b *binBed) write(t *testing.T, text string) { writeFile(t, b.cfgFile, text) }

// start runs `frontdoor run` on the configuration file and waits until it
// serves.
func (b *binBed) start(t *testing.T) {
	t.Helper()
	b.proc = testbed.StartProcess(t, "run", "--config", b.cfgFile, "--pid-file", b.pidFile)
	testbed.WaitHTTP(t, "http://"+b.addr+"/owa/u/alice@example.test/", 10*time.Second)
}

// pid is the pid the pid file names: the process that serves.
func (b *binBed) pid(t *testing.T) int {
	t.Helper()
	pid, err := upgrade.ReadPIDFile(b.pidFile)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// hup sends SIGHUP to the serving process and waits until its log has one
// more line containing want (the output also holds an upgraded process's).
func (b *binBed) hup(t *testing.T, want string) {
	t.Helper()
	before := strings.Count(b.proc.Output(), want)
	if err := syscall.Kill(b.pid(t), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool { return strings.Count(b.proc.Output(), want) > before }) {
		t.Fatalf("no new %q in the log within 5s after SIGHUP:\n%s", want, b.proc.Output())
	}
}

// bigHeader is a 2 KiB request field: over max_header_bytes = 1024.
var bigHeader = "X-Padding: " + strings.Repeat("p", 2048) + "\r\n"

func TestSIGHUPReloadsConfiguration(t *testing.T) {
	b := newBinBed(t)
	b.write(t, b.config("[limits]\nmax_header_bytes = 16384\n[timeouts]\nidle = \"30s\"\n"))
	b.start(t)
	g := &gwtest.Gateway{Addr: b.addr}

	// A keep-alive connection open across the reload.
	kept := g.Dial(t)
	kept.Send(t, aliceGET(""))
	if resp, body := readResponse(t, kept, "GET"); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("before the reload: %d close=%v: %s", resp.StatusCode, resp.Close, body)
	}

	// A smaller header limit, a shorter idle timeout, one more protocol.
	b.write(t, b.config(`[limits]
max_header_bytes = 1024
[timeouts]
idle = "1s"
[[protocol]]
name = "ews"
path_prefix = "/EWS"
backend_port = 1
`))
	b.hup(t, "configuration reloaded")

	c := g.Dial(t)
	c.Send(t, aliceGET(bigHeader))
	if resp, _ := readResponse(t, c, "GET"); resp.StatusCode != 431 {
		t.Errorf("new connection, 2 KiB header after max_header_bytes = 1024: %d, want 431", resp.StatusCode)
	}
	c = g.Dial(t)
	c.Send(t, "GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\n\r\n")
	if resp, body := readResponse(t, c, "GET"); resp.StatusCode != 200 || echoOf(t, body).Target != "/EWS/Exchange.asmx" {
		t.Errorf("the protocol the reload added: %d %s", resp.StatusCode, body)
	}
	t0 := time.Now()
	if _, at := readToClose(t, c, 5*time.Second); at.Sub(t0) > 3*time.Second {
		t.Errorf("idle connection closed after %v, want about the new 1s", at.Sub(t0))
	}

	// The connection from before keeps its configuration for the request
	// it sends next, which is its last: the response says so.
	kept.Send(t, aliceGET(bigHeader))
	resp, body := readResponse(t, kept, "GET")
	if resp.StatusCode != 200 || !resp.Close {
		t.Errorf("old connection after the reload: %d close=%v, want 200 under the old limit, with Connection: close: %s",
			resp.StatusCode, resp.Close, body)
	}
	expectClosed(t, kept)
	if !waitFor(5*time.Second, func() bool {
		return strings.Contains(b.proc.Output(), "configuration generation released")
	}) {
		t.Error("the old generation was not released once its connection closed")
	}

	// A bad file: refused, named by file, line and key; the reloaded
	// configuration stays.
	bad := b.config("[limits]\nmax_header_bytes = 1024\nmax_body_bytes = \"lots\"\n[timeouts]\nidle = \"1s\"\n")
	b.write(t, bad)
	b.hup(t, "configuration refused")
	line := strings.Count(bad[:strings.Index(bad, "max_body_bytes")], "\n") + 1
	if want := fmt.Sprintf("%s:%d: limits.max_body_bytes", b.cfgFile, line); !strings.Contains(b.proc.Output(), want) {
		t.Errorf("log does not name %q:\n%s", want, b.proc.Output())
	}
	c = g.Dial(t)
	c.Send(t, aliceGET(bigHeader))
	if resp, _ := readResponse(t, c, "GET"); resp.StatusCode != 431 {
		t.Errorf("after the refused file: %d, want 431 (the configuration before it)", resp.StatusCode)
	}

	// A listener change needs an upgrade: refused as a whole, the
	// protocol removed in the same file stays.
	other := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort(t, "127.0.0.1"))
	b.write(t, strings.Replace(b.config("[limits]\nmax_header_bytes = 1024\n"), b.addr, other, 1))
	b.hup(t, "needs an upgrade")
	if want := "listener[0].address: changed from " + b.addr; !strings.Contains(b.proc.Output(), want) {
		t.Errorf("log does not name %q:\n%s", want, b.proc.Output())
	}
	c = g.Dial(t)
	c.Send(t, "GET /EWS/x HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\n\r\n")
	if resp, _ := readResponse(t, c, "GET"); resp.StatusCode != 200 {
		t.Errorf("after the refused listener change: /EWS answered %d, want 200", resp.StatusCode)
	}

	// An unchanged file changes nothing (no new generation).
	b.write(t, b.config(`[limits]
max_header_bytes = 1024
[timeouts]
idle = "1s"
[[protocol]]
name = "ews"
path_prefix = "/EWS"
backend_port = 1
`))
	b.hup(t, "configuration unchanged")

	// A mailbox server the directory adds is routable after a reload,
	// even of an unchanged file: it needs backend pools of its own.
	m2 := testbed.StartMailboxd(t, "mbx2")
	writeFile(t, filepath.Join(b.dir, "directory.toml"), gwtest.DirectoryTOML(b.m1, m2))
	b.hup(t, "servers the directory added")
	c = g.Dial(t)
	c.Send(t, "GET /owa/ HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: bob@example.test\r\n\r\n")
	if resp, body := readResponse(t, c, "GET"); resp.StatusCode != 200 || echoOf(t, body).Server != "mbx2" {
		t.Errorf("bob on the server the directory added: %d %s", resp.StatusCode, body)
	}
}

// The binary upgrade: a request in flight at the old process completes
// (its response says Connection: close), new connections reach the new
// process, the old one exits 0, and a second upgrade is refused until it
// has.
func TestUpgradeBinary(t *testing.T) {
	b := newBinBed(t)
	admin := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort(t, "127.0.0.1"))
	b.write(t, b.config(fmt.Sprintf("[timeouts]\ndrain = \"5s\"\n[admin]\naddress = %q\n", admin)))
	b.start(t)
	oldPID := b.pid(t)
	g := &gwtest.Gateway{Addr: b.addr}

	before := b.m1.Stats(t).Requests
	slow := g.Dial(t)
	slow.Send(t, aliceGET("X-Mailboxd-Delay: 1s\r\n"))
	if !waitFor(5*time.Second, func() bool { return b.m1.Stats(t).Requests == before+1 }) {
		t.Fatal("slow request did not reach the mailbox server")
	}

	up := testbed.StartProcess(t, "upgrade", "--pid-file", b.pidFile, "--timeout", "30s")
	if code, err := up.Wait(35 * time.Second); err != nil || code != 0 {
		t.Fatalf("frontdoor upgrade: exit %d, %v\n%s\ngateway:\n%s", code, err, up.Output(), b.proc.Output())
	}
	newPID := b.pid(t)
	testbed.Adopt(t, newPID)
	if newPID == oldPID || !strings.Contains(up.Output(), fmt.Sprintf("pid %d serves", newPID)) {
		t.Fatalf("after the upgrade the pid file names %d (was %d); upgrade said %q", newPID, oldPID, up.Output())
	}

	// Refused while the old process drains: answered at once.
	again := testbed.StartProcess(t, "upgrade", "--pid-file", b.pidFile, "--timeout", "30s")
	if code, _ := again.Wait(10 * time.Second); code != 1 || !strings.Contains(again.Output(), "refused or failed") {
		t.Errorf("second upgrade during the drain: exit %d: %s", code, again.Output())
	}
	if b.pid(t) != newPID {
		t.Errorf("the refused upgrade changed the pid file to %d", b.pid(t))
	}

	resp, body := readResponse(t, slow, "GET")
	if resp.StatusCode != 200 || !resp.Close {
		t.Errorf("request in flight during the upgrade: %d close=%v: %s", resp.StatusCode, resp.Close, body)
	}
	expectClosed(t, slow)
	for i := range 20 {
		c := g.Dial(t)
		c.Send(t, aliceGET(""))
		if resp, body := readResponse(t, c, "GET"); resp.StatusCode != 200 {
			t.Fatalf("new connection %d after the upgrade: %d %s", i, resp.StatusCode, body)
		}
	}
	// The admin endpoint moved to the new process with its socket.
	res, err := http.Get("http://" + admin + "/stats")
	if err != nil || res.StatusCode != 200 {
		t.Errorf("admin endpoint after the upgrade: %v %v", res, err)
	} else {
		res.Body.Close()
	}

	if code, err := b.proc.Wait(10 * time.Second); err != nil || code != 0 {
		t.Fatalf("old process: exit %d, %v", code, err)
	}
	if !waitFor(5*time.Second, func() bool { return strings.Contains(b.proc.Output(), "the old process has exited") }) {
		t.Errorf("the new process did not notice the old one's exit:\n%s", b.proc.Output())
	}
	if !upgrade.Alive(newPID) {
		t.Fatalf("the new process (pid %d) is gone:\n%s", newPID, b.proc.Output())
	}
	// The new process stops as the old one would, and removes its pid file.
	if err := syscall.Kill(newPID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return !upgrade.Alive(newPID) }) {
		t.Fatal("the new process did not stop on SIGTERM")
	}
	if _, err := os.Stat(b.pidFile); !os.IsNotExist(err) {
		t.Errorf("pid file left behind: %v", err)
	}
}

// A reload, or a stop, that begins while a keep-alive response is on the
// wire, the client having already sent its next request (a POST) behind
// it: the request must be answered, as the last, rather than the
// connection closed after the response whose head promised to keep it.
// The client would see the POST fail, and clients do not retry POSTs.
func TestDrainAnswersTheRequestBehindAKeepAliveResponse(t *testing.T) {
	for _, how := range []string{"reload", "stop"} {
		t.Run(how, func(t *testing.T) {
			m1 := testbed.StartMailboxd(t, "mbx1")
			g := gwtest.Start(t, gwtest.Options{}, m1)
			c := g.Dial(t)
			// Two chunks, the second half a second after the first.
			c.Send(t, aliceGET(fmt.Sprintf("X-Mailboxd-Size: %d\r\nX-Mailboxd-Chunked: true\r\nX-Mailboxd-Chunk-Delay: 500ms\r\n", 2*mailboxd.ChunkSize)))
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(c.R, &http.Request{Method: "GET"})
			if err != nil || resp.StatusCode != 200 || resp.Close {
				t.Fatalf("first response: %v %v", resp, err)
			}
			if how == "reload" {
				next := *g.Config
				next.Limits.MaxHeaderBytes = 8192
				if changed, err := g.ReloadConfig(&next); err != nil || !changed {
					t.Fatalf("ReloadConfig: %v, %v", changed, err)
				}
			} else {
				stopped := make(chan struct{})
				go func() {
					defer close(stopped)
					g.Stop(t)
				}()
				defer func() { <-stopped }()
			}
			const body = "the second request"
			c.Send(t, "POST /owa/ HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\n"+
				fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body))
			if n, err := io.Copy(io.Discard, resp.Body); err != nil || n != 2*mailboxd.ChunkSize {
				t.Fatalf("first body: %d bytes, %v", n, err)
			}
			resp2, data := readResponse(t, c, "POST")
			if resp2.StatusCode != 200 || !resp2.Close || echoOf(t, data).BodyBytes != int64(len(body)) {
				t.Errorf("request behind the response: %d close=%v: %s", resp2.StatusCode, resp2.Close, data)
			}
			expectClosed(t, c)
		})
	}
}
