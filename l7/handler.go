// Package l7 is HTTP/1.1 on the event loop. It reads requests from a client
// connection's buffer as they arrive (never blocking the loop, never keeping
// peeked bytes past the callback), checks their framing strictly (RFC 9112),
// reads their fields from the lines it checked, asks a Router where each one goes,
// re-serializes it from the parsed fields without hop-by-hop fields, hands
// it to the backend pool (poolmux) and streams the response back.
//
// A client connection carries one exchange at a time: pipelined requests
// wait, unread, in the connection's buffer until the response before them
// is complete, which keeps responses in order without buffering them.
package l7

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/fasthttp"

	"frontdoor/l4"
	"frontdoor/poolmux"
	"frontdoor/tlsterm"
)

// Protocol is a client-access protocol selected by a path prefix.
type Protocol struct {
	Name   string
	Prefix string // "/owa"; matched case-insensitively on a segment boundary
	Index  int    // dense index, passed to the Router
	// StripFields are request field names (lower case) removed from the
	// protocol's forwarded requests whatever their case: the identity
	// assertion a client must never supply, an untrusted routing hint,
	// credentials the gateway consumed.
	StripFields []string
	// StreamMethods are request methods the protocol streams on a channel
	// of their own (channel.go), besides RPC_IN_DATA and RPC_OUT_DATA.
	StreamMethods []string
}

// Request is what a Router sees of a request. It is valid only during Route.
type Request struct {
	Protocol *Protocol
	// Method and Target are the request line's, as received.
	Method, Target []byte
	// Fields are the request's field lines, as received; Field reads them.
	Fields Fields
	// Path is the request target's path (before '?'), as received.
	Path []byte
	// AfterPrefix is Path after the protocol prefix ("" or starting with '/').
	AfterPrefix []byte
	// TLS is the client's TLS connection (nil over plaintext): its State()
	// has the verified client certificate, for authentication.
	TLS *tlsterm.Conn
	// Client is the client's address: the connection's peer, or the
	// client a trusted load balancer named in a PROXY protocol header
	// (l4.ClientConn.Remote).
	Client netip.Addr
	// Waker resumes this request after the Router answered Pending.
	Waker Waker
	// Channel says whether the request will be streamed on a channel of
	// its own (channel.go), and which kind: a router routes channels by
	// the mailbox they name.
	Channel Channel
	// Listener is the index of the listener the connection came in on
	// (l4's, as in Config.Listeners).
	Listener int
	// Conn is the router's slot for state of this client connection
	// (HAProxy's "session" as opposed to the "stream"): nil when the
	// connection opens, kept across its requests, dropped when it
	// closes. The gateway keeps an identity there that holds for the
	// rest of the connection (HTTP Negotiate, RFC 4559). Only the
	// connection's own loop reads or writes it, during Route; storing a
	// pointer in it does not allocate.
	Conn *any
}

// Waker resumes a request whose Route was Pending. Wake may be called from
// any goroutine, once; the request is then routed again on its loop. A
// Waker for a connection that has closed, or has moved on, does nothing.
type Waker struct {
	s   *session
	seq uint32
}

// Wake schedules the request to be routed again on its event loop.
func (w Waker) Wake() {
	s, seq := w.s, w.seq
	if s == nil {
		return
	}
	_ = s.Loop.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		s.wake(seq)
		return nil
	}))
}

// Field returns the value of the first field named name (given in lower
// case), compared case-insensitively as field names are (RFC 9110 5.1).
func (r *Request) Field(name string) []byte { return r.Fields.Get(name) }

