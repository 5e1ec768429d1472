package l7

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

const fuzzMaxBody = 1 << 20

// headSeeds are the table's heads and a few more shapes: valid requests and
// one of each rejection class.
func headSeeds() [][]byte {
	var seeds [][]byte
	for _, tc := range scanCases {
		if len(tc.in) <= 1024 {
			seeds = append(seeds, []byte(tc.in))
		}
	}
	for _, s := range []string{
		string(browserRequest),
		"POST /owa/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: b\r\n\r\n",
		"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nhost: a\r\nCONTENT-LENGTH: 1\r\ntransfer-encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n Transfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\rTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\x00: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\nExpect: 100-continue\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: \t\r\n\r\n",
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

// FuzzScanRequestHead checks what any accepted head must satisfy.
func FuzzScanRequestHead(f *testing.F) {
	for _, s := range headSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, buf []byte) {
		end := FindHeadEnd(buf, 0)
		if end < 0 {
			return
		}
		if end > len(buf) || end < 2 {
			t.Fatalf("FindHeadEnd = %d for %d bytes", end, len(buf))
		}
		// Resuming after an unsuccessful search over half the buffer
		// finds the same end.
		if k := len(buf) / 2; FindHeadEnd(buf[:k], 0) < 0 {
			if got := FindHeadEnd(buf, k); got != end {
				t.Fatalf("resumed from %d: %d, want %d", k, got, end)
			}
		}
		var h RequestHead
		rej := ScanRequestHead(buf, end, fuzzMaxBody, &h)
		if rej != nil {
			switch rej.Status {
			case 400, 413, 417, 431, 501, 505:
			default:
				t.Fatalf("rejected with status %d (%s)", rej.Status, rej.Reason)
			}
			return
		}
		head := buf[:end]
		if h.Len != end {
			t.Fatalf("Len %d, end %d", h.Len, end)
		}
		switch h.Framing {
		case FramingNone:
			if h.ContentLength != 0 {
				t.Fatalf("no framing with ContentLength %d", h.ContentLength)
			}
		case FramingLength:
			if h.ContentLength <= 0 || h.ContentLength > fuzzMaxBody {
				t.Fatalf("length framing with ContentLength %d", h.ContentLength)
			}
		case FramingChunked:
			if h.ContentLength != -1 || h.HTTP10 {
				t.Fatalf("chunked framing with ContentLength %d, HTTP10 %v", h.ContentLength, h.HTTP10)
			}
		default:
			t.Fatalf("framing %d", h.Framing)
		}
		// Only empty lines before the request line.
		if h.Start > 2*maxLeadingCRLF || h.Start%2 != 0 ||
			string(head[:h.Start]) != strings.Repeat("\r\n", h.Start/2) {
			t.Fatalf("Start %d: %q", h.Start, head[:h.Start])
		}
		// Every LF is preceded by CR, and there are no other controls
		// than CR, LF and HTAB.
		for i, c := range head {
			if c == '\n' && (i == 0 || head[i-1] != '\r') {
				t.Fatalf("bare LF at %d accepted", i)
			}
			if c == '\r' && (i+1 == len(head) || head[i+1] != '\n') {
				t.Fatalf("bare CR at %d accepted", i)
			}
			if c < 0x20 && c != '\r' && c != '\n' && c != '\t' || c == 0x7f {
				t.Fatalf("control byte %#x at %d accepted", c, i)
			}
		}
		if !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
			t.Fatalf("accepted head does not end in CRLF CRLF: %q", head)
		}
		lines := strings.Split(string(head[h.Start:end-4]), "\r\n")
		reqLine := lines[0]
		if strings.ContainsAny(reqLine, "\r\n\t") || strings.Count(reqLine, " ") != 2 {
			t.Fatalf("request line %q", reqLine)
		}
		if string(h.Method)+" "+string(h.Target)+" " != reqLine[:len(reqLine)-8] {
			t.Fatalf("Method %q Target %q, request line %q", h.Method, h.Target, reqLine)
		}
		if h.NumConnNames > maxConnectionNames || len(lines)-1 > maxHeaderLines {
			t.Fatalf("%d connection names, %d fields", h.NumConnNames, len(lines)-1)
		}
		var hosts, cl, te int
		for _, line := range lines[1:] {
			name, _, ok := strings.Cut(line, ":")
			if !ok || name == "" || strings.ContainsAny(name, " \t") || line[0] == ' ' || line[0] == '\t' {
				t.Fatalf("field line %q accepted", line)
			}
			switch strings.ToLower(name) {
			case "host":
				hosts++
			case "content-length":
				cl++
			case "transfer-encoding":
				te++
			}
		}
		if cl > 0 && te > 0 || cl > 1 || te > 1 || hosts > 1 || hosts == 0 && !h.HTTP10 {
			t.Fatalf("accepted with %d Content-Length, %d Transfer-Encoding, %d Host", cl, te, hosts)
		}
		if te == 1 && h.Framing != FramingChunked || cl == 1 && h.Framing == FramingChunked {
			t.Fatalf("framing %d with %d Content-Length, %d Transfer-Encoding", h.Framing, cl, te)
		}
	})
}

