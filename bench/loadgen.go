package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Header is one request header field, sent exactly as given.
type Header struct {
	Name, Value string
}

// Request describes the single request a load-generator run sends over and
// over. It is serialised once, before the run; the hot path only writes
// those bytes.
type Request struct {
	Method string   // default "GET"
	Path   string   // request target; default "/"
	Host   string   // Host header; default the target address
	Header []Header // extra header fields, in order
	Body   []byte   // sent with a Content-Length header when non-empty
}

// Marshal returns the request's wire form. defaultHost is used when r.Host
// is empty. It refuses fields that would let one request smuggle another
// (CR, LF or NUL anywhere, spaces in the method or target).
func (r Request) Marshal(defaultHost string) ([]byte, error) {
	method := r.Method
	if method == "" {
		method = "GET"
	}
	path := r.Path
	if path == "" {
		path = "/"
	}
	host := r.Host
	if host == "" {
		host = defaultHost
	}
	if strings.ContainsAny(method, " \r\n\x00") || strings.ContainsAny(path, " \r\n\x00") ||
		strings.ContainsAny(host, "\r\n\x00") {
		return nil, fmt.Errorf("bench: invalid character in request line or Host")
	}
	var b strings.Builder
	b.WriteString(method + " " + path + " HTTP/1.1\r\nHost: " + host + "\r\n")
	hasCL := false
	for _, h := range r.Header {
		if h.Name == "" || strings.ContainsAny(h.Name, " :\r\n\x00") || strings.ContainsAny(h.Value, "\r\n\x00") {
			return nil, fmt.Errorf("bench: invalid header %q", h.Name)
		}
		if strings.EqualFold(h.Name, "Content-Length") {
			hasCL = true
		}
		b.WriteString(h.Name + ": " + h.Value + "\r\n")
	}
	if len(r.Body) > 0 && !hasCL {
		b.WriteString("Content-Length: " + strconv.Itoa(len(r.Body)) + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(r.Body)
	return []byte(b.String()), nil
}

// Variants is a list of requests that successive requests cycle through
// in place of Options.Request, for workloads whose requests must differ
// (every request a different user's first login, say). One counter, shared
// by the connections of a run and by every run given the same Variants,
// picks the next request: request i is sent again only after all the
// others, and a measured run continues where its warm-up stopped. Each
// variant is serialised once per run; the hot path adds one atomic
// increment per write.
type Variants struct {
	Requests []Request
	next     atomic.Uint64
}

// Sent returns how many requests have been taken from v so far (sent, or
// about to be).
func (v *Variants) Sent() uint64 { return v.next.Load() }

// Options configures one load-generator run.
type Options struct {
	// Addr is the target host:port.
	Addr string
	// Request is what every request looks like, unless Variants is set.
	Request Request
	// Variants, if it holds any request, replaces Request: see Variants.
	Variants *Variants
	// Conns is the number of concurrent client connections (default 1).
	// Each connection is driven by its own goroutine: blocking reads and
	// writes on a net.Conn are simple to get right and cost one parked
	// goroutine, and the Go netpoller turns them into epoll anyway.
	Conns int
	// Pipeline is how many requests each connection keeps outstanding
	// (default 1: classic keep-alive, one request at a time).
	Pipeline int
	// Duration bounds the run in time: after it no new request is sent and
	// outstanding ones are drained (bounded by IOTimeout).
	Duration time.Duration
	// Requests bounds the run in count; it is split evenly over the
	// connections up front, so no counter is shared on the hot path. Failed
	// connection attempts use up budget too, so a dead target cannot make a
	// count-bounded run loop forever. At least one of Duration and Requests
	// must be set; with both, whichever is reached first ends the run.
	Requests int64
	// RequestsPerConn, if positive, closes a connection after that many
	// requests and opens a fresh one: connection churn, as many short-lived
	// clients cause. 0 keeps every connection for the whole run.
	RequestsPerConn int
	// LocalAddrs optionally lists source IPs (e.g. 127.0.0.2, 127.0.0.3)
	// that connections are spread over round-robin. Every source IP has its
	// own ephemeral-port space, which matters for large connection counts
	// and for churn, where TIME_WAIT sockets pin ports.
	LocalAddrs []string
	// DialTimeout bounds each connection attempt (default 5s).
	DialTimeout time.Duration
	// IOTimeout bounds how long a connection waits for the server to make
	// progress (accept a write, send a byte) before it counts a timeout for
	// its outstanding requests and reconnects (default 10s).
	IOTimeout time.Duration
	// ReadBufferSize is each connection's read buffer (default 16 KiB). A
	// response header block must fit in it; bodies stream through it.
	ReadBufferSize int
	// TLS, if set, makes every connection a TLS client connection: the
	// handshake runs right after the dial, bounded by DialTimeout, and a
	// failed one counts in ErrorCounts.Handshake. Run uses a clone of the
	// config (ServerName defaults to the host of Addr), so set
	// InsecureSkipVerify or RootCAs as the server needs. With a
	// ClientSessionCache, connections after the first resume the session
	// (TLS 1.3 tickets arrive with the first response, so a connection
	// resumes once an earlier one has read a response); Result.Resumed
	// counts them. The cache is shared, so a warm-up run can fill it.
	TLS *tls.Config
	// LatencyFromDial makes the first request on every connection count its
	// latency from the start of the dial, so that it includes the TCP
	// connect and the TLS handshake. Meant for RequestsPerConn = 1, where
	// it is the latency a client that connects per request sees.
	LatencyFromDial bool
	// OnConnect, if set, runs on every new connection before its first
	// measured request (e.g. authenticating it with HTTP Negotiate, which
	// holds for the connection); an error counts as a failed connection
	// attempt (Connect). It runs outside the measured latencies.
	OnConnect func(net.Conn) error
}

// ErrorCounts counts failed requests by cause. Every request the generator
// sends ends exactly once: as a success, or in one of these counters (a
// connection failure fails all requests outstanding on it), except Connect
// and Handshake, which count failed connection attempts.
type ErrorCounts struct {
	Connect   int64 `json:"connect"`   // dial failed
	Handshake int64 `json:"handshake"` // TLS handshake failed or timed out (see Options.TLS)
	Write     int64 `json:"write"`     // write failed (peer reset, closed)
	Read      int64 `json:"read"`      // read failed or peer closed with requests outstanding
	Timeout   int64 `json:"timeout"`   // no progress within IOTimeout
	Status    int64 `json:"status"`    // well-framed response with status >= 500
	Framing   int64 `json:"framing"`   // response could not be framed (see ErrFraming)
}

// Total returns the sum of all error counts.
func (e ErrorCounts) Total() int64 {
	return e.Connect + e.Handshake + e.Write + e.Read + e.Timeout + e.Status + e.Framing
}

func (e *ErrorCounts) add(o ErrorCounts) {
	e.Connect += o.Connect
	e.Handshake += o.Handshake
	e.Write += o.Write
	e.Read += o.Read
	e.Timeout += o.Timeout
	e.Status += o.Status
	e.Framing += o.Framing
}

// String formats the non-zero counts, e.g. "read=3 status=12", or "none".
func (e ErrorCounts) String() string {
	var parts []string
	for _, f := range []struct {
		name string
		n    int64
	}{{"connect", e.Connect}, {"handshake", e.Handshake}, {"write", e.Write}, {"read", e.Read}, {"timeout", e.Timeout}, {"status", e.Status}, {"framing", e.Framing}} {
		if f.n != 0 {
			parts = append(parts, f.name+"="+strconv.FormatInt(f.n, 10))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

// Result is the outcome of one run.
type Result struct {
	// Requests counts successful requests: a well-framed response with a
	// status below 500. Only these are in Latency.
	Requests int64
	// Errors counts failures by kind.
	Errors ErrorCounts
	// StatusClasses counts well-framed final responses by status class:
	// index 2 is 2xx, ..., 5 is 5xx. A benchmark whose 2xx count is not
	// Requests is measuring an error path (a 404 is fast) and says so.
	StatusClasses [6]int64
	// Dials counts connections successfully opened (with TLS: whose
	// handshake succeeded).
	Dials int64
	// Handshakes counts successful TLS handshakes, Resumed those of them
	// that resumed a session (tls.ConnectionState.DidResume). Both are 0
	// without Options.TLS.
	Handshakes, Resumed int64
	// TLSParams describes the first successful handshake, e.g. "TLS 1.3
	// TLS_AES_128_GCM_SHA256 X25519MLKEM768"; empty without TLS.
	TLSParams string
	// HandshakeLatency holds, per successful TLS connection, the time from
	// the start of the dial to the end of the handshake (TCP connect
	// included). Nil without Options.TLS.
	HandshakeLatency *Histogram
	// Elapsed is the wall time from the start of the run until the last
	// connection finished draining.
	Elapsed time.Duration
	// Latency holds the latency of every successful request: from the
	// write that sent it to the read that completed its response.
	Latency *Histogram
}

// HandshakesPerSecond is Handshakes divided by Elapsed.
func (r *Result) HandshakesPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Handshakes) / r.Elapsed.Seconds()
}

// RequestsPerSecond is Requests divided by Elapsed.
func (r *Result) RequestsPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// String summarises the result on one line, e.g.
// "61979 requests in 2.001s (30974 req/s), p50 1.36ms p99 6.08ms p99.9 11.0ms max 15.1ms, errors: none".
func (r *Result) String() string {
	return fmt.Sprintf("%d requests in %v (%.0f req/s), p50 %v p99 %v p99.9 %v max %v, errors: %v",
		r.Requests, r.Elapsed.Round(time.Millisecond), r.RequestsPerSecond(),
		r.Latency.Quantile(0.5).Round(time.Microsecond), r.Latency.Quantile(0.99).Round(time.Microsecond),
		r.Latency.Quantile(0.999).Round(time.Microsecond), r.Latency.Max().Round(time.Microsecond), r.Errors)
}

// Run drives load against opts.Addr until the duration or the request budget
// is used up, or ctx is cancelled (requests outstanding at cancellation are
// abandoned, not counted). It returns an error only for invalid options;
// everything that goes wrong on the wire is counted in the Result.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if opts.Duration <= 0 && opts.Requests <= 0 {
		return nil, errors.New("bench: a run needs a duration or a request count")
	}
	r, err := newRun(ctx, opts)
	if err != nil {
		return nil, err
	}
	opts = r.opts
	stopWatch := context.AfterFunc(ctx, func() { r.stop.Store(true) })
	defer stopWatch()

	workers := make([]*worker, opts.Conns)
	var wg sync.WaitGroup
	for i := range workers {
		budget := int64(-1) // unlimited
		if opts.Requests > 0 {
			budget = opts.Requests / int64(opts.Conns)
			if int64(i) < opts.Requests%int64(opts.Conns) {
				budget++
			}
			if budget == 0 {
				continue
			}
		}
		w := r.newWorker(r.dialers[i%len(r.dialers)], budget)
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop()
		}()
	}
	wg.Wait()
	return r.collect(workers), nil
}

