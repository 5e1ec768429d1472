package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// httpServer starts a net/http server on 127.0.0.1:0 and returns its address.
func httpServer(t testing.TB, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func mustRun(t testing.TB, opts Options) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestRunCounts(t *testing.T) {
	var served atomic.Int64
	var badAnchor atomic.Int64
	addr := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		if r.Header.Get("X-AnchorMailbox") != "alice@example.test" || r.URL.Path != "/owa/" {
			badAnchor.Add(1)
		}
		io.WriteString(w, strings.Repeat("x", 100))
	})
	res := mustRun(t, Options{
		Addr:     addr,
		Request:  Request{Path: "/owa/", Header: []Header{{"X-AnchorMailbox", "alice@example.test"}}},
		Conns:    4,
		Requests: 203, // not a multiple of Conns
	})
	if res.Requests != 203 || served.Load() != 203 {
		t.Errorf("requests %d, served %d, want 203", res.Requests, served.Load())
	}
	if res.Errors.Total() != 0 {
		t.Errorf("errors: %v", res.Errors)
	}
	if res.Dials != 4 {
		t.Errorf("dials %d, want 4 (keep-alive)", res.Dials)
	}
	if res.Latency.Count() != 203 || res.Latency.Quantile(0.5) <= 0 {
		t.Errorf("latency count %d p50 %v", res.Latency.Count(), res.Latency.Quantile(0.5))
	}
	if res.StatusClasses[2] != 203 {
		t.Errorf("status classes %v", res.StatusClasses)
	}
	if s := res.String(); !strings.Contains(s, "203 requests") || !strings.Contains(s, "errors: none") {
		t.Errorf("String() = %q", s)
	}
	if badAnchor.Load() != 0 {
		t.Errorf("%d requests arrived without the expected path and header", badAnchor.Load())
	}
}

func TestRunChunked(t *testing.T) {
	addr := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		// Flushing before the handler returns makes net/http use chunked
		// encoding; several flushes make several chunks.
		for range 3 {
			io.WriteString(w, strings.Repeat("c", 5000))
			w.(http.Flusher).Flush()
		}
	})
	res := mustRun(t, Options{Addr: addr, Conns: 2, Pipeline: 2, Requests: 100, ReadBufferSize: 4096})
	if res.Requests != 100 || res.Errors.Total() != 0 {
		t.Errorf("requests %d errors %v", res.Requests, res.Errors)
	}
}

func TestRunHeadAndStatus(t *testing.T) {
	addr := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "HEAD" {
			w.Header().Set("Content-Length", "1000") // and no body follows
			return
		}
		http.Error(w, "backend down", http.StatusBadGateway)
	})
	res := mustRun(t, Options{Addr: addr, Request: Request{Method: "HEAD"}, Requests: 50})
	if res.Requests != 50 || res.Errors.Total() != 0 {
		t.Errorf("HEAD: requests %d errors %v", res.Requests, res.Errors)
	}
	res = mustRun(t, Options{Addr: addr, Requests: 50, Conns: 2})
	if res.Requests != 0 || res.Errors.Status != 50 || res.StatusClasses[5] != 50 || res.Latency.Count() != 0 {
		t.Errorf("502s: requests %d errors %v classes %v", res.Requests, res.Errors, res.StatusClasses)
	}
}

func TestRunPipelined(t *testing.T) {
	// net/http answers pipelined requests one after another.
	var served atomic.Int64
	addr := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		io.WriteString(w, "ok")
	})
	res := mustRun(t, Options{Addr: addr, Conns: 3, Pipeline: 8, Requests: 999})
	if res.Requests != 999 || served.Load() != 999 || res.Errors.Total() != 0 {
		t.Errorf("requests %d served %d errors %v", res.Requests, served.Load(), res.Errors)
	}

	// A server that answers only once it holds 8 requests proves that the
	// generator really keeps 8 outstanding (with fewer it would time out).
	raw := rawServer(t, 8)
	res = mustRun(t, Options{Addr: raw, Conns: 2, Pipeline: 8, Requests: 160, IOTimeout: 2 * time.Second})
	if res.Requests != 160 || res.Errors.Total() != 0 {
		t.Errorf("batching server: requests %d errors %v", res.Requests, res.Errors)
	}
}

