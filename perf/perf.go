// Package perf holds frontdoor's performance gates and profiling helpers:
// the allocation gates of the request hot paths (run by `make test`) and the
// in-process proxy benchmarks (`make bench-micro`). A gate counts
// allocations, which are deterministic; it never asserts time, which on a
// shared machine is not.
package perf

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"
)

// KeepAliveClient drives keep-alive requests over one raw connection
// without allocating: the request bytes are prepared once and responses
// are framed by Content-Length with a fixed buffer, so every allocation a
// gate counts belongs to the gateway.
type KeepAliveClient struct {
	conn net.Conn
	req  []byte
	buf  []byte
	// Depth is how many requests each Do writes at once (pipelining).
	Depth int
}

// NewKeepAliveClient connects to addr and prepares req, written Depth
// times per Do.
func NewKeepAliveClient(tb testing.TB, addr string, req string, depth int) *KeepAliveClient {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	if depth < 1 {
		depth = 1
	}
	return &KeepAliveClient{conn: c, req: bytes.Repeat([]byte(req), depth), buf: make([]byte, 256<<10), Depth: depth}
}

// NewTLSKeepAliveClient is NewKeepAliveClient over TLS: it completes the
// handshake (without verifying the gateway's self-signed certificate) before
// it returns, so Do's rounds are TLS records only. crypto/tls's client
// reuses its record buffers, so the client still allocates nothing per
// round.
func NewTLSKeepAliveClient(tb testing.TB, addr string, req string, depth int) *KeepAliveClient {
	tb.Helper()
	k := NewKeepAliveClient(tb, addr, req, depth)
	tc := tls.Client(k.conn, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		tb.Fatal(err)
	}
	k.conn = tc
	return k
}

var (
	contentLength = []byte("\r\nContent-Length: ")
	headEnd       = []byte("\r\n\r\n")
)

// Do sends Depth requests and reads their responses; it reports the first
// non-200 status or framing problem as an error.
func (k *KeepAliveClient) Do() error {
	_ = k.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := k.conn.Write(k.req); err != nil {
		return err
	}
	n, done := 0, 0
	for done < k.Depth {
		// Consume every complete response at the start of buf[:n].
		for done < k.Depth {
			end := bytes.Index(k.buf[:n], headEnd)
			if end < 0 {
				break
			}
			if n < 12 || string(k.buf[9:12]) != "200" {
				return fmt.Errorf("perf: unexpected response %q", k.buf[:min(n, 64)])
			}
			i := bytes.Index(k.buf[:end], contentLength)
			if i < 0 {
				return fmt.Errorf("perf: response without Content-Length")
			}
			cl := 0
			for _, c := range k.buf[i+len(contentLength) : end] {
				if c < '0' || c > '9' {
					break
				}
				cl = cl*10 + int(c-'0')
			}
			total := end + 4 + cl
			if n < total {
				break
			}
			copy(k.buf, k.buf[total:n])
			n -= total
			done++
		}
		if done == k.Depth {
			break
		}
		if n == len(k.buf) {
			return fmt.Errorf("perf: response larger than the client buffer")
		}
		m, err := k.conn.Read(k.buf[n:])
		if err != nil {
			return err
		}
		n += m
	}
	return nil
}
