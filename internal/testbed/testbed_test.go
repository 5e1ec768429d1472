package testbed

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"frontdoor/mailboxd"
)

func TestMain(m *testing.M) { Main(m) }

func TestMailboxdLifecycle(t *testing.T) {
	m := StartMailboxd(t, "tb-mbx1")
	if m.Port() == 0 || m.Addr() != "127.0.0.1:"+strconv.Itoa(m.Port()) {
		t.Fatalf("Addr %q Port %d", m.Addr(), m.Port())
	}
	// Readiness polling must leave no trace in the counters.
	st := m.Stats(t)
	if st.Server != "tb-mbx1" || st.Requests != 0 || st.ConnectionsAccepted != 0 {
		t.Fatalf("fresh stats: %+v", st)
	}

	resp, err := http.Get(m.URL("/owa/x"))
	if err != nil {
		t.Fatal(err)
	}
	var e mailboxd.Echo
	err = json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if err != nil || e.Server != "tb-mbx1" || e.Target != "/owa/x" {
		t.Fatalf("echo %+v, %v", e, err)
	}
	http.DefaultClient.CloseIdleConnections()
	if st := m.Stats(t); st.Requests != 1 || st.ConnectionsAccepted != 1 {
		t.Errorf("stats after one request: %+v", st)
	}

	m.Stop()
	if _, err := m.Process().Wait(0); err == nil {
		t.Errorf("stopped by SIGKILL, Wait reports a normal exit")
	}
	if c, err := net.DialTimeout("tcp", m.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatalf("still accepting on %s after Stop", m.Addr())
	}

	port := m.Port()
	m.Restart(t)
	if m.Port() != port {
		t.Errorf("restarted on port %d, not %d", m.Port(), port)
	}
	if st := m.Stats(t); st.Server != "tb-mbx1" || st.Requests != 0 {
		t.Errorf("stats after restart: %+v", st)
	}
	m.Restart(t) // restarting a running server works too
	WaitHTTP(t, m.URL("/healthcheck.htm"), 5*time.Second)
}

func TestTwoMailboxdsGetDistinctPorts(t *testing.T) {
	a, b := StartMailboxd(t, "tb-a"), StartMailboxd(t, "tb-b")
	if a.Port() == b.Port() {
		t.Fatalf("both on port %d", a.Port())
	}
	if a.Stats(t).Server != "tb-a" || b.Stats(t).Server != "tb-b" {
		t.Errorf("servers answer with the wrong names")
	}
}

func TestProcessGracefulStop(t *testing.T) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t, "127.0.0.1")))
	p := StartProcess(t, "mailboxd", "--listen", addr, "--name", "tb-proc")
	WaitHTTP(t, "http://"+addr+"/healthcheck.htm", 10*time.Second)
	if code, err := p.Wait(10 * time.Millisecond); err == nil {
		t.Fatalf("Wait on a running process returned exit code %d", code)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait(10 * time.Second)
	if err != nil || code != 0 {
		t.Errorf("after SIGTERM: exit code %d, %v\n%s", code, err, p.Output())
	}
	if err := p.Signal(syscall.SIGTERM); err == nil {
		t.Errorf("Signal to an exited process succeeded")
	}
	select {
	case <-p.Exited():
	default:
		t.Errorf("Exited not closed after Wait returned")
	}
}

func TestProcessFailureIsReported(t *testing.T) {
	// A port that is taken: the server must fail to start and say why.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := StartProcess(t, "mailboxd", "--listen", ln.Addr().String(), "--name", "tb-fail")
	code, err := p.Wait(10 * time.Second)
	if err != nil || code == 0 {
		t.Errorf("mailboxd on a busy port: exit code %d, %v", code, err)
	}
	if !strings.Contains(p.Output(), "address already in use") {
		t.Errorf("output does not explain the failure:\n%s", p.Output())
	}
}

func TestFreePort(t *testing.T) {
	port := FreePort(t, "127.0.0.1")
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("port %d is not free: %v", port, err)
	}
	ln.Close()
}

func TestWaitHTTPWaitsForReadiness(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ready := time.Now().Add(200 * time.Millisecond)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if time.Now().Before(ready) {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	WaitHTTP(t, "http://"+ln.Addr().String()+"/", 5*time.Second)
	if time.Now().Before(ready) {
		t.Errorf("WaitHTTP returned before the server answered 2xx")
	}
	if err := pollHTTP("http://"+ln.Addr().String()+"/missing", 100*time.Millisecond, nil,
		func([]byte) error { return io.EOF }); err == nil {
		t.Errorf("pollHTTP accepted a rejected body")
	}
}

func TestOutputBufferKeepsHeadAndTail(t *testing.T) {
	var b outputBuffer
	b.Write([]byte("start\n"))
	line := bytes.Repeat([]byte("x"), 1023)
	line = append(line, '\n')
	total := len("start\n")
	for range 12 << 10 { // 12 MiB
		b.Write(line)
		total += len(line)
	}
	b.Write([]byte("the end\n"))
	total += len("the end\n")
	out := b.String()
	if !strings.HasPrefix(out, "start\n") || !strings.HasSuffix(out, "the end\n") {
		t.Errorf("head or tail lost")
	}
	if len(out) > headBytes+2*tailBytes+100 || !strings.Contains(out, "bytes dropped") {
		t.Errorf("buffer not bounded: %d bytes", len(out))
	}
	// Nothing is lost or duplicated: kept plus dropped is everything.
	if int64(len(b.buf))+b.dropped != int64(total) {
		t.Errorf("kept %d + dropped %d != written %d", len(b.buf), b.dropped, total)
	}
}
