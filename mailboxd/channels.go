package mailboxd

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Outlook's long-lived channels, emulated so tests can check byte-exact
// streaming through a gateway:
//
//   - RPC over HTTP: an RPC_IN_DATA request's body is read as it arrives
//     (hashed; answered at its end with the Echo JSON, whose body_bytes and
//     body_sha256 say what arrived) and, when the request names a pair with
//     HeaderChannel, copied to the RPC_OUT_DATA channel of the same pair. The
//     RPC_OUT_DATA response is written as soon as the request is read:
//     "200" with Content-Length HeaderOutLength (default 1 GiB), then the
//     IN channel's bytes as they come. The copy blocks while the OUT
//     channel's reader is slow, so a slow reader slows the IN channel's
//     sender: backpressure end to end.
//   - MAPI over HTTP NotificationWait (a POST with X-RequestType:
//     NotificationWait): the response (chunked) starts at once and sends
//     "PENDING\r\n" every HeaderKeepalive (default 1s) until HeaderHold
//     (default Options.NotificationWait, 5s if unset) has passed, then
//     "DONE\r\n" and ends.
const (
	// HeaderChannel pairs an RPC_IN_DATA request with the RPC_OUT_DATA
	// request of the same value: what arrives on IN is echoed on OUT.
	HeaderChannel = "X-Mailboxd-Channel"
	// HeaderOutLength is the Content-Length of an RPC_OUT_DATA response
	// (decimal bytes, default 1 GiB). The response ends after that many
	// bytes, or is cut short (the connection closes) when its IN channel
	// ends first.
	HeaderOutLength = "X-Mailboxd-Out-Length"
	// HeaderHold is how long a NotificationWait is held (a Go duration).
	HeaderHold = "X-Mailboxd-Hold"
	// HeaderKeepalive is the interval of its keep-alive bytes.
	HeaderKeepalive = "X-Mailboxd-Keepalive"

	// NotificationKeepalive and NotificationDone are the NotificationWait
	// body's lines.
	NotificationKeepalive = "PENDING\r\n"
	NotificationDone      = "DONE\r\n"

	defaultOutLength        = 1 << 30
	defaultNotificationWait = 5 * time.Second
	channelBuffer           = 32 << 10
	// pairWait bounds how long an RPC_IN_DATA waits for its paired
	// RPC_OUT_DATA to arrive before it stops echoing.
	pairWait = 10 * time.Second
)

// rpcPair connects the IN and OUT channels of one HeaderChannel value.
type rpcPair struct {
	r     *io.PipeReader
	w     *io.PipeWriter
	ready chan struct{} // closed when the OUT channel is reading
	users int
}

type pairs struct {
	mu sync.Mutex
	m  map[string]*rpcPair
}

func (p *pairs) get(key string) *rpcPair {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = make(map[string]*rpcPair)
	}
	pr := p.m[key]
	if pr == nil {
		r, w := io.Pipe()
		pr = &rpcPair{r: r, w: w, ready: make(chan struct{})}
		p.m[key] = pr
	}
	pr.users++
	return pr
}

func (p *pairs) put(key string, pr *rpcPair) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pr.users--; pr.users == 0 && p.m[key] == pr {
		delete(p.m, key)
	}
}

// channel serves the request when it is one of the long-lived channels and
// reports whether it did.
func (s *server) channel(ctx *fasthttp.RequestCtx) bool {
	method := string(ctx.Method())
	wait := method == "POST" && strings.EqualFold(string(ctx.Request.Header.Peek("X-RequestType")), "NotificationWait")
	if method != "RPC_IN_DATA" && method != "RPC_OUT_DATA" && !wait {
		return false
	}
	seq := s.stats.requests.Add(1)
	s.methodMu.Lock()
	s.byMethod[method]++
	s.methodMu.Unlock()
	ctx.Response.Header.Set(HeaderSeq, strconv.FormatInt(seq, 10))
	e := Echo{Server: s.name, Method: method, Target: string(ctx.Request.Header.RequestURI()),
		Proto: string(ctx.Request.Header.Protocol()), Headers: [][2]string{}, Seq: seq}
	var assertion []byte
	assertions := 0
	for name, value := range ctx.Request.Header.AllInOrder() {
		e.Headers = append(e.Headers, [2]string{string(name), string(value)})
		if s.identity != nil && strings.EqualFold(string(name), s.identity.header) {
			if assertions++; assertions == 1 {
				assertion = bytes.Clone(value)
			}
		}
	}
	if s.identity != nil {
		id, reason, err := s.identity.check(assertion, assertions, time.Now())
		if err != nil {
			ctx.SetConnectionClose()
			ctx.SetStatusCode(fasthttp.StatusForbidden)
			ctx.SetContentType("text/plain; charset=utf-8")
			ctx.SetBodyString("mailboxd: identity refused (" + reason + "): " + err.Error() + "\n")
			return true
		}
		e.Identity = id
		ctx.Response.Header.Set(HeaderUser, id.User)
	}
	switch method {
	case "RPC_IN_DATA":
		s.rpcIn(ctx, &e)
	case "RPC_OUT_DATA":
		s.rpcOut(ctx, &e)
	default:
		s.notificationWait(ctx, &e)
	}
	return true
}

