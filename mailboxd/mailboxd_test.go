package mailboxd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testServer is one in-process mailboxd on a loopback port.
type testServer struct {
	addr   string
	cancel context.CancelFunc
	done   chan error
}

// start runs mailboxd in-process on 127.0.0.1:0 and stops it (checking that
// Run returns nil, promptly) when the test ends.
func start(t *testing.T, opts Options) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts.Listener = ln
	if opts.Name == "" {
		opts.Name = "mbx1"
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &testServer{addr: ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- Run(ctx, opts, nil) }()
	t.Cleanup(func() {
		if err := s.stop(10 * time.Second); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

// stop cancels Run and waits for it to return.
func (s *testServer) stop(timeout time.Duration) error {
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- err // keep it for a second caller
		return err
	case <-time.After(timeout):
		return fmt.Errorf("Run did not return within %v of cancel", timeout)
	}
}

func (s *testServer) url(path string) string { return "http://" + s.addr + path }

func (s *testServer) stats(t *testing.T) Stats {
	t.Helper()
	resp, err := newClient().Get(s.url(StatsPath))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// newClient returns a client that opens a fresh connection per request, so
// tests control connection counts.
func newClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true},
		Timeout:   10 * time.Second,
	}
}

func do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := newClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func get(t *testing.T, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return do(t, req)
}

func decodeEcho(t *testing.T, b []byte) Echo {
	t.Helper()
	var e Echo
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("decoding echo %q: %v", b, err)
	}
	return e
}

// rawConn is a client connection for byte-exact requests and pipelining.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{Conn: c, br: bufio.NewReader(c)}
}

func (c *rawConn) send(t *testing.T, raw string) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
}

// read reads one response to a request with the given method.
func (c *rawConn) read(t *testing.T, method string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// expectEOF checks that the server closed the connection cleanly (FIN, not
// RST) with nothing more to read.
func (c *rawConn) expectEOF(t *testing.T) {
	t.Helper()
	rest, err := io.ReadAll(c.br)
	if err != nil {
		t.Fatalf("want clean EOF, got %v", err)
	}
	if len(rest) > 0 {
		t.Fatalf("want EOF, got %d more bytes: %q", len(rest), rest)
	}
}

func pattern(n int) []byte {
	return []byte(strings.Repeat(Pattern, n/len(Pattern)+1)[:n])
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestEchoIsByteExact(t *testing.T) {
	s := start(t, Options{Name: "mbx-echo"})
	c := dial(t, s.addr)
	// Odd cases, a duplicate, the fields fasthttp files separately (Host,
	// Content-Type, User-Agent, Cookie, Content-Length) in unusual places,
	// and whitespace around a value that is not part of it.
	headers := [][2]string{
		{"x-lower", "a"},
		{"Content-Type", "text/plain"},
		{"X-Dup", "1"},
		{"cOOKIE", "a=b; c=d"},
		{"X-Dup", "2"},
		{"Host", "mail.example.com"},
		{"X-Odd-Value", `"quoted" <&> , ;`},
		{"user-agent", "raw/1"},
		{"X-Padded", "v"},
		{"content-length", "5"},
	}
	var req strings.Builder
	req.WriteString("POST /owa/a%20b//c/../?x=1&y=%2F#frag HTTP/1.1\r\n")
	for _, h := range headers {
		if h[0] == "X-Padded" {
			req.WriteString(h[0] + ":  \t" + h[1] + " \t\r\n")
			continue
		}
		req.WriteString(h[0] + ": " + h[1] + "\r\n")
	}
	req.WriteString("\r\nhello")
	c.send(t, req.String())

	resp, body := c.read(t, "POST")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type %q", got)
	}
	if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) > 0 {
		t.Errorf("framing: Content-Length %d, Transfer-Encoding %v, body %d bytes",
			resp.ContentLength, resp.TransferEncoding, len(body))
	}
	if got := resp.Header.Get(HeaderServer); got != "mbx-echo" {
		t.Errorf("%s %q", HeaderServer, got)
	}
	e := decodeEcho(t, body)
	want := Echo{
		Server:     "mbx-echo",
		Method:     "POST",
		Target:     "/owa/a%20b//c/../?x=1&y=%2F#frag",
		Proto:      "HTTP/1.1",
		Headers:    headers,
		BodyBytes:  5,
		BodySHA256: sha([]byte("hello")),
		Seq:        1,
	}
	if fmt.Sprint(e) != fmt.Sprint(want) {
		t.Errorf("echo\n got %+v\nwant %+v", e, want)
	}
	if got := resp.Header.Get(HeaderSeq); got != "1" {
		t.Errorf("%s %q", HeaderSeq, got)
	}
}