// Route is a Router's answer: a backend endpoint, a local response, or
// "pending" while the router verifies credentials off the loop.
type Route struct {
	// Endpoint indexes Config.Endpoints; -1 means answer locally.
	Endpoint int
	// Status and Body are the local response when Endpoint is -1.
	Status int
	Body   string
	// Header holds extra header lines of a local response, each ending
	// in CRLF ("WWW-Authenticate: Basic realm=...\r\n", Location,
	// Retry-After). The slice must stay valid and unchanged (a constant, or
	// owned by the router) until the next Route call on any loop.
	Header []byte
	// ResponseHeader holds header lines (each ending in CRLF) added to
	// the head of the response relayed to the client: the mutual
	// authentication token of Negotiate (RFC 4559 5). Same lifetime rule
	// as Header, and it must stay unchanged until the response head has
	// been written, which is after Route returns: routers hand out
	// slices they never modify.
	ResponseHeader []byte
	// Identity is one complete header line the gateway adds to the
	// forwarded request (the signed identity assertion, ending in CRLF).
	// Same lifetime rule as Header: routers hand out immutable slices
	// from their cache.
	Identity []byte
	// Key is what the request was routed by (for the gateway, the mailbox
	// database's index); Config.Reroute gets it back when the endpoint
	// fails, to find where the request should go now.
	Key int32
	// User is the authenticated user's login, for the access log: a
	// string the router keeps (its cache entry's), so setting it costs
	// nothing. "" for an anonymous request.
	User string
	// Pending means the router has started work off the loop (a
	// credential verification). The request stays unread in the client's
	// buffer; when the work is done the router calls Request.Waker.Wake
	// and the request is routed again from the start.
	Pending bool
}

// Router decides where a request goes. It runs on the event loop for every
// request: it must not block and should not allocate.
type Router interface {
	Route(r *Request) Route
}

// Endpoint is a backend address (one mailbox server on one port).
type Endpoint struct {
	Name string // server name, for logs
	Addr string // host:port
	// TLS, when set, makes the endpoint's backend connections TLS.
	TLS *poolmux.TLS
	// Health, when set, is the endpoint's health: its pools report
	// connection failures to it and l7 every response status (5xx are
	// failures), for passive outlier detection.
	Health *poolmux.Health
}

// Config is the l7 configuration, built by the gateway.
type Config struct {
	Protocols []Protocol
	Endpoints []Endpoint
	Router    Router
	// Listeners is indexed like l4's listeners.
	Listeners []Listener

	MaxHeaderBytes         int
	MaxBodyBytes           int64
	MaxPipelineBytes       int
	ClientBufferBytes      int
	MaxResponseBufferBytes int
	MaxUploadBufferBytes   int

	HeaderTimeout time.Duration
	BodyTimeout   time.Duration
	IdleTimeout   time.Duration
	WriteTimeout  time.Duration
	RetryAfter    time.Duration

	// Channels (channel.go): streamed exchanges on dedicated backend
	// connections. Zero values take the defaults.
	MaxChannelsPerServer int           // per endpoint, all loops together
	ChannelBufferBytes   int           // per direction and channel
	RPCChannelIdle       time.Duration // RPC channels and StreamMethods
	NotificationWaitIdle time.Duration // MAPI NotificationWait

	// Reroute, when set, is asked where a replayable request whose backend
	// failed before answering should go now (the mailbox database moved):
	// it gets the Route.Key and the protocol's index, and returns an
	// endpoint, or -1 to let the failure stand. It runs on the loop.
	Reroute func(key int32, protocol int) int

	// Health, when set, answers every protocol's health page
	// (/{prefix}/healthcheck.htm) on the loop; nil forwards those paths
	// like any other.
	Health HealthPages

	Pool poolmux.Options
	Log  *slog.Logger
	// AccessLog, when set, gets a record of every exchange; nil turns
	// the access log off (and with it the copy of each request target).
	AccessLog AccessLog

	// Stats and PoolStats (indexed like Endpoints), when set, are counters
	// to add to rather than new ones: a reloaded configuration's handler
	// continues its predecessor's, which keeps serving its own
	// connections meanwhile. Nil entries are created.
	Stats     *Stats
	PoolStats []*poolmux.Stats
}

// Listener is what l7 needs to know of one listener.
type Listener struct {
	// Served[protocol] says whether the listener serves a protocol; nil
	// serves every protocol.
	Served []bool
	// TLS terminates TLS on the listener; nil for plaintext.
	TLS *tlsterm.Terminator
}

