package l7

// Outlook's long-lived channels: RPC over HTTP's RPC_IN_DATA and
// RPC_OUT_DATA (a body declared at 1 GiB or more, streamed for hours) and
// MAPI over HTTP's NotificationWait (a long poll held for minutes while the
// server sends keep-alive bytes). Such an exchange must not sit on a
// shared, pipelined backend connection (everything behind it would wait),
// must not be cut by the ordinary timeouts, and needs real backpressure
// both ways, which gnet cannot give: it cannot stop reading a socket.
//
// So a channel leaves the event loop. Once its head is parsed and routed,
// the client's socket is duplicated (gnet.Conn.Dup, net.FileConn; a TLS
// connection's crypto/tls state moves along with tlsterm.Conn.Detach),
// the gnet connection is closed from OnTraffic (synchronously, so gnet
// never reads the socket again), and two goroutines relay the request body
// and the response between the client and a dedicated backend connection
// with blocking reads and writes through one bounded buffer per direction.
// A slow reader on either side blocks the writer, which stops reading its
// side, whose kernel buffers fill and close the TCP window: the sender is
// slowed by TCP itself, and the gateway holds at most ChannelBufferBytes
// per direction per channel whatever the two sides do.
//
// The dedicated backend connections are not pooled: one per channel, dialled
// in the channel's goroutine, bounded per endpoint by MaxChannelsPerServer
// (an atomic count shared by every loop; beyond it 503 with Retry-After).
// A channel ends with its response (which says Connection: close, so the
// client's next request comes on a new connection, back on the loop), when
// either side closes, when nothing moved either way for its idle timeout,
// or when Handler.CloseChannels closes it (its mailbox database moved, or
// the gateway stops).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/fasthttp"
)

// Channel is the kind of a streamed exchange: none for an ordinary one.
type Channel uint8

const (
	ChannelNone Channel = iota
	// ChannelRPC: an RPC over HTTP channel (RPC_IN_DATA, RPC_OUT_DATA) or
	// a method a protocol streams (Protocol.StreamMethods).
	ChannelRPC
	// ChannelNotificationWait: a MAPI over HTTP long poll (a request with
	// X-RequestType: NotificationWait).
	ChannelNotificationWait
)

// Channel limits and timeouts, with their defaults.
const (
	DefaultMaxChannelsPerServer = 2000
	DefaultChannelBufferBytes   = 32 << 10
	DefaultRPCChannelIdle       = 15 * time.Minute
	DefaultNotificationWaitIdle = 6 * time.Minute
	// maxChannelBody bounds a channel's declared Content-Length: the body
	// is streamed, never buffered, so only the parser's range matters.
	maxChannelBody = 1 << 50
)

var (
	rejChannelLimit = &Reject{503, "channel_limit"}   // too many channels to the server
	rejChannelIdle  = &Reject{0, "channel_idle"}      // closed: nothing moved for the idle timeout
	rejChannelMoved = &Reject{0, "channel_closed"}    // closed: mailbox moved, or the gateway stops
	rejChannelSetup = &Reject{503, "channel_unready"} // a response still flushing, or the socket could not move
)

func init() {
	allRejects = append(allRejects, rejChannelLimit, rejChannelIdle, rejChannelMoved, rejChannelSetup)
}

// channelDefaults fills the channel settings left zero.
func (cfg *Config) channelDefaults() {
	if cfg.MaxChannelsPerServer <= 0 {
		cfg.MaxChannelsPerServer = DefaultMaxChannelsPerServer
	}
	if cfg.ChannelBufferBytes <= 0 {
		cfg.ChannelBufferBytes = DefaultChannelBufferBytes
	}
	if cfg.RPCChannelIdle <= 0 {
		cfg.RPCChannelIdle = DefaultRPCChannelIdle
	}
	if cfg.NotificationWaitIdle <= 0 {
		cfg.NotificationWaitIdle = DefaultNotificationWaitIdle
	}
}

var errChannelIdle = errors.New("l7: channel idle")

