package l7

import (
	"bytes"

	"github.com/panjf2000/gnet/v2"

	"frontdoor/l4"
	"frontdoor/tlsterm"
)

type sessionState uint8

const (
	stIdle   sessionState = iota // between requests, no bytes buffered
	stHead                       // part of a request head has arrived
	stAuth                       // the head is complete; the router verifies credentials off the loop
	stBody                       // forwarding the request body
	stWait                       // request sent; waiting for or relaying the response
	stLinger                     // closing once buffered response bytes are flushed
	stClosed
)

// session is one client connection. It stays small: an idle keep-alive
// connection costs this struct plus gnet's connection, and everything a
// request needs lives in a pooled stream or in the loop's scratch space.
type session struct {
	l4.ClientConn
	// io is the byte stream requests are read from and responses written
	// to: the gnet connection itself, or the TLS layer over it.
	io    Transport
	tls   *tlsterm.Conn // nil on a plaintext listener
	ls    *loopState
	cur   *stream // the exchange in progress, nil when idle
	state sessionState
	https bool // tls != nil; kept apart so tests need no TLS
	// proto is the current request's protocol (an index of
	// Stats.ByProtocol): none (len(Config.Protocols)) until its path
	// matched one.
	proto int16
	// busy is set while process runs, so a response that completes
	// synchronously (a local answer, a failure inside Submit) does not
	// re-enter it.
	busy bool
	// closeAfter: the current exchange is the last (client asked, or the
	// gateway is draining). The connection closes after a response that
	// said so (Connection: close); when closeAfter is set after a
	// keep-alive response head went out, the next response says it.
	closeAfter bool
	// lastProto is the Protocol.Index of the last request routed (health
	// probes aside), -1 before the first: Handler.EndKeepAlive ends the
	// keep-alive of connections by the protocol they serve.
	lastProto int16
	// drainIdle: a stop is draining the connection; it closes as soon as
	// it is idle rather than waiting for one more request.
	drainIdle bool
	// searched is how much of a partial head was already searched for its
	// end, so a slow client costs O(n) and not O(n^2).
	searched int32
	// authSeq numbers Pending routes, so a late or repeated Wake is
	// ignored.
	authSeq uint32
	// sent counts bytes written to the client and flushedMark the bytes
	// known flushed at the last write-timeout check.
	sent, flushedMark int64
	lastFlush         int64 // when flushedMark last grew (linger)
	// flushing: idle between requests, but the last response is not all
	// written yet; the write timeout applies until it is.
	flushing bool
	// isHEAD: the current request is a HEAD, whose local answers carry no
	// body.
	isHEAD bool
	// inTraffic: OnTraffic is running, so returning gnet.Close closes the
	// connection synchronously (a channel takes its socket, channel.go).
	inTraffic bool
	// routerState is Request.Conn's slot: the router's state for this
	// connection (an identity established by Negotiate).
	routerState any
}

// armIdle starts the keep-alive wait once the last response is flushed;
// until then the write timeout watches the client's progress.
func (s *session) armIdle() {
	if pending := s.io.OutboundBuffered(); pending > 0 {
		// Polled on every sweep, like a lingering close.
		s.flushing = true
		s.flushedMark = s.sent - int64(pending)
		s.lastFlush = s.Loop.Now()
		s.ls.lingerList.Arm(&s.Deadline, s, s.Loop.Now())
		return
	}
	s.flushing = false
	s.ls.idleList.Arm(&s.Deadline, s, s.Loop.Now())
}

// Transport is the byte stream a session reads and writes (see l4.Transport).
type Transport = l4.Transport

var (
	_ Transport = (gnet.Conn)(nil)
	_ Transport = (*tlsterm.Conn)(nil)
)