// newRun checks opts, fills in the defaults and prepares what a run's
// workers share: the serialised request, the dialers and the TLS config.
func newRun(ctx context.Context, opts Options) (*run, error) {
	if opts.Addr == "" {
		return nil, errors.New("bench: no target address")
	}
	if opts.Conns <= 0 {
		opts.Conns = 1
	}
	if opts.Pipeline <= 0 {
		opts.Pipeline = 1
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.IOTimeout <= 0 {
		opts.IOTimeout = 10 * time.Second
	}
	if opts.ReadBufferSize <= 0 {
		opts.ReadBufferSize = 16 << 10
	}
	reqs := []Request{opts.Request}
	variants := opts.Variants
	if variants != nil && len(variants.Requests) > 0 {
		reqs = variants.Requests
	} else {
		variants = nil
	}
	wire, off, err := marshalRing(reqs, opts.Addr, opts.Pipeline)
	if err != nil {
		return nil, err
	}

	dialers := []*net.Dialer{{Timeout: opts.DialTimeout}}
	if len(opts.LocalAddrs) > 0 {
		dialers = dialers[:0]
		for _, a := range opts.LocalAddrs {
			ip := net.ParseIP(strings.TrimSpace(a))
			if ip == nil {
				return nil, fmt.Errorf("bench: bad source address %q", a)
			}
			dialers = append(dialers, &net.Dialer{Timeout: opts.DialTimeout, LocalAddr: &net.TCPAddr{IP: ip}})
		}
	}

	var tlsConf *tls.Config
	if opts.TLS != nil {
		// A clone, so that filling in ServerName does not touch the
		// caller's config; ClientSessionCache is an interface and stays
		// shared with it.
		tlsConf = opts.TLS.Clone()
		if tlsConf.ServerName == "" {
			host, _, err := net.SplitHostPort(opts.Addr)
			if err != nil {
				host = opts.Addr
			}
			tlsConf.ServerName = host
		}
	}

	head := strings.EqualFold(reqs[0].Method, "HEAD")
	for _, q := range reqs[1:] {
		if strings.EqualFold(q.Method, "HEAD") != head {
			return nil, errors.New("bench: variants must all be HEAD requests or none")
		}
	}
	return &run{
		opts:     opts,
		wire:     wire,
		off:      off,
		variants: variants,
		head:     head,
		dialers:  dialers,
		tls:      tlsConf,
		ctx:      ctx,
		t0:       time.Now(),
	}, nil
}

// marshalRing serialises reqs back to back, followed by the first
// pipeline-1 of them again (round-robin), and returns the bytes and the
// offset at which each request starts (plus the end of the last): the k
// requests from i on, i < len(reqs) and k <= pipeline, are the single
// slice wire[off[i]:off[i+k]], written with one call. With one request it
// is pipeline copies of it.
func marshalRing(reqs []Request, defaultHost string, pipeline int) (wire []byte, off []int, err error) {
	ones := make([][]byte, len(reqs))
	size := 0
	for i, q := range reqs {
		if ones[i], err = q.Marshal(defaultHost); err != nil {
			return nil, nil, err
		}
		size += len(ones[i])
	}
	n := len(reqs) + pipeline - 1
	wire = make([]byte, 0, size+(pipeline-1)*len(ones[0]))
	off = make([]int, 0, n+1)
	for i := range n {
		off = append(off, len(wire))
		wire = append(wire, ones[i%len(ones)]...)
	}
	off = append(off, len(wire))
	return wire, off, nil
}

// newWorker allocates a worker's buffers and histograms.
func (r *run) newWorker(d *net.Dialer, budget int64) *worker {
	w := &worker{
		run:    r,
		dialer: d,
		budget: budget,
		buf:    make([]byte, r.opts.ReadBufferSize),
		sent:   make([]time.Duration, r.opts.Pipeline),
		hist:   NewHistogram(),
	}
	if r.tls != nil {
		w.hsHist = NewHistogram()
	}
	w.parser.Head = r.head
	return w
}

// collect merges the workers' counters (nil workers are skipped) into a
// Result whose Elapsed ends now.
func (r *run) collect(workers []*worker) *Result {
	res := &Result{Elapsed: time.Since(r.t0), Latency: NewHistogram()}
	if r.tls != nil {
		res.HandshakeLatency = NewHistogram()
	}
	for _, w := range workers {
		if w == nil {
			continue
		}
		res.Requests += w.ok
		res.Errors.add(w.errs)
		res.Dials += w.dials
		res.Handshakes += w.handshakes
		res.Resumed += w.resumed
		if res.TLSParams == "" {
			res.TLSParams = w.tlsParams
		}
		for i, n := range w.classes {
			res.StatusClasses[i] += n
		}
		res.Latency.Merge(w.hist)
		if w.hsHist != nil {
			res.HandshakeLatency.Merge(w.hsHist)
		}
	}
	return res
}

// run is the state shared, read-only except for stop, by a run's workers.
type run struct {
	opts Options
	// wire holds the serialised requests (see marshalRing): k requests
	// starting with request i are wire[off[i]:off[i+k]].
	wire     []byte
	off      []int
	variants *Variants // nil: every request is wire[off[0]:off[1]]
	head     bool
	dialers  []*net.Dialer
	tls      *tls.Config // nil: plaintext
	ctx      context.Context
	t0       time.Time
	stop     atomic.Bool // ctx was cancelled
}

// take returns the wire bytes of the next k requests, k <= Pipeline.
func (r *run) take(k int) []byte {
	i := 0
	if v := r.variants; v != nil {
		n := uint64(len(r.off) - r.opts.Pipeline) // the number of variants
		i = int((v.next.Add(uint64(k)) - uint64(k)) % n)
	}
	return r.wire[r.off[i]:r.off[i+k]]
}

// since returns the monotonic time since the run started; it is the clock
// of the hot path (no allocation, no wall-clock reads).
func (r *run) since() time.Duration { return time.Since(r.t0) }

// over reports whether no new request may be sent.
func (r *run) over(now time.Duration) bool {
	return r.stop.Load() || (r.opts.Duration > 0 && now >= r.opts.Duration)
}

// cancelled reports whether ctx was cancelled. It also reads ctx.Err,
// because a dial or handshake interrupted by ctx can return before the
// AfterFunc that sets stop has run. Only for error paths: it takes a lock.
func (r *run) cancelled() bool {
	return r.stop.Load() || r.ctx.Err() != nil
}

// worker drives one client connection at a time (reconnecting after errors
// or after RequestsPerConn requests) and owns all its counters, so the hot
// path touches no shared memory but the read-mostly run.
type worker struct {
	run    *run
	dialer *net.Dialer
	budget int64 // requests left to send; -1 = unlimited

	buf    []byte
	sent   []time.Duration // ring: send time of each outstanding request
	parser ResponseParser
	hist   *Histogram
	hsHist *Histogram // dial start to handshake done; nil without TLS

	ok         int64
	errs       ErrorCounts
	classes    [6]int64
	dials      int64
	handshakes int64
	resumed    int64
	tlsParams  string

	deadlineAt time.Duration // run time at which the conn deadline was last pushed
}

func (w *worker) loop() {
	r := w.run
	backoff := 10 * time.Millisecond
	for w.budget != 0 && !r.over(r.since()) {
		conn, dialed := w.connect(w.dialer)
		if conn == nil {
			if r.cancelled() {
				return
			}
			if w.budget > 0 {
				w.budget--
			}
			// Back off so a refused port (or a server that refuses every
			// handshake) does not become a hot loop; the sleep ends early
			// at the end of the run or on cancellation.
			wait := backoff
			if r.opts.Duration > 0 {
				wait = min(wait, max(r.opts.Duration-r.since(), 0))
			}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-r.ctx.Done():
				t.Stop()
				return
			}
			backoff = min(backoff*2, 200*time.Millisecond)
			continue
		}
		backoff = 10 * time.Millisecond
		w.serve(conn, dialed)
		conn.Close()
	}
}