// channelOf tells whether a request is streamed, and how.
func channelOf(p *Protocol, method []byte, fields Fields) Channel {
	switch string(method) {
	case "RPC_IN_DATA", "RPC_OUT_DATA":
		return ChannelRPC
	}
	if p != nil {
		for _, m := range p.StreamMethods {
			if string(method) == m {
				return ChannelRPC
			}
		}
	}
	// MAPI over HTTP sends every request as a POST ([MS-OXCMAPIHTTP]
	// 2.2.1): a GET, the common case, need not have its fields searched.
	if string(method) == "POST" && asciiEqualFold(fields.Get("x-requesttype"), "NotificationWait") {
		return ChannelNotificationWait
	}
	return ChannelNone
}

// mayStream reports whether a method is one whose declared body may exceed
// MaxBodyBytes because it is streamed (checked before the protocol is known).
func (h *Handler) mayStream(method []byte) bool {
	switch string(method) {
	case "RPC_IN_DATA", "RPC_OUT_DATA":
		return true
	}
	for i := range h.cfg.Protocols {
		for _, m := range h.cfg.Protocols[i].StreamMethods {
			if string(method) == m {
				return true
			}
		}
	}
	return false
}

// channel is one streamed exchange, off the event loop.
type channel struct {
	h        *Handler
	kind     Channel
	endpoint int
	key      int32
	protocol int16
	idle     time.Duration
	https    bool
	listener int
	// respHeader is Route.ResponseHeader, added to the response head.
	respHeader []byte

	client  net.Conn
	raw     net.Conn // the client's socket under client (client itself without TLS)
	backend net.Conn // set once dialled, under mu
	beRaw   net.Conn // its socket (backend itself without TLS)

	head     []byte // the serialized request head
	rest     []byte // bytes read after the head, before the channel left the loop
	framing  Framing
	bodyLeft int64
	http10   bool
	isHEAD   bool

	last   atomic.Int64 // unix ns: the last byte moved either way
	closed atomic.Bool

	// For the access log (rec nil when it is off): the record, owned,
	// logged on the channel's loop when the channel ends.
	rec       *AccessRecord
	ls        *loopState
	start     time.Time
	backendAt time.Time // the backend connection is ready
	status    int
	in, out   atomic.Int64 // bytes read from and written to the client
	reason    atomic.Pointer[Reject]
	mu        sync.Mutex
}

// channels is the handler's registry of open channels, for CloseChannels.
type channels struct {
	mu sync.Mutex
	m  map[*channel]struct{}
}

// ChannelInfo describes an open channel to CloseChannels' filter.
type ChannelInfo struct {
	Kind     Channel
	Endpoint int   // Config.Endpoints index
	Key      int32 // Route.Key
	Protocol int   // Protocol.Index
}

// CloseChannels closes the open channels for which close returns true
// (all of them when close is nil): their clients see the connection end
// and open new ones, which are routed afresh. The gateway closes the
// channels whose mailbox database moved to another server, and all of
// them when it stops. Safe from any goroutine; close must not block.
func (h *Handler) CloseChannels(close func(ChannelInfo) bool) int {
	h.chans.mu.Lock()
	var victims []*channel
	for ch := range h.chans.m {
		if close == nil || close(ChannelInfo{Kind: ch.kind, Endpoint: ch.endpoint, Key: ch.key, Protocol: int(ch.protocol)}) {
			victims = append(victims, ch)
		}
	}
	h.chans.mu.Unlock()
	for _, ch := range victims {
		ch.close(rejChannelMoved)
	}
	return len(victims)
}

// OpenChannels returns the number of open channels to endpoint i.
func (h *Handler) OpenChannels(i int) int64 {
	if i < len(h.stats.ChannelsOpen) {
		return h.stats.ChannelsOpen[i].Load()
	}
	return 0
}

