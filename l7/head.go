package l7

import (
	"bytes"
	"iter"
)

// Framing is how a message body is delimited (RFC 9112 section 6).
type Framing uint8

const (
	// FramingNone: no body (no Content-Length, no Transfer-Encoding).
	FramingNone Framing = iota
	// FramingLength: Content-Length bytes follow the head.
	FramingLength
	// FramingChunked: the chunked transfer coding (RFC 9112 section 7.1).
	FramingChunked
)

// Limits of the request head scanner that are not configurable: each bounds
// per-request work on a field the gateway must keep while forwarding.
const (
	maxHeaderLines     = 128 // beyond: 431
	maxConnectionNames = 8   // options named in Connection; beyond: 400
	maxLeadingCRLF     = 4   // empty lines tolerated before the request line (RFC 9112 2.2)
)

// Reject is why a request is refused before anything reaches a backend: the
// status to answer and a short reason that is also the counter's name. The
// connection is always closed after a Reject, since the framing of whatever
// follows cannot be trusted.
type Reject struct {
	Status int
	Reason string
}

// RequestHead is what the scanner learned from a complete, valid head.
// Byte slices point into the scanned buffer and are valid only as long as it.
type RequestHead struct {
	// Len is the length of the head, final CRLF included.
	Len int
	// Start is where the request line starts (after tolerated empty lines).
	Start int

	Method []byte
	Target []byte
	HTTP10 bool

	Framing       Framing
	ContentLength int64

	// KeepAlive is false when the client asked to close (Connection: close,
	// or HTTP/1.0 without keep-alive).
	KeepAlive bool
	// ExpectContinue is set for "Expect: 100-continue" from an HTTP/1.1
	// client (RFC 9110 10.1.1: an HTTP/1.0 client gets no 100).
	ExpectContinue bool
	// HasHost is false only for an HTTP/1.0 request without Host.
	HasHost bool
	// ZeroLength is set for an explicit "Content-Length: 0".
	ZeroLength bool

	// FieldsStart is where the first field line starts (after the request
	// line); FieldLines returns them.
	FieldsStart int

	// ConnectionNames are the field names listed in Connection other than
	// close and keep-alive: hop-by-hop fields to drop (RFC 9110 7.6.1).
	ConnectionNames [maxConnectionNames][]byte
	NumConnNames    int
}

// FindHeadEnd looks for the end of a head in buf starting the search at
// from (bytes before it were already searched without success). It returns
// the head length (through the empty line) or -1. A bare "\n\n" also counts
// as an end so that a head with bare LF endings is rejected at once by
// ScanRequestHead rather than waiting for the header timeout.
func FindHeadEnd(buf []byte, from int) int {
	if from > 3 {
		from -= 3
	} else {
		from = 0
	}
	// Empty lines tolerated before the request line (RFC 9112 2.2) are
	// not the end of a head.
	skip := 0
	for i := 0; i < maxLeadingCRLF && skip+1 < len(buf) && buf[skip] == '\r' && buf[skip+1] == '\n'; i++ {
		skip += 2
	}
	from = max(from, skip)
	b := buf[from:]
	crlf := bytes.Index(b, []byte("\r\n\r\n"))
	// A bare-LF end counts only before the CRLF one: search that far, not
	// through every pipelined message behind it (a backend read holds
	// many responses, and this runs once for each).
	lfArea := b
	if crlf >= 0 {
		lfArea = b[:crlf+4]
	}
	lflf := bytes.Index(lfArea, []byte("\n\n"))
	switch {
	case crlf < 0 && lflf < 0:
		return -1
	case crlf >= 0 && (lflf < 0 || crlf+2 < lflf):
		return from + crlf + 4
	default:
		return from + lflf + 2
	}
}