// connect opens one connection with d and, with TLS, completes the
// handshake. It returns the connection and the run time at which the dial
// started, or a nil connection after a failure, which it has counted unless
// the run was cancelled.
func (w *worker) connect(d *net.Dialer) (net.Conn, time.Duration) {
	r := w.run
	start := r.since()
	conn, err := d.DialContext(r.ctx, "tcp", r.opts.Addr)
	if err != nil {
		if !r.cancelled() {
			w.errs.Connect++
		}
		return nil, start
	}
	if r.tls == nil {
		if f := r.opts.OnConnect; f != nil {
			conn.SetDeadline(time.Now().Add(r.opts.IOTimeout)) // serve pushes its own
			if err := f(conn); err != nil {
				conn.Close()
				if !r.cancelled() {
					w.errs.Connect++
				}
				return nil, start
			}
		}
		w.dials++
		return conn, start
	}
	tc := tls.Client(conn, r.tls)
	conn.SetDeadline(time.Now().Add(r.opts.DialTimeout)) // serve pushes its own
	if err := tc.HandshakeContext(r.ctx); err != nil {
		conn.Close()
		if !r.cancelled() {
			w.errs.Handshake++
		}
		return nil, start
	}
	w.hsHist.Record(r.since() - start)
	w.dials++
	w.handshakes++
	st := tc.ConnectionState()
	if st.DidResume {
		w.resumed++
	}
	if w.tlsParams == "" {
		w.tlsParams = tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite) + " " + st.CurveID.String()
	}
	return tc, start
}

