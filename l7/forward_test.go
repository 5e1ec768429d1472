package l7

import (
	"bufio"
	"bytes"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"frontdoor/l4"
)

func TestAppendLocalResponse(t *testing.T) {
	for _, tc := range []struct {
		name       string
		status     int
		body       string
		retryAfter []byte
		closeConn  bool
		want       string
	}{
		{
			name: "503 retry close", status: 503, body: "server busy or stopping", retryAfter: []byte("5"), closeConn: true,
			want: "HTTP/1.1 503 Service Unavailable\r\n" +
				"Content-Type: text/plain; charset=utf-8\r\n" +
				"Cache-Control: no-store\r\n" +
				"Content-Length: 24\r\n" +
				"Retry-After: 5\r\n" +
				"Connection: close\r\n" +
				"\r\n" +
				"server busy or stopping\n",
		},
		{
			name: "404 keep-alive", status: 404, body: "no protocol is served at this path",
			want: "HTTP/1.1 404 Not Found\r\n" +
				"Content-Type: text/plain; charset=utf-8\r\n" +
				"Cache-Control: no-store\r\n" +
				"Content-Length: 35\r\n" +
				"\r\n" +
				"no protocol is served at this path\n",
		},
		{
			name: "empty body", status: 400, closeConn: true,
			want: "HTTP/1.1 400 Bad Request\r\n" +
				"Content-Type: text/plain; charset=utf-8\r\n" +
				"Cache-Control: no-store\r\n" +
				"Content-Length: 1\r\n" +
				"Connection: close\r\n" +
				"\r\n" +
				"\n",
		},
		{
			name: "empty retry-after is left out", status: 502, body: "x", retryAfter: []byte{},
			want: "HTTP/1.1 502 Bad Gateway\r\n" +
				"Content-Type: text/plain; charset=utf-8\r\n" +
				"Cache-Control: no-store\r\n" +
				"Content-Length: 2\r\n" +
				"\r\n" +
				"x\n",
		},
		{
			name: "unknown status", status: 599, body: "?",
			want: "HTTP/1.1 599 " + fasthttp.StatusMessage(599) + "\r\n" +
				"Content-Type: text/plain; charset=utf-8\r\n" +
				"Cache-Control: no-store\r\n" +
				"Content-Length: 2\r\n" +
				"\r\n" +
				"?\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("keep")
			got := appendLocalResponse(prefix, tc.status, tc.body, tc.retryAfter, nil, tc.closeConn)
			if string(got) != "keep"+tc.want {
				t.Fatalf("got\n%q\nwant\n%q", got, "keep"+tc.want)
			}
			checkLocalResponseFraming(t, got[len(prefix):], tc.status, tc.body)
		})
	}
}

// checkLocalResponseFraming reads a local response back with fasthttp:
// the status, and a Content-Length that covers exactly body plus newline.
func checkLocalResponseFraming(t *testing.T, raw []byte, status int, body string) {
	t.Helper()
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(bytes.NewReader(raw))); err != nil {
		t.Fatalf("fasthttp cannot read %q: %v", raw, err)
	}
	if resp.StatusCode() != status || string(resp.Body()) != body+"\n" || resp.Header.ContentLength() != len(body)+1 {
		t.Fatalf("read back status %d body %q length %d", resp.StatusCode(), resp.Body(), resp.Header.ContentLength())
	}
}

func TestRejectResponses(t *testing.T) {
	// What session.reject writes for each framing rejection reads back
	// with the status and its own length.
	for _, r := range allRejects {
		if r.Status == 0 {
			continue
		}
		body := statusText(r.Status) + ": " + r.Reason
		out := appendLocalResponse(nil, r.Status, body, nil, nil, true)
		if !bytes.HasPrefix(out, []byte("HTTP/1.1 "+strconv.Itoa(r.Status)+" ")) ||
			!bytes.Contains(out, []byte("\r\nConnection: close\r\n")) {
			t.Errorf("%s: %q", r.Reason, out)
		}
		checkLocalResponseFraming(t, out, r.Status, body)
	}
}

func TestAppendHex(t *testing.T) {
	for _, tc := range []struct {
		v    uint64
		want string
	}{
		{0, "0"}, {1, "1"}, {9, "9"}, {10, "a"}, {15, "f"}, {16, "10"}, {255, "ff"},
		{4096, "1000"}, {0xdeadbeef, "deadbeef"}, {1<<60 - 1, "fffffffffffffff"},
		{1 << 63, "8000000000000000"}, {^uint64(0), "ffffffffffffffff"},
	} {
		if got := appendHex([]byte("x"), tc.v); string(got) != "x"+tc.want {
			t.Errorf("appendHex(%d) = %q, want %q", tc.v, got, "x"+tc.want)
		}
		if got := strconv.FormatUint(tc.v, 16); got != tc.want {
			t.Errorf("table: %d is %s", tc.v, got)
		}
	}
}

