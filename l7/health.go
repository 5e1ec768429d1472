package l7

import (
	"context"
	"fmt"
	"slices"

	"github.com/panjf2000/gnet/v2"

	"frontdoor/l4"
)

// healthPath is the health page of every protocol, after its prefix:
// /owa/healthcheck.htm, as Exchange serves it. Matched case-insensitively,
// as IIS does.
const healthPath = "/healthcheck.htm"

// HealthPages answers the health pages of the protocols: GET or HEAD of
// /{prefix}/healthcheck.htm is answered by the gateway itself, before
// routing and authentication, with the page HealthPage returns. Health
// probes are counted apart (Stats.HealthOK, Stats.HealthFailed), not as
// requests.
type HealthPages interface {
	// HealthPage returns the current page of a protocol (its
	// Protocol.Index); draining reports that the server is draining (l4).
	// It runs on the loop for every probe: it must not block, and should
	// return a page built in advance.
	HealthPage(protocol int, draining bool) *HealthPage
}

// HealthPage is the answer to a health probe, serialized once so that a
// probe costs a write of bytes prepared in advance: with and without
// Connection: close, for GET and for HEAD (same head, no body).
type HealthPage struct {
	status                         int
	get, getClose, head, headClose []byte
}

// NewHealthPage serializes the page answering status with body (text/plain).
func NewHealthPage(status int, body string) *HealthPage {
	p := &HealthPage{status: status}
	p.get = appendLocalResponse(nil, status, body, nil, nil, false)
	p.getClose = appendLocalResponse(nil, status, body, nil, nil, true)
	// HEAD: the same head, without the body (which appendLocalResponse
	// ends with a newline).
	p.head = p.get[:len(p.get)-len(body)-1]
	p.headClose = p.getClose[:len(p.getClose)-len(body)-1]
	return p
}

// Status is the page's status code.
func (p *HealthPage) Status() int { return p.status }

// response is the page's bytes for a HEAD or GET probe, announcing a close
// or not.
func (p *HealthPage) response(head, closeConn bool) []byte {
	switch {
	case head && closeConn:
		return p.headClose
	case head:
		return p.head
	case closeConn:
		return p.getClose
	}
	return p.get
}

// isHealthPath reports whether the path after a protocol's prefix is its
// health page.
func isHealthPath(after []byte) bool { return asciiEqualFold(after, healthPath) }

// allowGetHead is the Allow field of a 405 for the health page.
var allowGetHead = []byte("Allow: GET, HEAD\r\n")

// healthProbe answers a GET or HEAD of a protocol's health page, whose
// head ends at end. Nothing of it is routed, authenticated or logged.
func (s *session) healthProbe(protocol, end int, h *RequestHead) (gnet.Action, bool) {
	ls := s.ls
	draining := s.Loop.Draining()
	if !h.KeepAlive || h.Framing != FramingNone || draining {
		// A body the gateway will not read makes the connection
		// unusable for a next request; a stopping gateway closes
		// connections after their exchange, even when the drain has
		// not reached this one yet.
		s.closeAfter = true
	}
	_, _ = s.io.Discard(end)
	s.Disarm()
	page := ls.h.cfg.Health.HealthPage(protocol, draining)
	// Counted before the write, which lets the prober read the counters.
	if page.status/100 == 2 {
		ls.h.stats.HealthOK.Add(1)
	} else {
		ls.h.stats.HealthFailed.Add(1)
	}
	s.write(page.response(string(h.Method) == "HEAD", s.closeAfter))
	return s.finishLocal()
}

// EndKeepAlive ends keep-alive for the protocols marked true in protocols
// (indexed like Config.Protocols), so a load balancer taking the gateway
// out of its pool moves their clients elsewhere without failing a
// request. From the call on, every response to a request of such a
// protocol carries "Connection: close" and its connection closes once the
// response is written; on every loop, idle connections whose last request
// was for one of them close now, and busy ones after their current
// response (announced with "Connection: close" when its head is not sent
// yet). A connection that has not sent a request yet is left open: closing
// it could cut off a first request already on its way, which a client
// does not retry on a new connection; that request's answer closes it.
// Protocols marked false keep connections alive again. Safe from any
// goroutine.
func (h *Handler) EndKeepAlive(protocols []bool) {
	newly := false
	for i := range h.endKeepAlive {
		on := i < len(protocols) && protocols[i]
		if h.endKeepAlive[i].Swap(on) != on && on {
			newly = true
		}
	}
	if !newly {
		return
	}
	h.mu.Lock()
	loops := slices.Clone(h.loops)
	h.mu.Unlock()
	for _, ls := range loops {
		_ = ls.lp.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			ls.lp.Tick()
			ls.lp.EachClient(endKeepAlive)
			return nil
		}))
	}
}

// endKeepAlive applies EndKeepAlive to one connection.
func endKeepAlive(ch l4.ClientHandler) {
	if s, ok := ch.(*session); ok {
		s.endKeepAlive()
	}
}

// keepAliveEnded reports whether keep-alive has ended for protocol (-1, a
// connection that has not sent a request yet: never).
func (h *Handler) keepAliveEnded(protocol int) bool {
	return protocol >= 0 && h.endKeepAlive[protocol].Load()
}

// endKeepAlive closes the connection, or makes its current exchange the
// last, when keep-alive has ended for the protocol of its last request.
// It runs on the loop.
func (s *session) endKeepAlive() {
	if s.closeAfter || s.state >= stLinger || !s.ls.h.keepAliveEnded(int(s.lastProto)) {
		return
	}
	switch s.state {
	case stIdle:
		s.closeAfter = true
		s.close() // once the last response is flushed
	case stBody, stWait:
		if s.cur != nil && !s.cur.respStarted {
			s.closeAfter = true // announced in the response head
		}
		// Otherwise the head went out keeping the connection alive:
		// exchangeDone closes it once the response is complete and
		// nothing follows.
	}
	// stHead, stAuth: readHead decides by the protocol of the request
	// being read.
}

// status5xx are the passive health checks' failure reasons, made once.
var status5xx [100]string

func init() {
	for i := range status5xx {
		status5xx[i] = fmt.Sprintf("%d response", 500+i)
	}
}

// observeStatus reports a server's response status to its health.
func (st *stream) observeStatus(status int) {
	hl := st.ls.pools[st.endpoint].Health()
	if hl == nil {
		return
	}
	if status >= 500 && status < 600 {
		hl.Failure(status5xx[status-500])
		return
	}
	hl.Success()
}
