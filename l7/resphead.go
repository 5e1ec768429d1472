package l7

import (
	"bytes"
	"encoding/binary"
)

// The fast path for response heads. Most responses a mailbox server sends
// are plain: HTTP/1.1, CRLF line ends, one Content-Length, no hop-by-hop
// field. For those the gateway relays the server's head as it is (its
// field order and spelling, which fasthttp's re-serialization changes) and
// adds its own connection management at the end, after one strict scan
// instead of fasthttp's parse (a bufio copy, key normalization, a copy of
// every field) and a rebuild. Anything else, or anything the scan is not
// sure of, takes the general path through fasthttp.ResponseHeader.

// plainResponse is what scanPlainResponse learns of a head.
type plainResponse struct {
	status int
	// contentLength is the Content-Length value; -1 when the head has none.
	contentLength int64
	// fieldsEnd is where the last field line ends (before the empty
	// line): head[:fieldsEnd] is the status line and fields, CRLF
	// terminated.
	fieldsEnd int
	hsts      bool // a Strict-Transport-Security field is present
}

// maxContentLengthDigits keeps a Content-Length value far from overflow.
const maxContentLengthDigits = 18

// scanPlainResponse checks whether buf starts with a complete plain
// response head, and returns what the relay needs; the head ends at
// fieldsEnd+2. ok is false for a head not complete in buf and for anything
// else: another version, a status below 200, bare
// LF or obs-fold (RFC 9112 5.2), a field name that is not a token or a
// value with control characters (RFC 9110 5.5), Transfer-Encoding or
// another hop-by-hop field (RFC 9110 7.6.1), no Content-Length or more
// than one, or one that is not all digits (RFC 9110 8.6). The general path
// then decides, with its own rules, whether and how to relay it.
func scanPlainResponse(head []byte) (r plainResponse, ok bool) {
	// status-line = HTTP-version SP status-code SP [ reason-phrase ]
	// (RFC 9112 4).
	if len(head) < 16 || string(head[:9]) != "HTTP/1.1 " {
		return r, false
	}
	d0, d1, d2 := head[9], head[10], head[11]
	if d0 < '2' || d0 > '5' || d1 < '0' || d1 > '9' || d2 < '0' || d2 > '9' || head[12] != ' ' {
		return r, false
	}
	r.status = int(d0-'0')*100 + int(d1-'0')*10 + int(d2-'0')
	r.contentLength = -1
	// reason-phrase = *( HTAB / SP / VCHAR / obs-text )
	i, ok := lineEnd(head, 13)
	if !ok {
		return r, false
	}
	for {
		if i+1 < len(head) && head[i] == '\r' && head[i+1] == '\n' {
			r.fieldsEnd = i
			break // the empty line
		}
		// field-name = token, then ":" with no whitespace before it.
		nameStart := i
		for i < len(head) && isTokenChar(head[i]) {
			i++
		}
		if i == nameStart || i >= len(head) || head[i] != ':' {
			return r, false // also a line starting with SP/HTAB: obs-fold
		}
		name := head[nameStart:i]
		i++
		valueStart := i
		if i, ok = lineEnd(head, i); !ok {
			return r, false
		}
		value := trimOWS(head[valueStart : i-2])
		switch {
		case isResponseHopField(name):
			return r, false
		case len(name) == 14 && equalFold(name, "content-length"):
			if r.contentLength >= 0 || len(value) == 0 || len(value) > maxContentLengthDigits {
				return r, false
			}
			var n int64
			for _, c := range value {
				if c < '0' || c > '9' {
					return r, false
				}
				n = n*10 + int64(c-'0')
			}
			r.contentLength = n
		case len(name) == 25 && equalFold(name, "strict-transport-security"):
			r.hsts = true
		}
	}
	if r.contentLength < 0 {
		return r, false
	}
	return r, true
}

// lineEnd finds the CRLF ending the line that starts at from and returns
// the index after it. ok is false when the line has a control character
// other than HTAB (a bare CR or LF among them) or no CRLF end: field
// values and the reason phrase allow HTAB, SP, VCHAR and obs-text only
// (RFC 9110 5.5, RFC 9112 4).
func lineEnd(head []byte, from int) (next int, ok bool) {
	cr := bytes.IndexByte(head[from:], '\r')
	if cr < 0 {
		return 0, false
	}
	cr += from
	if cr+1 >= len(head) || head[cr+1] != '\n' || !plainText(head[from:cr]) {
		return 0, false
	}
	return cr + 2, true
}

// plainText reports whether b has no control character but HTAB. It tests
// eight bytes at a time (a header line is mostly long values) and looks at
// single bytes only in a word that has a byte below 0x20 or a DEL.
func plainText(b []byte) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for len(b) >= 8 {
		w := binary.LittleEndian.Uint64(b)
		// A byte below 0x20: (w - 0x20...) borrows into its high bit
		// where the byte's own high bit is clear. A DEL: w ^ 0x7f...
		// has a zero byte.
		d := w ^ (0x7f * ones)
		if ((w-0x20*ones)&^w|(d-ones)&^d)&highs != 0 && !plainBytes(b[:8]) {
			return false
		}
		b = b[8:]
	}
	return plainBytes(b)
}

func plainBytes(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