// OnTraffic implements l4.Handler.
func (s *session) OnTraffic(gnet.Conn) gnet.Action {
	s.Loop.Tick()
	s.inTraffic = true
	defer func() { s.inTraffic = false }()
	if s.tls != nil {
		// Ciphertext in, plaintext out; nothing to do for HTTP until the
		// handshake (on its own goroutine) has finished.
		ready, err := s.tls.OnTraffic()
		if err != nil {
			s.state = stClosed
			return gnet.Close
		}
		if !ready {
			return gnet.None
		}
	}
	return s.process()
}

// resume continues processing from a callback that is not this
// connection's own (a backend response completed).
func (s *session) resume() {
	if s.busy || s.state >= stLinger {
		return
	}
	if s.process() == gnet.Close {
		s.state = stClosed
		_ = s.io.Close()
	}
}

// process handles everything the connection's buffer allows: request heads,
// body bytes, and pipelined requests once the previous one is answered.
func (s *session) process() gnet.Action {
	s.busy = true
	defer func() { s.busy = false }()
	for {
		switch s.state {
		case stIdle, stHead:
			act, more := s.readHead()
			if !more {
				return act
			}
		case stBody:
			if s.cur.conn == nil {
				// Queued for an idle backend connection: the body waits
				// in the connection's buffer, within a bound.
				if s.io.InboundBuffered() > s.ls.h.cfg.MaxUploadBufferBytes {
					return s.abort(rejUploadOverflow)
				}
				return gnet.None
			}
			if act := s.pumpBody(); act != gnet.None || s.state == stBody {
				return act
			}
		case stAuth:
			// The head waits in the buffer for the verdict; what the
			// client sends meanwhile is bounded like pipelined bytes.
			if s.io.InboundBuffered() > s.ls.h.cfg.MaxHeaderBytes+s.ls.h.cfg.MaxPipelineBytes {
				return s.abort(rejPipelineOverflow)
			}
			return gnet.None
		case stWait:
			// Pipelined bytes wait for their turn, within a bound: gnet
			// cannot stop reading a socket, so a client that keeps
			// sending ahead is cut off instead.
			if s.io.InboundBuffered() > s.ls.h.cfg.MaxPipelineBytes {
				return s.abort(rejPipelineOverflow)
			}
			return gnet.None
		default:
			return gnet.None
		}
	}
}