// FuzzScanVsFasthttp: what the scanner accepts, fasthttp parses (the way
// session.readHead does) into the same request line and fields, and
// appendRequestHead turns into a head the scanner accepts again with the
// same framing and no hop-by-hop field.
func FuzzScanVsFasthttp(f *testing.F) {
	for _, s := range headSeeds() {
		f.Add(s)
	}
	fx := newForwardFixture("https", "192.0.2.1")
	f.Fuzz(func(t *testing.T, buf []byte) {
		end := FindHeadEnd(buf, 0)
		if end < 0 {
			return
		}
		h := &fx.head
		if ScanRequestHead(buf, end, fuzzMaxBody, h) != nil {
			return
		}
		head := buf[:end]
		// Known: fasthttp's Host check is exact-case and refuses an empty
		// Host (TestFasthttpParsesWhatScanAccepts); an HTTP/1.0 request
		// without Host goes out as HTTP/1.1 without Host
		// (TestAppendRequestHeadHTTP10WithoutHostSendsHost).
		if !bytes.Contains(head, []byte("\r\nHost:")) || hostValueEmpty(head) {
			return
		}
		fx.req.Reset()
		fx.req.DisableSpecialHeader()
		fx.req.DisableNormalizing()
		fx.rd.Reset(head[h.Start:])
		fx.br.Reset(&fx.rd)
		if err := fx.req.Read(fx.br); err != nil {
			t.Fatalf("scanner accepted, fasthttp: %v", err)
		}
		if !bytes.Equal(fx.req.Method(), h.Method) || !bytes.Equal(fx.req.RequestURI(), h.Target) {
			t.Fatalf("fasthttp %q %q, scan %q %q", fx.req.Method(), fx.req.RequestURI(), h.Method, h.Target)
		}
		if got, want := fasthttpFields(&fx.req), scannedFields(buf, h); got != want {
			t.Fatalf("fasthttp fields\n%s\nscanned\n%s", got, want)
		}
		// The gateway reads the fields with Fields, not fasthttp: the
		// same list.
		var viaFields strings.Builder
		for k, v := range h.FieldLines(buf).All() {
			fmt.Fprintf(&viaFields, "%q: %q\n", k, v)
		}
		if got := viaFields.String(); got != scannedFields(buf, h) {
			t.Fatalf("Fields.All\n%s\nscanned\n%s", got, scannedFields(buf, h))
		}
		if bytes.Count(head, []byte("\r\n")) > maxHeaderLines-1 {
			return // the two fields the gateway adds go past the limit
		}
		framing, cl := h.Framing, h.ContentLength
		conn := make(map[string]bool)
		for _, n := range h.ConnectionNames[:h.NumConnNames] {
			conn[strings.ToLower(string(n))] = true
		}
		if conn["host"] {
			// RFC 9110 7.6.1: dropped as asked; the server will answer 400.
			return
		}
		fx.dst = fx.ls.appendRequestHead(fx.dst[:0], h, h.FieldLines(buf), fx.sess, "mbx1.example.test", nil, nil)
		var out RequestHead
		if rej := ScanRequestHead(fx.dst, len(fx.dst), fuzzMaxBody, &out); rej != nil {
			t.Fatalf("forwarded head rejected %v:\n%q", rej, fx.dst)
		}
		if out.Framing != framing || out.ContentLength != cl || out.HTTP10 || out.NumConnNames != 0 {
			t.Fatalf("forwarded framing %d/%d, want %d/%d", out.Framing, out.ContentLength, framing, cl)
		}
		for _, line := range strings.Split(string(fx.dst), "\r\n")[1:] {
			name, _, _ := strings.Cut(line, ":")
			switch n := strings.ToLower(name); n {
			case "connection", "keep-alive", "proxy-connection", "te", "upgrade", "trailer",
				"proxy-authorization", "expect":
				t.Fatalf("hop-by-hop field %q forwarded", line)
			case "x-forwarded-host":
				// Known: TestIsRequestHopField.
			case "content-length", "transfer-encoding", "x-forwarded-for", "x-forwarded-proto":
				// The gateway's own, even when the client named them.
			default:
				if conn[n] {
					t.Fatalf("field %q named in Connection forwarded", line)
				}
			}
		}
	})
}

