package l7

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// browserRequest is a typical browser request to OWA, about 500 bytes.
var browserRequest = []byte("GET /owa/service.svc?action=GetFolder&app=Mail HTTP/1.1\r\n" +
	"Host: mail.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36\r\n" +
	"Accept: application/json, text/plain, */*\r\n" +
	"Accept-Language: en-US,en;q=0.9\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Referer: https://mail.example.com/owa/\r\n" +
	"Cookie: X-BackEndCookie=S-1-5-21=u56Lnp2ejJqBzJ3Ix8bNz8vSy8fIzNLLnM; ClientId=0123456789ABCDEF\r\n" +
	"X-OWA-CANARY: abcdefghijklmnopqrstuvwxyz012345\r\n" +
	"X-AnchorMailbox: user@example.com\r\n" +
	"Connection: keep-alive\r\n" +
	"\r\n")

func TestBrowserRequestIsTypical(t *testing.T) {
	if n := len(browserRequest); n < 450 || n > 560 {
		t.Fatalf("browserRequest is %d bytes", n)
	}
	var h RequestHead
	if rej := ScanRequestHead(browserRequest, FindHeadEnd(browserRequest, 0), 1<<20, &h); rej != nil {
		t.Fatal(rej)
	}
}

func BenchmarkScanRequestHead(b *testing.B) {
	var h RequestHead
	b.ReportAllocs()
	b.SetBytes(int64(len(browserRequest)))
	for b.Loop() {
		end := FindHeadEnd(browserRequest, 0)
		if rej := ScanRequestHead(browserRequest, end, 1<<20, &h); rej != nil {
			b.Fatal(rej)
		}
	}
}

// BenchmarkFindHeadEndResume: a head arriving in 64-byte segments.
func BenchmarkFindHeadEndResume(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(browserRequest)))
	for b.Loop() {
		searched := 0
		for n := 64; ; n += 64 {
			n = min(n, len(browserRequest))
			if FindHeadEnd(browserRequest[:n], searched) >= 0 {
				break
			}
			searched = n
		}
	}
}

// BenchmarkFasthttpParse is session.readHead's fasthttp sequence.
func BenchmarkFasthttpParse(b *testing.B) {
	var req fasthttp.RequestHeader
	var rd bytes.Reader
	br := bufio.NewReaderSize(&rd, 8192)
	b.ReportAllocs()
	b.SetBytes(int64(len(browserRequest)))
	for b.Loop() {
		req.Reset()
		req.DisableSpecialHeader()
		req.DisableNormalizing()
		rd.Reset(browserRequest)
		br.Reset(&rd)
		if err := req.Read(br); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendRequestHead(b *testing.B) {
	f := newForwardFixture("https", "203.0.113.9")
	f.parse(b, browserRequest)
	f.dst = make([]byte, 0, 2048)
	b.ReportAllocs()
	b.SetBytes(int64(len(browserRequest)))
	for b.Loop() {
		f.dst = f.ls.appendRequestHead(f.dst[:0], &f.head, f.fields, f.sess, "mbx1.example.test", nil, nil)
	}
}

// BenchmarkReadHeadPath is the whole per-request head path: find, scan,
// fasthttp parse, serialize for the server.
func BenchmarkReadHeadPath(b *testing.B) {
	f := newForwardFixture("https", "203.0.113.9")
	f.dst = make([]byte, 0, 2048)
	b.ReportAllocs()
	b.SetBytes(int64(len(browserRequest)))
	for b.Loop() {
		f.parse(b, browserRequest)
		f.dst = f.ls.appendRequestHead(f.dst[:0], &f.head, f.fields, f.sess, "mbx1.example.test", nil, nil)
	}
}

func benchChunkBody() ([]byte, int) {
	var body []byte
	payload := 0
	chunk := strings.Repeat("x", 4000)
	for i := 0; i < 16; i++ {
		body = appendHex(body, uint64(len(chunk)))
		body = append(body, ";ext=1\r\n"...)
		body = append(body, chunk...)
		body = append(body, "\r\n"...)
		payload += len(chunk)
	}
	body = append(body, "0\r\nX-Trailer: v\r\n\r\n"...)
	return body, payload
}

func BenchmarkChunkedDecode(b *testing.B) {
	body, payload := benchChunkBody()
	var d ChunkedDecoder
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		d.Reset()
		p, got := body, 0
		for len(p) > 0 && !d.Done() {
			n, data, err := d.Decode(p)
			if err != nil {
				b.Fatal(err)
			}
			got += len(data)
			p = p[n:]
		}
		if got != payload || !d.Done() {
			b.Fatalf("decoded %d of %d", got, payload)
		}
	}
}

// BenchmarkChunkedDecodeFraming is the per-byte cost of framing: many
// small chunks with extensions and trailers.
func BenchmarkChunkedDecodeFraming(b *testing.B) {
	var body []byte
	for i := 0; i < 256; i++ {
		body = append(body, "3;name=value\r\nabc\r\n"...)
	}
	body = append(body, "0\r\nX-A: 1\r\nX-B: 2\r\n\r\n"...)
	var d ChunkedDecoder
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		d.Reset()
		p := body
		for len(p) > 0 && !d.Done() {
			n, _, err := d.Decode(p)
			if err != nil {
				b.Fatal(err)
			}
			p = p[n:]
		}
	}
}
