package l7

import (
	"errors"

	"frontdoor/poolmux"
)

type respState uint8

const (
	respHead respState = iota
	respBody
	respDone
)

// maxResponseHead bounds a server's response head.
const maxResponseHead = 64 << 10

// maxInlineBody is the largest response body copied behind its head into
// one client write when the whole body arrived with the head: copying 16
// KiB costs far less than a second system call (and a second TLS record).
const maxInlineBody = 16 << 10

var (
	errBadResponse = errors.New("l7: malformed response from server")
	errSlowClient  = errors.New("l7: client exceeded its response buffer")
)

// stream is one request/response exchange: the poolmux.Exchange of l7.
// Streams are pooled per loop; one lives from the parsed request head until
// the pool is done with it, which may be after its client went away (the
// response must still be read off the shared backend connection).
type stream struct {
	ls       *loopState
	sess     *session // nil once the client is gone
	endpoint int
	conn     *poolmux.Conn // set by Start

	head       []byte // the serialized request head, owned
	replayable bool
	retried    bool
	rerouted   bool  // moved once to the endpoint Config.Reroute named
	key        int32 // Route.Key, for Config.Reroute
	protocol   int16 // Protocol.Index, for Config.Reroute
	isHEAD     bool
	keepAlive  bool // the client keeps the connection after this exchange
	http10     bool // the client speaks HTTP/1.0

	// Request body.
	reqFraming Framing
	bodyLeft   int64
	bodySeen   int64
	bodyDone   bool
	reqChunks  ChunkedDecoder

	// Response.
	rstate      respState
	received    bool // any response byte arrived
	respStarted bool // the response head was sent to the client
	respFraming Framing
	respLeft    int64
	respChunks  ChunkedDecoder
	dechunk     bool // HTTP/1.0 client: send chunk data only, then close
	status      int16

	// Observability: the latency histograms and the access record.
	tHead    int64  // monotonic ns: the request head was parsed
	tStart   int64  // monotonic ns: last written to a server connection; 0 never
	reqBytes int64  // request head and body bytes read from the client
	sentMark int64  // the session's sent count when the exchange began
	user     string // Route.User
	// respHeader is Route.ResponseHeader, added to the relayed head.
	respHeader []byte
	// target is the method followed by the request target, copied only
	// when the access log is on; methodLen splits them.
	target    []byte
	methodLen uint8
}

var _ poolmux.Exchange = (*stream)(nil)

func (ls *loopState) newStream(s *session, h *RequestHead, endpoint int) *stream {
	var st *stream
	if n := len(ls.freeStreams); n > 0 {
		st = ls.freeStreams[n-1]
		ls.freeStreams[n-1] = nil
		ls.freeStreams = ls.freeStreams[:n-1]
	} else {
		st = &stream{ls: ls}
	}
	head, target := st.head, st.target[:0]
	*st = stream{ls: ls, sess: s, endpoint: endpoint, head: head, target: target}
	st.isHEAD = string(h.Method) == "HEAD"
	st.keepAlive = h.KeepAlive
	st.http10 = h.HTTP10
	st.reqFraming = h.Framing
	st.bodyLeft = h.ContentLength
	st.bodyDone = h.Framing == FramingNone
	st.replayable = st.bodyDone && isIdempotentSafe(h.Method)
	return st
}

// free returns the stream to its loop's pool. Large head buffers are
// dropped so one odd request does not pin memory.
func (st *stream) free() {
	ls := st.ls
	head := st.head[:0]
	if cap(head) > 16<<10 {
		head = nil
	}
	*st = stream{ls: ls, head: head, target: st.target[:0]}
	if len(ls.freeStreams) < 1024 {
		ls.freeStreams = append(ls.freeStreams, st)
	}
}