// ScanRequestHead validates a complete request head, buf[:end] as found by
// FindHeadEnd, strictly per RFC 9112, and decides the body framing. Anything
// that two HTTP implementations could read differently is rejected, because
// the gateway and the mailbox server must agree on where each request ends
// (request smuggling). maxBody bounds a declared Content-Length (413).
func ScanRequestHead(buf []byte, end int, maxBody int64, h *RequestHead) *Reject {
	*h = RequestHead{Len: end}
	p := 0
	// RFC 9112 2.2: a server SHOULD ignore at least one empty line (CRLF)
	// received before the request-line.
	for i := 0; i < maxLeadingCRLF && p+1 < end && buf[p] == '\r' && buf[p+1] == '\n'; i++ {
		p += 2
	}
	h.Start = p
	line, next, rej := nextLine(buf, p, end)
	if rej != nil {
		return rej
	}
	if rej := parseRequestLine(line, h); rej != nil {
		return rej
	}
	p = next
	h.FieldsStart = p

	var (
		hosts, lengths, encodings, lines int
		teValue                          []byte
		connClose                        bool
	)
	h.KeepAlive = !h.HTTP10
	for {
		line, next, rej = nextLine(buf, p, end)
		if rej != nil {
			return rej
		}
		p = next
		if len(line) == 0 {
			break // the empty line ending the head
		}
		if lines++; lines > maxHeaderLines {
			return rejTooManyFields
		}
		// RFC 9112 5.2: obs-fold is rejected by a server that is not a
		// user agent... we reject rather than fold: a backend that folds
		// differently would see other fields.
		if line[0] == ' ' || line[0] == '\t' {
			return rejObsFold
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return rejBadField
		}
		name := line[:colon]
		for _, c := range name {
			if !isTokenChar(c) {
				// RFC 9112 5.1: no whitespace between field name and colon.
				return rejBadFieldName
			}
		}
		value := trimOWS(line[colon+1:])
		for _, c := range value {
			if c < 0x20 && c != '\t' || c == 0x7f {
				return rejControlByte
			}
		}
		switch {
		case equalFold(name, "host"):
			hosts++
			if len(value) == 0 {
				return rejHost // routing and fasthttp both need a value
			}
			// fasthttp's Host check, with normalization off, only knows
			// this spelling; field names are case-insensitive.
			copy(name, "Host")
		case equalFold(name, "content-length"):
			lengths++
			n, ok := parseContentLength(value)
			if !ok {
				return rejBadContentLength
			}
			h.ContentLength = n
		case equalFold(name, "transfer-encoding"):
			encodings++
			teValue = value
		case equalFold(name, "connection"):
			closeSeen, rej := h.parseConnection(value)
			if rej != nil {
				return rej
			}
			connClose = connClose || closeSeen
		case equalFold(name, "expect"):
			if !equalFold(value, "100-continue") {
				return rejExpectation
			}
			h.ExpectContinue = !h.HTTP10
		}
	}
	if connClose {
		h.KeepAlive = false // close wins over keep-alive, in any order
	}
	h.HasHost = hosts > 0
	if hosts == 0 && !h.HTTP10 || hosts > 1 {
		return rejHost // RFC 9112 3.2
	}
	if lengths > 1 {
		return rejDupContentLength // even when equal: RFC 9112 6.3 allows either
	}
	if encodings > 0 {
		switch {
		case encodings > 1:
			return rejDupTransferEncoding
		case h.HTTP10:
			return rejTEHTTP10 // RFC 9112 6.1: faulty framing
		case lengths > 0:
			return rejCLAndTE // RFC 9112 6.3 item 3: ought to be handled as an error
		}
		if rej := checkTransferCoding(teValue); rej != nil {
			return rej
		}
		h.Framing = FramingChunked
		h.ContentLength = -1
	} else if lengths > 0 {
		if h.ContentLength > maxBody {
			return rejBodyTooLarge
		}
		if h.ContentLength > 0 {
			h.Framing = FramingLength
		} else {
			h.ZeroLength = true
		}
	}
	return nil
}

// nextLine returns the line at buf[p:] up to (not including) its CRLF and the
// offset after the CRLF. A bare LF, or a CR not followed by LF, is refused
// (RFC 9112 2.2 permits accepting bare LF; a gateway must not, since the
// backend may not agree).
func nextLine(buf []byte, p, end int) ([]byte, int, *Reject) {
	i := bytes.IndexByte(buf[p:end], '\n')
	if i < 0 {
		return nil, 0, rejBadLineEnding
	}
	lf := p + i
	if lf == p || buf[lf-1] != '\r' {
		return nil, 0, rejBareLF
	}
	line := buf[p : lf-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, 0, rejBareCR
	}
	return line, lf + 1, nil
}

func parseRequestLine(line []byte, h *RequestHead) *Reject {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return rejRequestLine
	}
	h.Method = line[:sp1]
	for _, c := range h.Method {
		if !isTokenChar(c) {
			return rejRequestLine
		}
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return rejRequestLine
	}
	h.Target = rest[:sp2]
	version := rest[sp2+1:]
	for _, c := range h.Target {
		if c <= ' ' || c == 0x7f {
			return rejRequestLine
		}
	}
	switch {
	case string(version) == "HTTP/1.1":
	case string(version) == "HTTP/1.0":
		h.HTTP10 = true
	case len(version) == 8 && string(version[:5]) == "HTTP/" && isDigit(version[5]) && version[6] == '.' && isDigit(version[7]):
		return rejVersion
	default:
		return rejRequestLine
	}
	if string(h.Method) == "CONNECT" {
		return rejConnect
	}
	// Only origin-form (and "*" for OPTIONS) reaches a mailbox server;
	// absolute-form is for proxies, which the gateway is not (RFC 9112 3.2).
	switch {
	case h.Target[0] == '/':
	case len(h.Target) == 1 && h.Target[0] == '*' && string(h.Method) == "OPTIONS":
	default:
		return rejTarget
	}
	return nil
}

