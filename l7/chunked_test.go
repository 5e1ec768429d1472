package l7

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// chunkResult is what feeding a decoder some pieces produced.
type chunkResult struct {
	data     []byte
	consumed int  // bytes of the input the decoder used
	done     bool // Done() after the last piece
	err      error
	// doneAt is the number of input bytes fed when Done first became
	// true, -1 if never.
	doneAt int
}

// decodePieces feeds pieces to a fresh decoder the way session.pumpBody
// does: bytes not consumed stay buffered and are offered again with the
// next piece; Decode is called while bytes remain and the body is not done.
func decodePieces(t testing.TB, pieces ...[]byte) chunkResult {
	var d ChunkedDecoder
	r := chunkResult{doneAt: -1}
	var pending []byte
	fed := 0
	for _, piece := range pieces {
		pending = append(pending, piece...)
		fed += len(piece)
		for len(pending) > 0 && !d.Done() {
			n, data, err := d.Decode(pending)
			if n < 0 || n > len(pending) {
				t.Fatalf("Decode consumed %d of %d", n, len(pending))
			}
			if len(data) > 0 {
				// data is a sub-slice of what was consumed.
				if n < len(data) || !bytes.Equal(data, pending[n-len(data):n]) {
					t.Fatalf("data %q is not the tail of the %d consumed bytes %q", data, n, pending[:n])
				}
			}
			r.data = append(r.data, data...)
			r.consumed += n
			pending = pending[n:]
			if err != nil {
				r.err = err
				return r
			}
			if n == 0 && !d.Done() {
				t.Fatalf("Decode made no progress on %q", pending)
			}
		}
		if d.Done() && r.doneAt < 0 {
			r.doneAt = fed
		}
	}
	r.done = d.Done()
	return r
}

func bytewise(b []byte) [][]byte {
	p := make([][]byte, len(b))
	for i := range b {
		p[i] = b[i : i+1]
	}
	return p
}

var validChunked = []struct {
	name, body, data string
}{
	{"empty", "0\r\n\r\n", ""},
	{"one chunk", "5\r\nhello\r\n0\r\n\r\n", "hello"},
	{"two chunks", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world"},
	{"hex upper", "A\r\n0123456789\r\n0\r\n\r\n", "0123456789"},
	{"hex lower", "a\r\n0123456789\r\n0\r\n\r\n", "0123456789"},
	{"hex mixed", "1a\r\n" + strings.Repeat("x", 26) + "\r\n0\r\n\r\n", strings.Repeat("x", 26)},
	{"leading zeros", "005\r\nhello\r\n000\r\n\r\n", "hello"},
	{"15 digits", "00000000000000F\r\n" + strings.Repeat("y", 15) + "\r\n0\r\n\r\n", strings.Repeat("y", 15)},
	{"data with CRLF", "4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n"},
	{"data with NUL", "3\r\n\x00\x01\x02\r\n0\r\n\r\n", "\x00\x01\x02"},
	{"extension", "5;name=value\r\nhello\r\n0\r\n\r\n", "hello"},
	{"extension no value", "5;x\r\nhello\r\n0;y\r\n\r\n", "hello"},
	{"extensions several", "5;a=1;b=\"two words\"\r\nhello\r\n0\r\n\r\n", "hello"},
	{"extension BWS", "5 ;a=b\r\nhello\r\n0\t;c\r\n\r\n", "hello"},
	{"extension tab in value", "5;a=\"x\ty\"\r\nhello\r\n0\r\n\r\n", "hello"},
	{"extension obs-text", "5;a=\"\x80\xff\"\r\nhello\r\n0\r\n\r\n", "hello"},
	{"trailer", "5\r\nhello\r\n0\r\nX-Trailer: v\r\n\r\n", "hello"},
	{"trailers", "5\r\nhello\r\n0\r\nX-A: 1\r\nX-B: two\twords\r\n\r\n", "hello"},
	{"line of 4096", "1;" + strings.Repeat("e", maxChunkLine-2) + "\r\nZ\r\n0\r\n\r\n", "Z"},
	{"large chunk", "1000\r\n" + strings.Repeat("q", 0x1000) + "\r\n0\r\n\r\n", strings.Repeat("q", 0x1000)},
	{"trailer section of 16 KiB", "0\r\nX: " + strings.Repeat("t", maxTrailerBytes-5) + "\r\n\r\n", ""},
}

// A body decodes to the same data however it is split, Done turns true
// exactly when its last byte arrives, and what follows is left alone.
func TestChunkedValidEverySplit(t *testing.T) {
	const after = "GET /next HTTP/1.1\r\n"
	for _, tc := range validChunked {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.body + after)
			check := func(how string, r chunkResult) {
				t.Helper()
				if r.err != nil {
					t.Fatalf("%s: %v", how, r.err)
				}
				if string(r.data) != tc.data {
					t.Fatalf("%s: data %q, want %q", how, r.data, tc.data)
				}
				if !r.done || r.consumed != len(tc.body) {
					t.Fatalf("%s: done %v consumed %d, want true %d", how, r.done, r.consumed, len(tc.body))
				}
			}
			check("whole", decodePieces(t, in))
			step := 1
			if len(in) > 1024 {
				step = 61 // long inputs: a sample of the split points
			}
			for k := 0; k <= len(in); k += step {
				check("split", decodePieces(t, in[:k], in[k:]))
			}
			for _, k := range []int{len(tc.body) - 1, len(tc.body), len(tc.body) + 1} {
				check("split near the end", decodePieces(t, in[:k], in[k:]))
			}
			// Byte by byte: Done exactly when the last byte of the body
			// arrives, never before.
			r := decodePieces(t, bytewise(in)...)
			check("bytewise", r)
			if r.doneAt != len(tc.body) {
				t.Fatalf("bytewise: Done after %d bytes, want %d", r.doneAt, len(tc.body))
			}
		})
	}
}

