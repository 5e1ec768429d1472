package accesslog

import (
	"strconv"
	"time"
	"unicode/utf8"

	"frontdoor/l7"
)

// Bounds of each field's formatted (escaped) value, in bytes: a record
// never exceeds maxRecord, so a chunk with that much room always takes the
// next record without growing. Longer values are cut (at a character
// boundary, before escaping would pass the bound).
const (
	maxPath   = 2048
	maxQuery  = 2048
	maxName   = 256 // user, server, listener, protocol
	maxMethod = 64
	maxError  = 64
	// maxRecord: the bounded values above plus the keys, the time, the
	// address and the numbers, rounded up.
	maxRecord = maxPath + maxQuery + 4*maxName + maxMethod + maxError + 512
)

// timeLayout is RFC 3339 in UTC with microseconds.
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

// appendRecord appends r as one JSON object and a newline. Keys are always
// present except query (only with Options.Query); backend_ms is null when
// the request never reached a server, and status 0 means no response was
// sent. It allocates nothing.
func appendRecord(b []byte, r *l7.AccessRecord, now time.Time, query bool) []byte {
	b = append(b, `{"time":"`...)
	b = now.UTC().AppendFormat(b, timeLayout)
	b = append(b, `","client":"`...)
	if r.Client.IsValid() {
		b = r.Client.AppendTo(b)
	}
	b = append(b, `","listener":`...)
	b = appendString(b, r.Listener, maxName)
	b = append(b, `,"tls":`...)
	b = strconv.AppendBool(b, r.TLS)
	b = append(b, `,"protocol":`...)
	b = appendString(b, r.Protocol, maxName)
	b = append(b, `,"method":`...)
	b = appendString(b, r.Method, maxMethod)
	b = append(b, `,"path":`...)
	b = appendString(b, r.Path, maxPath)
	if query {
		b = append(b, `,"query":`...)
		b = appendString(b, r.Query, maxQuery)
	}
	b = append(b, `,"user":`...)
	b = appendString(b, r.User, maxName)
	b = append(b, `,"server":`...)
	b = appendString(b, r.Server, maxName)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"request_bytes":`...)
	b = strconv.AppendInt(b, r.RequestBytes, 10)
	b = append(b, `,"response_bytes":`...)
	b = strconv.AppendInt(b, r.ResponseBytes, 10)
	b = append(b, `,"duration_ms":`...)
	b = appendMillis(b, r.Duration)
	b = append(b, `,"backend_ms":`...)
	if r.Backend < 0 {
		b = append(b, "null"...)
	} else {
		b = appendMillis(b, r.Backend)
	}
	b = append(b, `,"error":`...)
	b = appendString(b, r.Error, maxError)
	return append(b, "}\n"...)
}

// appendMillis writes d in milliseconds with microsecond precision.
func appendMillis(b []byte, d time.Duration) []byte {
	if d < 0 {
		d = 0
	}
	us := int64(d / time.Microsecond)
	b = strconv.AppendInt(b, us/1000, 10)
	frac := us % 1000
	b = append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
	return b
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string whose escaped content stays
// within limit bytes (RFC 8259 section 7). Invalid UTF-8 becomes U+FFFD. It
// takes strings and byte slices alike without converting them.
func appendString[S ~string | ~[]byte](b []byte, s S, limit int) []byte {
	b = append(b, '"')
	n := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			var w int
			if b, w = appendASCII(b, c, limit-n); w == 0 {
				break
			}
			n += w
			i++
			continue
		}
		// At most 4 bytes converted: a temporary on the stack.
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			if n+len(`\ufffd`) > limit {
				break
			}
			b = append(b, `\ufffd`...)
			n += len(`\ufffd`)
		} else {
			if n+size > limit {
				break
			}
			b = append(b, s[i:i+size]...)
			n += size
		}
		i += size
	}
	return append(b, '"')
}

// appendASCII appends the JSON form of the ASCII byte c if it fits in room
// bytes, and returns how many it took (0: it did not fit).
func appendASCII(b []byte, c byte, room int) ([]byte, int) {
	switch {
	case c == '"' || c == '\\':
		if room < 2 {
			return b, 0
		}
		return append(b, '\\', c), 2
	case c < 0x20 || c == 0x7f:
		if room < 6 {
			return b, 0
		}
		return append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf]), 6
	}
	if room < 1 {
		return b, 0
	}
	return append(b, c), 1
}