// TestRunVariants checks that Variants are sent round-robin over all
// connections, pipelined or not, and that a second run given the same
// Variants continues where the first stopped.
func TestRunVariants(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	var order []string
	addr := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path+" "+r.Header.Get("X-Variant")]++
		order = append(order, r.Header.Get("X-Variant"))
		mu.Unlock()
		io.WriteString(w, "ok")
	})
	// Of different lengths, so that offsets matter.
	v := &Variants{Requests: []Request{
		{Path: "/a", Header: []Header{{"X-Variant", "0"}}},
		{Path: "/bb", Header: []Header{{"X-Variant", "1"}}},
		{Path: "/ccc", Header: []Header{{"X-Variant", "2"}}},
	}}
	res := mustRun(t, Options{Addr: addr, Variants: v, Request: Request{Path: "/ignored"}, Conns: 2, Pipeline: 4, Requests: 300})
	if res.Requests != 300 || res.Errors.Total() != 0 {
		t.Fatalf("requests %d errors %v", res.Requests, res.Errors)
	}
	want := map[string]int{"/a 0": 100, "/bb 1": 100, "/ccc 2": 100}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("requests seen %v, want %v", seen, want)
	}
	if v.Sent() != 300 {
		t.Errorf("Sent() = %d, want 300", v.Sent())
	}

	mu.Lock()
	order = order[:0]
	mu.Unlock()
	mustRun(t, Options{Addr: addr, Variants: v, Conns: 1, Requests: 4})
	if got := strings.Join(order, ","); got != "0,1,2,0" || v.Sent() != 304 {
		t.Errorf("second run sent %s (Sent %d), want 0,1,2,0 continuing at 300 (Sent 304)", got, v.Sent())
	}

	// Empty Variants fall back to Request.
	mu.Lock()
	order = order[:0]
	mu.Unlock()
	mustRun(t, Options{Addr: addr, Variants: &Variants{}, Request: Request{Header: []Header{{"X-Variant", "r"}}}, Requests: 2})
	if got := strings.Join(order, ","); got != "r,r" {
		t.Errorf("empty Variants sent %s, want Request twice", got)
	}

	mixed := &Variants{Requests: []Request{{Method: "HEAD"}, {Method: "GET"}}}
	if _, err := Run(context.Background(), Options{Addr: addr, Variants: mixed, Requests: 1}); err == nil {
		t.Error("HEAD and GET variants mixed: no error")
	}
}

func TestMarshalRing(t *testing.T) {
	reqs := []Request{{Path: "/a"}, {Path: "/bb"}}
	wire, off, err := marshalRing(reqs, "h", 4)
	if err != nil {
		t.Fatal(err)
	}
	// a, bb, then a, bb, a again for the wrap of a 4-deep pipeline.
	if len(off) != 6 {
		t.Fatalf("offsets %v, want 6", off)
	}
	for i, want := range []string{"/a", "/bb", "/a", "/bb", "/a"} {
		if got := string(wire[off[i]:off[i+1]]); got != "GET "+want+" HTTP/1.1\r\nHost: h\r\n\r\n" {
			t.Errorf("request %d is %q", i, got)
		}
	}
	one, off1, _ := marshalRing(reqs[:1], "h", 3)
	if len(off1) != 4 || len(one) != 3*off1[1] {
		t.Errorf("one request, pipeline 3: %d bytes, offsets %v", len(one), off1)
	}
	if _, _, err := marshalRing([]Request{{Path: "/ok"}, {Path: "/x y"}}, "h", 1); err == nil {
		t.Error("an invalid variant was serialised")
	}
}

func TestRunServerCloses(t *testing.T) {
	// Every 5th request the server drops the connection without answering:
	// that request (and any pipelined behind it) is a read error, and the
	// generator reconnects and goes on.
	var n atomic.Int64
	addr := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%5 == 0 {
			c, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				c.Close()
			}
			return
		}
		io.WriteString(w, "ok")
	})
	res := mustRun(t, Options{Addr: addr, Conns: 1, Requests: 100})
	if res.Requests != 80 || res.Errors.Read != 20 || res.Errors.Total() != 20 {
		t.Errorf("requests %d errors %v, want 80 and read=20", res.Requests, res.Errors)
	}
	if res.Dials != 20 { // the 100th request's drop needs no reconnect
		t.Errorf("dials %d, want 20", res.Dials)
	}

	// Connection: close is a clean end of the connection, not an error.
	addr = httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	})
	res = mustRun(t, Options{Addr: addr, Conns: 2, Requests: 20})
	if res.Requests != 20 || res.Errors.Total() != 0 || res.Dials != 20 {
		t.Errorf("Connection: close: requests %d errors %v dials %d", res.Requests, res.Errors, res.Dials)
	}
}