// serve runs requests on one connection until the run is over, the budget
// or per-connection limit is used up, or the connection fails. dialed is
// the run time at which the connection's dial started (for
// LatencyFromDial). It reports whether the connection is still usable:
// every request sent was answered and neither side ended the connection.
// The caller closes conn. This is the hot path: it must not allocate.
func (w *worker) serve(conn net.Conn, dialed time.Duration) (usable bool) {
	r := w.run
	unwatch := context.AfterFunc(r.ctx, func() {
		// Unblock a read or write in progress. AfterFuncs run in their own
		// goroutines in no set order, so set r.stop here too, before the
		// deadline: pushDeadline relies on that order.
		r.stop.Store(true)
		conn.SetDeadline(time.Unix(1, 0))
	})
	defer unwatch()

	w.parser.Reset()
	w.deadlineAt = -r.opts.IOTimeout // force the first push
	var (
		pipeline    = len(w.sent)
		outstanding int // requests sent and not yet answered
		first       int // index in sent of the oldest outstanding request
		perConn     int // requests sent on this connection
		rd, wr      int // unparsed input is buf[rd:wr]
		draining    bool
	)
	for {
		now := r.since()
		if !draining && r.over(now) {
			draining = true
		}
		if !draining {
			k := pipeline - outstanding
			if w.budget >= 0 && int64(k) > w.budget {
				k = int(w.budget)
			}
			if lim := r.opts.RequestsPerConn; lim > 0 && k > lim-perConn {
				k = lim - perConn
			}
			if k > 0 {
				if !w.pushDeadline(conn, now) {
					return false
				}
				if _, err := conn.Write(r.take(k)); err != nil {
					w.fail(err, &w.errs.Write, outstanding+k)
					return false
				}
				for j := range k {
					w.sent[(first+outstanding+j)%pipeline] = now
				}
				if perConn == 0 && r.opts.LatencyFromDial {
					w.sent[first] = dialed // outstanding is 0: the first request is at first
				}
				outstanding += k
				perConn += k
				if w.budget > 0 {
					w.budget -= int64(k)
				}
			}
		}
		if outstanding == 0 {
			return true // finished with this connection; the caller decides whether to redial
		}

		if !w.pushDeadline(conn, now) {
			return false
		}
		n, err := conn.Read(w.buf[wr:])
		wr += n
		if n > 0 {
			now = r.since()
			for rd < wr {
				c, done, perr := w.parser.Parse(w.buf[rd:wr])
				rd += c
				if perr != nil {
					w.errs.Framing += int64(outstanding)
					return false
				}
				if !done {
					if c == 0 {
						break // need more input
					}
					continue
				}
				if outstanding == 0 {
					w.errs.Framing++ // a response nobody asked for
					return false
				}
				status := w.parser.Status()
				w.classes[min(status/100, 5)]++
				if status >= 500 {
					w.errs.Status++
				} else {
					w.ok++
					w.hist.Record(now - w.sent[first])
				}
				first = (first + 1) % pipeline
				outstanding--
				if w.parser.Close() {
					// The server ends the connection after this response;
					// requests pipelined behind it will never be answered.
					w.errs.Read += int64(outstanding)
					return false
				}
			}
			switch {
			case rd == wr:
				rd, wr = 0, 0
			case rd > 0:
				// Keep the partial header block or chunk line at the front;
				// it is short (bodies are consumed as they arrive).
				wr = copy(w.buf, w.buf[rd:wr])
				rd = 0
			case wr == len(w.buf):
				// A header block or chunk line fills the whole buffer.
				w.errs.Framing += int64(outstanding)
				return false
			}
		}
		if err != nil {
			if outstanding == 0 && errors.Is(err, io.EOF) {
				return false // closed right after our last answer: not a failure
			}
			w.fail(err, &w.errs.Read, outstanding)
			return false
		}
	}
}