// A decoder that is done consumes nothing more; Reset makes it ready for
// the next body.
func TestChunkedDoneAndReset(t *testing.T) {
	var d ChunkedDecoder
	body := []byte("3\r\nabc\r\n0\r\n\r\n")
	off := 0
	var data []byte
	for !d.Done() {
		n, p, err := d.Decode(body[off:])
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, p...)
		off += n
	}
	if string(data) != "abc" || off != len(body) {
		t.Fatalf("data %q off %d", data, off)
	}
	n, p, err := d.Decode([]byte("5\r\nhello\r\n"))
	if n != 0 || p != nil || err != nil || !d.Done() {
		t.Fatalf("after Done: %d %q %v %v", n, p, err, d.Done())
	}
	d.Reset()
	if d.Done() {
		t.Fatal("Done after Reset")
	}
	if n, p, err := d.Decode([]byte("2\r\nhi")); n != 5 || string(p) != "hi" || err != nil {
		t.Fatalf("after Reset: %d %q %v", n, p, err)
	}
	// The zero value and an empty input.
	var z ChunkedDecoder
	if n, p, err := z.Decode(nil); n != 0 || p != nil || err != nil || z.Done() {
		t.Fatalf("empty input: %d %q %v", n, p, err)
	}
}

// A chunk size of 15 hex digits (2^60-1) is accepted: the decoder streams
// its data without needing it all.
func TestChunkedLargeSizeStreams(t *testing.T) {
	var d ChunkedDecoder
	n, p, err := d.Decode([]byte("fffffffffffffff\r\nabc"))
	if err != nil || n != 20 || string(p) != "abc" {
		t.Fatalf("size line and data: %d %q %v", n, p, err)
	}
	n, p, err = d.Decode([]byte("defg"))
	if err != nil || n != 4 || string(p) != "defg" || d.Done() {
		t.Fatalf("more data: %d %q %v", n, p, err)
	}
}

// Incomplete bodies are neither done nor wrong.
func TestChunkedIncomplete(t *testing.T) {
	for _, in := range []string{
		"", "5", "5\r", "5\r\nhel", "5\r\nhello", "5\r\nhello\r", "5\r\nhello\r\n",
		"0", "0\r\n", "0\r\n\r", "0\r\nX: y", "0\r\nX: y\r\n", "5;ext", "5;ext\r",
	} {
		r := decodePieces(t, []byte(in))
		if r.err != nil || r.done {
			t.Errorf("%q: done %v err %v", in, r.done, r.err)
		}
	}
}

