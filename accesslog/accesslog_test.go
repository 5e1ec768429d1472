package accesslog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"frontdoor/l4"
	"frontdoor/l7"
)

func sample() *l7.AccessRecord {
	return &l7.AccessRecord{
		Client: netip.MustParseAddr("2001:db8::7"), Listener: "https", TLS: true, Protocol: "owa",
		Method: []byte("GET"), Path: []byte("/owa/service.svc"), Query: []byte("action=GetFolder&x=\"y\""),
		User: "alice", Server: "mbx1", Status: 200, RequestBytes: 512, ResponseBytes: 2048,
		Duration: 1234567 * time.Nanosecond, Backend: 1001 * time.Microsecond,
	}
}

// entry is what a line must decode to.
type entry struct {
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

func decode(t *testing.T, line []byte) entry {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var e entry
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("not JSON: %v: %s", err, line)
	}
	return e
}

func TestRecordFormat(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 891011000, time.FixedZone("x", 3600))
	line := appendRecord(nil, sample(), now, true)
	if !bytes.HasSuffix(line, []byte("}\n")) || bytes.Count(line, []byte("\n")) != 1 {
		t.Fatalf("not one line: %q", line)
	}
	e := decode(t, line)
	if !e.Time.Equal(now) || !bytes.HasPrefix(line, []byte(`{"time":"2026-03-04T04:06:07.891011Z",`)) {
		t.Errorf("time: %v in %s", e.Time, line)
	}
	if e.Client != "2001:db8::7" || e.Listener != "https" || !e.TLS || e.Protocol != "owa" || e.Method != "GET" ||
		e.Path != "/owa/service.svc" || e.Query == nil || *e.Query != `action=GetFolder&x="y"` || e.User != "alice" ||
		e.Server != "mbx1" || e.Status != 200 || e.RequestBytes != 512 || e.ResponseBytes != 2048 ||
		e.DurationMS != 1.234 || e.BackendMS == nil || *e.BackendMS != 1.001 || e.Error != "" {
		t.Errorf("decoded %+v from %s", e, line)
	}

	// Without query: no query key. A local answer: backend_ms null.
	r := sample()
	r.Backend, r.Server, r.Status, r.Error = -1, "", 401, ""
	e = decode(t, appendRecord(nil, r, now, false))
	if e.Query != nil || e.BackendMS != nil || e.Server != "" || e.Status != 401 {
		t.Errorf("local answer: %+v", e)
	}
}

func TestRecordEscapingAndBounds(t *testing.T) {
	r := &l7.AccessRecord{
		Method: []byte("G\"E\\T"), Path: append([]byte("/a\x00b\x1f\xff\xfe/é/"), bytes.Repeat([]byte("\x01"), 5000)...),
		User: strings.Repeat("ü", 1000), Backend: -1, Error: "client_closed",
	}
	line := appendRecord(nil, r, time.Now(), true)
	if len(line) > maxRecord {
		t.Fatalf("record of %d bytes, bound %d", len(line), maxRecord)
	}
	e := decode(t, line)
	if e.Method != `G"E\T` || !strings.HasPrefix(e.Path, "/a\x00b\x1f\ufffd\ufffd/é/\x01") || e.Error != "client_closed" {
		t.Errorf("escaping: %+v", e)
	}
	if n := len(e.Path); n > maxPath {
		t.Errorf("path of %d bytes kept, bound %d", n, maxPath)
	}
	if !strings.HasPrefix(e.User, "üüü") || len(e.User) > maxName || len(e.User)%2 != 0 {
		t.Errorf("user not cut at a character boundary within %d bytes: %d bytes", maxName, len(e.User))
	}
	// The worst case of every field together stays within maxRecord.
	huge := strings.Repeat("\x01", 10000)
	r = &l7.AccessRecord{Client: netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
		Listener: huge, Protocol: huge, Method: []byte(huge), Path: []byte(huge), Query: []byte(huge),
		User: huge, Server: huge, Status: 999, RequestBytes: -1 << 63, ResponseBytes: -1 << 63,
		Duration: 1<<63 - 1, Backend: 1<<63 - 1, Error: huge}
	if n := len(appendRecord(nil, r, time.Now(), true)); n > maxRecord {
		t.Fatalf("worst-case record of %d bytes, bound %d", n, maxRecord)
	}
}

func sweep(lp *l4.Loop) { lp.Sweep() }

