package l7

import (
	"bufio"
	"bytes"
	"fmt"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestZZProbe(t *testing.T) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nhost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHOST: a\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"GET / HTTP/1.0\r\nX: y\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX:\r\nY: z\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nConnection: close\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\x80b\r\n\r\n",
		"GET /a?b=%20 HTTP/1.1\r\nHost: a\r\nX: a\tb \r\n\r\n",
		"GET / HTTP/1.1\r\nHost:a\r\nX:\tv\t\r\n\r\n",
	} {
		buf := []byte(s)
		end := FindHeadEnd(buf, 0)
		var h RequestHead
		rej := ScanRequestHead(buf, end, 1<<20, &h)
		var req fasthttp.RequestHeader
		req.Reset()
		req.DisableSpecialHeader()
		req.DisableNormalizing()
		var rd bytes.Reader
		start := h.Start
		if end < 0 { end = len(buf) }
		rd.Reset(buf[start:end])
		br := bufio.NewReader(&rd)
		err := req.Read(br)
		fmt.Printf("%q end=%d rej=%v err=%v\n", s, end, rej, err)
		if err == nil {
			fmt.Printf("   %q %q host=%q\n", req.Method(), req.RequestURI(), req.Host())
			for k, v := range req.AllInOrder() {
				fmt.Printf("   %q: %q\n", k, v)
			}
		}
	}
}