// readHead looks for a complete request head and starts its exchange. more
// reports whether process should go on (the state changed).
func (s *session) readHead() (act gnet.Action, more bool) {
	ls := s.ls
	cfg := &ls.h.cfg
	c := s.io
	buf, _ := c.Peek(-1)
	if len(buf) == 0 {
		if s.closeAfter && s.drainIdle {
			return gnet.Close, false
		}
		return gnet.None, false
	}
	if s.state == stIdle {
		s.state = stHead
		s.proto = int16(len(cfg.Protocols))
		s.isHEAD = false
		s.flushing = false
		s.searched = 0
		ls.headerList.Arm(&s.Deadline, s, s.Loop.Now())
	}
	end := FindHeadEnd(buf, int(s.searched))
	if end < 0 {
		if len(buf) >= cfg.MaxHeaderBytes {
			return s.reject(rejHeaderTooLarge), false
		}
		s.searched = int32(len(buf))
		return gnet.None, false
	}
	if end > cfg.MaxHeaderBytes {
		return s.reject(rejHeaderTooLarge), false
	}
	h := &ls.head
	rej := ScanRequestHead(buf, end, cfg.MaxBodyBytes, h)
	if rej == rejBodyTooLarge && ls.h.mayStream(h.Method) {
		// A channel's body is streamed, not buffered: it may declare
		// more (channel.go). Whether it is one is settled below.
		rej = ScanRequestHead(buf, end, maxChannelBody, h)
	}
	if rej != nil {
		return s.reject(rej), false
	}
	// The framing is settled and every field line checked: the gateway
	// routes on and forwards the fields as they are in the buffer.
	fields := h.FieldLines(buf)
	s.isHEAD = string(h.Method) == "HEAD"
	target := h.Target
	path := target
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	var route Route
	kind := ChannelNone
	proto := ls.h.matchProtocol(path, s.Listener.Index)
	switch {
	case proto == nil:
		route = Route{Endpoint: -1, Status: 404, Body: "no protocol is served at this path"}
	case cfg.Health != nil && isHealthPath(path[len(proto.Prefix):]):
		if m := string(h.Method); m == "GET" || m == "HEAD" {
			return s.healthProbe(proto.Index, end, h)
		}
		route = Route{Endpoint: -1, Status: 405, Body: "the health page answers GET and HEAD", Header: allowGetHead}
	default:
		s.proto = int16(proto.Index)
		s.lastProto = int16(proto.Index)
		if ls.h.keepAliveEnded(proto.Index) {
			s.closeAfter = true
		}
		// The Request lives in the loop's scratch space: passed to an
		// interface method, a fresh one would escape to the heap.
		kind = channelOf(proto, h.Method, fields)
		ls.request = Request{Protocol: proto, Method: h.Method, Target: target, Fields: fields, Path: path, AfterPrefix: path[len(proto.Prefix):],
			TLS: s.tls, Client: s.Remote.Addr(), Waker: Waker{s: s, seq: s.authSeq}, Channel: kind,
			Listener: s.Listener.Index, Conn: &s.routerState}
		route = cfg.Router.Route(&ls.request)
		ls.request = Request{}
		if route.Pending {
			// Nothing is consumed: the head is read again when the
			// router wakes the request. The header timeout stays armed
			// and bounds the wait.
			s.state = stAuth
			return gnet.None, false
		}
	}
	ls.h.stats.Requests.Add(1)
	if !h.KeepAlive {
		s.closeAfter = true
	}
	if route.Endpoint < 0 {
		// A local answer. A body we will not read makes the connection
		// unusable for the next request, so close it then.
		if h.Framing != FramingNone {
			s.closeAfter = true
		}
		s.Disarm()
		sent := s.sent
		s.writeLocalHeader(route.Status, route.Body, route.Header)
		// Recorded before Discard: the method and target point into
		// the connection's buffer, which a TLS connection releases
		// once drained.
		ls.finishNoStream(s, h.Method, target, route.User, int64(end), s.sent-sent, route.Status, "", true)
		c.Discard(end)
		return s.finishLocal()
	}
	if kind != ChannelNone {
		return s.startChannel(h, fields, proto, route, kind, end)
	}
	if h.ContentLength > cfg.MaxBodyBytes {
		// Declared beyond the limit by a method that may stream, but
		// this request is not a channel.
		return s.reject(rejBodyTooLarge), false
	}
	st := ls.newStream(s, h, route.Endpoint)
	st.key, st.protocol = route.Key, int16(proto.Index)
	st.respHeader = route.ResponseHeader
	st.tHead, st.user, st.reqBytes, st.sentMark = s.Loop.Now(), route.User, int64(end), s.sent
	if ls.alog != nil {
		st.keepTarget(h.Method, target)
	}
	st.head = ls.appendRequestHead(st.head[:0], h, fields, s, cfg.Endpoints[route.Endpoint].Addr, proto.StripFields, route.Identity)
	c.Discard(end)
	s.Disarm()
	s.cur = st
	if h.Framing != FramingNone {
		s.state = stBody
		if h.ExpectContinue {
			// RFC 9110 10.1.1: the gateway answers the expectation
			// itself and does not forward Expect.
			s.write(continueResponse)
		}
	} else {
		s.state = stWait
	}
	ls.pools[route.Endpoint].Submit(st)
	return gnet.None, true
}

var continueResponse = []byte("HTTP/1.1 100 Continue\r\n\r\n")

// finishLocal ends an exchange answered by the gateway itself.
func (s *session) finishLocal() (gnet.Action, bool) {
	if s.closeAfter {
		return s.linger(), false
	}
	s.state = stIdle
	s.armIdle()
	return gnet.None, true
}