// startChannel hands a routed request to a channel. It runs in readHead,
// with the head at buf[:end] still in the connection's buffer.
func (s *session) startChannel(h *RequestHead, fields Fields, proto *Protocol, route Route, kind Channel, end int) (gnet.Action, bool) {
	ls := s.ls
	hd := ls.h
	cfg := &hd.cfg
	if !s.inTraffic {
		// Woken from another callback (a credential verified off the
		// loop): gnet's Close from here is asynchronous, and gnet could
		// read the socket once more meanwhile. Route again from this
		// connection's own OnTraffic, which can close synchronously.
		s.state = stHead
		hd.stats.Requests.Add(-1) // counted when it is routed again
		_ = s.Conn.Wake(nil)
		return gnet.None, false
	}
	refuse := func(r *Reject, body string) (gnet.Action, bool) {
		hd.stats.reject(r.Reason)
		ls.logReject(s, r.Reason, r.Status)
		s.closeAfter = true
		s.Disarm()
		s.writeLocal(r.Status, body, hd.retryAfter)
		ls.finishNoStream(s, h.Method, h.Target, route.User, int64(end), 0, r.Status, r.Reason, true)
		s.io.Discard(end)
		return s.linger(), false
	}
	if s.io.OutboundBuffered() > 0 {
		// A response before this one is still being flushed to the
		// client: the socket cannot change hands with bytes queued in
		// gnet. (Outlook opens a channel on a fresh connection.)
		return refuse(rejChannelSetup, "the previous response is still being sent: retry on a new connection")
	}
	slots := &hd.stats.ChannelsOpen[route.Endpoint]
	if slots.Add(1) > int64(cfg.MaxChannelsPerServer) {
		slots.Add(-1)
		return refuse(rejChannelLimit, "too many long-lived channels to this mailbox server")
	}
	ep := &cfg.Endpoints[route.Endpoint]
	ch := &channel{h: hd, kind: kind, endpoint: route.Endpoint, key: route.Key, protocol: int16(proto.Index),
		https: s.https, listener: s.Listener.Index, framing: h.Framing, bodyLeft: h.ContentLength,
		http10: h.HTTP10, isHEAD: string(h.Method) == "HEAD", idle: cfg.RPCChannelIdle}
	if kind == ChannelNotificationWait {
		ch.idle = cfg.NotificationWaitIdle
	}
	ch.head = ls.appendRequestHead(nil, h, fields, s, ep.Addr, proto.StripFields, route.Identity)
	ch.respHeader = route.ResponseHeader
	ch.start = time.Now()
	ch.in.Store(int64(end))
	if ls.alog != nil {
		target := h.Target
		if len(target) > maxLoggedTarget {
			target = target[:maxLoggedTarget]
		}
		r := ls.record(s, proto.Index, bytes.Clone(h.Method), bytes.Clone(target), 0, "")
		ch.rec, ch.ls = new(AccessRecord), ls
		*ch.rec = *r
		*r = AccessRecord{}
		ch.rec.User, ch.rec.Server = route.User, ep.Name
	}
	buf, _ := s.io.Peek(-1)
	ch.rest = bytes.Clone(buf[end:])
	ch.in.Add(int64(len(ch.rest)))
	client, raw, err := s.detach()
	if err != nil {
		// The request's bytes may be gone already (detach discards
		// them): close, and the client retries on a new connection.
		slots.Add(-1)
		hd.stats.reject(rejChannelSetup.Reason)
		hd.log.Warn("channel: the client connection could not leave its event loop", "err", err)
		s.Disarm()
		s.state = stClosed
		return gnet.Close, false
	}
	if h.ExpectContinue {
		// As for any request: the gateway answers the expectation.
		_, _ = client.Write(continueResponse)
	}
	ch.client, ch.raw = client, raw
	ch.touch()
	s.Disarm()
	hd.stats.ChannelsTotal.Add(1)
	hd.chans.mu.Lock()
	if hd.chans.m == nil {
		hd.chans.m = make(map[*channel]struct{})
	}
	hd.chans.m[ch] = struct{}{}
	hd.chans.mu.Unlock()
	go ch.run()
	// gnet closes its descriptor when OnTraffic returns; the duplicate
	// lives on in the channel.
	s.state = stClosed
	return gnet.Close, false
}