// TestLogWritesAndReopens logs through a loop, flushes on the sweep, then
// renames the file (a rotation) and reopens.
func TestLogWritesAndReopens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	l, err := Open(Options{Path: path, BufferBytes: 64 << 10, Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	lp := &l4.Loop{}
	ll := l.ForLoop(lp)
	for range 3 {
		ll.Log(sample())
	}
	sweep(lp)
	waitFor(t, func() bool { return l.Stats().Records.Load() == 3 })
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	ll.Log(sample())
	ll.Log(sample()) // left in the loop's chunk: Close writes it
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := countLines(t, path+".1"); n != 3 {
		t.Errorf("rotated file: %d lines, want 3", n)
	}
	if n := countLines(t, path); n != 2 {
		t.Errorf("new file: %d lines, want 2", n)
	}
	if s := l.Stats(); s.Records.Load() != 5 || s.DroppedFull.Load() != 0 || s.Bytes.Load() == 0 {
		t.Errorf("stats: records %d dropped %d bytes %d", s.Records.Load(), s.DroppedFull.Load(), s.Bytes.Load())
	}
	if err := l.Reopen(); err == nil {
		t.Error("Reopen after Close succeeded")
	}

	// A path that cannot be opened is refused at Open and at Reopen
	// (where the old file stays in use).
	if _, err := Open(Options{Path: filepath.Join(dir, "no", "such", "dir.log")}); err == nil {
		t.Error("Open of a path in a missing directory succeeded")
	}
}

// TestFullBufferDropsAndCounts blocks the writer (a pipe nobody reads) and
// checks that records beyond the buffer are dropped, counted, and never
// block the loop; once the reader drains the pipe, what was kept is
// written.
func TestFullBufferDropsAndCounts(t *testing.T) {
	pr, pw := io.Pipe()
	l, err := Open(Options{Path: Stdout, Output: pw, BufferBytes: 1, Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	if l.BufferBytes() != 2*minChunk {
		t.Fatalf("buffer raised to %d, want two chunks of %d", l.BufferBytes(), minChunk)
	}
	lp := &l4.Loop{}
	ll := l.ForLoop(lp)
	const total = 2000
	start := time.Now()
	for range total {
		ll.Log(sample())
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("logging blocked: %v for %d records", d, total)
	}
	dropped := l.Stats().DroppedFull.Load()
	if dropped == 0 || dropped >= total {
		t.Fatalf("dropped %d of %d with a blocked writer and two chunks", dropped, total)
	}
	var lines int
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, maxRecord), maxRecord)
		for sc.Scan() {
			var e entry
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.User == "alice" {
				lines++
			}
		}
	}()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	<-done
	s := l.Stats()
	if int64(lines) != s.Records.Load() || s.Records.Load()+s.DroppedFull.Load() != total {
		t.Errorf("%d lines read, %d written, %d dropped: want written + dropped = %d", lines, s.Records.Load(), s.DroppedFull.Load(), total)
	}
}

// TestWriteErrorsCount makes every write fail.
func TestWriteErrorsCount(t *testing.T) {
	l, err := Open(Options{Path: Stdout, Output: failWriter{}, BufferBytes: 64 << 10, Loops: 1,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	lp := &l4.Loop{}
	ll := l.ForLoop(lp)
	ll.Log(sample())
	ll.Log(sample())
	sweep(lp)
	_ = l.Close()
	if s := l.Stats(); s.DroppedError.Load() != 2 || s.WriteErrors.Load() != 1 || s.Records.Load() != 0 {
		t.Errorf("dropped %d (want 2), write errors %d (want 1), records %d", s.DroppedError.Load(), s.WriteErrors.Load(), s.Records.Load())
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }

func TestLogAllocatesNothing(t *testing.T) {
	l, err := Open(Options{Path: Stdout, Output: io.Discard, BufferBytes: 1 << 20, Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lp := &l4.Loop{}
	ll := l.ForLoop(lp)
	r := sample()
	for range 1000 { // warm up: chunks taken and handed over
		ll.Log(r)
	}
	if n := testing.AllocsPerRun(5000, func() { ll.Log(r) }); n != 0 {
		t.Fatalf("%v allocations per record", n)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		if len(line) > 0 {
			decode(t, line)
			n++
		}
	}
	return n
}

// BenchmarkLog is the access log's cost per request on the loop: formatting
// one record into the loop's chunk (and, every few dozen records, handing
// the chunk to a writer that discards it).
func BenchmarkLog(b *testing.B) {
	l, err := Open(Options{Path: Stdout, Output: io.Discard, BufferBytes: 1 << 20, Loops: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ll := l.ForLoop(&l4.Loop{})
	r := sample()
	b.ReportAllocs()
	for b.Loop() {
		ll.Log(r)
	}
}