// pumpBody forwards the request body bytes that have arrived.
func (s *session) pumpBody() gnet.Action {
	st := s.cur
	c := s.io
	for !st.bodyDone {
		buf, _ := c.Peek(-1)
		if len(buf) == 0 {
			break
		}
		if st.reqFraming == FramingLength {
			n := int64(len(buf))
			if n > st.bodyLeft {
				n = st.bodyLeft
			}
			st.conn.Write(buf[:n])
			c.Discard(int(n))
			st.reqBytes += n
			if st.bodyLeft -= n; st.bodyLeft == 0 {
				st.bodyDone = true
			}
		} else {
			n, data, err := st.reqChunks.Decode(buf)
			if err != nil {
				st.conn.Close() // the server has part of a request
				return s.abort(rejBadChunk)
			}
			if len(data) > 0 {
				if st.bodySeen += int64(len(data)); st.bodySeen > s.ls.h.cfg.MaxBodyBytes {
					st.conn.Close()
					return s.abort(rejBodyTooLarge)
				}
				// Re-encode each chunk without extensions: the server sees
				// only framing the gateway produced itself.
				ls := s.ls
				ls.out = appendHex(ls.out[:0], uint64(len(data)))
				ls.out = append(ls.out, '\r', '\n')
				ls.iov = append(ls.iov[:0], ls.out, data, crlf)
				st.conn.Writev(ls.iov)
				clear(ls.iov)
			}
			if n > 0 {
				c.Discard(n) // gnet's Discard(0) would drop everything
				st.reqBytes += int64(n)
			}
			if st.reqChunks.Done() {
				st.conn.Write(lastChunk)
				st.bodyDone = true
			}
		}
		if st.conn.OutboundBuffered() > s.ls.h.cfg.MaxUploadBufferBytes {
			st.conn.Close()
			return s.abort(rejUploadOverflow)
		}
	}
	if !st.bodyDone {
		s.ls.bodyList.Arm(&s.Deadline, s, s.Loop.Now())
		return gnet.None
	}
	s.Disarm()
	s.state = stWait
	st.conn.Release()
	return gnet.None
}

var (
	crlf      = []byte("\r\n")
	lastChunk = []byte("0\r\n\r\n")
)

// write sends p to the client and counts it for the write timeout.
func (s *session) write(p []byte) {
	s.sent += int64(len(p))
	_, _ = s.io.Write(p)
}

// writeLocal sends a response made by the gateway.
func (s *session) writeLocal(status int, body string, retryAfter []byte) {
	ls := s.ls
	ls.out = appendLocalResponse(ls.out[:0], status, body, retryAfter, nil, s.closeAfter)
	ls.h.stats.response(s.proto, status) // before the client can see it
	s.write(s.dropHEADBody(ls.out, body))
}

// writeLocalHeader sends a response made by the gateway with extra header
// lines (a router's answer: WWW-Authenticate, Location, Retry-After).
func (s *session) writeLocalHeader(status int, body string, header []byte) {
	ls := s.ls
	ls.out = appendLocalResponse(ls.out[:0], status, body, nil, header, s.closeAfter)
	ls.h.stats.response(s.proto, status) // before the client can see it
	s.write(s.dropHEADBody(ls.out, body))
}

// dropHEADBody cuts the body off a local response (appendLocalResponse
// writes body and a newline last) when it answers a HEAD request: the
// Content-Length stays, the body must not be sent (RFC 9110 9.3.2).
func (s *session) dropHEADBody(resp []byte, body string) []byte {
	if s.isHEAD {
		return resp[:len(resp)-len(body)-1]
	}
	return resp
}

// wake routes again a request whose router answered Pending; it runs on
// the session's loop (Waker.Wake).
func (s *session) wake(seq uint32) {
	if s.state != stAuth || s.authSeq != seq {
		return
	}
	s.authSeq++
	s.Loop.Tick()
	s.state = stHead
	s.resume()
}