func TestLargeHeaderBlock(t *testing.T) {
	s := start(t, Options{})
	c := dial(t, s.addr)
	big := strings.Repeat("x", 16<<10)
	c.send(t, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: "+big+"\r\n\r\n")
	resp, body := c.read(t, "GET")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	e := decodeEcho(t, body)
	if len(e.Headers) != 2 || e.Headers[1][1] != big {
		t.Errorf("16 KiB header not echoed intact")
	}
}

func TestPipelinedResponsesInOrder(t *testing.T) {
	s := start(t, Options{})
	c := dial(t, s.addr)
	// One write: the server must answer all three, in order. The first is
	// delayed so that a server answering out of order would be caught.
	c.send(t, "GET /a HTTP/1.1\r\nHost: h\r\nX-Mailboxd-Delay: 50ms\r\n\r\n"+
		"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz"+
		"GET /c HTTP/1.1\r\nHost: h\r\n\r\n")
	for i, want := range []struct{ method, target, body string }{
		{"GET", "/a", ""}, {"POST", "/b", "xyz"}, {"GET", "/c", ""},
	} {
		resp, body := c.read(t, want.method)
		if resp.StatusCode != 200 {
			t.Fatalf("response %d: status %d", i, resp.StatusCode)
		}
		e := decodeEcho(t, body)
		if e.Method != want.method || e.Target != want.target || e.Seq != int64(i+1) ||
			e.BodySHA256 != sha([]byte(want.body)) {
			t.Errorf("response %d: got %s %s seq %d, want %s %s seq %d", i, e.Method, e.Target, e.Seq, want.method, want.target, i+1)
		}
	}
	if st := s.stats(t); st.Requests != 3 || st.ConnectionsAccepted != 1 {
		t.Errorf("stats: %+v", st)
	}
}

func TestSizeControl(t *testing.T) {
	s := start(t, Options{Name: "mbx-size"})
	for _, n := range []int{0, 1, 17, ChunkSize + 5, 1 << 20} {
		resp, body := get(t, s.url("/owa/x?n="+strconv.Itoa(n)), HeaderSize, strconv.Itoa(n))
		if resp.StatusCode != 200 || resp.ContentLength != int64(n) || len(resp.TransferEncoding) > 0 {
			t.Fatalf("size %d: status %d, Content-Length %d, Transfer-Encoding %v",
				n, resp.StatusCode, resp.ContentLength, resp.TransferEncoding)
		}
		if !bytes.Equal(body, pattern(n)) {
			t.Fatalf("size %d: body is not the pattern", n)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
			t.Errorf("size %d: Content-Type %q", n, ct)
		}
		e := decodeEcho(t, []byte(resp.Header.Get(HeaderEcho)))
		if e.Target != "/owa/x?n="+strconv.Itoa(n) || e.Server != "mbx-size" {
			t.Errorf("size %d: %s header: %+v", n, HeaderEcho, e)
		}
	}

	// An Echo too big for a header is left out; the server name is not.
	resp, body := get(t, s.url("/"), HeaderSize, "10", "X-Filler", strings.Repeat("f", MaxEchoHeader))
	if string(body) != "0123456789" || resp.Header.Get(HeaderEcho) != "" ||
		resp.Header.Get(HeaderServer) != "mbx-size" {
		t.Errorf("oversized echo: body %q, echo header %d bytes, server %q",
			body, len(resp.Header.Get(HeaderEcho)), resp.Header.Get(HeaderServer))
	}
}

// readChunked reads a response head and a chunked body from br, returning
// the head and the size of every chunk, terminating zero-size chunk
// included. onChunk, if not nil, runs after each chunk.
func readChunked(t *testing.T, br *bufio.Reader, onChunk func(size int)) (head string, sizes []int, body []byte) {
	t.Helper()
	var h strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		h.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(line), 16, 64)
		if err != nil {
			t.Fatalf("chunk size line %q: %v", line, err)
		}
		sizes = append(sizes, int(n))
		if n == 0 {
			// No trailer fields: just the CRLF that ends the message.
			if line, err := br.ReadString('\n'); line != "\r\n" {
				t.Fatalf("after the last chunk: %q, %v", line, err)
			}
			return h.String(), sizes, body
		}
		chunk := make([]byte, n+2)
		if _, err := io.ReadFull(br, chunk); err != nil {
			t.Fatal(err)
		}
		if string(chunk[n:]) != "\r\n" {
			t.Fatalf("chunk not followed by CRLF")
		}
		body = append(body, chunk[:n]...)
		if onChunk != nil {
			onChunk(int(n))
		}
	}
}