func (h *RequestHead) parseConnection(value []byte) (closeSeen bool, rej *Reject) {
	for len(value) > 0 {
		var tok []byte
		if i := bytes.IndexByte(value, ','); i >= 0 {
			tok, value = trimOWS(value[:i]), value[i+1:]
		} else {
			tok, value = trimOWS(value), nil
		}
		switch {
		case len(tok) == 0:
		case equalFold(tok, "close"):
			closeSeen = true
		case equalFold(tok, "keep-alive"):
			if h.HTTP10 {
				h.KeepAlive = true
			}
		default:
			for _, c := range tok {
				if !isTokenChar(c) {
					return false, rejBadField
				}
			}
			if h.NumConnNames == maxConnectionNames {
				return false, rejConnectionNames
			}
			h.ConnectionNames[h.NumConnNames] = tok
			h.NumConnNames++
		}
	}
	return closeSeen, nil
}

// checkTransferCoding accepts exactly "chunked". RFC 9112 6.3: chunked must
// be the final coding or the length cannot be determined (400); a coding the
// gateway does not implement is 501 (RFC 9112 6.1).
func checkTransferCoding(v []byte) *Reject {
	var last []byte
	n, chunked := 0, 0
	unimplemented := false
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = trimOWS(v[:i]), v[i+1:]
		} else {
			tok, v = trimOWS(v), nil
		}
		if len(tok) == 0 {
			continue
		}
		name := tok
		if i := bytes.IndexByte(tok, ';'); i >= 0 {
			name = trimOWS(tok[:i]) // a coding with parameters
			unimplemented = true
		}
		for _, c := range name {
			if !isTokenChar(c) {
				return rejBadTransferEncoding
			}
		}
		n++
		last = name
		if equalFold(name, "chunked") {
			chunked++
		} else {
			unimplemented = true
		}
	}
	switch {
	case n == 0:
		return rejBadTransferEncoding
	case !equalFold(last, "chunked"), chunked > 1:
		// RFC 9112 6.3: chunked not final MUST be 400; 6.1: chunked MUST
		// NOT be applied twice.
		return rejChunkedNotLast
	case unimplemented:
		return rejTransferCoding // gzip, chunked and the like: 501 (RFC 9112 6.1)
	}
	return nil
}

// parseContentLength accepts 1*DIGIT only (RFC 9110 8.6): no sign, no list,
// no inner whitespace, at most 18 digits so it cannot overflow.
func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// tokenTable marks tchar (RFC 9110 5.6.2).
var tokenTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-32] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return
}()

func isTokenChar(c byte) bool { return tokenTable[c] }