// reject answers a request the gateway refuses and closes the connection:
// after a framing error nothing that follows can be trusted.
func (s *session) reject(r *Reject) gnet.Action { return s.refuse(nil, r) }

// refuse is reject for the exchange st (nil when the request has none
// yet), which it records.
func (s *session) refuse(st *stream, r *Reject) gnet.Action {
	ls := s.ls
	ls.h.stats.reject(r.Reason)
	ls.logReject(s, r.Reason, r.Status)
	s.closeAfter = true
	sent := s.sent
	if r.Status != 0 {
		ls.out = appendLocalResponse(ls.out[:0], r.Status, statusText(r.Status)+": "+r.Reason, nil, nil, true)
		s.write(ls.out)
		ls.h.stats.response(s.proto, r.Status)
	}
	if st != nil {
		ls.finish(s, st, r.Status, r.Reason, false)
	} else {
		ls.finishNoStream(s, nil, nil, "", 0, s.sent-sent, r.Status, r.Reason, false)
	}
	return s.linger()
}

// abort ends an exchange in progress for r: the client gets r's status if
// no response byte was sent yet, then the connection closes.
func (s *session) abort(r *Reject) gnet.Action {
	st := s.cur
	if st != nil {
		s.cur = nil
		st.sess = nil
		if st.respStarted {
			s.ls.h.stats.reject(r.Reason)
			s.ls.logReject(s, r.Reason, 0)
			s.ls.finish(s, st, int(st.status), r.Reason, false)
			s.state = stClosed
			return gnet.Close
		}
	}
	return s.refuse(st, r)
}

// linger closes the connection once what was written to it is flushed:
// gnet's close writes what it can without waiting, which would cut a
// response short for a client that reads slowly.
func (s *session) linger() gnet.Action {
	if s.io.OutboundBuffered() == 0 {
		s.state = stClosed
		return gnet.Close
	}
	s.state = stLinger
	s.flushedMark = s.sent - int64(s.io.OutboundBuffered())
	s.lastFlush = s.Loop.Now()
	s.ls.lingerList.Arm(&s.Deadline, s, s.Loop.Now())
	return gnet.None
}

// close closes the connection from outside its own callbacks.
func (s *session) close() {
	if s.state >= stLinger {
		return
	}
	if s.linger() == gnet.Close {
		_ = s.io.Close()
	}
}

// exchangeDone is called by the stream when the response is complete;
// keepAlive is false when its head told the client the connection closes.
func (s *session) exchangeDone(st *stream, keepAlive bool) {
	if s.cur != st {
		return
	}
	s.cur = nil
	// A keep-alive response leaves the connection open even when a drain
	// began while it was relayed: the client may already be writing its
	// next request on it, and a POST on a connection closed under it
	// fails (clients retry only idempotent requests). That request is
	// answered as the last. A stop closes it now, unless a request has
	// already arrived.
	if !keepAlive || s.closeAfter && s.drainIdle && s.io.InboundBuffered() == 0 {
		s.closeAfter = true
		s.close()
		return
	}
	s.state = stIdle
	s.armIdle()
	s.resume()
	if s.state == stIdle && s.ls.h.keepAliveEnded(int(s.lastProto)) {
		// Keep-alive ended for this protocol after the response head
		// went out without saying so (EndKeepAlive); nothing of a next
		// request has arrived, so close now.
		s.closeAfter = true
		s.close()
	}
}

// armWrite starts the write timeout when response bytes are waiting for
// the client; called after writing to it.
func (s *session) armWrite() {
	if s.Armed() || s.state != stWait {
		return
	}
	if pending := s.io.OutboundBuffered(); pending > 0 {
		s.flushedMark = s.sent - int64(pending)
		s.ls.writeList.Arm(&s.Deadline, s, s.Loop.Now())
	}
}

