package l7

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// testMaxBody is the maxBody given to ScanRequestHead by the table tests.
const testMaxBody = 1 << 20

// scanCase is one request head and what ScanRequestHead must make of it.
// An empty reason means the head is accepted; check then inspects it.
type scanCase struct {
	name   string
	in     string
	status int
	reason string
	check  func(t *testing.T, h *RequestHead)
}

// scanHead runs the session's sequence: FindHeadEnd over the whole buffer,
// then ScanRequestHead on what it found.
func scanHead(in string, maxBody int64) (*RequestHead, *Reject, int) {
	buf := []byte(in)
	end := FindHeadEnd(buf, 0)
	if end < 0 {
		return nil, nil, end
	}
	h := new(RequestHead)
	return h, ScanRequestHead(buf, end, maxBody, h), end
}

// req11 builds "GET / HTTP/1.1" with Host and the given field lines.
func req11(fields ...string) string {
	return "GET / HTTP/1.1\r\nHost: mail.example.com\r\n" + joinFields(fields) + "\r\n"
}

func post11(fields ...string) string {
	return "POST /owa/ HTTP/1.1\r\nHost: mail.example.com\r\n" + joinFields(fields) + "\r\n"
}

func joinFields(fields []string) string {
	var b strings.Builder
	for _, f := range fields {
		b.WriteString(f)
		b.WriteString("\r\n")
	}
	return b.String()
}

func manyFields(n int) []string {
	f := make([]string, n)
	for i := range f {
		f[i] = fmt.Sprintf("X-F%d: %d", i, i)
	}
	return f
}

func wantFraming(f Framing, cl int64) func(*testing.T, *RequestHead) {
	return func(t *testing.T, h *RequestHead) {
		t.Helper()
		if h.Framing != f || h.ContentLength != cl {
			t.Errorf("framing %d, content length %d; want %d, %d", h.Framing, h.ContentLength, f, cl)
		}
	}
}

func wantKeepAlive(ka bool) func(*testing.T, *RequestHead) {
	return func(t *testing.T, h *RequestHead) {
		t.Helper()
		if h.KeepAlive != ka {
			t.Errorf("KeepAlive = %v, want %v", h.KeepAlive, ka)
		}
	}
}

func wantConnNames(names ...string) func(*testing.T, *RequestHead) {
	return func(t *testing.T, h *RequestHead) {
		t.Helper()
		var got []string
		for _, n := range h.ConnectionNames[:h.NumConnNames] {
			got = append(got, string(n))
		}
		if fmt.Sprint(got) != fmt.Sprint(names) || h.NumConnNames != len(names) {
			t.Errorf("ConnectionNames = %q, want %q", got, names)
		}
	}
}

func all(checks ...func(*testing.T, *RequestHead)) func(*testing.T, *RequestHead) {
	return func(t *testing.T, h *RequestHead) {
		t.Helper()
		for _, c := range checks {
			c(t, h)
		}
	}
}