// equalFold compares b with the lower-case ASCII string s, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// The rejections, one per reason; their Reason strings name counters.
var (
	rejBadLineEnding       = &Reject{400, "bad_line_ending"}
	rejBareLF              = &Reject{400, "bare_lf"}
	rejBareCR              = &Reject{400, "bare_cr"}
	rejRequestLine         = &Reject{400, "bad_request_line"}
	rejVersion             = &Reject{505, "http_version"}
	rejConnect             = &Reject{501, "connect_method"}
	rejTarget              = &Reject{400, "bad_target"}
	rejObsFold             = &Reject{400, "obs_fold"}
	rejBadField            = &Reject{400, "bad_field"}
	rejBadFieldName        = &Reject{400, "bad_field_name"}
	rejControlByte         = &Reject{400, "control_byte"}
	rejTooManyFields       = &Reject{431, "too_many_fields"}
	rejHeaderTooLarge      = &Reject{431, "header_too_large"}
	rejHost                = &Reject{400, "host"}
	rejBadContentLength    = &Reject{400, "bad_content_length"}
	rejDupContentLength    = &Reject{400, "duplicate_content_length"}
	rejDupTransferEncoding = &Reject{400, "duplicate_transfer_encoding"}
	rejTEHTTP10            = &Reject{400, "transfer_encoding_http10"}
	rejCLAndTE             = &Reject{400, "content_length_and_transfer_encoding"}
	rejBadTransferEncoding = &Reject{400, "bad_transfer_encoding"}
	rejChunkedNotLast      = &Reject{400, "chunked_not_final"}
	rejTransferCoding      = &Reject{501, "transfer_coding_not_implemented"}
	rejBodyTooLarge        = &Reject{413, "body_too_large"}
	rejExpectation         = &Reject{417, "expectation"}
	rejConnectionNames     = &Reject{400, "too_many_connection_options"}
	rejBadChunk            = &Reject{400, "bad_chunk"}

	// Not about framing, but counted and logged the same way.
	rejHeaderTimeout    = &Reject{408, "header_timeout"}
	rejBodyTimeout      = &Reject{408, "body_timeout"}
	rejPipelineOverflow = &Reject{0, "pipeline_overflow"}   // closed: too much sent ahead
	rejUploadOverflow   = &Reject{0, "upload_overflow"}     // closed: server not reading the body
	rejSlowClient       = &Reject{0, "slow_client"}         // closed: response buffer bound hit
	rejWriteTimeout     = &Reject{0, "write_timeout"}       // closed: client not reading
	rejBadResponse      = &Reject{502, "bad_response"}      // unparsable server response
	rejUnframedResponse = &Reject{502, "unframed_response"} // no Content-Length, not chunked

	// Reasons poolmux gives when an exchange fails (see poolmux.Exchange.Fail).
	rejBackendDown     = &Reject{502, "backend_down"}
	rejBackendClosed   = &Reject{502, "backend_closed"}
	rejQueueFull       = &Reject{503, "queue_full"}
	rejQueueTimeout    = &Reject{503, "queue_timeout"}
	rejResponseTimeout = &Reject{504, "response_timeout"}

	// The router's credential verification outlasted the header timeout.
	rejAuthTimeout = &Reject{503, "auth_timeout"}
	// A request that cannot be replayed failed at a server its mailbox
	// had just moved away from.
	rejMailboxMoved = &Reject{503, "mailbox_moved"}
	// The connection closed during an exchange, before the response was
	// complete: the client went away (or a drain ran out of time).
	rejClientClosed = &Reject{0, "client_closed"}
)

// allRejects lists every Reject, so counters exist for each from the start.
var allRejects = []*Reject{
	rejBadLineEnding, rejBareLF, rejBareCR, rejRequestLine, rejVersion, rejConnect,
	rejTarget, rejObsFold, rejBadField, rejBadFieldName, rejControlByte,
	rejTooManyFields, rejHeaderTooLarge, rejHost, rejBadContentLength,
	rejDupContentLength, rejDupTransferEncoding, rejTEHTTP10, rejCLAndTE,
	rejBadTransferEncoding, rejChunkedNotLast, rejTransferCoding, rejBodyTooLarge,
	rejExpectation, rejConnectionNames, rejBadChunk,
	rejHeaderTimeout, rejBodyTimeout, rejPipelineOverflow, rejUploadOverflow,
	rejSlowClient, rejWriteTimeout, rejBadResponse, rejUnframedResponse,
	rejBackendDown, rejBackendClosed, rejQueueFull, rejQueueTimeout, rejResponseTimeout,
	rejAuthTimeout, rejMailboxMoved, rejClientClosed,
}

// FieldLines returns the field lines of the head ScanRequestHead accepted
// in buf (the same buf, unchanged).
func (h *RequestHead) FieldLines(buf []byte) Fields { return Fields(buf[h.FieldsStart:h.Len]) }

// Fields are the field lines of a request head that ScanRequestHead
// accepted, up to and including the empty line: every line ends in CRLF,
// has a token name and a colon right after it, no obs-fold (RFC 9112 5).
// The gateway reads names and values straight from the client's bytes:
// ScanRequestHead has already checked every line, so parsing them again
// into fasthttp's header type (as the gateway did) only copied them.
// FuzzScanVsFasthttp holds the two views of a head to the same fields.
type Fields []byte

// All yields every field's name and value (without surrounding
// whitespace, RFC 9112 5.1) in the order received. The slices point into
// the head.
func (f Fields) All() iter.Seq2[[]byte, []byte] {
	return func(yield func([]byte, []byte) bool) {
		rest := []byte(f)
		for {
			i := bytes.IndexByte(rest, '\n')
			if i < 1 {
				return
			}
			line := rest[:i-1]
			rest = rest[i+1:]
			if len(line) == 0 {
				return // the empty line
			}
			c := bytes.IndexByte(line, ':')
			if c < 0 || !yield(line[:c], trimOWS(line[c+1:])) {
				return
			}
		}
	}
}

// Get returns the value of the first field named name (any case), or nil.
func (f Fields) Get(name string) []byte {
	for k, v := range f.All() {
		if equalFold(k, name) {
			return v
		}
	}
	return nil
}
