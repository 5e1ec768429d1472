package l7

import (
	"bytes"
	"net/netip"
	"time"

	"frontdoor/l4"
)

// AccessLog receives a record of every exchange that ends (package
// accesslog writes them as JSON lines). It is split per event loop so that
// recording needs no lock: ForLoop is called once for each loop, on that
// loop, before its first connection.
type AccessLog interface {
	ForLoop(lp *l4.Loop) LoopAccessLog
}

// LoopAccessLog records the exchanges of one event loop. Log runs on the
// loop for every exchange: it must not block and should not allocate. The
// record and the slices it holds are valid only during the call.
type LoopAccessLog interface {
	Log(r *AccessRecord)
}

// AccessRecord describes one exchange as it ended.
type AccessRecord struct {
	// Client is the client's address; Listener the name of the listener
	// that accepted it, TLS whether the connection is TLS.
	Client   netip.Addr
	Listener string
	TLS      bool
	// Protocol is the protocol's name; "" when the path matched none or
	// the request was refused before its path was known.
	Protocol string
	// Method, Path and Query are from the request line (Query without
	// its '?'); empty when the request was refused before it was parsed.
	// The request target is cut after maxLoggedTarget bytes.
	Method, Path, Query []byte
	// User is the authenticated user's login (Route.User); "" for an
	// anonymous request or one whose credentials were refused.
	User string
	// Server is the backend server's name; "" when the gateway answered
	// itself.
	Server string
	// Status is the status sent to the client; 0 when none was.
	Status int
	// RequestBytes counts the request's head and body bytes read from the
	// client; ResponseBytes the bytes written to it for this exchange.
	RequestBytes, ResponseBytes int64
	// Duration runs from the moment the request head was parsed to the
	// end of the exchange.
	Duration time.Duration
	// Backend runs from the moment the request was written to a server
	// connection to the end of the exchange; -1 when it never was.
	Backend time.Duration
	// Error names why the exchange ended without a complete response
	// (a rejection reason, "client_closed", a backend failure); "" when it
	// completed normally.
	Error string
}

// maxLoggedTarget bounds the request target an exchange keeps for its
// access record, so a stream's buffer stays small.
const maxLoggedTarget = 2048

// keepTarget copies the method and request target into st for its access
// record (only when the access log is on: the copy is the log's cost).
func (st *stream) keepTarget(method, target []byte) {
	if len(method) > 32 {
		method = method[:32]
	}
	if len(target) > maxLoggedTarget {
		target = target[:maxLoggedTarget]
	}
	st.target = append(append(st.target[:0], method...), target...)
	st.methodLen = uint8(len(method))
}

// finish accounts for an exchange that has ended: its latency, when it was
// served (a complete response, the server's or the gateway's own), and its
// access record. It runs on the loop and allocates nothing.
func (ls *loopState) finish(s *session, st *stream, status int, reason string, served bool) {
	now := ls.lp.Now()
	if served {
		ls.h.stats.Latency[st.protocol].Observe(now - st.tHead)
	}
	if ls.alog == nil {
		return
	}
	r := ls.record(s, int(st.protocol), st.target[:st.methodLen], st.target[st.methodLen:], status, reason)
	r.Duration = time.Duration(now - st.tHead)
	r.User = st.user
	r.Server = ls.h.cfg.Endpoints[st.endpoint].Name
	r.RequestBytes = st.reqBytes
	r.ResponseBytes = s.sent - st.sentMark
	if st.tStart > 0 {
		r.Backend = time.Duration(now - st.tStart)
	}
	ls.alog.Log(r)
	*r = AccessRecord{} // keep no references into buffers
}

// finishNoStream is finish for a request that never had a stream: answered by
// the gateway in the callback that parsed it (served: its latency is that of
// the callback, about zero), or refused before it was parsed (method and
// target empty). in and out are the bytes read and written for it.
func (ls *loopState) finishNoStream(s *session, method, target []byte, user string, in, out int64, status int, reason string, served bool) {
	if served {
		ls.h.stats.Latency[s.proto].Observe(0)
	}
	if ls.alog == nil {
		return
	}
	r := ls.record(s, int(s.proto), method, target, status, reason)
	r.User = user
	r.RequestBytes, r.ResponseBytes = in, out
	ls.alog.Log(r)
	*r = AccessRecord{}
}

// record fills the loop's scratch record with what every record has.
func (ls *loopState) record(s *session, proto int, method, target []byte, status int, reason string) *AccessRecord {
	r := &ls.rec
	*r = AccessRecord{Client: s.Remote.Addr(), Listener: s.Listener.Name, TLS: s.https, Method: method, Path: target,
		Status: status, Backend: -1, Error: reason}
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		r.Path, r.Query = target[:i], target[i+1:]
	}
	if proto < len(ls.h.cfg.Protocols) {
		r.Protocol = ls.h.cfg.Protocols[proto].Name
	}
	return r
}