// Handler serves HTTP/1.1 on the l4 core: it is the l4.Acceptor.
type Handler struct {
	cfg        Config
	log        *slog.Logger
	stats      *Stats
	poolStats  []*poolmux.Stats
	retryAfter []byte
	refusal    []byte

	// endKeepAlive[protocol]: see EndKeepAlive.
	endKeepAlive []atomic.Bool

	mu    sync.Mutex
	loops []*loopState // for Retire

	chans channels // open channels (channel.go)
}

var _ l4.Acceptor = (*Handler)(nil)

// NewHandler returns a Handler for cfg.
func NewHandler(cfg Config) *Handler {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	cfg.channelDefaults()
	h := &Handler{cfg: cfg, log: cfg.Log, stats: cfg.Stats, endKeepAlive: make([]atomic.Bool, len(cfg.Protocols))}
	if h.stats == nil || !h.stats.fits(len(cfg.Protocols), len(cfg.Endpoints)) {
		h.stats = NewStats(len(cfg.Protocols), len(cfg.Endpoints))
	}
	for i := range cfg.Endpoints {
		var ps *poolmux.Stats
		if i < len(cfg.PoolStats) {
			ps = cfg.PoolStats[i]
		}
		if ps == nil {
			ps = new(poolmux.Stats)
		}
		h.poolStats = append(h.poolStats, ps)
	}
	secs := int(cfg.RetryAfter / time.Second)
	if secs < 1 {
		secs = 1
	}
	h.retryAfter = fasthttp.AppendUint(nil, secs)
	h.refusal = appendLocalResponse(nil, 503, "server busy or stopping", h.retryAfter, nil, true)
	return h
}

// Stats returns the HTTP counters.
func (h *Handler) Stats() *Stats { return h.stats }

// PoolStats returns the backend counters of endpoint i, summed over loops.
func (h *Handler) PoolStats(i int) *poolmux.Stats { return h.poolStats[i] }

// Endpoints returns the configured endpoints.
func (h *Handler) Endpoints() []Endpoint { return h.cfg.Endpoints }

// loopState is the per-loop scratch space and pools. Only its loop uses it.
type loopState struct {
	h  *Handler
	lp *l4.Loop

	head    RequestHead
	request Request
	resp    fasthttp.ResponseHeader
	rd      bytes.Reader
	br      *bufio.Reader
	out     []byte   // scratch for serializing local responses and chunk lines
	iov     [][]byte // scratch for writev
	xff     []byte   // scratch for joining X-Forwarded-For fields

	respConnNames [][]byte // scratch: fields named in a response's Connection

	pools []*poolmux.Pool // one per endpoint

	freeStreams []*stream

	alog LoopAccessLog // nil: the access log is off
	rec  AccessRecord  // scratch for alog

	headerList, bodyList, idleList, writeList *l4.DeadlineList
	// lingerList expires on every sweep: closing connections poll it
	// until their last bytes are flushed.
	lingerList *l4.DeadlineList

	logBudget    int   // rejection log lines left in the current second
	logWindow    int64 // start of the current second (monotonic ns)
	logSuppessed int
}

// NewLoop implements l4.Acceptor.
func (h *Handler) NewLoop(lp *l4.Loop) {
	ls := &loopState{h: h, lp: lp}
	ls.br = bufio.NewReaderSize(&ls.rd, h.cfg.MaxHeaderBytes+4096)
	ls.out = make([]byte, 0, 4096)
	ls.respConnNames = make([][]byte, 0, maxConnectionNames)
	ls.headerList = lp.NewDeadlineList("header_read", h.cfg.HeaderTimeout)
	ls.bodyList = lp.NewDeadlineList("body_read", h.cfg.BodyTimeout)
	ls.idleList = lp.NewDeadlineList("idle", h.cfg.IdleTimeout)
	ls.writeList = lp.NewDeadlineList("write", h.cfg.WriteTimeout)
	ls.lingerList = lp.NewDeadlineList("linger", 0)
	ls.pools = make([]*poolmux.Pool, len(h.cfg.Endpoints))
	for i, ep := range h.cfg.Endpoints {
		ls.pools[i] = poolmux.NewPool(lp, ep.Name, ep.Addr, &h.cfg.Pool, h.poolStats[i], h.log)
		ls.pools[i].SetTLS(ep.TLS)
		ls.pools[i].SetHealth(ep.Health)
	}
	if h.cfg.AccessLog != nil {
		ls.alog = h.cfg.AccessLog.ForLoop(lp)
	}
	lp.Proto = ls
	h.mu.Lock()
	h.loops = append(h.loops, ls)
	h.mu.Unlock()
}