// pushDeadline keeps the connection deadline at least 3/4 IOTimeout in the
// future. Moving it on every read and write would cost a timer update each
// time; pushing it once per quarter timeout costs nothing measurable. It
// returns false if the run was cancelled, which must be checked after moving
// the deadline: cancellation sets r.stop and then a past deadline, so either
// our new deadline is overwritten or we see the flag here.
func (w *worker) pushDeadline(conn net.Conn, now time.Duration) bool {
	r := w.run
	if now-w.deadlineAt >= r.opts.IOTimeout/4 {
		w.deadlineAt = now
		conn.SetDeadline(time.Now().Add(r.opts.IOTimeout))
	}
	return !r.stop.Load()
}

// fail counts n failed requests against counter, unless the run was
// cancelled (then the error is ours, not the server's) and classifying
// deadline expiry as a timeout.
func (w *worker) fail(err error, counter *int64, n int) {
	if w.run.stop.Load() || n == 0 {
		return
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		counter = &w.errs.Timeout
	}
	*counter += int64(n)
}

// IdleConns is a set of open, idle keep-alive connections made by
// OpenIdle, for measuring what idle connections cost a server.
type IdleConns struct {
	conns []net.Conn
	// Result describes the opening: Requests counts the connections held
	// (each carried one successful request), Errors the attempts and
	// requests that failed, Elapsed the time it took to open them all.
	Result *Result
}

