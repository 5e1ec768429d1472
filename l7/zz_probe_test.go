package l7

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/valyala/fasthttp"
)

func FuzzZZDiff(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n"))
	f.Add([]byte("POST /a?b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: x, close\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nUser-Agent: x\r\nCookie: a\r\n\r\n"))
	var req fasthttp.RequestHeader
	var rd bytes.Reader
	br := bufio.NewReaderSize(&rd, 8192)
	f.Fuzz(func(t *testing.T, buf []byte) {
		end := FindHeadEnd(buf, 0)
		if end < 0 {
			return
		}
		var h RequestHead
		if ScanRequestHead(buf, end, 1<<40, &h) != nil {
			return
		}
		// skip the known Host-case issue
		if !h.HTTP10 && (!bytes.Contains(buf[:end], []byte("\r\nHost:")) || bytes.Contains(buf[:end], []byte("\r\nHost:\r")) || bytes.Contains(buf[:end], []byte("\r\nHost: \r"))|| bytes.Contains(buf[:end], []byte("\r\nHost:\t\r"))) {
			return
		}
		req.Reset()
		req.DisableSpecialHeader()
		req.DisableNormalizing()
		rd.Reset(buf[h.Start:end])
		br.Reset(&rd)
		if err := req.Read(br); err != nil {
			t.Fatalf("scan accepted, fasthttp: %v", err)
		}
		if !bytes.Equal(req.Method(), h.Method) || !bytes.Equal(req.RequestURI(), h.Target) {
			t.Fatalf("line mismatch %q %q vs %q %q", req.Method(), req.RequestURI(), h.Method, h.Target)
		}
		// compare fields
		p := bytes.Index(buf[h.Start:end], []byte("\r\n")) + 2 + h.Start
		var got [][2]string
		for k, v := range req.AllInOrder() {
			got = append(got, [2]string{string(k), string(v)})
		}
		var want [][2]string
		for p < end {
			i := bytes.Index(buf[p:end], []byte("\r\n"))
			line := buf[p : p+i]
			p += i + 2
			if len(line) == 0 {
				break
			}
			c := bytes.IndexByte(line, ':')
			want = append(want, [2]string{string(line[:c]), string(trimOWS(line[c+1:]))})
		}
		if len(got) != len(want) {
			t.Fatalf("fields: got %q want %q", got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("field %d: got %q want %q", i, got[i], want[i])
			}
		}
	})
}