func TestChunkedControl(t *testing.T) {
	s := start(t, Options{})
	c := dial(t, s.addr)
	n := 2*ChunkSize + 1000
	c.send(t, "GET /big HTTP/1.1\r\nHost: h\r\nX-Mailboxd-Size: "+strconv.Itoa(n)+"\r\nX-Mailboxd-Chunked: 1\r\n\r\n")
	head, sizes, body := readChunked(t, c.br, nil)
	lower := strings.ToLower(head)
	if !strings.Contains(lower, "\r\ntransfer-encoding: chunked\r\n") || strings.Contains(lower, "content-length") {
		t.Errorf("head is not chunked-only:\n%s", head)
	}
	if fmt.Sprint(sizes) != fmt.Sprint([]int{ChunkSize, ChunkSize, 1000, 0}) {
		t.Errorf("chunk sizes %v", sizes)
	}
	if !bytes.Equal(body, pattern(n)) {
		t.Errorf("chunked body is not the pattern")
	}

	// Chunked without Size sends the Echo chunked; the connection stays usable.
	c.send(t, "GET /json HTTP/1.1\r\nHost: h\r\nX-Mailboxd-Chunked: true\r\n\r\n")
	resp, b := c.read(t, "GET")
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("Transfer-Encoding %v", resp.TransferEncoding)
	}
	if e := decodeEcho(t, b); e.Target != "/json" || e.Seq != 2 {
		t.Errorf("echo %+v", e)
	}
}

func TestChunkDelayStreams(t *testing.T) {
	s := start(t, Options{})
	c := dial(t, s.addr)
	const delay = 150 * time.Millisecond
	begin := time.Now()
	c.send(t, fmt.Sprintf("GET / HTTP/1.1\r\nHost: h\r\nX-Mailboxd-Size: %d\r\nX-Mailboxd-Chunked: 1\r\nX-Mailboxd-Chunk-Delay: %v\r\n\r\n",
		3*ChunkSize, delay))
	var first time.Duration
	_, sizes, _ := readChunked(t, c.br, func(int) {
		if first == 0 {
			first = time.Since(begin)
		}
	})
	total := time.Since(begin)
	if len(sizes) != 4 {
		t.Fatalf("chunk sizes %v", sizes)
	}
	// Two pauses between three chunks; the first chunk must not wait for them.
	if total < 2*delay || first > total-delay {
		t.Errorf("first chunk after %v, whole body after %v: not streamed with %v pauses", first, total, delay)
	}
}

