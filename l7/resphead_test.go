package l7

import (
	"bufio"
	"bytes"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

var plainResponseCases = []struct {
	name, head string
	ok         bool
	status     int
	cl         int64
}{
	{"mailboxd", "HTTP/1.1 200 OK\r\nServer: mailboxd\r\nDate: Thu, 26 Nov 2026 03:33:25 GMT\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n", true, 200, 100},
	{"no reason", "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", true, 404, 0},
	{"hsts", "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nSTRICT-TRANSPORT-SECURITY: max-age=1\r\n\r\n", true, 200, 5},
	{"obs-text value", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX-Name: caf\xc3\xa9\r\n\r\n", true, 200, 1},
	{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false, 0, 0},
	{"1xx", "HTTP/1.1 100 Continue\r\n\r\n", false, 0, 0},
	{"no length", "HTTP/1.1 200 OK\r\nX: y\r\n\r\n", false, 0, 0},
	{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, 0, 0},
	{"length and chunked", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", false, 0, 0},
	{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", false, 0, 0},
	{"signed length", "HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\n", false, 0, 0},
	{"length list", "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n", false, 0, 0},
	{"connection", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\n", false, 0, 0},
	{"keep-alive", "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 3\r\n\r\n", false, 0, 0},
	{"upgrade", "HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nContent-Length: 3\r\n\r\n", false, 0, 0},
	{"obs-fold", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX: a\r\n b\r\n\r\n", false, 0, 0},
	{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 3\n\n", false, 0, 0},
	{"bare LF in value", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX: a\nb\r\n\r\n", false, 0, 0},
	{"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 3\r\n\r\n", false, 0, 0},
	{"NUL in value", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX: a\x00\r\n\r\n", false, 0, 0},
	{"status 2-digit", "HTTP/1.1 20 OK\r\nContent-Length: 3\r\n\r\n", false, 0, 0},
	{"huge length", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", false, 0, 0},
}

func TestScanPlainResponse(t *testing.T) {
	for _, tc := range plainResponseCases {
		r, ok := scanPlainResponse([]byte(tc.head))
		if ok != tc.ok || ok && (r.status != tc.status || r.contentLength != tc.cl) {
			t.Errorf("%s: ok %v status %d length %d, want %v %d %d", tc.name, ok, r.status, r.contentLength, tc.ok, tc.status, tc.cl)
		}
		if ok && string(tc.head[r.fieldsEnd:]) != "\r\n" {
			t.Errorf("%s: fields end at %d, before %q", tc.name, r.fieldsEnd, tc.head[r.fieldsEnd:])
		}
	}
}

// FuzzPlainResponseVsFasthttp checks the fast path against the general one:
// a head scanPlainResponse accepts is one fasthttp parses too, with the
// same status and length, and the head relayed from the fast path carries
// the same fields as the one rebuilt from fasthttp's parse (compared per
// name, in order, ignoring case and the order between names, which
// fasthttp changes).
func FuzzPlainResponseVsFasthttp(f *testing.F) {
	for _, tc := range plainResponseCases {
		f.Add([]byte(tc.head))
		f.Add([]byte(tc.head + "hello" + tc.head)) // a body, the next response
	}
	fx := newForwardFixture("http", "192.0.2.1")
	st := &stream{ls: fx.ls, keepAlive: true}
	var resp fasthttp.ResponseHeader
	f.Fuzz(func(t *testing.T, buf []byte) {
		end := FindHeadEnd(buf, 0)
		if end < 0 {
			return
		}
		head := buf[:end]
		plain, ok := scanPlainResponse(head)
		// The relay scans the whole read (the head and what follows):
		// the same verdict, and the same end as FindHeadEnd's.
		if whole, wok := scanPlainResponse(buf); wok != ok || ok && whole.fieldsEnd != plain.fieldsEnd {
			t.Fatalf("%q: scan of the head %v at %d, of the buffer %v at %d", buf, ok, plain.fieldsEnd, wok, whole.fieldsEnd)
		}
		if !ok {
			return
		}
		if plain.fieldsEnd+2 != end {
			t.Fatalf("%q: plain head ends at %d, FindHeadEnd says %d", buf, plain.fieldsEnd+2, end)
		}
		resp.Reset()
		resp.SetNoDefaultContentType(true)
		if err := resp.Read(bufio.NewReader(bytes.NewReader(head))); err != nil {
			t.Fatalf("fast path accepted %q, fasthttp: %v", head, err)
		}
		if resp.StatusCode() != plain.status || int64(resp.ContentLength()) != plain.contentLength {
			t.Fatalf("%q: fasthttp status %d length %d, scan %d %d", head, resp.StatusCode(), resp.ContentLength(), plain.status, plain.contentLength)
		}
		fast := fx.ls.appendPlainResponseHead(nil, head[:plain.fieldsEnd], plain.hsts, st)
		general := fx.ls.appendResponseHead(nil, &resp, st)
		if got, want := relayedFields(t, fast), relayedFields(t, general); got != want {
			t.Fatalf("%q\nfast path fields:\n%s\ngeneral path fields:\n%s", head, got, want)
		}
	})
}

// relayedFields parses a relayed head with net/http and lists its status
// code and fields per lower-case name, values in order; Content-Length is left
// out (compared as a number above: "007" and "7" are one length), and so
// are empty values.
func relayedFields(t *testing.T, head []byte) string {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), nil)
	if err != nil {
		t.Fatalf("relayed head %q: %v", head, err)
	}
	var lines []string
	for name, values := range resp.Header {
		if name == "Content-Length" {
			continue
		}
		// fasthttp drops fields with an empty value, which are valid
		// (RFC 9110 5.5) and which the fast path relays.
		values = slices.DeleteFunc(slices.Clone(values), func(v string) bool { return v == "" })
		if len(values) > 0 {
			lines = append(lines, strings.ToLower(name)+": "+strings.Join(values, " | "))
		}
	}
	slices.Sort(lines)
	// The status code, not the reason phrase: the fast path relays the
	// server's (even an empty one), the general path fills in an empty
	// one; clients ignore it (RFC 9112 4).
	return strconv.Itoa(resp.StatusCode) + "\n" + strings.Join(lines, "\n")
}

// plainText's word-at-a-time test must agree with the byte-by-byte one:
// every byte value at every position of slices of every length up to 24,
// over a background of printable, tab and obs-text bytes.
func TestPlainTextMatchesBytewise(t *testing.T) {
	backgrounds := []byte{'a', '\t', ' ', 0x80, 0xff, '~'}
	for n := 0; n <= 24; n++ {
		for _, bg := range backgrounds {
			b := bytes.Repeat([]byte{bg}, n)
			if got, want := plainText(b), plainBytes(b); got != want {
				t.Fatalf("plainText(%q) = %v, want %v", b, got, want)
			}
			for pos := 0; pos < n; pos++ {
				for c := 0; c < 256; c++ {
					b[pos] = byte(c)
					if got, want := plainText(b), plainBytes(b); got != want {
						t.Fatalf("plainText(%q) = %v, want %v", b, got, want)
					}
				}
				b[pos] = bg
			}
		}
	}
}

// mailboxdResponse is the head of a bench answer through mailboxd.
var mailboxdResponse = []byte("HTTP/1.1 200 OK\r\nServer: mailboxd\r\nDate: Thu, 26 Nov 2026 03:33:25 GMT\r\n" +
	"Content-Type: application/octet-stream\r\nContent-Length: 100\r\nX-Mailboxd-Server: mbx1\r\n" +
	"X-Content-Type-Options: nosniff\r\nX-Frame-Options: SAMEORIGIN\r\nReferrer-Policy: no-referrer\r\n" +
	"X-Mailboxd-Seq: 123456\r\nCache-Control: private, max-age=0\r\n" +
	"X-Request-Id: 2f0c6d3e-6b6e-4f5e-9a53-3f8f1e1c9b7a\r\n\r\n")

func BenchmarkScanPlainResponse(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(mailboxdResponse)))
	for b.Loop() {
		if _, ok := scanPlainResponse(mailboxdResponse); !ok {
			b.Fatal("not plain")
		}
	}
}

// BenchmarkFasthttpResponseParse is the general path's parse of the same
// head, for comparison.
func BenchmarkFasthttpResponseParse(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(mailboxdResponse)))
	var resp fasthttp.ResponseHeader
	var rd bytes.Reader
	br := bufio.NewReader(&rd)
	for b.Loop() {
		resp.Reset()
		rd.Reset(mailboxdResponse)
		br.Reset(&rd)
		if err := resp.Read(br); err != nil {
			b.Fatal(err)
		}
	}
}