// Release implements l4.Acceptor: the handler was replaced (a reload) and
// its last client on lp has closed. Its backend connections on lp close
// once idle (poolmux.Pool.Close), which they are but for responses of
// clients that left; nothing dials again.
func (h *Handler) Release(lp *l4.Loop) {
	ls, _ := lp.Proto.(*loopState)
	if ls == nil {
		return
	}
	for _, p := range ls.pools {
		p.Close()
	}
	ls.freeStreams = nil
	h.mu.Lock()
	h.loops = slices.DeleteFunc(h.loops, func(x *loopState) bool { return x == ls })
	h.mu.Unlock()
}

// Retire drains, on every loop, the backend connections of the endpoints
// marked true (poolmux.Pool.Retire): their server holds no active
// database any more. Safe from any goroutine.
func (h *Handler) Retire(endpoints []bool) {
	h.mu.Lock()
	loops := slices.Clone(h.loops)
	h.mu.Unlock()
	for _, ls := range loops {
		_ = ls.lp.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			for i, r := range endpoints {
				if r && i < len(ls.pools) {
					ls.pools[i].Retire()
				}
			}
			return nil
		}))
	}
}

// Revive tells every loop's pool of endpoint that its server is back
// (poolmux.Pool.Revive): connections waiting out a reconnect backoff dial
// now. Safe from any goroutine.
func (h *Handler) Revive(endpoint int) {
	h.mu.Lock()
	loops := slices.Clone(h.loops)
	h.mu.Unlock()
	for _, ls := range loops {
		_ = ls.lp.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			ls.lp.Tick()
			if endpoint < len(ls.pools) {
				ls.pools[endpoint].Revive()
			}
			return nil
		}))
	}
}

// Accept implements l4.Acceptor.
func (h *Handler) Accept(cc l4.ClientConn) (l4.ClientHandler, []byte, gnet.Action) {
	ls := cc.Loop.Proto.(*loopState)
	s := &session{ClientConn: cc, ls: ls, io: cc.Conn, lastProto: -1}
	if ln := h.listener(cc.Listener.Index); ln != nil && ln.TLS != nil {
		// The client's address (cc.Remote, which a PROXY protocol header
		// may have carried) for the handshake's logs too.
		s.tls = ln.TLS.AcceptFrom(cc.Conn, s.RemoteAddr())
		s.io, s.https = s.tls, true
	}
	ls.idleList.Arm(&s.Deadline, s, cc.Loop.Now())
	h.stats.Accepted.Add(1)
	return s, nil, gnet.None
}

// Refusal implements l4.Acceptor.
func (h *Handler) Refusal(_ *l4.Listener, _ string) []byte { return h.refusal }

func (h *Handler) listener(i int) *Listener {
	if i < len(h.cfg.Listeners) {
		return &h.cfg.Listeners[i]
	}
	return nil
}

// matchProtocol finds the protocol whose prefix starts path among those
// the listener serves.
func (h *Handler) matchProtocol(path []byte, listener int) *Protocol {
	var served []bool
	if ln := h.listener(listener); ln != nil {
		served = ln.Served
	}
	for i := range h.cfg.Protocols {
		p := &h.cfg.Protocols[i]
		n := len(p.Prefix)
		if len(path) < n || !asciiEqualFold(path[:n], p.Prefix) {
			continue
		}
		if (len(path) == n || path[n] == '/') && (served == nil || served[i]) {
			return p
		}
	}
	return nil
}