// forwardFixture is the minimal state appendRequestHead uses.
type forwardFixture struct {
	ls   *loopState
	sess *session
	req  fasthttp.RequestHeader
	head RequestHead
	// fields are the field lines of the head parse last accepted.
	fields Fields
	rd     bytes.Reader
	br     *bufio.Reader
	dst    []byte
}

func newForwardFixture(scheme, remote string) *forwardFixture {
	f := &forwardFixture{
		ls:   &loopState{h: &Handler{}},
		sess: &session{ClientConn: l4.ClientConn{Remote: netip.AddrPortFrom(netip.MustParseAddr(remote), 50000)}, https: scheme == "https"},
	}
	f.br = bufio.NewReaderSize(&f.rd, 8192)
	return f
}

// parse runs the session's readHead sequence on raw: FindHeadEnd,
// ScanRequestHead, and the field lines it checked.
func (f *forwardFixture) parse(tb testing.TB, raw []byte) {
	end := FindHeadEnd(raw, 0)
	if end < 0 {
		tb.Fatalf("no head end in %q", raw)
	}
	if rej := ScanRequestHead(raw, end, 1<<30, &f.head); rej != nil {
		tb.Fatalf("rejected %d %s: %q", rej.Status, rej.Reason, raw)
	}
	f.fields = f.head.FieldLines(raw)
}

func (f *forwardFixture) forward(tb testing.TB, raw string) string {
	f.parse(tb, []byte(raw))
	f.dst = f.ls.appendRequestHead(f.dst[:0], &f.head, f.fields, f.sess, "mbx1.example.test", nil, nil)
	return string(f.dst)
}

func TestAppendRequestHead(t *testing.T) {
	for _, tc := range []struct {
		name, scheme, remote, in, want string
	}{
		{
			name: "hop-by-hop removed, others kept in order", scheme: "https", remote: "203.0.113.9",
			in: "POST /owa/service.svc?action=GetItem&x=%20 HTTP/1.1\r\n" +
				"Host: mail.example.com\r\n" +
				"connection: keep-alive, X-Custom-Hop, x-other-HOP\r\n" +
				"Keep-Alive: timeout=5\r\n" +
				"Proxy-Connection: keep-alive\r\n" +
				"TE: trailers\r\n" +
				"Upgrade: websocket\r\n" +
				"Trailer: X-T\r\n" +
				"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n" +
				"Expect: 100-continue\r\n" +
				"X-Forwarded-Proto: ftp\r\n" +
				"x-forwarded-host: evil.example\r\n" +
				"x-custom-hop: 1\r\n" +
				"X-Other-Hop: 2\r\n" +
				"X-Forwarded-For: 198.51.100.1\r\n" +
				"Cookie: a=b; c=d\r\n" +
				"x-AnchorMailbox: user@example.com\r\n" +
				"X-Forwarded-For: 198.51.100.2, 198.51.100.3\r\n" +
				"Content-Length: 5\r\n" +
				"User-Agent: Mozilla/5.0 (test)\r\n" +
				"Authorization: Bearer abc\r\n" +
				"X-Empty:\r\n" +
				"X-Spaces: \t a  b \t\r\n" +
				"\r\n",
			want: "POST /owa/service.svc?action=GetItem&x=%20 HTTP/1.1\r\n" +
				"Host: mail.example.com\r\n" +
				"Cookie: a=b; c=d\r\n" +
				"x-AnchorMailbox: user@example.com\r\n" +
				"User-Agent: Mozilla/5.0 (test)\r\n" +
				"Authorization: Bearer abc\r\n" +
				"X-Empty: \r\n" +
				"X-Spaces: a  b\r\n" +
				"X-Forwarded-For: 198.51.100.1, 198.51.100.2, 198.51.100.3, 203.0.113.9\r\n" +
				"X-Forwarded-Proto: https\r\n" +
				"Content-Length: 5\r\n" +
				"\r\n",
		},
		{
			name: "chunked re-added, xff created", scheme: "http", remote: "2001:db8::7",
			in: "PUT /ews/exchange.asmx HTTP/1.1\r\n" +
				"Host: mail.example.com\r\n" +
				"Transfer-Encoding: Chunked\r\n" +
				"Content-Type: text/xml\r\n" +
				"\r\n",
			want: "PUT /ews/exchange.asmx HTTP/1.1\r\n" +
				"Host: mail.example.com\r\n" +
				"Content-Type: text/xml\r\n" +
				"X-Forwarded-For: 2001:db8::7\r\n" +
				"X-Forwarded-Proto: http\r\n" +
				"Transfer-Encoding: chunked\r\n" +
				"\r\n",
		},
		{
			name: "HTTP/1.0 forwarded as HTTP/1.1", scheme: "http", remote: "192.0.2.1",
			in: "GET /owa/ HTTP/1.0\r\n" +
				"Host: mail.example.com\r\n" +
				"Connection: keep-alive\r\n" +
				"\r\n",
			want: "GET /owa/ HTTP/1.1\r\n" +
				"Host: mail.example.com\r\n" +
				"X-Forwarded-For: 192.0.2.1\r\n" +
				"X-Forwarded-Proto: http\r\n" +
				"\r\n",
		},
		{
			name: "OPTIONS asterisk", scheme: "http", remote: "192.0.2.1",
			in:   "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
			want: "OPTIONS * HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: http\r\n\r\n",
		},
		{
			name: "leading empty line dropped", scheme: "http", remote: "192.0.2.1",
			in:   "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
			want: "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: http\r\n\r\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newForwardFixture(tc.scheme, tc.remote)
			got := f.forward(t, tc.in)
			if got != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", quoteLines(got), quoteLines(tc.want))
			}
			checkForwardedHead(t, []byte(got))
			// Reusing the loop's scratch gives the same result.
			if again := f.forward(t, tc.in); again != tc.want {
				t.Fatalf("second time\n%s", quoteLines(again))
			}
		})
	}
}

