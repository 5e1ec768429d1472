package gateway_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"frontdoor/internal/gwtest"
	"frontdoor/internal/testbed"
)

// accessEntry is an access log line.
type accessEntry struct {
	Time          time.Time `json:"time"`
	Client        string    `json:"client"`
	Listener      string    `json:"listener"`
	TLS           bool      `json:"tls"`
	Protocol      string    `json:"protocol"`
	Method        string    `json:"method"`
	Path          string    `json:"path"`
	Query         *string   `json:"query"`
	User          string    `json:"user"`
	Server        string    `json:"server"`
	Status        int       `json:"status"`
	RequestBytes  int64     `json:"request_bytes"`
	ResponseBytes int64     `json:"response_bytes"`
	DurationMS    float64   `json:"duration_ms"`
	BackendMS     *float64  `json:"backend_ms"`
	Error         string    `json:"error"`
}

func readAccessLog(t *testing.T, path string) []accessEntry {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []accessEntry
	for _, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		var e accessEntry
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("access log line is not the expected JSON: %v: %s", err, line)
		}
		out = append(out, e)
	}
	return out
}

// TestAccessLog drives requests that end in every way (proxied, refused
// credentials, a local 404, a framing error, a client that leaves before
// its response) and checks one line per exchange with the right fields;
// then rotates the file and reopens it as SIGHUP does.
func TestAccessLog(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	g := gwtest.Start(t, gwtest.Options{ProtocolExtra: `auth = ["basic"]`,
		Extra: fmt.Sprintf("[access_log]\npath = %q\nbuffer_bytes = 65536\n", path)}, m1)
	c := g.Dial(t)
	send := func(req string, want int) {
		t.Helper()
		c.Send(t, req)
		resp, _ := readResponse(t, c, "GET")
		if resp.StatusCode != want {
			t.Fatalf("%q: %d, want %d", req, resp.StatusCode, want)
		}
	}
	send("GET /owa/folder?token=secret HTTP/1.1\r\nHost: h\r\nAuthorization: "+basic("alice", gwtest.Password)+"\r\nX-Mailboxd-Size: 1000\r\n\r\n", 200)
	send("GET /EWS/x HTTP/1.1\r\nHost: h\r\nAuthorization: "+basic("alice", "wrong")+"\r\n\r\n", 401)
	send("GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n", 404)
	bad := g.Dial(t)
	bad.Send(t, "GET /owa/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
	readResponse(t, bad, "GET")
	gone := g.Dial(t)
	gone.Send(t, "GET /owa/ HTTP/1.1\r\nHost: h\r\nAuthorization: "+basic("alice", gwtest.Password)+"\r\nX-Mailboxd-Delay: 300ms\r\n\r\n")
	time.Sleep(100 * time.Millisecond) // routed and written to the server
	gone.Close()
	time.Sleep(400 * time.Millisecond) // the server answers a client that is gone

	// Rotation: rename, then what SIGHUP runs.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	// Everything so far is in the loops' chunks until their sweep (at
	// most engine.sweep_interval) and the writer: wait for it.
	time.Sleep(600 * time.Millisecond)
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	send("GET /owa/after-rotation HTTP/1.1\r\nHost: h\r\nAuthorization: "+basic("alice", gwtest.Password)+"\r\n\r\n", 200)
	g.Stop(t) // flushes

	old := readAccessLog(t, path+".1")
	if len(old) != 5 {
		t.Fatalf("%d lines before the rotation, want 5: %+v", len(old), old)
	}
	byPath := map[string]accessEntry{}
	for _, e := range old {
		byPath[e.Method+" "+e.Path] = e
		if e.Client != "127.0.0.1" || e.Listener != "http" || e.TLS || e.Time.IsZero() || time.Since(e.Time) > time.Minute {
			t.Errorf("common fields: %+v", e)
		}
		if e.Query != nil {
			t.Errorf("query logged without access_log.query: %+v", e)
		}
	}
	ok := byPath["GET /owa/folder"]
	if ok.Protocol != "owa" || ok.User != "alice" || ok.Server != "mbx1" || ok.Status != 200 || ok.Error != "" ||
		ok.ResponseBytes < 1000 || ok.RequestBytes < 50 || ok.BackendMS == nil || *ok.BackendMS <= 0 || *ok.BackendMS > ok.DurationMS {
		t.Errorf("proxied request: %+v", ok)
	}
	if e := byPath["GET /EWS/x"]; e.Protocol != "ews" || e.User != "" || e.Status != 401 || e.Server != "" || e.BackendMS != nil || e.ResponseBytes == 0 {
		t.Errorf("refused credentials: %+v", e)
	}
	if e := byPath["GET /nowhere"]; e.Protocol != "" || e.Status != 404 {
		t.Errorf("no protocol: %+v", e)
	}
	if e := byPath[" "]; e.Status != 400 || e.Error != "host" || e.Method != "" {
		t.Errorf("framing error: %+v (lines %+v)", e, old)
	}
	if e := byPath["GET /owa/"]; e.Status != 0 || e.Error != "client_closed" || e.User != "alice" || e.Server != "mbx1" || e.BackendMS == nil {
		t.Errorf("client gone: %+v", e)
	}
	after := readAccessLog(t, path)
	if len(after) != 1 || after[0].Path != "/owa/after-rotation" || after[0].Status != 200 {
		t.Errorf("after the reopen: %+v", after)
	}
	if s := g.Snapshot().AccessLog; s["records"] != 6 || s["dropped_buffer_full"] != 0 {
		t.Errorf("/stats access_log: %v", s)
	}
}

// TestAccessLogFullBufferDrops writes the access log into a FIFO that is
// opened but never read: the writer blocks, the bounded buffer fills, and
// further records are dropped and counted while requests go on being served
// at full speed.
func TestAccessLogFullBufferDrops(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	fifo := filepath.Join(t.TempDir(), "access.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	// Opened for reading without blocking, so the gateway's open for
	// writing succeeds; nothing reads it until the end.
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	g := gwtest.Start(t, gwtest.Options{Loops: 1,
		Extra: adminExtra(t) + fmt.Sprintf("[access_log]\npath = %q\nbuffer_bytes = 65536\n", fifo)}, m1)
	c := g.Dial(t)
	const total = 3000
	req := "GET /owa/ HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\n\r\n"
	start := time.Now()
	for i := range total {
		c.Send(t, req)
		if resp, _ := readResponse(t, c, "GET"); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	elapsed := time.Since(start)
	fams := scrape(t, g.AdminAddr())
	dropped := value(fams, "frontdoor_access_log_dropped_total", "reason=buffer_full")
	written := value(fams, "frontdoor_access_log_records_total")
	// The pipe holds 64 KiB and the buffer 64 KiB: a few hundred lines.
	if dropped <= 0 || dropped >= total || written >= total/2 {
		t.Fatalf("dropped %v, written %v of %d with a blocked writer", dropped, written, total)
	}
	t.Logf("%d requests in %v with the log writer blocked: %v records written, %v dropped", total, elapsed, written, dropped)

	// Unblock the writer so the gateway stops promptly and every kept
	// record reaches the pipe: written + dropped = requests.
	lines := make(chan int)
	go func() {
		n := 0
		br := bufio.NewReader(r)
		for {
			line, err := br.ReadBytes('\n')
			if len(line) > 0 && strings.Contains(string(line), `"status":200`) {
				n++
			}
			if err == io.EOF {
				// O_NONBLOCK: EOF only once the writer closed; EAGAIN
				// otherwise, which bufio reports as an error too.
				break
			}
			if err != nil {
				time.Sleep(5 * time.Millisecond)
			}
		}
		lines <- n
	}()
	g.Stop(t)
	n := <-lines
	s := g.Snapshot().AccessLog
	if int64(n) != s["records"] || s["records"]+s["dropped_buffer_full"] != total {
		t.Errorf("read %d lines; records %d + dropped %d, want %d", n, s["records"], s["dropped_buffer_full"], total)
	}
}