func TestStatusControl(t *testing.T) {
	s := start(t, Options{})
	resp, body := get(t, s.url("/x"), HeaderStatus, "503")
	if resp.StatusCode != 503 || decodeEcho(t, body).Target != "/x" {
		t.Errorf("503: status %d body %q", resp.StatusCode, body)
	}
	for _, code := range []int{204, 304} {
		c := dial(t, s.addr)
		c.send(t, fmt.Sprintf("GET / HTTP/1.1\r\nHost: h\r\nx-mailboxd-status: %d\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n", code))
		resp, body := c.read(t, "GET")
		if resp.StatusCode != code || len(body) != 0 {
			t.Errorf("%d: got status %d with %d body bytes", code, resp.StatusCode, len(body))
		}
		// A stray body would be parsed as the next response.
		if _, body := c.read(t, "GET"); decodeEcho(t, body).Target != "/next" {
			t.Errorf("%d: next pipelined response is wrong", code)
		}
	}
	for _, bad := range []string{"99", "600", "abc", "100"} {
		resp, body := get(t, s.url("/"), HeaderStatus, bad)
		if resp.StatusCode != 400 || !strings.Contains(string(body), HeaderStatus) {
			t.Errorf("status %q: got %d %q", bad, resp.StatusCode, body)
		}
	}
}

func TestBadControlIsCounted(t *testing.T) {
	s := start(t, Options{})
	for _, h := range [][2]string{
		{HeaderSize, "-1"}, {HeaderSize, "1e3"}, {HeaderChunked, "maybe"},
		{HeaderDelay, "soon"}, {HeaderDelay, "-1s"}, {HeaderClose, "2"},
	} {
		resp, body := get(t, s.url("/"), h[0], h[1])
		if resp.StatusCode != 400 {
			t.Errorf("%s: %s answered %d %q", h[0], h[1], resp.StatusCode, body)
		}
	}
	if st := s.stats(t); st.Requests != 6 {
		t.Errorf("requests %d, want 6", st.Requests)
	}
}

func TestDelayControl(t *testing.T) {
	s := start(t, Options{})
	begin := time.Now()
	resp, _ := get(t, s.url("/"), HeaderDelay, "250ms")
	if d := time.Since(begin); resp.StatusCode != 200 || d < 250*time.Millisecond {
		t.Errorf("status %d after %v, want 200 after >= 250ms", resp.StatusCode, d)
	}
}