func quoteLines(s string) string {
	return strings.ReplaceAll(strconv.Quote(s), `\r\n`, "\\r\\n\n")
}

// checkForwardedHead checks that what goes to the server is itself a head
// the scanner accepts (the server must see the framing the gateway chose).
func checkForwardedHead(t *testing.T, out []byte) {
	t.Helper()
	if end := FindHeadEnd(out, 0); end != len(out) {
		t.Fatalf("forwarded head ends at %d of %d", end, len(out))
	}
	var h RequestHead
	if rej := ScanRequestHead(out, len(out), 1<<62, &h); rej != nil {
		t.Fatalf("forwarded head rejected %d %s:\n%s", rej.Status, rej.Reason, quoteLines(string(out)))
	}
	if h.HTTP10 || h.NumConnNames != 0 || !h.KeepAlive {
		t.Fatalf("forwarded head: HTTP10 %v, Connection names %d, keep-alive %v", h.HTTP10, h.NumConnNames, h.KeepAlive)
	}
}

// Every field a head names in Connection is dropped, whatever its case,
// and the fields the gateway sets cannot be supplied by the client.
func TestAppendRequestHeadDropsFieldsNamedInConnection(t *testing.T) {
	f := newForwardFixture("https", "192.0.2.1")
	got := f.forward(t, "GET / HTTP/1.1\r\nHost: a\r\n"+
		"Connection: A, b, C-D, e, f, g, h, X-Forwarded-For\r\n"+
		"a: 1\r\nB: 2\r\nc-d: 3\r\nKeep: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nh: 8\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n")
	want := "GET / HTTP/1.1\r\nHost: a\r\nKeep: 4\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: https\r\n\r\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", quoteLines(got), quoteLines(want))
	}
}

// RFC 9112 3.2: "A client MUST send a Host header field in all HTTP/1.1
// request messages." The gateway upgrades an HTTP/1.0 request to HTTP/1.1
// toward the server, so an HTTP/1.0 request without Host (valid, and
// accepted by ScanRequestHead) goes out as an invalid HTTP/1.1 request.
func TestAppendRequestHeadHTTP10WithoutHostSendsHost(t *testing.T) {
	f := newForwardFixture("http", "192.0.2.1")
	got := f.forward(t, "GET /owa/ HTTP/1.0\r\nUser-Agent: old\r\n\r\n")
	if !strings.HasPrefix(got, "GET /owa/ HTTP/1.1\r\n") {
		t.Fatalf("request line: %q", got)
	}
	n := 0
	for _, line := range strings.Split(got, "\r\n") {
		if name, _, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, "host") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("forwarded HTTP/1.1 request has %d Host fields, want 1:\n%s", n, quoteLines(got))
	}
}