// detach duplicates the client's socket for blocking use and drops what
// gnet (or the TLS layer) buffered, which the caller copied.
func (s *session) detach() (conn, raw net.Conn, err error) {
	fd, err := s.Conn.Dup()
	if err != nil {
		return nil, nil, err
	}
	f := os.NewFile(uintptr(fd), "client")
	nc, err := net.FileConn(f)
	_ = f.Close()
	if err != nil {
		return nil, nil, err
	}
	_, _ = s.io.Discard(-1) // everything: it was copied
	if s.tls != nil {
		c, err := s.tls.Detach(nc)
		if err != nil {
			_ = nc.Close()
			return nil, nil, err
		}
		return c, nc, nil
	}
	return nc, nc, nil
}

func (ch *channel) touch() { ch.last.Store(time.Now().UnixNano()) }

// close ends the channel (idempotent): both sockets close, which unblocks
// both goroutines.
func (ch *channel) close(r *Reject) {
	if r != nil {
		ch.reason.CompareAndSwap(nil, r)
	}
	if ch.closed.Swap(true) {
		return
	}
	ch.mu.Lock()
	be := ch.beRaw
	ch.mu.Unlock()
	if be != nil {
		_ = be.Close()
	}
	// The socket itself, not a TLS close_notify, which could wait for
	// a client that does not read (a completed response sent its own).
	_ = ch.raw.Close()
}

// run dials the backend and relays the response; a second goroutine
// relays the request body.
func (ch *channel) run() {
	h := ch.h
	defer func() {
		ch.close(nil)
		h.chans.mu.Lock()
		delete(h.chans.m, ch)
		h.chans.mu.Unlock()
		if r := ch.reason.Load(); r != nil {
			h.stats.reject(r.Reason)
		}
		ch.logAccess()
		h.stats.ChannelsOpen[ch.endpoint].Add(-1)
	}()
	ep := &h.cfg.Endpoints[ch.endpoint]
	be, beRaw, err := ch.dial(ep)
	if err != nil {
		if ep.Health != nil {
			ep.Health.Failure("connect failed")
		}
		ch.reason.CompareAndSwap(nil, rejBackendDown)
		out := appendLocalResponse(nil, 502, "mailbox server unavailable: "+rejBackendDown.Reason, nil, nil, true)
		_ = ch.client.SetWriteDeadline(time.Now().Add(h.cfg.WriteTimeout))
		_, _ = ch.client.Write(out)
		ch.out.Add(int64(len(out)))
		ch.status = 502
		h.stats.response(ch.protocol, 502)
		return
	}
	ch.backendAt = time.Now()
	ch.mu.Lock()
	ch.backend, ch.beRaw = be, beRaw
	ch.mu.Unlock()
	if ch.closed.Load() {
		_ = beRaw.Close()
		return
	}
	go ch.upstream()
	ch.downstream()
}

func (ch *channel) dial(ep *Endpoint) (conn, raw net.Conn, err error) {
	timeout := ch.h.cfg.Pool.ConnectTimeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", ep.Addr)
	if err != nil {
		return nil, nil, err
	}
	if ep.TLS == nil {
		return nc, nc, nil
	}
	// As the pool: connect_timeout for the dial, and again for the
	// handshake.
	hctx, hcancel := context.WithTimeout(context.Background(), timeout)
	defer hcancel()
	tc := tls.Client(nc, ep.TLS.Current())
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = nc.Close()
		return nil, nil, err
	}
	return tc, nc, nil
}

// read reads c, giving up when nothing moved either way for the idle time.
func (ch *channel) read(c net.Conn, p []byte) (int, error) {
	for {
		_ = c.SetReadDeadline(time.Unix(0, ch.last.Load()).Add(ch.idle))
		n, err := c.Read(p)
		if n > 0 {
			ch.touch()
		}
		if n == 0 && isTimeout(err) && !ch.closed.Load() {
			if time.Since(time.Unix(0, ch.last.Load())) < ch.idle {
				continue // the other direction was busy
			}
			return 0, errChannelIdle
		}
		return n, err
	}
}