func TestRunFramingError(t *testing.T) {
	// A server that answers without Content-Length or chunking (body until
	// close) cannot be benchmarked on keep-alive connections.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				c.Read(buf)
				io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\nuntil close")
			}()
		}
	}()
	res := mustRun(t, Options{Addr: ln.Addr().String(), Requests: 5})
	if res.Errors.Framing != 5 || res.Requests != 0 {
		t.Errorf("requests %d errors %v, want framing=5", res.Requests, res.Errors)
	}
}

func TestRunConnectErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	start := time.Now()
	res := mustRun(t, Options{Addr: addr, Conns: 2, Requests: 6})
	if res.Errors.Connect != 6 || res.Requests != 0 {
		t.Errorf("requests %d errors %v, want connect=6", res.Requests, res.Errors)
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("count-bounded run against a dead port took %v", time.Since(start))
	}

	// Duration-bounded: ends on time despite the backoff.
	start = time.Now()
	res = mustRun(t, Options{Addr: addr, Conns: 2, Duration: 300 * time.Millisecond})
	if el := time.Since(start); el > 2*time.Second || res.Errors.Connect == 0 {
		t.Errorf("took %v, connect errors %d", el, res.Errors.Connect)
	}
}

func TestRunDurationAndCancel(t *testing.T) {
	addr := httpServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	start := time.Now()
	res := mustRun(t, Options{Addr: addr, Conns: 4, Duration: 300 * time.Millisecond})
	if el := time.Since(start); el < 300*time.Millisecond || el > 2*time.Second {
		t.Errorf("300ms run took %v", el)
	}
	if res.Requests == 0 || res.Errors.Total() != 0 {
		t.Errorf("requests %d errors %v", res.Requests, res.Errors)
	}

	// A server that never answers: cancellation must end the run at once
	// and the abandoned requests are not the server's fault.
	silent := silentServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	res, err := Run(ctx, Options{Addr: silent, Conns: 3, Duration: time.Minute, IOTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("cancelled run took %v", el)
	}
	if res.Errors.Total() != 0 || res.Requests != 0 {
		t.Errorf("cancelled run: requests %d errors %v", res.Requests, res.Errors)
	}
}

func TestRunTimeout(t *testing.T) {
	addr := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
	})
	res := mustRun(t, Options{Addr: addr, Requests: 1, IOTimeout: 50 * time.Millisecond})
	if res.Errors.Timeout != 1 {
		t.Errorf("errors %v, want timeout=1", res.Errors)
	}
}