var invalidChunked = []struct {
	name, body string
}{
	{"bare LF after size", "5\nhello\r\n0\r\n\r\n"},
	{"bare LF after extension", "5;a\nhello\r\n0\r\n\r\n"},
	{"CR without LF after size", "5\rhello\r\n0\r\n\r\n"},
	{"missing CRLF after data", "5\r\nhello0\r\n\r\n"},
	{"whitespace after size without extension", "5 \r\nhello\r\n0\r\n\r\n"},
	{"junk after size and whitespace", "5 x\r\nhello\r\n0\r\n\r\n"},
	{"bare LF after data", "5\r\nhello\n0\r\n\r\n"},
	{"CR without LF after data", "5\r\nhello\r0\r\n\r\n"},
	{"data longer than size", "3\r\nhello\r\n0\r\n\r\n"},
	{"empty size line", "\r\nhello\r\n0\r\n\r\n"},
	{"non-hex size", "g\r\nhello\r\n0\r\n\r\n"},
	{"non-hex after digit", "5g\r\nhello\r\n0\r\n\r\n"},
	{"0x prefix", "0x10\r\n0123456789abcdef\r\n0\r\n\r\n"},
	{"16 hex digits", "0000000000000001\r\nA\r\n0\r\n\r\n"},
	{"16 f digits", "ffffffffffffffff\r\nA\r\n0\r\n\r\n"},
	{"20 hex digits", "10000000000000000005\r\nhello\r\n0\r\n\r\n"},
	{"size line over 4096", "1;" + strings.Repeat("e", maxChunkLine-1) + "\r\nZ\r\n0\r\n\r\n"},
	{"size line over 4096 in the last chunk", "0;" + strings.Repeat("e", 5000) + "\r\n\r\n"},
	{"NUL in extension", "5;a\x00\r\nhello\r\n0\r\n\r\n"},
	{"DEL in extension", "5;a=\x7f\r\nhello\r\n0\r\n\r\n"},
	{"ESC in extension", "5;a=\x1b\r\nhello\r\n0\r\n\r\n"},
	{"bare CR in extension", "5;a\rb\r\nhello\r\n0\r\n\r\n"},
	{"negative", "-5\r\nhello\r\n0\r\n\r\n"},
	{"plus", "+5\r\nhello\r\n0\r\n\r\n"},
	{"leading space", " 5\r\nhello\r\n0\r\n\r\n"},
	{"leading tab", "\t5\r\nhello\r\n0\r\n\r\n"},
	{"semicolon first", ";5\r\nhello\r\n0\r\n\r\n"},
	{"obs-fold in trailer", "0\r\nX: a\r\n b\r\n\r\n"},
	{"obs-fold tab in trailer", "0\r\nX: a\r\n\tb\r\n\r\n"},
	{"whitespace first trailer", "0\r\n X: a\r\n\r\n"},
	{"bare LF in trailer", "0\r\nX: a\n\r\n"},
	{"bare LF ending", "0\r\n\n"},
	{"bare CR in trailer", "0\r\nX: a\rb\r\n\r\n"},
	{"NUL in trailer", "0\r\nX: \x00\r\n\r\n"},
	{"DEL in trailer", "0\r\nX: \x7f\r\n\r\n"},
	{"trailer section over 16 KiB", "0\r\nX: " + strings.Repeat("t", maxTrailerBytes-4) + "\r\n\r\n"},
	{"trailer lines over 16 KiB", "0\r\n" + strings.Repeat("X-Trailer: "+strings.Repeat("v", 100)+"\r\n", 150) + "\r\n"},
}

// Malformed framing is an error however the input is split, and the
// decoder never reports Done for it.
func TestChunkedInvalidEverySplit(t *testing.T) {
	for _, tc := range invalidChunked {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.body)
			check := func(how string, r chunkResult) {
				t.Helper()
				if !errors.Is(r.err, ErrBadChunk) {
					t.Fatalf("%s: err %v done %v data %q, want ErrBadChunk", how, r.err, r.done, r.data)
				}
				if r.done {
					t.Fatalf("%s: Done with an error", how)
				}
			}
			whole := decodePieces(t, in)
			check("whole", whole)
			step := 1
			if len(in) > 512 {
				step = 97 // long inputs: a sample of the split points
			}
			for k := 0; k <= len(in); k += step {
				r := decodePieces(t, in[:k], in[k:])
				check("split", r)
				if r.consumed != whole.consumed || !bytes.Equal(r.data, whole.data) {
					t.Fatalf("split at %d: stopped at %d with %q, whole: at %d with %q",
						k, r.consumed, r.data, whole.consumed, whole.data)
				}
			}
			if len(in) <= 512 {
				r := decodePieces(t, bytewise(in)...)
				check("bytewise", r)
				if r.consumed != whole.consumed {
					t.Fatalf("bytewise stopped at %d, whole at %d", r.consumed, whole.consumed)
				}
			}
		})
	}
}

// appendHex is what the session re-encodes chunk sizes with; the decoder
// must read back what it writes.
func TestChunkedReencodeRoundTrip(t *testing.T) {
	for _, tc := range validChunked {
		var enc []byte
		if len(tc.data) > 0 {
			enc = appendHex(enc, uint64(len(tc.data)))
			enc = append(enc, "\r\n"...)
			enc = append(enc, tc.data...)
			enc = append(enc, "\r\n"...)
		}
		enc = append(enc, "0\r\n\r\n"...)
		r := decodePieces(t, enc)
		if r.err != nil || !r.done || string(r.data) != tc.data || r.consumed != len(enc) {
			t.Errorf("%s: re-encoded %q: %+v", tc.name, enc, r)
		}
	}
}
