package bench

import (
	"errors"
	"strings"
	"testing"
)

// parseAll feeds the stream to a parser in pieces of at most chunk bytes (0 =
// all at once), buffering as the load generator does, and returns the
// statuses of the completed responses.
func parseAll(t *testing.T, p *ResponseParser, stream string, chunk int) ([]int, error) {
	t.Helper()
	var statuses []int
	var buf []byte
	in := []byte(stream)
	for len(in) > 0 {
		n := len(in)
		if chunk > 0 && n > chunk {
			n = chunk
		}
		buf = append(buf, in[:n]...)
		in = in[n:]
		for len(buf) > 0 {
			c, done, err := p.Parse(buf)
			buf = buf[c:]
			if err != nil {
				return statuses, err
			}
			if done {
				statuses = append(statuses, p.Status())
				continue
			}
			if c == 0 {
				break
			}
		}
	}
	if len(buf) != 0 {
		t.Fatalf("%d bytes left unparsed: %q", len(buf), buf)
	}
	return statuses, nil
}

func TestResponseParser(t *testing.T) {
	const cl = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
	const chunked = "HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n" +
		"5\r\nhello\r\n1A;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: 1\r\n\r\n"
	tests := []struct {
		name   string
		head   bool
		stream string
		want   []int
		err    bool
	}{
		{name: "content-length", stream: cl, want: []int{200}},
		{name: "pipelined", stream: cl + cl + cl, want: []int{200, 200, 200}},
		{name: "zero length", stream: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" + cl, want: []int{200, 200}},
		{name: "chunked", stream: chunked + cl, want: []int{201, 200}},
		{name: "chunked wins over content-length", stream: "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", want: []int{200}},
		{name: "no reason phrase", stream: "HTTP/1.1 204\r\n\r\n", want: []int{204}},
		{name: "304 no body", stream: "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n" + cl, want: []int{304, 200}},
		{name: "head ignores content-length", head: true, stream: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", want: []int{200, 200}},
		{name: "100 continue skipped", stream: "HTTP/1.1 100 Continue\r\n\r\n" + cl, want: []int{200}},
		{name: "5xx is still a response", stream: "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\n\r\nbad", want: []int{502}},
		{name: "no framing", stream: "HTTP/1.1 200 OK\r\nServer: x\r\n\r\nbody", err: true},
		{name: "gzip only", stream: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", err: true},
		{name: "conflicting lengths", stream: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", err: true},
		{name: "bad length", stream: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", err: true},
		{name: "bad status line", stream: "HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n", err: true},
		{name: "bad status code", stream: "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", err: true},
		{name: "bad header line", stream: "HTTP/1.1 200 OK\r\nnocolon\r\n\r\n", err: true},
		{name: "bad chunk size", stream: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", err: true},
		{name: "chunk without CRLF", stream: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc", err: true},
		{name: "upgrade", stream: "HTTP/1.1 101 Switching Protocols\r\n\r\n", err: true},
	}
	for _, tc := range tests {
		for _, chunk := range []int{0, 1, 2, 7} {
			var p ResponseParser
			p.Head = tc.head
			got, err := parseAll(t, &p, tc.stream, chunk)
			if tc.err {
				if err == nil || !errors.Is(err, ErrFraming) {
					t.Errorf("%s (chunk %d): err = %v, want a framing error", tc.name, chunk, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s (chunk %d): %v", tc.name, chunk, err)
				continue
			}
			if len(got) != len(tc.want) {
				t.Errorf("%s (chunk %d): statuses %v, want %v", tc.name, chunk, got, tc.want)
				continue
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("%s (chunk %d): statuses %v, want %v", tc.name, chunk, got, tc.want)
					break
				}
			}
		}
	}
}

func TestResponseParserClose(t *testing.T) {
	for _, tc := range []struct {
		stream string
		close  bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false},
		{"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n", true},
		{"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", true},
		{"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", false},
	} {
		var p ResponseParser
		n, done, err := p.Parse([]byte(tc.stream))
		if err != nil || !done || n != len(tc.stream) {
			t.Fatalf("%q: n=%d done=%v err=%v", tc.stream, n, done, err)
		}
		if p.Close() != tc.close {
			t.Errorf("%q: Close() = %v, want %v", tc.stream, p.Close(), tc.close)
		}
	}
}

func TestRequestMarshal(t *testing.T) {
	b, err := Request{
		Method: "POST", Path: "/owa/x", Header: []Header{{"X-AnchorMailbox", "alice@example.test"}}, Body: []byte("abc"),
	}.Marshal("127.0.0.1:80")
	if err != nil {
		t.Fatal(err)
	}
	want := "POST /owa/x HTTP/1.1\r\nHost: 127.0.0.1:80\r\nX-AnchorMailbox: alice@example.test\r\nContent-Length: 3\r\n\r\nabc"
	if string(b) != want {
		t.Errorf("got %q\nwant %q", b, want)
	}
	if _, err := (Request{Header: []Header{{"X", "a\r\nInjected: 1"}}}).Marshal("h"); err == nil {
		t.Error("header with CRLF accepted")
	}
	if _, err := (Request{Path: "/a b"}).Marshal("h"); err == nil {
		t.Error("path with space accepted")
	}
}

// A response as mailboxd sends it for keepalive-get: ~100 bytes of body.
var benchResponse = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n" +
	"X-Mailboxd-Server: mbx1\r\n\r\n" + strings.Repeat("x", 100))

func BenchmarkLoadgenParse(b *testing.B) {
	var p ResponseParser
	b.ReportAllocs()
	b.SetBytes(int64(len(benchResponse)))
	for b.Loop() {
		n, done, err := p.Parse(benchResponse)
		if err != nil || !done || n != len(benchResponse) {
			b.Fatalf("n=%d done=%v err=%v", n, done, err)
		}
	}
}

func BenchmarkLoadgenParsePipelined(b *testing.B) {
	const depth = 8
	var stream []byte
	for range depth {
		stream = append(stream, benchResponse...)
	}
	var p ResponseParser
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		rest := stream
		for range depth {
			n, done, err := p.Parse(rest)
			if err != nil || !done {
				b.Fatalf("done=%v err=%v", done, err)
			}
			rest = rest[n:]
		}
	}
}

func BenchmarkLoadgenParseChunked(b *testing.B) {
	stream := []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"400\r\n" + strings.Repeat("y", 1024) + "\r\n" +
		"400\r\n" + strings.Repeat("y", 1024) + "\r\n0\r\n\r\n")
	var p ResponseParser
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		n, done, err := p.Parse(stream)
		if err != nil || !done || n != len(stream) {
			b.Fatalf("n=%d done=%v err=%v", n, done, err)
		}
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	var p ResponseParser
	allocs := testing.AllocsPerRun(1000, func() {
		if _, done, err := p.Parse(benchResponse); !done || err != nil {
			t.Fatal(done, err)
		}
	})
	if allocs != 0 {
		t.Errorf("Parse allocates %.1f times per response", allocs)
	}
}
