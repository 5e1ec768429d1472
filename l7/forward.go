package l7

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// Hop-by-hop fields (RFC 9110 section 7.6.1) are meaningful for one
// connection only and are never forwarded; nor are the fields the gateway
// re-creates itself (framing, X-Forwarded-*), so a client cannot smuggle its
// own values through.
func isRequestHopField(name []byte) bool {
	switch len(name) {
	case 2:
		return equalFold(name, "te")
	case 6:
		return equalFold(name, "expect")
	case 7:
		return equalFold(name, "upgrade") || equalFold(name, "trailer")
	case 10:
		return equalFold(name, "connection") || equalFold(name, "keep-alive")
	case 14:
		return equalFold(name, "content-length")
	case 16:
		return equalFold(name, "proxy-connection") || equalFold(name, "x-forwarded-host")
	case 17:
		return equalFold(name, "transfer-encoding") || equalFold(name, "x-forwarded-proto")
	case 19:
		return equalFold(name, "proxy-authorization")
	}
	return false
}

func isResponseHopField(name []byte) bool {
	switch len(name) {
	case 7:
		return equalFold(name, "upgrade")
	case 10:
		return equalFold(name, "connection") || equalFold(name, "keep-alive")
	case 16:
		return equalFold(name, "proxy-connection")
	case 17:
		return equalFold(name, "transfer-encoding") // re-added when relaying chunks
	case 18:
		return equalFold(name, "proxy-authenticate")
	}
	return false
}

func namedIn(name []byte, names [][]byte) bool {
	for _, n := range names {
		if bytes.EqualFold(name, n) {
			return true
		}
	}
	return false
}