// write writes all of p to c; a peer that takes nothing for the idle time
// ends the channel.
func (ch *channel) write(c net.Conn, p []byte) error {
	for len(p) > 0 {
		_ = c.SetWriteDeadline(time.Now().Add(ch.idle))
		n, err := c.Write(p)
		p = p[n:]
		if n > 0 {
			ch.touch()
			if c == ch.client {
				ch.out.Add(int64(n))
			}
		}
		if err != nil {
			if isTimeout(err) && n > 0 && !ch.closed.Load() {
				continue
			}
			if isTimeout(err) {
				return errChannelIdle
			}
			return err
		}
	}
	return nil
}

// logAccess sends the channel's access record to its loop's log.
func (ch *channel) logAccess() {
	r := ch.rec
	if r == nil {
		return
	}
	r.Status = ch.status
	if rej := ch.reason.Load(); rej != nil {
		r.Error = rej.Reason
	}
	r.RequestBytes, r.ResponseBytes = ch.in.Load(), ch.out.Load()
	r.Duration = time.Since(ch.start)
	if !ch.backendAt.IsZero() {
		r.Backend = time.Since(ch.backendAt)
	}
	ls := ch.ls
	_ = ls.lp.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		ls.alog.Log(r)
		return nil
	}))
}

func isTimeout(err error) bool {
	var ne net.Error
	return err != nil && errors.As(err, &ne) && ne.Timeout()
}

// fail closes the channel for err, counted as idle or as closed.
func (ch *channel) fail(err error) {
	if errors.Is(err, errChannelIdle) {
		ch.close(rejChannelIdle)
		return
	}
	ch.close(nil)
}

// reader adapts a channel side to io.Reader with the idle rule.
type chanReader struct {
	ch *channel
	c  net.Conn
}

func (r chanReader) Read(p []byte) (int, error) { return r.ch.read(r.c, p) }

// upstream relays the request: its head, then its body as it arrives,
// through one buffer of ChannelBufferBytes. After the body, the client's
// connection is only watched for its end (the response closes it).
func (ch *channel) upstream() {
	be := ch.backend
	if err := ch.write(be, ch.head); err != nil {
		ch.fail(err)
		return
	}
	ch.head = nil
	var dec ChunkedDecoder
	var out []byte
	done := ch.framing == FramingNone
	// relay forwards body bytes from p and reports the body's end.
	relay := func(p []byte) error {
		for len(p) > 0 && !done {
			if ch.framing == FramingLength {
				n := int64(len(p))
				if n > ch.bodyLeft {
					n = ch.bodyLeft
				}
				if err := ch.write(be, p[:n]); err != nil {
					return err
				}
				p = p[n:]
				if ch.bodyLeft -= n; ch.bodyLeft == 0 {
					done = true
				}
				continue
			}
			n, data, err := dec.Decode(p)
			if err != nil {
				return err
			}
			if len(data) > 0 {
				// Re-encoded without extensions, as on the loop.
				out = appendHex(out[:0], uint64(len(data)))
				out = append(out, '\r', '\n')
				if err := ch.write(be, out); err != nil {
					return err
				}
				if err := ch.write(be, data); err != nil {
					return err
				}
				if err := ch.write(be, crlf); err != nil {
					return err
				}
			}
			p = p[n:]
			if dec.Done() {
				done = true
				if err := ch.write(be, lastChunk); err != nil {
					return err
				}
			}
			if n == 0 {
				break
			}
		}
		return nil
	}
	if err := relay(ch.rest); err != nil {
		ch.fail(err)
		return
	}
	ch.rest = nil
	buf := make([]byte, ch.h.cfg.ChannelBufferBytes)
	for {
		n, err := ch.read(ch.client, buf)
		ch.in.Add(int64(n))
		if n > 0 && !done {
			if werr := relay(buf[:n]); werr != nil {
				ch.fail(werr)
				return
			}
		}
		if err != nil {
			// The client ended (or the channel was closed): nothing more
			// can be relayed either way.
			ch.fail(err)
			return
		}
	}
}

