package bench

import (
	"bytes"
	"errors"
)

// ErrFraming is wrapped by every error the response parser returns: the byte
// stream is not a sequence of well-framed HTTP/1.1 responses, so the
// connection cannot be reused and the load generator counts a framing error.
var ErrFraming = errors.New("bench: bad response framing")

type framingError string

func (e framingError) Error() string { return "bench: bad response framing: " + string(e) }
func (e framingError) Unwrap() error { return ErrFraming }

// The parser's errors are preallocated values so that a broken server cannot
// make the hot path allocate either.
var (
	errStatusLine    error = framingError("malformed status line")
	errHeaderLine    error = framingError("malformed header line")
	errContentLength error = framingError("invalid or conflicting Content-Length")
	errNoFraming     error = framingError("response has neither Content-Length nor chunked encoding")
	errChunkSize     error = framingError("malformed chunk size")
	errChunkEnd      error = framingError("chunk data not followed by CRLF")
	errUpgrade       error = framingError("101 Switching Protocols on a load-generator connection")
)

type parseState uint8

const (
	stateHeader    parseState = iota // waiting for a complete status line + header block
	stateBody                        // Content-Length body, remain bytes left
	stateChunkSize                   // waiting for a chunk-size line
	stateChunkData                   // inside a chunk, remain bytes left
	stateChunkCRLF                   // waiting for the CRLF that ends a chunk
	stateTrailer                     // after the last chunk: trailer lines up to an empty line
)

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
)

// ResponseParser incrementally parses a stream of HTTP/1.1 responses as a
// client sees it on one keep-alive connection. It is deliberately minimal: it
// extracts only what framing needs (status, Content-Length,
// Transfer-Encoding, Connection) and never copies or retains body bytes, so it
// allocates nothing. It is strict where leniency would hide a gateway bug: a
// response it cannot frame is an error, never "read until close".
//
// The zero value is ready for responses to non-HEAD requests.
type ResponseParser struct {
	// Head makes every response bodiless, as responses to HEAD requests are.
	// (The load generator sends one method per run, so this is per parser,
	// not per response.)
	Head bool

	state  parseState
	remain int64

	status int
	close  bool
}

// Reset returns the parser to the start of a response (for a new connection).
func (p *ResponseParser) Reset() {
	head := p.Head
	*p = ResponseParser{Head: head}
}

// Status is the status code of the response being parsed or just completed.
func (p *ResponseParser) Status() int { return p.status }

// Close reports whether the response being parsed or just completed ends the
// connection (Connection: close, or an HTTP/1.0 response without keep-alive).
func (p *ResponseParser) Close() bool { return p.close }

// Parse consumes bytes from b. It returns the number of bytes consumed and
// whether a complete (final, non-1xx) response ended at b[n-1]; it stops there
// so that the next response starts at b[n:]. When it returns done == false
// with n < len(b) it needs more bytes than b holds (a partial header block,
// chunk line or CRLF): the caller keeps b[n:] and appends more input. A
// non-nil error wraps ErrFraming; the connection is then unusable.
func (p *ResponseParser) Parse(b []byte) (n int, done bool, err error) {
	for n < len(b) {
		switch p.state {
		case stateHeader:
			end := bytes.Index(b[n:], crlfcrlf)
			if end < 0 {
				return n, false, nil
			}
			block := b[n : n+end+2] // status line and headers, each ending in CRLF
			n += end + 4
			fin, err := p.parseHeader(block)
			if err != nil {
				return n, false, err
			}
			if fin {
				return n, true, nil
			}
			// Otherwise a body follows, or this was a 1xx interim response
			// and the final response follows (state is stateHeader again).

		case stateBody:
			avail := int64(len(b) - n)
			if avail < p.remain {
				p.remain -= avail
				return len(b), false, nil
			}
			n += int(p.remain)
			p.remain = 0
			p.state = stateHeader
			return n, true, nil

		case stateChunkSize:
			eol := bytes.Index(b[n:], crlf)
			if eol < 0 {
				return n, false, nil
			}
			size, ok := parseChunkSize(b[n : n+eol])
			if !ok {
				return n, false, errChunkSize
			}
			n += eol + 2
			if size == 0 {
				p.state = stateTrailer
			} else {
				p.remain = size
				p.state = stateChunkData
			}

		case stateChunkData:
			avail := int64(len(b) - n)
			if avail < p.remain {
				p.remain -= avail
				return len(b), false, nil
			}
			n += int(p.remain)
			p.remain = 0
			p.state = stateChunkCRLF

		case stateChunkCRLF:
			if len(b)-n < 2 {
				return n, false, nil
			}
			if b[n] != '\r' || b[n+1] != '\n' {
				return n, false, errChunkEnd
			}
			n += 2
			p.state = stateChunkSize

		case stateTrailer:
			eol := bytes.Index(b[n:], crlf)
			if eol < 0 {
				return n, false, nil
			}
			n += eol + 2
			if eol == 0 { // the empty line ends the message
				p.state = stateHeader
				return n, true, nil
			}
		}
	}
	// A Content-Length: 0 or bodiless response is finished inside the
	// stateHeader case, so running out of input here always means "need more".
	return n, false, nil
}

