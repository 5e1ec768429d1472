package l7

import "errors"

// ErrBadChunk reports chunked framing that is not exactly RFC 9112 7.1.
var ErrBadChunk = errors.New("l7: malformed chunked encoding")

// Bounds on the parts of the chunked coding that carry no payload.
const (
	maxChunkLine    = 4096  // a chunk-size line with its extensions
	maxTrailerBytes = 16384 // the whole trailer section
	maxChunkDigits  = 15    // hex digits in a chunk size: < 2^60, no overflow
)

type chunkState uint8

const (
	chunkSize      chunkState = iota // reading hex digits
	chunkSizeBWS                     // whitespace after the size: only ';' may follow
	chunkExt                         // reading extensions up to CR
	chunkSizeLF                      // CR seen, want LF
	chunkData                        // reading data
	chunkDataCR                      // data done, want CR
	chunkDataLF                      // want LF
	chunkTrailer                     // in a trailer line (or the final empty line)
	chunkTrailerLF                   // CR seen in a trailer line, want LF
	chunkDone
)

// ChunkedDecoder walks the chunked transfer coding incrementally, across any
// split of the input. It accepts exactly RFC 9112 section 7.1: hex sizes
// without sign or whitespace, whitespace after a size only before a ';',
// CRLF line endings only, extensions and trailer lines without control
// bytes (their inner syntax is not checked: request chunks are re-encoded
// without extensions and trailers are dropped); the trailer section is
// skipped.
// The zero value is ready to use.
type ChunkedDecoder struct {
	state     chunkState
	remaining uint64 // data bytes left in the current chunk
	digits    int    // hex digits read for the current size
	lineLen   int    // bytes in the current size or trailer line
	trailer   int    // trailer section bytes so far
}

// Reset prepares the decoder for a new body.
func (d *ChunkedDecoder) Reset() { *d = ChunkedDecoder{} }

// Done reports whether the terminating empty line of the body was consumed.
func (d *ChunkedDecoder) Done() bool { return d.state == chunkDone }

// Decode consumes framing from p and stops after at most one run of chunk
// data, which it returns as a sub-slice of p. consumed counts every byte
// used, framing and data. Callers loop while consumed < len(p) and !Done().
// Bytes after the end of the body are not consumed.
func (d *ChunkedDecoder) Decode(p []byte) (consumed int, data []byte, err error) {
	i := 0
	for i < len(p) {
		c := p[i]
		switch d.state {
		case chunkSize:
			v, ok := hexVal(c)
			if !ok {
				if d.digits == 0 {
					return i, nil, ErrBadChunk
				}
				switch c {
				case '\r':
					d.state = chunkSizeLF
				case ';':
					d.state = chunkExt
				case ' ', '\t':
					// BWS, allowed only before a chunk-ext (RFC 9112 7.1.1).
					d.state = chunkSizeBWS
				default:
					return i, nil, ErrBadChunk
				}
				break
			}
			if d.digits++; d.digits > maxChunkDigits {
				return i, nil, ErrBadChunk
			}
			d.remaining = d.remaining<<4 | uint64(v)
		case chunkSizeBWS:
			switch c {
			case ' ', '\t':
			case ';':
				d.state = chunkExt
			default:
				return i, nil, ErrBadChunk
			}
		case chunkExt:
			if c == '\r' {
				d.state = chunkSizeLF
				break
			}
			if c < 0x20 && c != '\t' || c == 0x7f {
				return i, nil, ErrBadChunk
			}
		case chunkSizeLF:
			if c != '\n' {
				return i, nil, ErrBadChunk
			}
			d.digits, d.lineLen = 0, 0
			if d.remaining == 0 {
				d.state = chunkTrailer
			} else {
				d.state = chunkData
			}
		case chunkData:
			n := uint64(len(p) - i)
			if n > d.remaining {
				n = d.remaining
			}
			data = p[i : i+int(n)]
			d.remaining -= n
			if d.remaining == 0 {
				d.state = chunkDataCR
			}
			return i + int(n), data, nil
		case chunkDataCR:
			if c != '\r' {
				return i, nil, ErrBadChunk
			}
			d.state = chunkDataLF
		case chunkDataLF:
			if c != '\n' {
				return i, nil, ErrBadChunk
			}
			d.state = chunkSize
		case chunkTrailer:
			if d.trailer++; d.trailer > maxTrailerBytes {
				return i, nil, ErrBadChunk
			}
			switch {
			case c == '\r':
				d.state = chunkTrailerLF
			case c == '\n' || c < 0x20 && c != '\t' || c == 0x7f:
				return i, nil, ErrBadChunk
			case d.lineLen == 0 && (c == ' ' || c == '\t'):
				return i, nil, ErrBadChunk // obs-fold in a trailer
			default:
				d.lineLen++
			}
		case chunkTrailerLF:
			if c != '\n' {
				return i, nil, ErrBadChunk
			}
			if d.lineLen == 0 {
				d.state = chunkDone
				return i + 1, nil, nil
			}
			d.lineLen = 0
			d.state = chunkTrailer
		case chunkDone:
			return i, nil, nil
		}
		if d.state == chunkSize || d.state == chunkSizeBWS || d.state == chunkExt {
			if d.lineLen++; d.lineLen > maxChunkLine {
				return i, nil, ErrBadChunk
			}
		}
		i++
	}
	return i, nil, nil
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