// rpcIn reads the IN channel's body to its end, echoing it to the paired
// OUT channel, and answers with what arrived.
func (s *server) rpcIn(ctx *fasthttp.RequestCtx, e *Echo) {
	var out io.Writer
	if key := string(ctx.Request.Header.Peek(HeaderChannel)); key != "" {
		pr := s.pairs.get(key)
		defer s.pairs.put(key, pr)
		t := time.NewTimer(pairWait)
		select {
		case <-pr.ready:
			out = pr.w
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		defer pr.w.Close()
	}
	h := sha256.New()
	var n int64
	var err error
	if r := ctx.RequestBodyStream(); r != nil {
		buf := make([]byte, channelBuffer)
		for {
			k, rerr := r.Read(buf)
			if k > 0 {
				h.Write(buf[:k])
				n += int64(k)
				if out != nil {
					if _, werr := out.Write(buf[:k]); werr != nil {
						out = nil // the OUT channel went away; keep reading
					}
				}
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				err = rerr
				break
			}
		}
	} else {
		b := ctx.Request.Body()
		h.Write(b)
		n = int64(len(b))
		if out != nil {
			_, _ = out.Write(b)
		}
	}
	e.BodyBytes, e.BodySHA256 = n, hex.EncodeToString(h.Sum(nil))
	s.logRequest(e)
	if err != nil {
		ctx.SetConnectionClose()
		badRequest(ctx, "request body", err)
		return
	}
	ctx.SetConnectionClose()
	ctx.SetContentType("application/json")
	ctx.SetBody(marshal(e))
}

// rpcOut answers at once with the OUT channel's head and then relays what
// the paired IN channel receives, written straight to the socket so every
// byte leaves as soon as it arrived.
func (s *server) rpcOut(ctx *fasthttp.RequestCtx, e *Echo) {
	if r := ctx.RequestBodyStream(); r != nil {
		_, _ = io.Copy(io.Discard, r)
	}
	s.logRequest(e)
	length := int64(defaultOutLength)
	if v := ctx.Request.Header.Peek(HeaderOutLength); len(v) > 0 {
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil || n < 0 || n > maxSize {
			badRequest(ctx, "control header", fmt.Errorf("%s: %q: want 0..%d", HeaderOutLength, v, int64(maxSize)))
			return
		}
		length = n
	}
	key := string(ctx.Request.Header.Peek(HeaderChannel))
	var head bytes.Buffer
	fmt.Fprintf(&head, "HTTP/1.1 200 OK\r\nContent-Type: application/rpc\r\nContent-Length: %d\r\n%s: %s\r\n%s: %s\r\n",
		length, HeaderServer, s.name, HeaderSeq, ctx.Response.Header.Peek(HeaderSeq))
	if u := ctx.Response.Header.Peek(HeaderUser); len(u) > 0 {
		fmt.Fprintf(&head, "%s: %s\r\n", HeaderUser, u)
	}
	head.WriteString("\r\n")
	done := ctx.Done()
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		if _, err := c.Write(head.Bytes()); err != nil || key == "" {
			if key == "" {
				// No pair: hold the channel open until the client or a
				// shutdown ends it.
				go func() { <-done; _ = c.Close() }()
				_, _ = io.Copy(io.Discard, c)
			}
			return
		}
		pr := s.pairs.get(key)
		defer s.pairs.put(key, pr)
		select {
		case <-pr.ready: // a second OUT channel of the pair: it gets nothing
			return
		default:
			close(pr.ready)
		}
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			// A client that closes the OUT channel ends the echo.
			select {
			case <-done:
			case <-stop:
				return
			}
			_ = pr.r.CloseWithError(io.ErrClosedPipe)
		}()
		_, err := io.CopyBuffer(c, io.LimitReader(pr.r, length), make([]byte, channelBuffer))
		if err != nil {
			_ = pr.r.CloseWithError(err)
		}
		_ = pr.r.CloseWithError(io.ErrClosedPipe)
	})
}

// notificationWait holds a MAPI long poll, sending keep-alive lines.
func (s *server) notificationWait(ctx *fasthttp.RequestCtx, e *Echo) {
	n, sum, err := hashBody(ctx)
	e.BodyBytes, e.BodySHA256 = n, hex.EncodeToString(sum)
	s.logRequest(e)
	if err != nil {
		ctx.SetConnectionClose()
		badRequest(ctx, "request body", err)
		return
	}
	hold, every := s.notifyWait, time.Second
	if hold <= 0 {
		hold = defaultNotificationWait
	}
	for _, c := range []struct {
		name string
		d    *time.Duration
	}{{HeaderHold, &hold}, {HeaderKeepalive, &every}} {
		if v := ctx.Request.Header.Peek(c.name); len(v) > 0 {
			d, err := parseDelay(string(v))
			if err != nil || d <= 0 && c.d == &every {
				badRequest(ctx, "control header", fmt.Errorf("%s: %q: want a positive duration", c.name, v))
				return
			}
			*c.d = d
		}
	}
	done := ctx.Done()
	ctx.SetContentType("application/mapi-http")
	ctx.Response.Header.Set("X-RequestType", "NotificationWait")
	ctx.Response.Header.Set("X-ResponseCode", "0")
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		end := time.NewTimer(hold)
		defer end.Stop()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				if _, err := w.WriteString(NotificationKeepalive); err != nil {
					return
				}
				if w.Flush() != nil {
					return
				}
			case <-end.C:
				_, _ = w.WriteString(NotificationDone)
				return
			case <-done:
				_, _ = w.WriteString(NotificationDone)
				return
			}
		}
	})
}