// parseHeader parses one header block (every line CRLF-terminated, the final
// empty line excluded) and sets up the body state. fin reports that the
// response is complete with no body.
func (p *ResponseParser) parseHeader(block []byte) (fin bool, err error) {
	eol := bytes.Index(block, crlf)
	line := block[:eol]
	rest := block[eol+2:]

	// Status line: HTTP/1.x SP 3DIGIT [SP reason]
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) ||
		(line[7] != '0' && line[7] != '1') || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ') {
		return false, errStatusLine
	}
	status := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return false, errStatusLine
		}
		status = status*10 + int(c-'0')
	}
	if status < 100 {
		return false, errStatusLine
	}
	http10 := line[7] == '0'
	p.status = status
	p.close = http10 // HTTP/1.0 closes unless it says keep-alive

	contentLength := int64(-1)
	chunked := false
	for len(rest) > 0 {
		eol := bytes.Index(rest, crlf)
		line := rest[:eol]
		rest = rest[eol+2:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return false, errHeaderLine
		}
		name := line[:colon]
		value := bytes.TrimSpace(line[colon+1:])
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			v, ok := parseDecimal(value)
			if !ok || (contentLength >= 0 && contentLength != v) {
				return false, errContentLength
			}
			contentLength = v
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			// RFC 9112 6.1: chunked must be the final coding; anything
			// else cannot be framed by a client without reading to close.
			if hasFinalToken(value, []byte("chunked")) {
				chunked = true
			} else {
				return false, errNoFraming
			}
		case bytes.EqualFold(name, []byte("Connection")):
			if hasToken(value, []byte("close")) {
				p.close = true
			} else if http10 && hasToken(value, []byte("keep-alive")) {
				p.close = false
			}
		}
	}

	switch {
	case status == 101:
		return false, errUpgrade
	case status < 200:
		// Interim response (100 Continue, 103 Early Hints): no body, and
		// the final response to the same request follows.
		p.state = stateHeader
		return false, nil
	case p.Head || status == 204 || status == 304:
		return true, nil
	case chunked: // Transfer-Encoding overrides Content-Length (RFC 9112 6.3)
		p.state = stateChunkSize
		return false, nil
	case contentLength == 0:
		return true, nil
	case contentLength > 0:
		p.state = stateBody
		p.remain = contentLength
		return false, nil
	default:
		return false, errNoFraming
	}
}

// parseDecimal parses a non-empty run of ASCII digits, refusing values that
// do not fit comfortably in an int64.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

// parseChunkSize parses a chunk-size line: hex digits, optionally followed by
// whitespace and ";extensions", which are ignored.
func parseChunkSize(line []byte) (int64, bool) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 || len(line) > 15 { // 15 hex digits: < 2^60, no overflow
		return 0, false
	}
	var v int64
	for _, c := range line {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | int64(d)
	}
	return v, true
}

// hasToken reports whether the comma-separated list v contains tok
// (case-insensitive).
func hasToken(v, tok []byte) bool {
	for len(v) > 0 {
		var item []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			item, v = v[:i], v[i+1:]
		} else {
			item, v = v, nil
		}
		if bytes.EqualFold(bytes.TrimSpace(item), tok) {
			return true
		}
	}
	return false
}

// hasFinalToken reports whether the last element of the comma-separated
// list v is tok (case-insensitive).
func hasFinalToken(v, tok []byte) bool {
	if i := bytes.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return bytes.EqualFold(bytes.TrimSpace(v), tok)
}