func hostValueEmpty(head []byte) bool {
	i := bytes.Index(head, []byte("\r\nHost:"))
	rest := head[i+len("\r\nHost:"):]
	return len(trimOWS(rest[:bytes.Index(rest, []byte("\r\n"))])) == 0
}

// chunkSeeds are the valid and invalid bodies of the tests, short ones.
func chunkSeeds() [][]byte {
	var seeds [][]byte
	for _, tc := range validChunked {
		if len(tc.body) <= 512 {
			seeds = append(seeds, []byte(tc.body))
		}
	}
	for _, tc := range invalidChunked {
		if len(tc.body) <= 512 {
			seeds = append(seeds, []byte(tc.body))
		}
	}
	return append(seeds,
		[]byte("5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n"),
		[]byte("1;"+strings.Repeat("e", 300)+"\r\nx\r\n0\r\n\r\n"),
		[]byte("0\r\n"+strings.Repeat("X: y\r\n", 40)+"\r\n"),
	)
}

// FuzzChunkedDecoder: splitting the input never changes the outcome, and
// what the decoder accepts re-encodes into a body it accepts again with
// the same data.
func FuzzChunkedDecoder(f *testing.F) {
	for _, s := range chunkSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 4<<10 {
			in = in[:4<<10] // keep each iteration cheap
		}
		whole := decodePieces(t, in)
		same := func(how string, r chunkResult) {
			if !bytes.Equal(r.data, whole.data) || r.done != whole.done ||
				(r.err == nil) != (whole.err == nil) || r.consumed != whole.consumed {
				t.Fatalf("%s: data %q done %v err %v consumed %d; whole: data %q done %v err %v consumed %d",
					how, r.data, r.done, r.err, r.consumed, whole.data, whole.done, whole.err, whole.consumed)
			}
		}
		same("bytewise", decodePieces(t, bytewise(in)...))
		k := len(in) / 2
		same("halves", decodePieces(t, in[:k], in[k:]))
		if whole.done && whole.err != nil {
			t.Fatal("done with an error")
		}
		if whole.err == nil && !whole.done && whole.consumed != len(in) {
			t.Fatalf("stopped at %d of %d without being done or failing", whole.consumed, len(in))
		}
		if !whole.done {
			return
		}
		// One chunk.
		var enc []byte
		if len(whole.data) > 0 {
			enc = appendHex(enc, uint64(len(whole.data)))
			enc = append(enc, "\r\n"...)
			enc = append(enc, whole.data...)
			enc = append(enc, "\r\n"...)
		}
		enc = append(enc, "0\r\n\r\n"...)
		r := decodePieces(t, enc)
		if r.err != nil || !r.done || r.consumed != len(enc) || !bytes.Equal(r.data, whole.data) {
			t.Fatalf("re-encoded %q: data %q done %v err %v consumed %d", enc, r.data, r.done, r.err, r.consumed)
		}
	})
}