// downstream relays the response: its head, rewritten like any other
// response's and saying Connection: close, then its body as it arrives.
func (ch *channel) downstream() {
	h := ch.h
	br := bufio.NewReaderSize(chanReader{ch, ch.backend}, ch.h.cfg.ChannelBufferBytes)
	var resp fasthttp.ResponseHeader
	resp.SetNoDefaultContentType(true)
	var status int
	for {
		resp.Reset()
		resp.SetNoDefaultContentType(true)
		if err := resp.Read(br); err != nil {
			if !ch.closed.Load() && !errors.Is(err, errChannelIdle) {
				ch.reason.CompareAndSwap(nil, rejBadResponse)
			}
			ch.fail(err)
			return
		}
		if status = resp.StatusCode(); status >= 200 {
			break
		}
		if status == 101 {
			ch.reason.CompareAndSwap(nil, rejBadResponse)
			ch.close(nil)
			return
		}
	}
	framing, left := FramingNone, int64(0)
	untilClose := false
	switch cl := resp.ContentLength(); {
	case ch.isHEAD || status == 204 || status == 304:
	case cl == -1:
		framing = FramingChunked
	case cl > 0:
		framing, left = FramingLength, int64(cl)
	case cl == 0:
	default:
		// Delimited by the server closing: fine on a connection of its
		// own, and the client's closes with it.
		untilClose = true
	}
	dechunk := ch.http10 && framing == FramingChunked
	head := h.appendChannelResponseHead(nil, &resp, ch, framing == FramingChunked && !dechunk)
	if err := ch.write(ch.client, head); err != nil {
		ch.fail(err)
		return
	}
	ch.status = status
	h.stats.response(ch.protocol, status)
	if ep := h.cfg.Endpoints[ch.endpoint].Health; ep != nil && status < 500 {
		ep.Success()
	}
	// The body is relayed from br's own buffer: one buffer for this
	// direction, filled by one read at a time.
	var dec ChunkedDecoder
	for framing != FramingNone || untilClose {
		var err error
		if br.Buffered() == 0 {
			_, err = br.Peek(1)
		}
		p, _ := br.Peek(br.Buffered())
		_, _ = br.Discard(len(p)) // p stays valid until the next Peek
		switch {
		case untilClose:
		case framing == FramingLength:
			if int64(len(p)) > left {
				p = p[:left]
			}
			left -= int64(len(p))
		default:
			k := 0
			for k < len(p) && !dec.Done() {
				m, data, derr := dec.Decode(p[k:])
				if derr != nil {
					ch.reason.CompareAndSwap(nil, rejBadResponse)
					ch.close(nil)
					return
				}
				if dechunk && len(data) > 0 {
					if werr := ch.write(ch.client, data); werr != nil {
						ch.fail(werr)
						return
					}
				}
				if m == 0 {
					break
				}
				k += m
			}
			p = p[:k]
			if dechunk {
				p = nil
			}
		}
		if len(p) > 0 {
			if werr := ch.write(ch.client, p); werr != nil {
				ch.fail(werr)
				return
			}
		}
		if framing == FramingLength && left == 0 || framing == FramingChunked && dec.Done() {
			break
		}
		if err != nil {
			if untilClose && err == io.EOF {
				break
			}
			ch.fail(err)
			return
		}
	}
	// The response is complete; the connection ends with it (it said so).
	// Over TLS (crypto/tls's connection or tlsterm's own record layer,
	// both with CloseWrite) close_notify goes first; over plaintext client
	// is the raw socket, which the close below ends.
	if tc, ok := ch.client.(interface{ CloseWrite() error }); ok && ch.client != ch.raw {
		_ = ch.client.SetWriteDeadline(time.Now().Add(time.Second))
		_ = tc.CloseWrite()
	}
	ch.close(nil)
}

// appendChannelResponseHead is appendResponseHead for a channel, off the
// loop: hop-by-hop fields dropped, HSTS added on TLS listeners, and always
// Connection: close.
func (h *Handler) appendChannelResponseHead(dst []byte, resp *fasthttp.ResponseHeader, ch *channel, chunked bool) []byte {
	dst, sawHSTS := appendRelayedHead(dst, resp, nil)
	dst = h.appendHSTS(dst, ch.https, ch.listener, sawHSTS)
	dst = append(dst, ch.respHeader...)
	if chunked {
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	}
	dst = append(dst, "Connection: close\r\n"...)
	return append(dst, "\r\n"...)
}