// isIdempotentSafe: methods the gateway may send twice (RFC 9110 9.2.2)
// and pipeline. PUT and DELETE are idempotent too, but they change state;
// the gateway keeps them off pipelines so a failure never leaves their
// outcome unknown behind another request's response.
func isIdempotentSafe(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// Replayable implements poolmux.Exchange.
func (st *stream) Replayable() bool { return st.replayable }

// Received implements poolmux.Exchange.
func (st *stream) Received() bool { return st.received }

// Retry lets poolmux move the stream to another connection once.
func (st *stream) Retry() bool {
	if st.retried || st.sess == nil {
		return false
	}
	st.retried = true
	return true
}

// Start implements poolmux.Exchange: write the head and what body is here.
func (st *stream) Start(c *poolmux.Conn) bool {
	s := st.sess
	if s == nil {
		st.free()
		return false
	}
	st.conn = c
	// A fresh clock: a connection that has just been dialled starts its
	// queue in a callback that did not read the clock.
	st.tStart = st.ls.lp.Tick()
	c.Write(st.head)
	if !st.bodyDone {
		c.Hold()
		// Started from another callback (the queue drained): pump what
		// the client already sent. From the client's own callback,
		// process goes on to pump it.
		s.resume()
	}
	return true
}

// Fail implements poolmux.Exchange.
func (st *stream) Fail(status int, reason string) {
	if st.sess != nil && !st.respStarted {
		if moved, ok := st.reroute(); ok {
			return
		} else if moved {
			// The mailbox moved while this request was with its old
			// server and it cannot safely be sent twice: the client
			// may retry, and will reach the new server.
			status, reason = 503, "mailbox_moved"
		}
	}
	s, started := st.sess, st.respStarted
	if s == nil {
		st.free()
		return
	}
	s.cur = nil
	s.ls.h.stats.reject(reason)
	s.ls.logReject(s, reason, status)
	if started || s.state == stBody {
		// A partial response cannot be completed, and an unread body
		// cannot be skipped: the connection ends here.
		if !started {
			s.closeAfter = true
			s.writeLocal(status, "mailbox server unavailable: "+reason, s.ls.h.retryAfterFor(status))
			s.ls.finish(s, st, status, reason, true)
		} else {
			s.ls.finish(s, st, int(st.status), reason, false)
		}
		st.free()
		s.close()
		return
	}
	s.writeLocal(status, "mailbox server unavailable: "+reason, s.ls.h.retryAfterFor(status))
	s.ls.finish(s, st, status, reason, true)
	st.free()
	s.exchangeDoneLocal()
}

// reroute moves a failed exchange to where its mailbox is now (a database
// switchover or failover). moved reports that the request's route changed;
// ok that the exchange was resubmitted there, which happens once, and only
// for a replayable request of which no response byte arrived.
func (st *stream) reroute() (moved, ok bool) {
	cfg := &st.ls.h.cfg
	if cfg.Reroute == nil || st.key < 0 {
		return false, false
	}
	ep := cfg.Reroute(st.key, int(st.protocol))
	if ep < 0 || ep == st.endpoint {
		return false, false
	}
	if !st.replayable || st.received || st.rerouted || st.sess.state != stWait {
		return true, false
	}
	st.rerouted = true
	st.endpoint = ep
	st.conn = nil
	st.ls.h.stats.Rerouted.Add(1)
	st.ls.pools[ep].Submit(st)
	return true, true
}

func (h *Handler) retryAfterFor(status int) []byte {
	if status == 503 {
		return h.retryAfter
	}
	return nil
}

// Receive implements poolmux.Exchange: parse the response head, then relay
// the body to the client as it arrives.
func (st *stream) Receive(c *poolmux.Conn, p []byte) (int, bool, error) {
	st.received = true
	if st.rstate == respHead {
		n, err := st.receiveHead(c, p)
		if err != nil || st.rstate != respDone {
			return n, false, err
		}
		st.complete()
		return n, true, nil
	}
	n, done, err := st.receiveBody(p)
	if err != nil {
		st.abandon(err)
		return n, false, err
	}
	if done {
		st.complete()
	} else if s := st.sess; s != nil {
		out := s.io.OutboundBuffered()
		switch {
		case out > s.ls.h.cfg.MaxResponseBufferBytes:
			st.abandon(errSlowClient)
			return n, false, errSlowClient
		case out > s.ls.h.cfg.ClientBufferBytes:
			// The client reads slower than the server sends: take this
			// response off the shared connection so the requests behind
			// it move to another one.
			c.Detach()
		}
		s.armWrite()
	}
	return n, done, nil
}

func (st *stream) receiveHead(c *poolmux.Conn, p []byte) (int, error) {
	ls := st.ls
	resp := &ls.resp
	// A plain head is found and checked in one pass; anything else (or a
	// head not complete yet) is delimited by FindHeadEnd.
	plain, isPlain := scanPlainResponse(p)
	end := plain.fieldsEnd + 2
	if !isPlain {
		if end = FindHeadEnd(p, 0); end < 0 {
			if len(p) > maxResponseHead {
				st.failBadResponse(rejBadResponse)
				return 0, errBadResponse
			}
			return 0, nil
		}
	}
	var status, cl int
	if isPlain {
		status, cl = plain.status, int(plain.contentLength)
	} else {
		resp.Reset()
		resp.SetNoDefaultContentType(true)
		ls.rd.Reset(p[:end])
		ls.br.Reset(&ls.rd)
		if err := resp.Read(ls.br); err != nil {
			st.failBadResponse(rejBadResponse)
			return end, errBadResponse
		}
		status, cl = resp.StatusCode(), resp.ContentLength()
	}
	if status < 200 {
		// Informational responses (100 Continue: the gateway answered
		// Expect itself) are consumed; 101 would switch protocols on a
		// shared connection, which the gateway never asks for.
		if status == 101 {
			st.failBadResponse(rejBadResponse)
			return end, errBadResponse
		}
		return end, nil
	}
	st.observeStatus(status)
	switch {
	case st.isHEAD || status == 204 || status == 304:
		st.respFraming = FramingNone
	case cl == -1:
		st.respFraming = FramingChunked
	case cl >= 0:
		st.respFraming = FramingLength
		st.respLeft = int64(cl)
		if cl == 0 {
			st.respFraming = FramingNone
		}
	default:
		// Delimited by closing the connection: on a pipelined, shared
		// connection there is no telling where it ends.
		st.failBadResponse(rejUnframedResponse)
		return end, errBadResponse
	}
	if s := st.sess; s != nil {
		// An answer that arrives before the request body is complete ends
		// the connection (complete closes both): say so.
		if s.closeAfter || !st.bodyDone {
			st.keepAlive = false
		}
		st.dechunk = st.http10 && st.respFraming == FramingChunked
		if st.dechunk {
			st.keepAlive = false
		}
		if isPlain {
			ls.out = ls.appendPlainResponseHead(ls.out[:0], p[:plain.fieldsEnd], plain.hsts, st)
		} else {
			ls.out = ls.appendResponseHead(ls.out[:0], resp, st)
		}
		if st.respFraming == FramingLength && st.respLeft <= maxInlineBody && int64(len(p)-end) >= st.respLeft {
			// The whole body is here and small: send head and body in one
			// write. Each write to a socket is a system call (and over
			// TLS a record); a short answer would otherwise cost two.
			ls.out = append(ls.out, p[end:end+int(st.respLeft)]...)
			end += int(st.respLeft)
			st.respLeft = 0
			st.respFraming = FramingNone
		}
		// Counted before the write: once the client has the response it
		// may read the counters, and must find it there.
		s.ls.h.stats.response(s.proto, status)
		s.write(ls.out)
		st.respStarted = true
		st.status = int16(status)
	}
	if st.respFraming == FramingNone {
		st.rstate = respDone
	} else {
		st.rstate = respBody
	}
	return end, nil
}

// receiveBody relays body bytes from p and reports whether the body ended.
func (st *stream) receiveBody(p []byte) (int, bool, error) {
	s := st.sess
	if st.respFraming == FramingLength {
		n := int64(len(p))
		if n > st.respLeft {
			n = st.respLeft
		}
		if s != nil {
			s.write(p[:n])
		}
		st.respLeft -= n
		return int(n), st.respLeft == 0, nil
	}
	total := 0
	for total < len(p) && !st.respChunks.Done() {
		n, data, err := st.respChunks.Decode(p[total:])
		if err != nil {
			return total, false, errBadResponse
		}
		if st.dechunk && len(data) > 0 && s != nil {
			s.write(data)
		}
		if n == 0 {
			break
		}
		total += n
	}
	if !st.dechunk && s != nil && total > 0 {
		s.write(p[:total]) // a server's chunks are relayed as they are
	}
	return total, st.respChunks.Done(), nil
}

// complete ends a successful exchange.
func (st *stream) complete() {
	st.rstate = respDone
	s := st.sess
	if st.conn != nil && !st.bodyDone {
		// The server answered before reading the whole body (an early
		// error response). Its connection is now out of sync; close it
		// after this response, and the client's too.
		st.conn.Close()
		if s != nil {
			s.closeAfter = true
		}
	}
	ls := st.ls
	ls.h.stats.BackendLatency[st.endpoint].Observe(ls.lp.Now() - st.tStart)
	if s != nil {
		ls.finish(s, st, int(st.status), "", true)
	}
	keepAlive := st.keepAlive
	st.free()
	if s != nil {
		s.exchangeDone(st, keepAlive)
	}
}

// abandon ends the exchange after a failure while relaying a response.
func (st *stream) abandon(err error) {
	s := st.sess
	if s == nil {
		st.free()
		return
	}
	reason := rejBadResponse.Reason
	if err == errSlowClient {
		reason = rejSlowClient.Reason
		s.ls.logReject(s, reason, 0)
	}
	s.ls.h.stats.reject(reason)
	s.ls.finish(s, st, int(st.status), reason, false)
	st.free()
	s.cur = nil
	s.state = stClosed
	_ = s.io.Close()
}

// failBadResponse answers 502 for a response the gateway cannot relay.
func (st *stream) failBadResponse(r *Reject) {
	s, started := st.sess, st.respStarted
	if s == nil {
		st.free()
		return
	}
	s.ls.h.stats.reject(r.Reason)
	s.ls.logReject(s, r.Reason, r.Status)
	s.cur = nil
	if started {
		s.ls.finish(s, st, int(st.status), r.Reason, false)
		st.free()
		s.state = stClosed
		_ = s.io.Close()
		return
	}
	if s.state == stBody {
		s.closeAfter = true
	}
	s.writeLocal(r.Status, "bad response from mailbox server: "+r.Reason, nil)
	s.ls.finish(s, st, r.Status, r.Reason, true)
	st.free()
	s.exchangeDoneLocal()
}

// exchangeDoneLocal continues a session whose exchange ended with a local
// answer after it had been handed to a pool.
func (s *session) exchangeDoneLocal() {
	if s.closeAfter {
		s.close()
		return
	}
	s.state = stIdle
	s.armIdle()
	s.resume()
}