func TestUnframedControl(t *testing.T) {
	s := start(t, Options{Name: "mbx-unframed"})
	c := dial(t, s.addr)
	// The second request is pipelined behind the unframed response and must
	// never be answered: the first response's body runs to the close.
	c.send(t, "GET /u HTTP/1.1\r\nHost: h\r\nX-Mailboxd-Unframed: 1\r\nX-Mailboxd-Status: 502\r\n\r\n"+
		"GET /never HTTP/1.1\r\nHost: h\r\n\r\n")
	all, err := io.ReadAll(c.br)
	if err != nil {
		t.Fatalf("want the response then a clean EOF, got %v after %q", err, all)
	}
	head, body, ok := strings.Cut(string(all), "\r\n\r\n")
	if !ok {
		t.Fatalf("no header block in %q", all)
	}
	lower := strings.ToLower(head)
	if !strings.HasPrefix(head, "HTTP/1.1 502 ") || strings.Contains(lower, "content-length") ||
		strings.Contains(lower, "transfer-encoding") || strings.Contains(lower, "connection") ||
		!strings.Contains(head, "\r\nX-Mailboxd-Server: mbx-unframed") {
		t.Errorf("head:\n%s", head)
	}
	if e := decodeEcho(t, []byte(body)); e.Target != "/u" {
		t.Errorf("body: %+v", e)
	}
	st := s.stats(t)
	if st.Requests != 1 {
		t.Errorf("requests %d: the pipelined request was served", st.Requests)
	}

	// A sized unframed body, and HEAD (no body at all).
	c = dial(t, s.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: h\r\nX-Mailboxd-Unframed: 1\r\nX-Mailboxd-Size: 100000\r\n\r\n")
	resp, b := c.read(t, "GET")
	if resp.ContentLength != -1 || !resp.Close || !bytes.Equal(b, pattern(100000)) {
		t.Errorf("sized unframed: Content-Length %d, close-delimited %v, pattern %v",
			resp.ContentLength, resp.Close, bytes.Equal(b, pattern(100000)))
	}
	c = dial(t, s.addr)
	c.send(t, "HEAD / HTTP/1.1\r\nHost: h\r\nX-Mailboxd-Unframed: 1\r\n\r\n")
	if all, err := io.ReadAll(c.br); err != nil || !strings.HasSuffix(string(all), "\r\n\r\n") {
		t.Errorf("unframed HEAD: %q, %v", all, err)
	}
}

func TestCloseControl(t *testing.T) {
	s := start(t, Options{})
	c := dial(t, s.addr)
	c.send(t, "GET /first HTTP/1.1\r\nHost: h\r\nX-Mailboxd-Close: 1\r\n\r\nGET /never HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, body := c.read(t, "GET")
	// (net/http consumes "Connection: close" into resp.Close.)
	if !resp.Close || decodeEcho(t, body).Target != "/first" {
		t.Errorf("close=%v, body %q", resp.Close, body)
	}
	c.expectEOF(t)
	if st := s.stats(t); st.Requests != 1 {
		t.Errorf("requests %d: the pipelined request was served", st.Requests)
	}

	// A request pipelined behind the "close" one, which arrives while the
	// latter is being handled, is left unread in the server's socket. Closing
	// a socket with unread bytes makes the kernel send RST at once, which
	// discards the response bytes still queued for sending and makes the
	// client's read fail with "connection reset". The server must
	// half-close and drain (linger) instead.
	c = dial(t, s.addr)
	const size = 4 << 20 // more than the socket buffers hold at once
	c.send(t, fmt.Sprintf("GET /first HTTP/1.1\r\nHost: h\r\nX-Mailboxd-Close: 1\r\nX-Mailboxd-Delay: 100ms\r\nX-Mailboxd-Size: %d\r\n\r\n", size))
	time.Sleep(20 * time.Millisecond)
	c.send(t, "GET /unread HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, body := c.read(t, "GET"); !resp.Close || len(body) != size {
		t.Errorf("close=%v, %d body bytes", resp.Close, len(body))
	}
	c.expectEOF(t)
}

func TestHead(t *testing.T) {
	s := start(t, Options{})
	c := dial(t, s.addr)
	// The GET after each HEAD would be misparsed if a HEAD response carried
	// a body.
	c.send(t, "HEAD /h HTTP/1.1\r\nHost: h\r\n\r\nGET /h HTTP/1.1\r\nHost: h\r\n\r\n"+
		"HEAD / HTTP/1.1\r\nHost: h\r\nX-Mailboxd-Size: 12345\r\n\r\nGET /after HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, body := c.read(t, "HEAD")
	_, getBody := c.read(t, "GET")
	// The HEAD answer describes the Echo of the HEAD: same length as the
	// GET's, but for "HEAD" being one byte longer than "GET".
	if len(body) != 0 || resp.ContentLength != int64(len(getBody))+1 {
		t.Errorf("HEAD: Content-Length %d, %d body bytes; GET body is %d bytes", resp.ContentLength, len(body), len(getBody))
	}
	resp, body = c.read(t, "HEAD")
	if len(body) != 0 || resp.ContentLength != 12345 {
		t.Errorf("sized HEAD: Content-Length %d, %d body bytes", resp.ContentLength, len(body))
	}
	if _, body := c.read(t, "GET"); decodeEcho(t, body).Target != "/after" {
		t.Errorf("response after HEAD is wrong: %q", body)
	}
}

func TestHealthcheck(t *testing.T) {
	s := start(t, Options{Name: "mbx-health"})
	for _, path := range []string{"/healthcheck.htm", "/owa/healthcheck.htm", "/EWS/HealthCheck.htm"} {
		resp, body := get(t, s.url(path))
		if resp.StatusCode != 200 || string(body) != "200 OK\r\n<br/>mbx-health" ||
			resp.Header.Get("Content-Type") != "text/plain" || resp.ContentLength != int64(len(body)) {
			t.Errorf("%s: %d %q %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	// Not a probe: a POST, and a page that only ends like one.
	req, _ := http.NewRequest(http.MethodPost, s.url("/healthcheck.htm"), strings.NewReader("x"))
	if _, body := do(t, req); decodeEcho(t, body).Method != "POST" {
		t.Errorf("POST to the probe page was not echoed")
	}
	if _, body := get(t, s.url("/nothealthcheck.htm")); decodeEcho(t, body).Target != "/nothealthcheck.htm" {
		t.Errorf("/nothealthcheck.htm was not echoed")
	}

	// The harness can fail the probe without stopping the server.
	req, _ = http.NewRequest(http.MethodPost, s.url(HealthControlPath+"?status=503"), nil)
	if resp, body := do(t, req); resp.StatusCode != 200 {
		t.Fatalf("health control: %d %q", resp.StatusCode, body)
	}
	if resp, body := get(t, s.url("/owa/healthcheck.htm")); resp.StatusCode != 503 ||
		string(body) != "503 Service Unavailable\r\n<br/>mbx-health" {
		t.Errorf("failed probe: %d %q", resp.StatusCode, body)
	}

	st := s.stats(t)
	if st.Healthchecks != 4 || st.Requests != 2 {
		t.Errorf("healthchecks %d requests %d, want 4 and 2", st.Healthchecks, st.Requests)
	}
	// Probe connections (each get above used its own) are not the
	// gateway's data connections; the POST and /nothealthcheck.htm were.
	if st.ConnectionsAccepted != 2 {
		t.Errorf("connections accepted %d, want 2 (probe connections are not counted)", st.ConnectionsAccepted)
	}
}

func TestStatsCounting(t *testing.T) {
	s := start(t, Options{Name: "mbx-stats"})
	// Harness connections (stats, health control) must not show.
	if st := s.stats(t); st.Requests != 0 || st.ConnectionsAccepted != 0 || st.ConnectionsOpen != 0 {
		t.Fatalf("fresh server: %+v", st)
	}

	c1, c2 := dial(t, s.addr), dial(t, s.addr)
	c1.send(t, "GET / HTTP/1.1\r\nHost: h\r\n\r\nPUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
	c1.read(t, "GET")
	c1.read(t, "PUT")
	c2.send(t, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	c2.read(t, "GET")
	// A connection that never sends a request is still the gateway's.
	dial(t, s.addr)

	var st Stats
	waitFor(t, func() bool { st = s.stats(t); return st.ConnectionsAccepted == 3 }, func() string { return fmt.Sprintf("%+v", st) })
	if st.Server != "mbx-stats" || st.Requests != 3 || st.ConnectionsOpen != 3 ||
		st.ByMethod["GET"] != 2 || st.ByMethod["PUT"] != 1 || len(st.ByMethod) != 2 || st.ControlConnections < 2 {
		t.Errorf("stats: %+v", st)
	}

	c1.Close()
	waitFor(t, func() bool { st = s.stats(t); return st.ConnectionsOpen == 2 }, func() string { return fmt.Sprintf("%+v", st) })
	if st.ConnectionsAccepted != 3 {
		t.Errorf("stats after close: %+v", st)
	}

	// Stats only answers GET and HEAD; other control paths are 404.
	req, _ := http.NewRequest(http.MethodPost, s.url(StatsPath), nil)
	if resp, _ := do(t, req); resp.StatusCode != 405 {
		t.Errorf("POST stats: %d", resp.StatusCode)
	}
	if resp, _ := get(t, s.url(ControlPrefix+"nope")); resp.StatusCode != 404 {
		t.Errorf("unknown control path: %d", resp.StatusCode)
	}
	if st := s.stats(t); st.Requests != 3 {
		t.Errorf("control requests were counted: %+v", st)
	}
}

func waitFor(t *testing.T, cond func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within 5s: %s", state())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLargeUploads(t *testing.T) {
	s := start(t, Options{})
	payload := make([]byte, 1<<20)
	for i := range payload {
		payload[i] = byte(i*7 + i>>8)
	}
	// Content-Length framed.
	req, _ := http.NewRequest(http.MethodPost, s.url("/upload"), bytes.NewReader(payload))
	resp, body := do(t, req)
	e := decodeEcho(t, body)
	if resp.StatusCode != 200 || e.BodyBytes != 1<<20 || e.BodySHA256 != sha(payload) {
		t.Errorf("1 MiB POST: status %d, %d bytes, sha %s", resp.StatusCode, e.BodyBytes, e.BodySHA256)
	}
	// Chunked (net/http chunks a body of unknown length).
	req, _ = http.NewRequest(http.MethodPut, s.url("/upload"), io.MultiReader(bytes.NewReader(payload)))
	resp, body = do(t, req)
	e = decodeEcho(t, body)
	if resp.StatusCode != 200 || e.BodyBytes != 1<<20 || e.BodySHA256 != sha(payload) {
		t.Errorf("1 MiB chunked PUT: status %d, %d bytes, sha %s", resp.StatusCode, e.BodyBytes, e.BodySHA256)
	}
	var sawTE bool
	for _, h := range e.Headers {
		sawTE = sawTE || (h[0] == "Transfer-Encoding" && h[1] == "chunked")
	}
	if !sawTE {
		t.Errorf("chunked PUT headers: %v", e.Headers)
	}
	// A multipart body is hashed like any other, not parsed into a form (and
	// re-serialised without its preamble, should it be parsed).
	form := "preamble\r\n--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nv\r\n--b--\r\n"
	req, _ = http.NewRequest(http.MethodPost, s.url("/form"), strings.NewReader(form))
	req.Header.Set("Content-Type", "multipart/form-data; boundary=b")
	_, body = do(t, req)
	if e := decodeEcho(t, body); e.BodySHA256 != sha([]byte(form)) {
		t.Errorf("multipart body hashed as %s, want %s", e.BodySHA256, sha([]byte(form)))
	}
}

func TestRequestLog(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	s := start(t, Options{RequestLog: lockedWriter{&mu, &buf}})
	get(t, s.url("/one?q"), "X-A", "1")
	get(t, s.url("/two"))
	get(t, s.url("/healthcheck.htm")) // not a counted request
	mu.Lock()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	mu.Unlock()
	if len(lines) != 2 {
		t.Fatalf("want 2 log lines, got %q", lines)
	}
	var rec struct {
		Seq     int64
		Method  string
		Target  string
		Headers [][2]string
	}
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Seq != 1 || rec.Method != "GET" || rec.Target != "/one?q" || !strings.Contains(fmt.Sprint(rec.Headers), "[X-A 1]") {
		t.Errorf("log line %+v", rec)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestShutdownIsGracefulAndBounded(t *testing.T) {
	s := start(t, Options{ShutdownTimeout: 2 * time.Second})
	idle := dial(t, s.addr)
	idle.send(t, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	idle.read(t, "GET")

	busy := dial(t, s.addr)
	busy.send(t, "GET /slow HTTP/1.1\r\nHost: h\r\nX-Mailboxd-Delay: 1h\r\n\r\n")
	waitFor(t, func() bool { return s.stats(t).Requests == 2 }, func() string { return "slow request never arrived" })

	begin := time.Now()
	if err := s.stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	// Idle connections must be closed at once, not left half-closed until
	// the linger timeout (or the client) ends them.
	if d := time.Since(begin); d >= lingerTimeout {
		t.Errorf("shutdown took %v", d)
	}
	// The in-flight request is answered, with the delay cut short.
	resp, body := busy.read(t, "GET")
	if resp.StatusCode != 200 || decodeEcho(t, body).Target != "/slow" || !resp.Close {
		t.Errorf("in-flight request: %d close=%v %q", resp.StatusCode, resp.Close, body)
	}
	idle.expectEOF(t)
	if _, err := net.DialTimeout("tcp", s.addr, time.Second); err == nil {
		t.Errorf("still accepting after shutdown")
	}
}

func TestRunErrors(t *testing.T) {
	ctx := context.Background()
	if err := Run(ctx, Options{}, nil); err == nil {
		t.Error("no listen address: want error")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := Run(ctx, Options{Listen: ln.Addr().String()}, nil); err == nil {
		t.Error("address in use: want error")
	}
	if err := Run(ctx, Options{Listen: "127.0.0.1:0", Name: "bad\r\nname"}, nil); err == nil {
		t.Error("name with CRLF: want error")
	}
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	ln2.Close()
	err = Run(ctx, Options{Listener: ln2}, nil)
	if err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("closed listener: got %v", err)
	}
}
