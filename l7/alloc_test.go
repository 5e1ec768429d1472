//go:build !race

package l7

import "testing"

// The per-request head path must not allocate once the loop's scratch
// space has grown: FindHeadEnd, ScanRequestHead and appendRequestHead into
// a reused buffer.
func TestAppendRequestHeadAllocs(t *testing.T) {
	f := newForwardFixture("https", "203.0.113.9")
	f.parse(t, browserRequest)
	f.dst = make([]byte, 0, 2048)
	var h RequestHead
	allocs := testing.AllocsPerRun(200, func() {
		end := FindHeadEnd(browserRequest, 0)
		if rej := ScanRequestHead(browserRequest, end, 1<<20, &h); rej != nil {
			t.Fatal(rej)
		}
		f.dst = f.ls.appendRequestHead(f.dst[:0], &h, h.FieldLines(browserRequest), f.sess, "mbx1.example.test", nil, nil)
	})
	if allocs != 0 {
		t.Errorf("FindHeadEnd+ScanRequestHead+appendRequestHead: %v allocations per request, want 0", allocs)
	}

	// With X-Forwarded-For fields to join (the loop's xff scratch).
	g := newForwardFixture("https", "2001:db8::1")
	xff := []byte("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.1\r\nX-Forwarded-For: 198.51.100.2\r\n\r\n")
	g.parse(t, xff)
	g.dst = make([]byte, 0, 2048)
	allocs = testing.AllocsPerRun(200, func() {
		if rej := ScanRequestHead(xff, FindHeadEnd(xff, 0), 1<<20, &h); rej != nil {
			t.Fatal(rej)
		}
		g.dst = g.ls.appendRequestHead(g.dst[:0], &h, h.FieldLines(xff), g.sess, "mbx1.example.test", nil, nil)
	})
	if allocs != 0 {
		t.Errorf("with X-Forwarded-For: %v allocations per request, want 0", allocs)
	}

	// A router's field lookup (Request.Field) over a browser's lines.
	if rej := ScanRequestHead(browserRequest, FindHeadEnd(browserRequest, 0), 1<<20, &h); rej != nil {
		t.Fatal(rej)
	}
	allocs = testing.AllocsPerRun(200, func() {
		if v := h.FieldLines(browserRequest).Get("user-agent"); len(v) == 0 {
			t.Fatal("no User-Agent")
		}
	})
	if allocs != 0 {
		t.Errorf("Fields.Get: %v allocations per lookup, want 0", allocs)
	}
}

// Decoding a chunked body allocates nothing.
func TestChunkedDecodeAllocs(t *testing.T) {
	body, _ := benchChunkBody()
	var d ChunkedDecoder
	allocs := testing.AllocsPerRun(100, func() {
		d.Reset()
		for p := body; len(p) > 0 && !d.Done(); {
			n, _, err := d.Decode(p)
			if err != nil {
				t.Fatal(err)
			}
			p = p[n:]
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per body", allocs)
	}
}