// Expire implements l4.Expirer: the connection's current timeout passed.
func (s *session) Expire(now int64) {
	switch s.state {
	case stIdle:
		if s.flushing {
			pending := int64(s.io.OutboundBuffered())
			if pending == 0 {
				s.flushing = false
				s.ls.idleList.Arm(&s.Deadline, s, now)
				return
			}
			if flushed := s.sent - pending; flushed > s.flushedMark {
				s.flushedMark, s.lastFlush = flushed, now
			}
			if now-s.lastFlush <= int64(s.ls.h.cfg.WriteTimeout) {
				s.ls.lingerList.Arm(&s.Deadline, s, now)
				return
			}
			s.ls.h.stats.reject(rejWriteTimeout.Reason)
			s.ls.logReject(s, rejWriteTimeout.Reason, 0)
		}
		s.state = stClosed
		_ = s.io.Close()
	case stHead:
		if s.reject(rejHeaderTimeout) == gnet.Close {
			_ = s.io.Close()
		}
	case stAuth:
		// The verification did not finish within the header timeout (a
		// saturated worker pool): the client may try again.
		s.authSeq++
		if s.reject(rejAuthTimeout) == gnet.Close {
			_ = s.io.Close()
		}
	case stBody:
		if st := s.cur; st != nil && st.conn != nil {
			st.conn.Close() // the server holds part of a request
		}
		if s.abort(rejBodyTimeout) == gnet.Close {
			_ = s.io.Close()
		}
	case stLinger:
		// Checked on every sweep: close as soon as the client has
		// everything, or when it stopped reading for the write timeout.
		pending := int64(s.io.OutboundBuffered())
		if flushed := s.sent - pending; flushed > s.flushedMark {
			s.flushedMark, s.lastFlush = flushed, now
		}
		if pending == 0 || now-s.lastFlush > int64(s.ls.h.cfg.WriteTimeout) {
			s.state = stClosed
			_ = s.io.Close()
			return
		}
		s.ls.lingerList.Arm(&s.Deadline, s, now)
	case stWait:
		pending := int64(s.io.OutboundBuffered())
		if pending == 0 {
			return
		}
		if flushed := s.sent - pending; flushed > s.flushedMark {
			s.flushedMark = flushed
			s.ls.writeList.Arm(&s.Deadline, s, now)
			return
		}
		s.ls.h.stats.reject(rejWriteTimeout.Reason)
		s.ls.logReject(s, rejWriteTimeout.Reason, 0)
		if st := s.cur; st != nil {
			s.cur = nil
			st.sess = nil
			s.ls.finish(s, st, int(st.status), rejWriteTimeout.Reason, false)
		}
		s.state = stClosed
		_ = s.io.Close()
	}
}

// Drain implements l4.ClientHandler: the response in progress, or else
// the next one, says Connection: close and ends the connection.
func (s *session) Drain(closeIdle bool) {
	s.closeAfter = true
	if !closeIdle {
		// Idle: wait for the next request or the idle timeout. Closing
		// now would race a request the client may be sending.
		return
	}
	s.drainIdle = true
	if s.state == stIdle {
		// Idle: close now, after the last response is flushed.
		if s.linger() == gnet.Close {
			_ = s.io.Close()
		}
	}
}

// OnClose implements l4.Handler.
func (s *session) OnClose(gnet.Conn, error) {
	if s.tls != nil {
		s.tls.OnClose()
	}
	if st := s.cur; st != nil {
		s.cur = nil
		st.sess = nil
		s.ls.h.stats.reject(rejClientClosed.Reason)
		s.ls.finish(s, st, int(st.status), rejClientClosed.Reason, false)
		if s.state == stBody && st.conn != nil && !st.bodyDone {
			st.conn.Close() // the server holds part of a request
		}
	}
	s.state = stClosed
	// Whatever the router kept for this connection (an identity) ends
	// with it.
	s.routerState = nil
}