// scanCases holds the behaviour ScanRequestHead is specified to have. The
// fuzz targets use the inputs as seeds.
var scanCases = []scanCase{
	// Accepted.
	{name: "get", in: req11("User-Agent: t"), check: func(t *testing.T, h *RequestHead) {
		if string(h.Method) != "GET" || string(h.Target) != "/" || h.HTTP10 || !h.KeepAlive ||
			h.Framing != FramingNone || h.ContentLength != 0 || h.Start != 0 || h.ExpectContinue {
			t.Errorf("unexpected head %+v", h)
		}
	}},
	{name: "post content-length", in: post11("Content-Length: 5"), check: wantFraming(FramingLength, 5)},
	{name: "content-length OWS", in: post11("Content-Length: \t 7 \t"), check: wantFraming(FramingLength, 7)},
	{name: "content-length zero", in: post11("Content-Length: 0"), check: wantFraming(FramingNone, 0)},
	{name: "content-length leading zeros", in: post11("Content-Length: 0005"), check: wantFraming(FramingLength, 5)},
	{name: "content-length equal to max", in: post11(fmt.Sprintf("Content-Length: %d", testMaxBody)), check: wantFraming(FramingLength, testMaxBody)},
	{name: "post chunked", in: post11("Transfer-Encoding: chunked"), check: wantFraming(FramingChunked, -1)},
	{name: "chunked case-insensitive", in: post11("transfer-encoding: ChUnKeD"), check: wantFraming(FramingChunked, -1)},
	{name: "chunked empty list elements", in: post11("Transfer-Encoding: , chunked ,"), check: wantFraming(FramingChunked, -1)},
	{name: "http10", in: "GET / HTTP/1.0\r\n\r\n", check: func(t *testing.T, h *RequestHead) {
		if !h.HTTP10 || h.KeepAlive {
			t.Errorf("HTTP10 %v KeepAlive %v, want true false", h.HTTP10, h.KeepAlive)
		}
	}},
	{name: "http10 keep-alive", in: "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", check: wantKeepAlive(true)},
	{name: "http10 Keep-Alive case", in: "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", check: wantKeepAlive(true)},
	{name: "http10 with host", in: "GET / HTTP/1.0\r\nHost: a\r\n\r\n", check: wantKeepAlive(false)},
	{name: "http10 content-length", in: "POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n", check: wantFraming(FramingLength, 3)},
	{name: "leading CRLF", in: "\r\n" + req11(), check: func(t *testing.T, h *RequestHead) {
		if h.Start != 2 || string(h.Method) != "GET" {
			t.Errorf("Start %d Method %q, want 2 GET", h.Start, h.Method)
		}
	}},
	{name: "options asterisk", in: "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", check: func(t *testing.T, h *RequestHead) {
		if string(h.Target) != "*" {
			t.Errorf("Target %q", h.Target)
		}
	}},
	{name: "target with query", in: "GET /owa/?a=b&c=%20 HTTP/1.1\r\nHost: a\r\n\r\n", check: func(t *testing.T, h *RequestHead) {
		if string(h.Target) != "/owa/?a=b&c=%20" {
			t.Errorf("Target %q", h.Target)
		}
	}},
	{name: "empty field value", in: req11("X-Empty:"), check: nil},
	{name: "tab and obs-text in value", in: req11("X-V: a\tb\x80\xff"), check: nil},
	{name: "no OWS after colon", in: "GET / HTTP/1.1\r\nHost:a\r\n\r\n", check: nil},
	{name: "128 fields", in: "GET / HTTP/1.1\r\nHost: a\r\n" + joinFields(manyFields(127)) + "\r\n", check: nil},
	{name: "expect 100-continue", in: post11("Content-Length: 5", "Expect: 100-continue"), check: func(t *testing.T, h *RequestHead) {
		if !h.ExpectContinue {
			t.Error("ExpectContinue not set")
		}
	}},
	{name: "expect 100-Continue case", in: post11("Content-Length: 5", "Expect: 100-Continue"), check: func(t *testing.T, h *RequestHead) {
		if !h.ExpectContinue {
			t.Error("ExpectContinue not set")
		}
	}},
	{name: "http11 connection close", in: req11("Connection: close"), check: wantKeepAlive(false)},
	{name: "http11 connection CLOSE", in: req11("Connection: CLOSE"), check: wantKeepAlive(false)},
	{name: "http11 keep-alive", in: req11("Connection: keep-alive"), check: all(wantKeepAlive(true), wantConnNames())},
	{name: "http11 close among others", in: req11("Connection: X-A, close, X-B"), check: all(wantKeepAlive(false), wantConnNames("X-A", "X-B"))},
	{name: "http10 keep-alive then close", in: "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", check: wantKeepAlive(false)},
	{name: "connection names", in: req11("Connection: Keep-Alive, X-Foo , x-bar,,"), check: all(wantKeepAlive(true), wantConnNames("X-Foo", "x-bar"))},
	{name: "connection names over two fields", in: req11("Connection: a, b", "Connection: c"), check: wantConnNames("a", "b", "c")},
	{name: "8 connection names", in: req11("Connection: a,b,c,d,e,f,g,h"), check: wantConnNames("a", "b", "c", "d", "e", "f", "g", "h")},
	{name: "8 names plus close and keep-alive", in: req11("Connection: a,b,c,d,close,e,f,g,h,keep-alive"), check: wantConnNames("a", "b", "c", "d", "e", "f", "g", "h")},

	// Framing conflicts (request smuggling).
	{name: "CL and TE", in: post11("Content-Length: 5", "Transfer-Encoding: chunked"), status: 400, reason: "content_length_and_transfer_encoding"},
	{name: "TE and CL", in: post11("Transfer-Encoding: chunked", "Content-Length: 5"), status: 400, reason: "content_length_and_transfer_encoding"},
	{name: "TE and CL zero", in: post11("Transfer-Encoding: chunked", "Content-Length: 0"), status: 400, reason: "content_length_and_transfer_encoding"},
	{name: "duplicate CL identical", in: post11("Content-Length: 5", "Content-Length: 5"), status: 400, reason: "duplicate_content_length"},
	{name: "duplicate CL different", in: post11("Content-Length: 5", "content-length: 6"), status: 400, reason: "duplicate_content_length"},
	{name: "CL plus", in: post11("Content-Length: +3"), status: 400, reason: "bad_content_length"},
	{name: "CL negative", in: post11("Content-Length: -1"), status: 400, reason: "bad_content_length"},
	{name: "CL inner space", in: post11("Content-Length: 1 2"), status: 400, reason: "bad_content_length"},
	{name: "CL hex", in: post11("Content-Length: 0x10"), status: 400, reason: "bad_content_length"},
	{name: "CL empty", in: post11("Content-Length:"), status: 400, reason: "bad_content_length"},
	{name: "CL blank", in: post11("Content-Length:   "), status: 400, reason: "bad_content_length"},
	{name: "CL list", in: post11("Content-Length: 3,3"), status: 400, reason: "bad_content_length"},
	{name: "CL list spaced", in: post11("Content-Length: 3, 3"), status: 400, reason: "bad_content_length"},
	{name: "CL 19 digits", in: post11("Content-Length: 1234567890123456789"), status: 400, reason: "bad_content_length"},
	{name: "CL 19 digits zeros", in: post11("Content-Length: 0000000000000000001"), status: 400, reason: "bad_content_length"},
	{name: "CL non-ascii digit", in: post11("Content-Length: \xd9\xa3"), status: 400, reason: "bad_content_length"},
	{name: "CL over max body", in: post11(fmt.Sprintf("Content-Length: %d", testMaxBody+1)), status: 413, reason: "body_too_large"},
	{name: "TE on HTTP/1.0", in: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400, reason: "transfer_encoding_http10"},
	{name: "TE gzip", in: post11("Transfer-Encoding: gzip"), status: 400, reason: "chunked_not_final"},
	{name: "TE x-gzip", in: post11("Transfer-Encoding: x-gzip"), status: 400, reason: "chunked_not_final"},
	{name: "TE chunked, gzip", in: post11("Transfer-Encoding: chunked, gzip"), status: 400, reason: "chunked_not_final"},
	// RFC 9112 6.1: chunked MUST NOT be applied more than once.
	{name: "TE chunked, chunked", in: post11("Transfer-Encoding: chunked, chunked"), status: 400, reason: "chunked_not_final"},
	{name: "TE gzip, chunked", in: post11("Transfer-Encoding: gzip, chunked"), status: 501, reason: "transfer_coding_not_implemented"},
	{name: "TE deflate, chunked", in: post11("Transfer-Encoding: deflate,chunked"), status: 501, reason: "transfer_coding_not_implemented"},
	// RFC 9112 6.3: chunked not final MUST be 400, whatever the coding;
	// an unknown coding before a final chunked is 501 (6.1).
	{name: "TE foo", in: post11("Transfer-Encoding: foo"), status: 400, reason: "chunked_not_final"},
	{name: "TE foo, chunked", in: post11("Transfer-Encoding: foo, chunked"), status: 501, reason: "transfer_coding_not_implemented"},
	// identity is not a transfer coding since RFC 7230 (it is not in the
	// registry); alone, chunked is not final: 400 per RFC 9112 6.3.
	{name: "TE identity", in: post11("Transfer-Encoding: identity"), status: 400, reason: "chunked_not_final"},
	{name: "TE identity, chunked", in: post11("Transfer-Encoding: identity, chunked"), status: 501, reason: "transfer_coding_not_implemented"},
	{name: "TE chunked with parameter", in: post11("Transfer-Encoding: chunked;q=1"), status: 501, reason: "transfer_coding_not_implemented"},
	{name: "TE chunked with spaced parameter", in: post11("Transfer-Encoding: chunked ; foo=bar"), status: 501, reason: "transfer_coding_not_implemented"},
	{name: "TE empty", in: post11("Transfer-Encoding:"), status: 400, reason: "bad_transfer_encoding"},
	{name: "TE only commas", in: post11("Transfer-Encoding: , ,"), status: 400, reason: "bad_transfer_encoding"},
	{name: "TE inner space", in: post11("Transfer-Encoding: chun ked"), status: 400, reason: "bad_transfer_encoding"},
	{name: "TE quoted", in: post11("Transfer-Encoding: \"chunked\""), status: 400, reason: "bad_transfer_encoding"},
	{name: "duplicate TE", in: post11("Transfer-Encoding: chunked", "Transfer-Encoding: chunked"), status: 400, reason: "duplicate_transfer_encoding"},
	{name: "duplicate TE gzip then chunked", in: post11("Transfer-Encoding: gzip", "transfer-encoding: chunked"), status: 400, reason: "duplicate_transfer_encoding"},

	// Line endings.
	{name: "bare LF request line", in: "GET / HTTP/1.1\nHost: a\r\n\r\n", status: 400, reason: "bare_lf"},
	{name: "bare LF field line", in: "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", status: 400, reason: "bare_lf"},
	{name: "bare LF terminator", in: "GET / HTTP/1.1\r\nHost: a\n\n", status: 400, reason: "bare_lf"},
	{name: "bare LF final empty line", in: "GET / HTTP/1.1\r\nHost: a\r\n\n", status: 400, reason: "bare_lf"},
	{name: "bare LF everywhere", in: "GET / HTTP/1.1\nHost: a\n\n", status: 400, reason: "bare_lf"},
	{name: "bare LF leading line", in: "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400, reason: "bare_lf"},
	{name: "bare CR in value", in: req11("X: a\rb"), status: 400, reason: "bare_cr"},
	{name: "bare CR end of value", in: req11("X: a\r"), status: 400, reason: "bare_cr"},
	{name: "bare CR request line", in: "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", status: 400, reason: "bare_cr"},
	{name: "bare CR line", in: "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n\r\n", status: 400, reason: "bare_cr"},

	// Field syntax.
	{name: "obs-fold SP", in: req11("X: a", " b"), status: 400, reason: "obs_fold"},
	{name: "obs-fold HTAB", in: req11("X: a", "\tb"), status: 400, reason: "obs_fold"},
	{name: "whitespace before first field", in: "GET / HTTP/1.1\r\n Host: a\r\n\r\n", status: 400, reason: "obs_fold"},
	{name: "NUL in value", in: req11("X: a\x00b"), status: 400, reason: "control_byte"},
	{name: "SOH in value", in: req11("X: \x01"), status: 400, reason: "control_byte"},
	{name: "ESC in value", in: req11("X: a\x1b[0m"), status: 400, reason: "control_byte"},
	{name: "DEL in value", in: req11("X: a\x7f"), status: 400, reason: "control_byte"},
	{name: "VT in value", in: req11("X: a\vb"), status: 400, reason: "control_byte"},
	{name: "control byte in Host", in: "GET / HTTP/1.1\r\nHost: a\x00\r\n\r\n", status: 400, reason: "control_byte"},
	{name: "space before colon", in: req11("Content-Length : 5"), status: 400, reason: "bad_field_name"},
	{name: "tab before colon", in: req11("X\t: 5"), status: 400, reason: "bad_field_name"},
	{name: "Host space before colon", in: "GET / HTTP/1.1\r\nHost : a\r\n\r\n", status: 400, reason: "bad_field_name"},
	{name: "non-token name", in: req11("X(y): z"), status: 400, reason: "bad_field_name"},
	{name: "non-ascii name", in: req11("X\xc3\xa9: z"), status: 400, reason: "bad_field_name"},
	{name: "no colon", in: req11("Xyz"), status: 400, reason: "bad_field"},
	{name: "empty name", in: req11(": z"), status: 400, reason: "bad_field"},
	{name: "129 fields", in: "GET / HTTP/1.1\r\nHost: a\r\n" + joinFields(manyFields(128)) + "\r\n", status: 431, reason: "too_many_fields"},

	// Host.
	{name: "no Host on HTTP/1.1", in: "GET / HTTP/1.1\r\nX: y\r\n\r\n", status: 400, reason: "host"},
	{name: "no fields on HTTP/1.1", in: "GET / HTTP/1.1\r\n\r\n", status: 400, reason: "host"},
	{name: "duplicate Host", in: "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", status: 400, reason: "host"},
	{name: "duplicate Host case", in: "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", status: 400, reason: "host"},
	{name: "duplicate Host on HTTP/1.0", in: "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", status: 400, reason: "host"},

	// Request line.
	{name: "HTTP/2.0", in: "GET / HTTP/2.0\r\nHost: a\r\n\r\n", status: 505, reason: "http_version"},
	{name: "HTTP/0.9", in: "GET / HTTP/0.9\r\nHost: a\r\n\r\n", status: 505, reason: "http_version"},
	{name: "HTTP/3.0", in: "GET / HTTP/3.0\r\nHost: a\r\n\r\n", status: 505, reason: "http_version"},
	{name: "HTTP/2", in: "GET / HTTP/2\r\nHost: a\r\n\r\n", status: 400, reason: "bad_request_line"},
	{name: "lower-case http", in: "GET / http/1.1\r\nHost: a\r\n\r\n", status: 400, reason: "bad_request_line"},
	{name: "garbage version", in: "GET / FOO/1.1\r\nHost: a\r\n\r\n", status: 400, reason: "bad_request_line"},
	{name: "HTTP/1.1x", in: "GET / HTTP/1.10\r\nHost: a\r\n\r\n", status: 400, reason: "bad_request_line"},
	{name: "version trailing space", in: "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", status: 400, reason: "bad_request_line"},
	{name: "no version", in: "GET /\r\nHost: a\r\n\r\n", status: 400, reason: "bad_request_line"},
	{name: "double space", in: "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400, reason: "bad_request_line"},
	{name: "leading space", in: " GET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400, reason: "bad_request_line"},
	{name: "tab separator", in: "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", status: 400, reason: "bad_request_line"},
	{name: "space in target", in: "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", status: 400, reason: "bad_request_line"},
	{name: "DEL in target", in: "GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", status: 400, reason: "bad_request_line"},
	{name: "NUL in target", in: "GET /a\x00 HTTP/1.1\r\nHost: a\r\n\r\n", status: 400, reason: "bad_request_line"},
	{name: "non-token method", in: "G@T / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400, reason: "bad_request_line"},
	{name: "CONNECT", in: "CONNECT mail.example.com:443 HTTP/1.1\r\nHost: mail.example.com:443\r\n\r\n", status: 501, reason: "connect_method"},
	{name: "absolute-form", in: "GET http://mail.example.com/owa/ HTTP/1.1\r\nHost: mail.example.com\r\n\r\n", status: 400, reason: "bad_target"},
	{name: "authority-form", in: "GET mail.example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n", status: 400, reason: "bad_target"},
	{name: "asterisk not OPTIONS", in: "GET * HTTP/1.1\r\nHost: a\r\n\r\n", status: 400, reason: "bad_target"},

	// Expect, Connection.
	{name: "expect other", in: post11("Content-Length: 5", "Expect: 200-ok"), status: 417, reason: "expectation"},
	{name: "expect list", in: post11("Content-Length: 5", "Expect: 100-continue, foo"), status: 417, reason: "expectation"},
	{name: "expect empty", in: post11("Content-Length: 5", "Expect:"), status: 417, reason: "expectation"},
	{name: "9 connection names", in: req11("Connection: a,b,c,d,e,f,g,h,i"), status: 400, reason: "too_many_connection_options"},
	{name: "9 connection names over two fields", in: req11("Connection: a,b,c,d,e", "Connection: f,g,h,i"), status: 400, reason: "too_many_connection_options"},
	{name: "connection option not a token", in: req11("Connection: a b"), status: 400, reason: "bad_field"},
}

func TestScanRequestHead(t *testing.T) {
	for _, tc := range scanCases {
		t.Run(tc.name, func(t *testing.T) {
			h, rej, end := scanHead(tc.in, testMaxBody)
			if end < 0 {
				t.Fatalf("FindHeadEnd found no end in %q", tc.in)
			}
			if tc.reason != "" {
				checkRej(t, rej, tc.status, tc.reason)
				return
			}
			if rej != nil {
				t.Fatalf("rejected %d %s, want accepted", rej.Status, rej.Reason)
			}
			if h.Len != end || end != len(tc.in) {
				t.Errorf("Len %d end %d, want %d", h.Len, end, len(tc.in))
			}
			if tc.check != nil {
				tc.check(t, h)
			}
		})
	}
}

func checkRej(t *testing.T, rej *Reject, status int, reason string) {
	t.Helper()
	if rej == nil {
		t.Fatalf("accepted, want %d %s", status, reason)
	}
	if rej.Status != status || rej.Reason != reason {
		t.Fatalf("rejected %d %s, want %d %s", rej.Status, rej.Reason, status, reason)
	}
}

// Every reason a scan can give is a counter known to Stats.
func TestScanRejectsAreCounted(t *testing.T) {
	known := map[*Reject]bool{}
	for _, r := range allRejects {
		known[r] = true
	}
	for _, tc := range scanCases {
		_, rej, _ := scanHead(tc.in, testMaxBody)
		if rej != nil && !known[rej] {
			t.Errorf("%s: reject %v is not in allRejects", tc.name, rej)
		}
	}
}

// maxBody bounds a declared Content-Length, inclusively.
func TestScanContentLengthMaxBody(t *testing.T) {
	for _, tc := range []struct {
		cl, max int64
		ok      bool
	}{
		{0, 0, true}, {1, 0, false}, {100, 100, true}, {101, 100, false},
		{999999999999999999, math.MaxInt64, true}, {999999999999999999, 999999999999999998, false},
	} {
		_, rej, _ := scanHead(post11(fmt.Sprintf("Content-Length: %d", tc.cl)), tc.max)
		if tc.ok && rej != nil || !tc.ok && (rej == nil || rej.Status != 413 || rej.Reason != "body_too_large") {
			t.Errorf("CL %d max %d: %v, want ok=%v", tc.cl, tc.max, rej, tc.ok)
		}
	}
	// The chunked framing is bounded while the body is read, not here.
	if _, rej, _ := scanHead(post11("Transfer-Encoding: chunked"), 0); rej != nil {
		t.Errorf("chunked with maxBody 0: %v", rej)
	}
}

// RFC 9112 2.2: a server SHOULD ignore at least one empty line before the
// request line; head.go documents up to maxLeadingCRLF (4). With the
// session's sequence (FindHeadEnd, then ScanRequestHead) two or more fail:
// "\r\n\r\n" at the start is taken for the end of the head.
func TestLeadingEmptyLines(t *testing.T) {
	const reqLine = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	for n := 1; n <= maxLeadingCRLF; n++ {
		in := strings.Repeat("\r\n", n) + reqLine
		// ScanRequestHead alone, on the true end, tolerates them.
		var h RequestHead
		if rej := ScanRequestHead([]byte(in), len(in), testMaxBody, &h); rej != nil || h.Start != 2*n {
			t.Errorf("%d empty lines, true end: %v, Start %d", n, rej, h.Start)
		}
		// The session's sequence must too.
		got, rej, end := scanHead(in, testMaxBody)
		if end != len(in) {
			t.Errorf("%d empty lines: FindHeadEnd = %d, want %d", n, end, len(in))
		}
		if rej != nil {
			t.Errorf("%d empty lines: rejected %d %s, want accepted", n, rej.Status, rej.Reason)
		} else if got.Start != 2*n {
			t.Errorf("%d empty lines: Start %d, want %d", n, got.Start, 2*n)
		}
	}
	// One more than tolerated: rejected, whatever the reason.
	in := strings.Repeat("\r\n", maxLeadingCRLF+1) + reqLine
	var h RequestHead
	if rej := ScanRequestHead([]byte(in), len(in), testMaxBody, &h); rej == nil || rej.Status != 400 {
		t.Errorf("%d empty lines: %v, want 400", maxLeadingCRLF+1, rej)
	}
}

// RFC 9112 9.3: "close" means the connection will not persist, whatever
// else Connection lists. For HTTP/1.0 the scanner lets a later keep-alive
// token undo an earlier close.
func TestConnectionCloseWins(t *testing.T) {
	for _, in := range []string{
		"GET / HTTP/1.0\r\nConnection: close, keep-alive\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, keep-alive\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
	} {
		h, rej, _ := scanHead(in, testMaxBody)
		if rej != nil {
			t.Errorf("%q: rejected %v", in, rej)
			continue
		}
		if h.KeepAlive {
			t.Errorf("%q: KeepAlive = true, want false (close was sent)", in)
		}
	}
}

// RFC 9110 10.1.1: "A server that receives a 100-continue expectation in
// an HTTP/1.0 request MUST ignore that expectation" (and 15.2: no 1xx to an
// HTTP/1.0 client). ExpectContinue makes the session write
// "HTTP/1.1 100 Continue" to the client.
func TestExpectContinueIgnoredForHTTP10(t *testing.T) {
	h, rej, _ := scanHead("POST / HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", testMaxBody)
	if rej != nil {
		t.Fatalf("rejected %v", rej)
	}
	if h.ExpectContinue {
		t.Error("ExpectContinue set for an HTTP/1.0 request; the session would send it a 100 Continue")
	}
}

// The headers the table accepts must also parse with fasthttp, the
// reference HTTP/1.1 parser: the gateway reads fields from the lines the
// scanner checked (Fields), and a head fasthttp would refuse or read
// differently is one a server might too.
func TestFasthttpParsesWhatScanAccepts(t *testing.T) {
	extra := []scanCase{
		{name: "lower-case host", in: "GET / HTTP/1.1\r\nhost: mail.example.com\r\n\r\n"},
		{name: "upper-case host", in: "GET / HTTP/1.1\r\nHOST: mail.example.com\r\n\r\n"},
		{name: "empty host", in: "GET / HTTP/1.1\r\nHost:\r\n\r\n"},
	}
	var req fasthttp.RequestHeader
	for i, tc := range append(scanCases, extra...) {
		if tc.reason != "" {
			continue
		}
		// One buffer for both, as in the session.
		buf := []byte(tc.in)
		end := FindHeadEnd(buf, 0)
		h := new(RequestHead)
		if rej := ScanRequestHead(buf, end, math.MaxInt64, h); rej != nil {
			if i < len(scanCases) {
				t.Errorf("%s: scan rejected %v", tc.name, rej)
			}
			continue // an extra case the scanner refuses is consistent too
		}
		if err := parseLikeSession(&req, buf[h.Start:end]); err != nil {
			t.Errorf("%s: scan accepted %q, fasthttp: %v", tc.name, tc.in, err)
			continue
		}
		if !bytes.Equal(req.Method(), h.Method) || !bytes.Equal(req.RequestURI(), h.Target) {
			t.Errorf("%s: fasthttp %q %q, scan %q %q", tc.name, req.Method(), req.RequestURI(), h.Method, h.Target)
		}
		if got, want := fasthttpFields(&req), scannedFields(buf, h); got != want {
			t.Errorf("%s: fasthttp fields\n%s\nscanned\n%s", tc.name, got, want)
		}
	}
}

// parseLikeSession is session.readHead's fasthttp sequence.
func parseLikeSession(req *fasthttp.RequestHeader, head []byte) error {
	req.Reset()
	req.DisableSpecialHeader()
	req.DisableNormalizing()
	return req.Read(bufio.NewReader(bytes.NewReader(head)))
}

func fasthttpFields(req *fasthttp.RequestHeader) string {
	var b strings.Builder
	for k, v := range req.AllInOrder() {
		fmt.Fprintf(&b, "%q: %q\n", k, v)
	}
	return b.String()
}

// scannedFields lists the field lines of an accepted head as the scanner
// sees them: name as received, value without OWS.
func scannedFields(buf []byte, h *RequestHead) string {
	var b strings.Builder
	p := h.Start + bytes.Index(buf[h.Start:], []byte("\r\n")) + 2
	for p < h.Len {
		i := bytes.Index(buf[p:h.Len], []byte("\r\n"))
		line := buf[p : p+i]
		p += i + 2
		if len(line) == 0 {
			break
		}
		c := bytes.IndexByte(line, ':')
		fmt.Fprintf(&b, "%q: %q\n", line[:c], trimOWS(line[c+1:]))
	}
	return b.String()
}

// FindHeadEnd resumed at every point a previous search could have stopped
// finds the same end as one search over the whole buffer.
func TestFindHeadEndResume(t *testing.T) {
	heads := []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n",
		"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\n\n",       // bare LF end
		"GET / HTTP/1.1\r\nHost: a\r\n\n",     // CRLF then LF
		"GET / HTTP/1.1\nHost: a\r\n\r\n",     // bare LF inside, CRLF end
		"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", // bare CR before the end
		"G\r\n\r\n",
		"\n\n",
	}
	const next = "POST /next HTTP/1.1\r\nHost: b\r\n\r\n"
	for _, head := range heads {
		buf := []byte(head + next)
		want := FindHeadEnd(buf, 0)
		if want != len(head) {
			t.Errorf("%q: FindHeadEnd = %d, want %d", head, want, len(head))
			continue
		}
		// One earlier unsuccessful search over buf[:k], for every k.
		for k := 0; k < want; k++ {
			if got := FindHeadEnd(buf[:k], 0); got != -1 {
				t.Errorf("%q: end found in the first %d bytes: %d", head, k, got)
			}
			if got := FindHeadEnd(buf, k); got != want {
				t.Errorf("%q: resumed from %d: %d, want %d", head, k, got, want)
			}
			// The new bytes stop right at the end too.
			if got := FindHeadEnd(buf[:want], k); got != want {
				t.Errorf("%q: resumed from %d on the head only: %d, want %d", head, k, got, want)
			}
		}
		// The session's way: bytes arrive one at a time and searched
		// records how far the last search went.
		searched := 0
		for n := 1; n <= len(buf); n++ {
			got := FindHeadEnd(buf[:n], searched)
			if got < 0 {
				searched = n
				continue
			}
			if got != want || n != want {
				t.Errorf("%q: byte by byte: end %d after %d bytes, want %d after %d", head, got, n, want, want)
			}
			break
		}
	}
	if got := FindHeadEnd(nil, 0); got != -1 {
		t.Errorf("empty buffer: %d", got)
	}
	if got := FindHeadEnd([]byte("GET / HTTP/1.1\r\nHost: a\r\n"), 10); got != -1 {
		t.Errorf("incomplete head: %d", got)
	}
}

// TestFindHeadEndMatchesWholeBufferSearch compares FindHeadEnd with the
// plain definition (the earliest of CRLFCRLF and LFLF over the whole
// buffer) on every string of CR, LF and a letter up to length 9, behind
// and after pipelined data: the search is cut short after a CRLF end, and
// that must not change the answer.
func TestFindHeadEndMatchesWholeBufferSearch(t *testing.T) {
	reference := func(buf []byte, from int) int {
		from = max(from-3, 0)
		skip := 0
		for i := 0; i < maxLeadingCRLF && skip+1 < len(buf) && buf[skip] == '\r' && buf[skip+1] == '\n'; i++ {
			skip += 2
		}
		from = max(from, skip)
		b := buf[from:]
		crlf := bytes.Index(b, []byte("\r\n\r\n"))
		lflf := bytes.Index(b, []byte("\n\n"))
		switch {
		case crlf < 0 && lflf < 0:
			return -1
		case crlf >= 0 && (lflf < 0 || crlf+2 < lflf):
			return from + crlf + 4
		default:
			return from + lflf + 2
		}
	}
	alphabet := []byte("\r\na")
	var buf []byte
	var walk func(n int)
	checked := 0
	walk = func(n int) {
		for _, tail := range []string{"", "\n\n", "GET / HTTP/1.1\r\n\r\n"} {
			b := append(append([]byte(nil), buf...), tail...)
			for from := 0; from <= len(b); from += 3 {
				if got, want := FindHeadEnd(b, from), reference(b, from); got != want {
					t.Fatalf("FindHeadEnd(%q, %d) = %d, want %d", b, from, got, want)
				}
				checked++
			}
		}
		if n == 0 {
			return
		}
		for _, c := range alphabet {
			buf = append(buf, c)
			walk(n - 1)
			buf = buf[:len(buf)-1]
		}
	}
	walk(9)
	t.Logf("%d cases", checked)
}