// RFC 9110 8.6: a user agent normally sends Content-Length in a POST even
// when the value is 0, and some servers (HTTP.sys, in front of Exchange)
// answer 411 Length Required to a POST with neither Content-Length nor
// Transfer-Encoding. The gateway drops "Content-Length: 0" and adds
// nothing back (FramingNone).
func TestAppendRequestHeadKeepsZeroContentLength(t *testing.T) {
	f := newForwardFixture("http", "192.0.2.1")
	got := f.forward(t, "POST /owa/ping HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
	if !strings.Contains(got, "\r\nContent-Length: 0\r\n") {
		t.Errorf("Content-Length: 0 not forwarded:\n%s", quoteLines(got))
	}
}

// A head the scanner accepted forwards the same request line and fields,
// minus hop-by-hop ones.
func TestAppendRequestHeadMatchesScan(t *testing.T) {
	f := newForwardFixture("http", "192.0.2.1")
	for _, tc := range scanCases {
		if tc.reason != "" {
			continue
		}
		f.parse(t, []byte(tc.in))
		if f.head.HTTP10 && !strings.Contains(strings.ToLower(tc.in), "\r\nhost:") {
			continue // see TestAppendRequestHeadHTTP10WithoutHostSendsHost
		}
		if tc.name == "128 fields" {
			continue // the gateway adds two fields: past the scanner's own limit
		}
		out := f.ls.appendRequestHead(nil, &f.head, f.fields, f.sess, "mbx1.example.test", nil, nil)
		t.Run(tc.name, func(t *testing.T) {
			checkForwardedHead(t, out)
			var h RequestHead
			_ = ScanRequestHead(out, len(out), 1<<62, &h)
			if string(h.Method) != string(f.head.Method) || string(h.Target) != string(f.head.Target) {
				t.Errorf("request line %q %q, want %q %q", h.Method, h.Target, f.head.Method, f.head.Target)
			}
			if h.Framing != f.head.Framing || h.ContentLength != f.head.ContentLength {
				t.Errorf("framing %d/%d, want %d/%d", h.Framing, h.ContentLength, f.head.Framing, f.head.ContentLength)
			}
			if h.ExpectContinue {
				t.Error("Expect forwarded")
			}
		})
	}
}

// appendResponseHead: status line, hop-by-hop fields dropped, the
// gateway's framing and connection management added.
func TestAppendResponseHead(t *testing.T) {
	for _, tc := range []struct {
		name      string
		in        string
		framing   Framing
		dechunk   bool
		keepAlive bool
		want      string
	}{
		{
			name: "length, keep-alive", framing: FramingLength, keepAlive: true,
			in:   "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nKeep-Alive: timeout=5\r\nX-A: 1\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: 1\r\n\r\n",
		},
		{
			name: "chunked relayed, close", framing: FramingChunked,
			in:   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\nProxy-Authenticate: Basic\r\nUpgrade: h2c\r\nX-A: 1\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
		},
		{
			name: "chunked de-chunked for HTTP/1.0", framing: FramingChunked, dechunk: true,
			in:   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nX-A: 1\r\nConnection: close\r\n\r\n",
		},
		{
			name: "reason phrase kept", framing: FramingNone, keepAlive: true,
			in:   "HTTP/1.1 404 Nope\r\nContent-Length: 0\r\n\r\n",
			want: "HTTP/1.1 404 Nope\r\nContent-Length: 0\r\n\r\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls := &loopState{h: &Handler{}, respConnNames: make([][]byte, 0, maxConnectionNames)}
			var resp fasthttp.ResponseHeader
			resp.SetNoDefaultContentType(true)
			if err := resp.Read(bufio.NewReader(strings.NewReader(tc.in))); err != nil {
				t.Fatal(err)
			}
			st := &stream{respFraming: tc.framing, dechunk: tc.dechunk, keepAlive: tc.keepAlive}
			got := string(ls.appendResponseHead(nil, &resp, st))
			if got != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", quoteLines(got), quoteLines(tc.want))
			}
		})
	}
}

func TestIsRequestHopField(t *testing.T) {
	hop := []string{
		"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Transfer-Encoding",
		"Upgrade", "Trailer", "Proxy-Authorization", "Expect", "Content-Length",
		"X-Forwarded-Proto", "X-Forwarded-Host",
	}
	for _, name := range hop {
		for _, n := range []string{name, strings.ToLower(name), strings.ToUpper(name)} {
			if !isRequestHopField([]byte(n)) {
				t.Errorf("isRequestHopField(%q) = false, want true", n)
			}
		}
	}
	for _, n := range []string{
		"Host", "X-Forwarded-For", "Authorization", "Cookie", "Trailers", "TEs", "X-Forwarded",
		"X-Forwarded-Hosts", "Proxy-Authenticate", "Content-Type", "X-Forwarded-Port", "",
	} {
		if isRequestHopField([]byte(n)) {
			t.Errorf("isRequestHopField(%q) = true, want false", n)
		}
	}
}

func TestIsResponseHopField(t *testing.T) {
	for _, n := range []string{"Connection", "keep-alive", "Proxy-Connection", "Transfer-Encoding", "UPGRADE", "Proxy-Authenticate"} {
		if !isResponseHopField([]byte(n)) {
			t.Errorf("isResponseHopField(%q) = false", n)
		}
	}
	for _, n := range []string{"Content-Length", "Set-Cookie", "Trailer", "WWW-Authenticate", "Location", ""} {
		if isResponseHopField([]byte(n)) {
			t.Errorf("isResponseHopField(%q) = true", n)
		}
	}
}