// appendRequestHead serializes the request for the server from its checked
// field lines: the request line in HTTP/1.1, every end-to-end field in the
// order received, X-Forwarded-For (the client's address appended to what
// came in), X-Forwarded-Proto, and framing the gateway chose. An HTTP/1.0
// request without Host goes out as HTTP/1.1, which requires one (RFC 9112
// 3.2): it gets fallbackHost, the server's own address.
//
// Fields named in strip (Protocol.StripFields) are dropped; identity, the
// router's signed identity line, is added in their place.
func (ls *loopState) appendRequestHead(dst []byte, h *RequestHead, fields Fields, s *session, fallbackHost string, strip []string, identity []byte) []byte {
	dst = append(dst, h.Method...)
	dst = append(dst, ' ')
	dst = append(dst, h.Target...)
	dst = append(dst, " HTTP/1.1\r\n"...)
	if !h.HasHost {
		dst = append(dst, "Host: "...)
		dst = append(dst, fallbackHost...)
		dst = append(dst, "\r\n"...)
	}
	connNames := h.ConnectionNames[:h.NumConnNames]
	var xff []byte
	for k, v := range fields.All() {
		if isRequestHopField(k) || namedIn(k, connNames) || stripped(k, strip) {
			continue
		}
		if equalFold(k, "x-forwarded-for") {
			// Several X-Forwarded-For fields are one list (RFC 9110 5.3);
			// collect them in the order received.
			if len(v) == 0 {
				continue
			}
			if xff == nil {
				xff = ls.xff[:0]
			} else {
				xff = append(xff, ", "...)
			}
			xff = append(xff, v...)
			continue
		}
		dst = append(dst, k...)
		dst = append(dst, ": "...)
		dst = append(dst, v...)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, identity...)
	dst = append(dst, "X-Forwarded-For: "...)
	if len(xff) > 0 {
		dst = append(dst, xff...)
		dst = append(dst, ", "...)
		ls.xff = xff[:0]
	}
	dst = s.Remote.Addr().AppendTo(dst)
	dst = append(dst, "\r\nX-Forwarded-Proto: "...)
	if s.https {
		dst = append(dst, "https"...)
	} else {
		dst = append(dst, "http"...)
	}
	dst = append(dst, "\r\n"...)
	switch h.Framing {
	case FramingNone:
		if h.ZeroLength {
			// Kept: servers such as HTTP.sys answer 411 to a POST
			// without a length (RFC 9110 8.6).
			dst = append(dst, "Content-Length: 0\r\n"...)
		}
	case FramingLength:
		dst = append(dst, "Content-Length: "...)
		dst = fasthttp.AppendUint(dst, int(h.ContentLength))
		dst = append(dst, "\r\n"...)
	case FramingChunked:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// appendResponseHead serializes the server's response for the client:
// status line, end-to-end fields, and the gateway's own connection
// management (RFC 9112 section 9.6).
func (ls *loopState) appendResponseHead(dst []byte, resp *fasthttp.ResponseHeader, st *stream) []byte {
	dst, sawHSTS := appendRelayedHead(dst, resp, ls.respConnNames[:0])
	return ls.appendGatewayFields(dst, st, sawHSTS)
}

// appendRelayedHead writes the status line and the end-to-end fields of a
// server's response parsed by fasthttp: hop-by-hop fields and the fields
// its Connection names are dropped (RFC 9110 7.6.1). It reports whether a
// Strict-Transport-Security field was among them. connNames is scratch
// for the names (up to maxConnectionNames).
func appendRelayedHead(dst []byte, resp *fasthttp.ResponseHeader, connNames [][]byte) ([]byte, bool) {
	status := resp.StatusCode()
	dst = append(dst, "HTTP/1.1 "...)
	dst = fasthttp.AppendUint(dst, status)
	dst = append(dst, ' ')
	if msg := resp.StatusMessage(); len(msg) > 0 {
		dst = append(dst, msg...)
	} else {
		dst = append(dst, fasthttp.StatusMessage(status)...)
	}
	dst = append(dst, "\r\n"...)
	for v := resp.Peek("Connection"); len(v) > 0; {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = trimOWS(v[:i]), v[i+1:]
		} else {
			tok, v = trimOWS(v), nil
		}
		if len(tok) > 0 && len(connNames) < maxConnectionNames {
			connNames = append(connNames, tok)
		}
	}
	sawHSTS := false
	for k, v := range resp.All() {
		if isResponseHopField(k) || namedIn(k, connNames) {
			continue
		}
		sawHSTS = sawHSTS || equalFold(k, "strict-transport-security")
		dst = append(dst, k...)
		dst = append(dst, ": "...)
		dst = append(dst, v...)
		dst = append(dst, "\r\n"...)
	}
	return dst, sawHSTS
}

// appendHSTS adds the listener's Strict-Transport-Security field to a
// response on a TLS listener whose server sent none (RFC 6797: HSTS only
// over a secure transport).
func (h *Handler) appendHSTS(dst []byte, https bool, listener int, sawHSTS bool) []byte {
	if !https || sawHSTS {
		return dst
	}
	if ln := h.listener(listener); ln != nil && ln.TLS != nil && ln.TLS.HSTS() != "" {
		dst = append(dst, "Strict-Transport-Security: "...)
		dst = append(dst, ln.TLS.HSTS()...)
		dst = append(dst, "\r\n"...)
	}
	return dst
}

// appendPlainResponseHead relays a plain response head (scanPlainResponse)
// as the server sent it: lines is its status line and fields. Only the
// gateway's own fields are added.
func (ls *loopState) appendPlainResponseHead(dst []byte, lines []byte, hsts bool, st *stream) []byte {
	dst = append(dst, lines...)
	return ls.appendGatewayFields(dst, st, hsts)
}

// appendGatewayFields ends a relayed response head with the fields the
// gateway adds (HSTS, its framing of relayed chunks, its connection
// management) and the empty line.
func (ls *loopState) appendGatewayFields(dst []byte, st *stream, sawHSTS bool) []byte {
	if s := st.sess; s != nil {
		dst = ls.h.appendHSTS(dst, s.https, s.Listener.Index, sawHSTS)
	}
	dst = append(dst, st.respHeader...)
	if st.respFraming == FramingChunked && !st.dechunk {
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	}
	if !st.keepAlive {
		dst = append(dst, "Connection: close\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// stripped reports whether a request field is one the gateway never
// forwards by configuration (Protocol.StripFields).
func stripped(name []byte, strip []string) bool {
	for _, f := range strip {
		if equalFold(name, f) {
			return true
		}
	}
	return false
}

// appendLocalResponse writes a complete response made by the gateway;
// header holds extra complete header lines.
func appendLocalResponse(dst []byte, status int, body string, retryAfter, header []byte, closeConn bool) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = fasthttp.AppendUint(dst, status)
	dst = append(dst, ' ')
	dst = append(dst, statusText(status)...)
	dst = append(dst, "\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: "...)
	dst = fasthttp.AppendUint(dst, len(body)+1)
	dst = append(dst, "\r\n"...)
	if len(retryAfter) > 0 {
		dst = append(dst, "Retry-After: "...)
		dst = append(dst, retryAfter...)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, header...)
	if closeConn {
		dst = append(dst, "Connection: close\r\n"...)
	}
	dst = append(dst, "\r\n"...)
	dst = append(dst, body...)
	return append(dst, '\n')
}

func appendHex(dst []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	var buf [16]byte
	i := len(buf)
	for {
		i--
		buf[i] = digits[v&0xf]
		v >>= 4
		if v == 0 {
			break
		}
	}
	return append(dst, buf[i:]...)
}