func TestRunRequestsPerConnAndSourceAddrs(t *testing.T) {
	var mu sync.Mutex
	sources := map[string]bool{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		mu.Lock()
		sources[host] = true
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	srv.Start()
	t.Cleanup(srv.Close)
	res := mustRun(t, Options{
		Addr:            srv.Listener.Addr().String(),
		Conns:           2,
		Requests:        100,
		RequestsPerConn: 10,
		LocalAddrs:      []string{"127.0.0.2", "127.0.0.3"},
	})
	if res.Requests != 100 || res.Dials != 10 || res.Errors.Total() != 0 {
		t.Errorf("requests %d dials %d errors %v", res.Requests, res.Dials, res.Errors)
	}
	if !sources["127.0.0.2"] || !sources["127.0.0.3"] || len(sources) != 2 {
		t.Errorf("source addresses seen: %v", sources)
	}
}

func TestRunBadOptions(t *testing.T) {
	if _, err := Run(context.Background(), Options{Addr: "127.0.0.1:1"}); err == nil {
		t.Error("unbounded run accepted")
	}
	if _, err := Run(context.Background(), Options{Addr: "127.0.0.1:1", Requests: 1, LocalAddrs: []string{"nope"}}); err == nil {
		t.Error("bad source address accepted")
	}
}

// rawServer is a minimal HTTP responder that allocates nothing per request,
// so the allocation test and benchmark measure the generator alone. It
// answers only in batches of batch requests (1 = answer each at once).
func rawServer(t testing.TB, batch int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveRaw(t, ln, batch)
}

// serveRaw runs rawServer's responder on ln and returns ln's address.
func serveRaw(t testing.TB, ln net.Listener, batch int) string {
	t.Helper()
	t.Cleanup(func() { ln.Close() })
	conns := runRaw(ln, batch)
	t.Cleanup(conns.Wait)
	return ln.Addr().String()
}

// runRaw serves ln until it is closed; the WaitGroup counts the
// connections being served.
func runRaw(ln net.Listener, batch int) *sync.WaitGroup {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("x", 100))
	const maxBatch = 64
	canned := make([]byte, 0, maxBatch*len(resp))
	for range maxBatch {
		canned = append(canned, resp...)
	}
	var conns sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				buf := make([]byte, 64<<10)
				matched, pending := 0, 0 // bytes of "\r\n\r\n" matched; requests not yet answered
				for {
					n, err := c.Read(buf)
					for _, b := range buf[:n] {
						switch {
						case b == "\r\n\r\n"[matched]:
							matched++
						case b == '\r':
							matched = 1
						default:
							matched = 0
						}
						if matched == 4 {
							matched = 0
							pending++
						}
					}
					for pending >= batch {
						k := min(pending/batch*batch, maxBatch)
						if _, err := c.Write(canned[:k*len(resp)]); err != nil {
							return
						}
						pending -= k
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return &conns
}

// TestRunSteadyStateAllocs checks the zero-allocation promise: a run's
// allocations are per connection (buffers, histogram, goroutine), never per
// request.
func TestRunSteadyStateAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	addr := rawServer(t, 1)
	mustRun(t, Options{Addr: addr, Conns: 2, Requests: 200}) // warm up runtime pools
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const n = 20000
	res := mustRun(t, Options{Addr: addr, Conns: 2, Pipeline: 4, Requests: n})
	runtime.ReadMemStats(&after)
	if res.Requests != n {
		t.Fatalf("requests %d errors %v", res.Requests, res.Errors)
	}
	perReq := float64(after.Mallocs-before.Mallocs) / n
	t.Logf("%d allocations in a %d-request run (%.4f per request)", after.Mallocs-before.Mallocs, n, perReq)
	if perReq > 0.02 {
		t.Errorf("%.4f allocations per request; the hot path allocates", perReq)
	}

	// Cycling through variants costs no allocation per request either.
	v := &Variants{}
	for i := range 64 {
		v.Requests = append(v.Requests, Request{Header: []Header{{"X-Variant", strconv.Itoa(i)}}})
	}
	runtime.ReadMemStats(&before)
	res = mustRun(t, Options{Addr: addr, Variants: v, Conns: 2, Pipeline: 4, Requests: n})
	runtime.ReadMemStats(&after)
	if res.Requests != n {
		t.Fatalf("variants: requests %d errors %v", res.Requests, res.Errors)
	}
	if perReq := float64(after.Mallocs-before.Mallocs) / n; perReq > 0.02 {
		t.Errorf("variants: %.4f allocations per request; the hot path allocates", perReq)
	}
}

// BenchmarkLoadgenRoundTrip measures the generator's own cost per request
// against the allocation-free raw server (loopback round trip included).
func BenchmarkLoadgenRoundTrip(b *testing.B) {
	for _, p := range []int{1, 8} {
		b.Run(fmt.Sprintf("pipeline=%d", p), func(b *testing.B) {
			addr := rawServer(b, 1)
			b.ReportAllocs()
			b.ResetTimer()
			res := mustRun(b, Options{Addr: addr, Conns: 1, Pipeline: p, Requests: int64(b.N)})
			if res.Requests != int64(b.N) {
				b.Fatalf("requests %d errors %v", res.Requests, res.Errors)
			}
		})
	}
}

// silentServer accepts connections on loopback and never reads or answers
// them; it closes them when the test ends. It returns its address.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	return ln.Addr().String()
}

func TestRunOnConnect(t *testing.T) {
	var hello, served atomic.Int64
	addr := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hello" {
			hello.Add(1)
		} else {
			served.Add(1)
		}
		io.WriteString(w, "ok")
	})
	var calls atomic.Int64
	res := mustRun(t, Options{
		Addr: addr, Conns: 2, Requests: 40, RequestsPerConn: 10,
		OnConnect: func(c net.Conn) error {
			calls.Add(1)
			if _, err := io.WriteString(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				return err
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			return resp.Body.Close()
		},
	})
	// One call per connection, outside the counted requests.
	if res.Requests != 40 || res.Dials != 4 || calls.Load() != 4 || hello.Load() != 4 || served.Load() != 40 || res.Errors.Total() != 0 {
		t.Errorf("requests %d dials %d calls %d hello %d served %d errors %v",
			res.Requests, res.Dials, calls.Load(), hello.Load(), served.Load(), res.Errors)
	}
	// A failing hook is a failed connection attempt.
	res = mustRun(t, Options{Addr: addr, Conns: 1, Requests: 3,
		OnConnect: func(net.Conn) error { return io.ErrUnexpectedEOF }})
	if res.Errors.Connect == 0 || res.Requests != 0 {
		t.Errorf("failing hook: requests %d errors %v", res.Requests, res.Errors)
	}
}