// Len returns the number of connections held.
func (ic *IdleConns) Len() int { return len(ic.conns) }

// Close closes every connection held (with TLS, after a close_notify
// alert, which crypto/tls bounds with its own 5 s write deadline).
func (ic *IdleConns) Close() {
	for _, c := range ic.conns {
		c.Close()
	}
	ic.conns = nil
}

// OpenIdle opens n connections to opts.Addr, opts.Conns at a time. Each
// one (after its TLS handshake, with opts.TLS) sends opts.Request once and
// reads the response, so that the server holds it as a real keep-alive
// connection rather than a fresh accept, and is then left open and idle.
// Connections whose request fails are closed, not retried, so OpenIdle
// makes at most n attempts. opts.LocalAddrs are used round-robin per
// connection; Pipeline, RequestsPerConn, Requests and Duration are
// ignored. Cancelling ctx stops the opening; what was opened is returned
// and must still be closed.
func OpenIdle(ctx context.Context, opts Options, n int) (*IdleConns, error) {
	if n <= 0 {
		return nil, errors.New("bench: OpenIdle needs a positive connection count")
	}
	opts.Pipeline, opts.RequestsPerConn, opts.Requests, opts.Duration = 1, 1, int64(n), 0
	r, err := newRun(ctx, opts)
	if err != nil {
		return nil, err
	}
	stopWatch := context.AfterFunc(ctx, func() { r.stop.Store(true) })
	defer stopWatch()

	openers := min(r.opts.Conns, n)
	workers := make([]*worker, openers)
	held := make([][]net.Conn, openers)
	var wg sync.WaitGroup
	for i := range workers {
		count := n / openers
		if i < n%openers {
			count++
		}
		w := r.newWorker(nil, 0)
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range count {
				if r.cancelled() {
					return
				}
				d := r.dialers[(i+k*openers)%len(r.dialers)]
				conn, dialed := w.connect(d)
				if conn == nil {
					continue
				}
				ok := w.ok
				w.budget = 1
				if w.serve(conn, dialed) && w.ok > ok {
					conn.SetDeadline(time.Time{}) // idle until closed
					held[i] = append(held[i], conn)
				} else {
					conn.Close()
				}
			}
		}()
	}
	wg.Wait()
	ic := &IdleConns{Result: r.collect(workers)}
	for _, h := range held {
		ic.conns = append(ic.conns, h...)
	}
	return ic, nil
}
