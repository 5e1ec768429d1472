package bench

import (
	"context"
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

// Options configures one load-generator run.
type Options struct {
	// Addr is the target host:port.
	Addr string
	// Request is what every request looks like.
	Request Request
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
}

// ErrorCounts counts failed requests by cause. Every request the generator
// sends ends exactly once: as a success, or in one of these counters (a
// connection failure fails all requests outstanding on it), except Connect,
// which counts failed connection attempts.
type ErrorCounts struct {
	Connect int64 `json:"connect"` // dial failed
	Write   int64 `json:"write"`   // write failed (peer reset, closed)
	Read    int64 `json:"read"`    // read failed or peer closed with requests outstanding
	Timeout int64 `json:"timeout"` // no progress within IOTimeout
	Status  int64 `json:"status"`  // well-framed response with status >= 500
	Framing int64 `json:"framing"` // response could not be framed (see ErrFraming)
}

// Total returns the sum of all error counts.
func (e ErrorCounts) Total() int64 {
	return e.Connect + e.Write + e.Read + e.Timeout + e.Status + e.Framing
}

func (e *ErrorCounts) add(o ErrorCounts) {
	e.Connect += o.Connect
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
	}{{"connect", e.Connect}, {"write", e.Write}, {"read", e.Read}, {"timeout", e.Timeout}, {"status", e.Status}, {"framing", e.Framing}} {
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
	// Dials counts connections successfully opened.
	Dials int64
	// Elapsed is the wall time from the start of the run until the last
	// connection finished draining.
	Elapsed time.Duration
	// Latency holds the latency of every successful request: from the
	// write that sent it to the read that completed its response.
	Latency *Histogram
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
	if opts.Addr == "" {
		return nil, errors.New("bench: no target address")
	}
	if opts.Duration <= 0 && opts.Requests <= 0 {
		return nil, errors.New("bench: a run needs a duration or a request count")
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
	one, err := opts.Request.Marshal(opts.Addr)
	if err != nil {
		return nil, err
	}
	// Pipeline copies back to back: sending k requests is one write of the
	// first k*len(one) bytes.
	wire := make([]byte, 0, len(one)*opts.Pipeline)
	for range opts.Pipeline {
		wire = append(wire, one...)
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

	r := &run{
		opts:   opts,
		wire:   wire,
		reqLen: len(one),
		head:   strings.EqualFold(opts.Request.Method, "HEAD"),
		ctx:    ctx,
		t0:     time.Now(),
	}
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
		w := &worker{
			run:    r,
			dialer: dialers[i%len(dialers)],
			budget: budget,
			buf:    make([]byte, opts.ReadBufferSize),
			sent:   make([]time.Duration, opts.Pipeline),
			hist:   NewHistogram(),
		}
		w.parser.Head = r.head
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop()
		}()
	}
	wg.Wait()

	res := &Result{Elapsed: time.Since(r.t0), Latency: NewHistogram()}
	for _, w := range workers {
		if w == nil {
			continue
		}
		res.Requests += w.ok
		res.Errors.add(w.errs)
		res.Dials += w.dials
		for i, n := range w.classes {
			res.StatusClasses[i] += n
		}
		res.Latency.Merge(w.hist)
	}
	return res, nil
}

// run is the state shared, read-only except for stop, by a run's workers.
type run struct {
	opts   Options
	wire   []byte // Pipeline serialised copies of the request
	reqLen int
	head   bool
	ctx    context.Context
	t0     time.Time
	stop   atomic.Bool // ctx was cancelled
}

// since returns the monotonic time since the run started; it is the clock
// of the hot path (no allocation, no wall-clock reads).
func (r *run) since() time.Duration { return time.Since(r.t0) }

// over reports whether no new request may be sent.
func (r *run) over(now time.Duration) bool {
	return r.stop.Load() || (r.opts.Duration > 0 && now >= r.opts.Duration)
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

	ok      int64
	errs    ErrorCounts
	classes [6]int64
	dials   int64

	deadlineAt time.Duration // run time at which the conn deadline was last pushed
}

func (w *worker) loop() {
	r := w.run
	backoff := 10 * time.Millisecond
	for w.budget != 0 && !r.over(r.since()) {
		conn, err := w.dialer.DialContext(r.ctx, "tcp", r.opts.Addr)
		if err != nil {
			if r.stop.Load() {
				return
			}
			w.errs.Connect++
			if w.budget > 0 {
				w.budget--
			}
			// Back off so a refused port does not become a hot loop; the
			// sleep ends early at the end of the run or on cancellation.
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
		w.dials++
		w.serve(conn)
	}
}

// serve runs requests on one connection until the run is over, the budget
// or per-connection limit is used up, or the connection fails. It closes
// conn. This is the hot path: it must not allocate.
func (w *worker) serve(conn net.Conn) {
	r := w.run
	unwatch := context.AfterFunc(r.ctx, func() {
		// Unblock a read or write in progress. AfterFuncs run in their own
		// goroutines in no set order, so set r.stop here too, before the
		// deadline: pushDeadline relies on that order.
		r.stop.Store(true)
		conn.SetDeadline(time.Unix(1, 0))
	})
	defer func() {
		unwatch()
		conn.Close()
	}()

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
					return
				}
				if _, err := conn.Write(r.wire[:k*r.reqLen]); err != nil {
					w.fail(err, &w.errs.Write, outstanding+k)
					return
				}
				for j := range k {
					w.sent[(first+outstanding+j)%pipeline] = now
				}
				outstanding += k
				perConn += k
				if w.budget > 0 {
					w.budget -= int64(k)
				}
			}
		}
		if outstanding == 0 {
			return // finished with this connection; loop decides whether to redial
		}

		if !w.pushDeadline(conn, now) {
			return
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
					return
				}
				if !done {
					if c == 0 {
						break // need more input
					}
					continue
				}
				if outstanding == 0 {
					w.errs.Framing++ // a response nobody asked for
					return
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
					return
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
				return
			}
		}
		if err != nil {
			if outstanding == 0 && errors.Is(err, io.EOF) {
				return // closed right after our last answer: not a failure
			}
			w.fail(err, &w.errs.Read, outstanding)
			return
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