// logReject logs a rejected request, at most 10 lines a second per loop;
// the counters see every one.
func (ls *loopState) logReject(s *session, reason string, status int) {
	now := ls.lp.Now()
	if now-ls.logWindow > int64(time.Second) {
		if ls.logSuppessed > 0 {
			ls.h.log.Warn("rejection log lines suppressed", "count", ls.logSuppessed)
		}
		ls.logWindow, ls.logBudget, ls.logSuppessed = now, 10, 0
	}
	if ls.logBudget == 0 {
		ls.logSuppessed++
		return
	}
	ls.logBudget--
	ls.h.log.Info("request rejected", "reason", reason, "status", status,
		"client", s.Remote.Addr().String(), "listener", s.Listener.Name)
}

// Stats counts HTTP-level outcomes over all loops. Every counter is an
// atomic in a slice or array sized at start, indexed on the hot path: no
// maps are written and nothing is allocated per request.
type Stats struct {
	Accepted atomic.Int64
	Requests atomic.Int64 // requests fully read and routed or answered
	// Rerouted counts requests moved to another server after theirs
	// failed because their mailbox database had moved.
	Rerouted atomic.Int64
	// Responses counts responses sent by status class: Responses[2] is
	// 2xx (index 0 is unused).
	Responses [6]atomic.Int64
	// ByProtocol counts the same responses by protocol and class:
	// ByProtocol[p][c], p indexing Config.Protocols; the last row,
	// p == len(Protocols), is for requests that matched no protocol or
	// were refused before their path was known.
	ByProtocol [][6]atomic.Int64
	// Latency holds, by protocol (indexed like ByProtocol), the time from
	// a request's head being parsed to its response being complete,
	// for every request served with a complete response (the server's or
	// the gateway's own); exchanges cut short are not in it.
	Latency []Histogram
	// BackendLatency holds, by endpoint (indexing Config.Endpoints), the
	// time from a request being written to a server connection to the
	// server's response being complete.
	BackendLatency []Histogram
	// ChannelsOpen counts, by endpoint (indexing Config.Endpoints), the
	// open channels (channel.go): the count MaxChannelsPerServer bounds.
	// ChannelsTotal counts every channel opened.
	ChannelsOpen  []atomic.Int64
	ChannelsTotal atomic.Int64
	// HealthOK and HealthFailed count the health probes answered 2xx
	// and otherwise (HealthPages). Probes are not requests: they are
	// not in Requests or Responses.
	HealthOK, HealthFailed atomic.Int64
	// Rejects counts refused requests by reason (RequestHead framing,
	// limits, timeouts, routing); keys are fixed at start so the map is
	// read-only afterwards.
	Rejects map[string]*atomic.Int64
}

// NewStats returns zeroed counters for a handler of that many protocols
// and endpoints, for Config.Stats.
func NewStats(protocols, endpoints int) *Stats {
	st := &Stats{Rejects: make(map[string]*atomic.Int64),
		ByProtocol:     make([][6]atomic.Int64, protocols+1),
		Latency:        make([]Histogram, protocols+1),
		BackendLatency: make([]Histogram, endpoints),
		ChannelsOpen:   make([]atomic.Int64, endpoints)}
	for _, r := range allRejects {
		st.Rejects[r.Reason] = new(atomic.Int64)
	}
	return st
}

// fits reports whether the counters can serve a handler of that many
// protocols and endpoints: a reload that changes either starts new ones
// (the per-protocol and per-endpoint arrays are sized at creation).
func (st *Stats) fits(protocols, endpoints int) bool {
	return len(st.ByProtocol) == protocols+1 && len(st.BackendLatency) >= endpoints && len(st.ChannelsOpen) >= endpoints
}

func (st *Stats) reject(reason string) {
	if c := st.Rejects[reason]; c != nil {
		c.Add(1)
	}
}

// response counts a response of status for protocol proto (an index of
// ByProtocol).
func (st *Stats) response(proto int16, status int) {
	if c := status / 100; c >= 1 && c <= 5 {
		st.Responses[c].Add(1)
		st.ByProtocol[proto][c].Add(1)
	}
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// statusText is the reason phrase for local responses.
func statusText(code int) string { return fasthttp.StatusMessage(code) }
