// Package mailboxd is frontdoor's reference mailbox server: a small HTTP/1.1
// origin that stands in for an Exchange mailbox server behind the gateway in
// tests, benchmarks and `make run`.
//
// It is built to make the gateway's behaviour observable from the outside:
//
//   - Every ordinary request is answered with an [Echo]: a JSON description of
//     the request exactly as it arrived (target, header names and values
//     byte-exact and in wire order, body length and SHA-256), so a test can
//     assert what the gateway forwarded.
//   - GET or HEAD of /healthcheck.htm, or of /<anything>/healthcheck.htm,
//     answers like Exchange's health probe page: 200 text/plain
//     "200 OK\r\n<br/>NAME".
//   - Request headers (see [HeaderSize] and the other Header* constants)
//     shape the response: its size, chunking, pacing, status, a deliberate
//     close, or a close-delimited ("unframed") body that a gateway must refuse
//     on a pipelined connection. Controls travel in headers rather than in
//     the path so that they do not disturb the gateway's routing.
//   - Counters at [StatsPath] tell a test whether a request ever reached the
//     backend and how many connections the gateway opened.
//
// Paths under [ControlPrefix] belong to the test harness: they are not
// counted as requests, and a connection whose first request is one of them
// is not counted as a gateway connection either. Health probes are counted
// apart from requests (Stats.Healthchecks), and a connection opened for one
// apart from the gateway's connections, so that a gateway's periodic
// probing cannot make "the backend saw no request" or "the gateway opened
// N connections" assertions flaky.
//
// With Options.IdentityKeys set it also plays a mailbox server that trusts
// the gateway's identity assertions (package identity): every request but
// health probes and harness paths must carry exactly one assertion that
// verifies, or it is answered 403 and counted by reason in Stats.Identity;
// an accepted one shows in Echo.Identity and in HeaderUser.
//
// The server never closes an idle connection on its own unless
// Options.IdleTimeout says so, which keeps the gateway's persistent backend
// connections stable for the duration of a test.
package mailboxd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"frontdoor/identity"
)

// Response headers set by mailboxd.
const (
	// HeaderServer carries Options.Name on every response, so a test can
	// tell which backend answered even when the body is not an Echo.
	HeaderServer = "X-Mailboxd-Server"
	// HeaderSeq carries the request's Echo.Seq on every counted response.
	HeaderSeq = "X-Mailboxd-Seq"
	// HeaderEcho carries the JSON Echo on responses whose body is not the
	// Echo (HeaderSize responses), when it is at most MaxEchoHeader bytes.
	HeaderEcho = "X-Mailboxd-Echo"
	// HeaderUser carries the "sub" (user) of the verified identity
	// assertion, when Options.IdentityKeys is set, so that a gateway test
	// sees whom the backend trusted even when the body is not an Echo.
	HeaderUser = "X-Mailboxd-User"
)

// DefaultIdentityHeader is the request header that carries the identity
// assertion unless Options.IdentityHeader names another.
const DefaultIdentityHeader = "X-Frontdoor-Identity"

// Reasons, beside identity.Reasons(), for refusing a request's identity.
const (
	// IdentityMissing: the request has no assertion header.
	IdentityMissing = "missing"
	// IdentityDuplicate: the request has more than one. A backend must not
	// pick one: a client could have added its own next to the gateway's.
	IdentityDuplicate = "duplicate"
)

// Request headers that control the response. Names are matched
// case-insensitively; when a control header is repeated, the first one wins.
// A malformed value is answered with 400 and a text/plain explanation (the
// request is still counted: it did reach the backend).
const (
	// HeaderSize: N (decimal, 0 <= N <= 2^40) makes the body N bytes of
	// Pattern, application/octet-stream, instead of the Echo.
	HeaderSize = "X-Mailboxd-Size"
	// HeaderChunked: a true value (strconv.ParseBool) sends the body with
	// chunked transfer coding in chunks of at most ChunkSize bytes, each
	// flushed to the socket as soon as it is written.
	HeaderChunked = "X-Mailboxd-Chunked"
	// HeaderChunkDelay: a Go duration ("20ms") to wait before each chunk but
	// the first of a chunked body, so a test can observe that the gateway
	// streams rather than buffers. Ignored for bodies that are not chunked.
	HeaderChunkDelay = "X-Mailboxd-Chunk-Delay"
	// HeaderDelay: a Go duration ("250ms") to wait, after the request body
	// has been read, before answering. Shutdown cuts the wait short.
	HeaderDelay = "X-Mailboxd-Delay"
	// HeaderStatus: the response status code, 200..599. 204 and 304 are sent
	// without a body, as HTTP requires.
	HeaderStatus = "X-Mailboxd-Status"
	// HeaderUnframed: a true value sends the response with neither
	// Content-Length nor Transfer-Encoding (and no Connection header), so the
	// body is delimited only by the server closing the connection. Requests
	// pipelined behind it on the same connection are never answered.
	HeaderUnframed = "X-Mailboxd-Unframed"
	// HeaderClose: a true value answers with "Connection: close" and closes
	// the connection after the response.
	HeaderClose = "X-Mailboxd-Close"
)

// Paths reserved for the test harness.
const (
	// ControlPrefix starts every harness path. Requests under it are never
	// counted in Stats.
	ControlPrefix = "/_mailboxd/"
	// StatsPath answers GET (and HEAD) with the JSON Stats.
	StatsPath = ControlPrefix + "stats"
	// HealthControlPath accepts POST or PUT with a "status" query parameter
	// (200..599) and makes the health probe page answer with that status
	// from then on, so a test can fail a backend's health check without
	// stopping it. status=200 restores the normal answer.
	HealthControlPath = ControlPrefix + "healthcheck"
)

const (
	// Pattern is the repeating content of HeaderSize bodies: byte i of such a
	// body is Pattern[i%len(Pattern)].
	Pattern = "0123456789abcdef"
	// ChunkSize is the largest chunk of a chunked body.
	ChunkSize = 16 << 10
	// MaxEchoHeader bounds the size of the HeaderEcho value.
	MaxEchoHeader = 2 << 10
	// maxSize bounds HeaderSize so that a typo cannot ask for exabytes.
	maxSize = 1 << 40
)

// Defaults applied to zero Options fields.
const (
	DefaultName            = "mailboxd"
	DefaultReadBufferSize  = 64 << 10
	DefaultShutdownTimeout = 5 * time.Second
	// maxRequestBodySize is the largest request body mailboxd reads.
	maxRequestBodySize = 1 << 30
	// lingerTimeout bounds how long a closing connection keeps draining what
	// the peer still sends (see lingerClose).
	lingerTimeout = time.Second
)

// Options configures one reference mailbox server. Only Listen (or Listener)
// is required; every other field has a usable zero value.
type Options struct {
	// Listen is the TCP host:port to listen on, e.g. "127.0.0.1:8081".
	Listen string
	// Listener, when non-nil, is served instead of listening on Listen.
	// Run takes ownership of it and closes it. In-process tests use it to
	// learn the address of a ":0" listener before Run starts.
	Listener net.Listener
	// Name is reported in every answer (Echo.Server, HeaderServer, the
	// health probe page). It must be printable ASCII. Default DefaultName.
	Name string
	// RequestLog, when non-nil, receives one JSON object per counted
	// request, one per line: {"seq","method","target","headers"}. Writes are
	// serialised; the writer need not be safe for concurrent use.
	RequestLog io.Writer
	// ReadBufferSize is the per-connection read buffer, which also bounds
	// the request line plus header block. Default DefaultReadBufferSize, so
	// that 16 KiB header blocks pass with room to spare.
	ReadBufferSize int
	// IdleTimeout closes keep-alive connections idle for that long. Zero,
	// the default, never closes an idle connection.
	IdleTimeout time.Duration
	// ShutdownTimeout bounds the graceful part of shutdown, after which the
	// remaining connections are closed. Default DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// IdentityKeys, when set, is the path of a public JWK Set (see
	// identity.LoadVerifier), read once by Run. Every request except health
	// probes and paths under ControlPrefix must then carry exactly one
	// IdentityHeader whose assertion verifies with one of its keys (default
	// audience and leeway); others are answered 403, text/plain, with the
	// reason. Empty, the default: no identity is required or checked.
	IdentityKeys string
	// IdentityHeader names the header that carries the assertion. Default
	// DefaultIdentityHeader. Ignored without IdentityKeys.
	IdentityHeader string
	// NotificationWait is how long a MAPI NotificationWait is held before
	// it is answered (HeaderHold overrides it per request). Default 5s.
	NotificationWait time.Duration
}

// Echo is the JSON body of an ordinary response: what mailboxd received.
type Echo struct {
	Server string `json:"server"`
	Method string `json:"method"`
	// Target is the request-target exactly as it appeared on the request line.
	Target string `json:"target"`
	Proto  string `json:"proto"`
	// Headers lists every header field as [name, value], in wire order, with
	// the name's case preserved and the value without surrounding
	// whitespace. (Bytes that are not valid UTF-8 come out as U+FFFD: JSON
	// strings cannot carry them.)
	Headers [][2]string `json:"headers"`
	// BodyBytes and BodySHA256 describe the request body after transfer
	// decoding.
	BodyBytes  int64  `json:"body_bytes"`
	BodySHA256 string `json:"body_sha256"`
	// Seq numbers the server's counted requests from 1.
	Seq int64 `json:"seq"`
	// Identity is what the verified identity assertion said; nil unless
	// Options.IdentityKeys is set.
	Identity *EchoIdentity `json:"identity,omitempty"`
}

// EchoIdentity is the part of a verified identity assertion a mailbox
// server acts on (see identity.Claims).
type EchoIdentity struct {
	User     string `json:"user"`
	Mailbox  string `json:"mailbox"`
	Database string `json:"database"`
	Method   string `json:"method"`
	Client   string `json:"client"`
	Issuer   string `json:"issuer"`
	KeyID    string `json:"key_id"`
}

// IdentityStats counts identity checks (Options.IdentityKeys).
type IdentityStats struct {
	// Accepted counts requests whose assertion verified.
	Accepted int64 `json:"accepted"`
	// Refused counts the others by reason: IdentityMissing,
	// IdentityDuplicate and each of identity.Reasons(); every reason is
	// present, zero or not.
	Refused map[string]int64 `json:"refused"`
}

// Stats is the JSON body of StatsPath.
type Stats struct {
	Server string `json:"server"`
	// Requests counts requests outside ControlPrefix other than health
	// probes, whatever their outcome.
	Requests int64 `json:"requests"`
	// Healthchecks counts health probe requests (GET/HEAD .../healthcheck.htm).
	Healthchecks int64 `json:"healthchecks"`
	// ConnectionsAccepted counts accepted connections, except those whose
	// first request was under ControlPrefix (the harness's own) or a
	// health probe (a gateway's health checks).
	ConnectionsAccepted int64 `json:"connections_accepted"`
	// ConnectionsOpen is ConnectionsAccepted minus the connections since
	// closed. A close initiated by the peer is seen when the server next
	// reads, so poll rather than expect it instantly.
	ConnectionsOpen int64 `json:"connections_open"`
	// ControlConnections counts the connections excluded above.
	ControlConnections int64 `json:"control_connections"`
	// ByMethod splits Requests by request method.
	ByMethod map[string]int64 `json:"by_method"`
	// Identity counts identity checks; nil (and absent from the JSON)
	// unless Options.IdentityKeys is set. Its requests are counted in
	// Requests as well.
	Identity *IdentityStats `json:"identity,omitempty"`
}

// Run serves until ctx is cancelled, then shuts down: it stops accepting,
// lets in-flight requests finish (delays are cut short) within
// Options.ShutdownTimeout, closes whatever is left, and returns nil. It
// returns an error if the options are invalid, the listener cannot be
// opened, or accepting fails. log may be nil.
func Run(ctx context.Context, opts Options, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if opts.ReadBufferSize <= 0 {
		opts.ReadBufferSize = DefaultReadBufferSize
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	ln := opts.Listener
	if err := checkName(opts.Name); err != nil {
		if ln != nil {
			_ = ln.Close()
		}
		return err
	}
	var verifier *identity.Verifier
	if opts.IdentityKeys != "" {
		var err error
		if verifier, err = identity.LoadVerifier(opts.IdentityKeys); err != nil {
			if ln != nil {
				_ = ln.Close()
			}
			return fmt.Errorf("mailboxd: %w", err)
		}
		if opts.IdentityHeader == "" {
			opts.IdentityHeader = DefaultIdentityHeader
		}
	}
	if ln == nil {
		if opts.Listen == "" {
			return errors.New("mailboxd: no listen address")
		}
		var err error
		if ln, err = net.Listen("tcp", opts.Listen); err != nil {
			return fmt.Errorf("mailboxd: %w", err)
		}
	}

	s := &server{name: opts.Name, requestLog: opts.RequestLog, notifyWait: opts.NotificationWait}
	s.conns.stats = &s.stats
	s.byMethod = make(map[string]int64)
	if verifier != nil {
		s.identity = newIdentityCheck(verifier, opts.IdentityHeader)
	}
	tl := &trackingListener{Listener: ln, conns: &s.conns}
	srv := &fasthttp.Server{
		Handler: s.handle,
		Name:    "mailboxd",
		Logger:  fasthttpLogger{log},
		// Echo header names exactly as received, and send ours as written.
		DisableHeaderNamesNormalizing: true,
		// Hash uploads while they stream in instead of buffering up to
		// MaxRequestBodySize per request.
		StreamRequestBody:  true,
		MaxRequestBodySize: maxRequestBodySize,
		// Otherwise fasthttp would consume multipart bodies into a form
		// before the handler could hash them.
		DisablePreParseMultipartForm: true,
		ReadBufferSize:               opts.ReadBufferSize,
		WriteBufferSize:              16 << 10,
		IdleTimeout:                  opts.IdleTimeout,
		NoDefaultContentType:         true,
		// A response written during shutdown says "Connection: close", so
		// the gateway does not send another request that would be dropped.
		CloseOnShutdown: true,
	}

	log.Info("mailboxd listening", "addr", ln.Addr().String(), "name", opts.Name)
	if verifier != nil {
		log.Info("mailboxd requires identity assertions", "header", opts.IdentityHeader,
			"keys", opts.IdentityKeys, "key_ids", strings.Join(verifier.KeyIDs(), ","))
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(tl) }()

	select {
	case err := <-serveErr:
		_ = tl.Close()
		s.conns.closeAll()
		s.conns.wait()
		if err == nil {
			err = errors.New("listener closed")
		}
		return fmt.Errorf("mailboxd: serve: %w", err)
	case <-ctx.Done():
	}

	log.Info("mailboxd shutting down", "name", opts.Name)
	s.conns.stopLingering()
	sctx, cancel := context.WithTimeout(context.Background(), opts.ShutdownTimeout)
	defer cancel()
	if err := srv.ShutdownWithContext(sctx); err != nil {
		log.Warn("mailboxd: graceful shutdown incomplete; closing remaining connections", "err", err)
	}
	// ShutdownWithContext is a no-op if Serve has not registered the
	// listener yet; closing it here guarantees Serve returns either way.
	_ = tl.Close()
	s.conns.closeAll()
	<-serveErr
	s.conns.wait()
	return nil
}

func checkName(name string) error {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("mailboxd: name %q: only printable ASCII is allowed", name)
		}
	}
	return nil
}

// server is the state shared by all connections of one Run.
type server struct {
	name       string
	requestLog io.Writer
	logMu      sync.Mutex

	stats    counters
	methodMu sync.Mutex
	byMethod map[string]int64

	// healthStatus overrides the health probe status when non-zero.
	healthStatus atomic.Int32

	// identity checks assertions; nil unless Options.IdentityKeys is set.
	identity *identityCheck

	conns connTracker

	// pairs joins RPC_IN_DATA and RPC_OUT_DATA channels (channels.go);
	// notifyWait is Options.NotificationWait.
	pairs      pairs
	notifyWait time.Duration
}

type counters struct {
	requests     atomic.Int64
	healthchecks atomic.Int64
	accepted     atomic.Int64
	open         atomic.Int64
	control      atomic.Int64
}

func (s *server) handle(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set(HeaderServer, s.name)
	// The security headers a mailbox server's web apps send (Exchange's
	// OWA does); the gateway relays them, and TLS scanners look for them.
	ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
	ctx.Response.Header.Set("X-Frame-Options", "SAMEORIGIN")
	ctx.Response.Header.Set("Referrer-Policy", "no-referrer")
	path := ctx.Path()
	isControl := bytes.HasPrefix(path, []byte(ControlPrefix))
	isProbe := !isControl && isHealthcheck(ctx, path)
	if (isControl || isProbe) && ctx.ConnRequestNum() == 1 {
		if tc, ok := ctx.Conn().(*trackedConn); ok {
			tc.markControl()
		}
	}
	switch {
	case isControl:
		s.control(ctx, string(path))
	case isProbe:
		s.healthcheck(ctx)
	case s.channel(ctx):
	default:
		s.echo(ctx)
	}
}

// isHealthcheck reports whether the request is a health probe: GET or HEAD of
// a path whose last segment is healthcheck.htm (matched case-insensitively,
// as IIS would).
func isHealthcheck(ctx *fasthttp.RequestCtx, path []byte) bool {
	if !ctx.IsGet() && !ctx.IsHead() {
		return false
	}
	const page = "/healthcheck.htm"
	return len(path) >= len(page) && strings.EqualFold(string(path[len(path)-len(page):]), page)
}

func (s *server) healthcheck(ctx *fasthttp.RequestCtx) {
	s.stats.healthchecks.Add(1)
	status := int(s.healthStatus.Load())
	if status == 0 {
		status = fasthttp.StatusOK
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("text/plain")
	ctx.SetBodyString(strconv.Itoa(status) + " " + fasthttp.StatusMessage(status) + "\r\n<br/>" + s.name)
}

func (s *server) control(ctx *fasthttp.RequestCtx, path string) {
	ctx.SetContentType("text/plain; charset=utf-8")
	switch path {
	case StatsPath:
		if !ctx.IsGet() && !ctx.IsHead() {
			methodNotAllowed(ctx, "GET, HEAD")
			return
		}
		ctx.SetContentType("application/json")
		ctx.SetBody(marshal(s.snapshot()))
	case HealthControlPath:
		if !ctx.IsPost() && !ctx.IsPut() {
			methodNotAllowed(ctx, "POST, PUT")
			return
		}
		status, err := parseStatus(ctx.QueryArgs().Peek("status"))
		if err != nil {
			badRequest(ctx, "status", err)
			return
		}
		s.healthStatus.Store(int32(status))
		ctx.SetBodyString("healthcheck now answers " + strconv.Itoa(status) + "\n")
	default:
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		ctx.SetBodyString("mailboxd: no such control path\n")
	}
}

func (s *server) snapshot() Stats {
	st := Stats{
		Server:              s.name,
		Requests:            s.stats.requests.Load(),
		Healthchecks:        s.stats.healthchecks.Load(),
		ConnectionsAccepted: s.stats.accepted.Load(),
		ConnectionsOpen:     s.stats.open.Load(),
		ControlConnections:  s.stats.control.Load(),
	}
	s.methodMu.Lock()
	st.ByMethod = make(map[string]int64, len(s.byMethod))
	for m, n := range s.byMethod {
		st.ByMethod[m] = n
	}
	s.methodMu.Unlock()
	if s.identity != nil {
		st.Identity = s.identity.snapshot()
	}
	return st
}

// controls is the parsed set of control headers of one request.
type controls struct {
	size       int64 // -1: answer with the Echo
	chunked    bool
	chunkDelay time.Duration
	delay      time.Duration
	status     int
	unframed   bool
	close      bool
	seen       [len(controlNames)]bool // first occurrence wins
}

var controlNames = [...]string{HeaderSize, HeaderChunked, HeaderChunkDelay, HeaderDelay, HeaderStatus, HeaderUnframed, HeaderClose}

// set records the header name: value if it is a control header.
func (c *controls) set(name, value []byte) error {
	i := 0
	for ; i < len(controlNames); i++ {
		if len(name) == len(controlNames[i]) && strings.EqualFold(string(name), controlNames[i]) {
			break
		}
	}
	if i == len(controlNames) || c.seen[i] {
		return nil
	}
	c.seen[i] = true
	v := string(value)
	var err error
	switch controlNames[i] {
	case HeaderSize:
		c.size, err = strconv.ParseInt(v, 10, 64)
		if err == nil && (c.size < 0 || c.size > maxSize) {
			err = fmt.Errorf("out of range [0, %d]", int64(maxSize))
		}
	case HeaderChunked:
		c.chunked, err = strconv.ParseBool(v)
	case HeaderChunkDelay:
		c.chunkDelay, err = parseDelay(v)
	case HeaderDelay:
		c.delay, err = parseDelay(v)
	case HeaderStatus:
		c.status, err = parseStatus(value)
	case HeaderUnframed:
		c.unframed, err = strconv.ParseBool(v)
	case HeaderClose:
		c.close, err = strconv.ParseBool(v)
	}
	if err != nil {
		return fmt.Errorf("%s: %q: %w", controlNames[i], v, err)
	}
	return nil
}

func parseDelay(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err == nil && d < 0 {
		err = errors.New("negative duration")
	}
	return d, err
}

func parseStatus(v []byte) (int, error) {
	n, err := strconv.Atoi(string(v))
	if err != nil {
		return 0, err
	}
	if n < 200 || n > 599 {
		return 0, errors.New("status out of range [200, 599]")
	}
	return n, nil
}

func (s *server) echo(ctx *fasthttp.RequestCtx) {
	seq := s.stats.requests.Add(1)
	method := string(ctx.Method())
	s.methodMu.Lock()
	s.byMethod[method]++
	s.methodMu.Unlock()
	ctx.Response.Header.Set(HeaderSeq, strconv.FormatInt(seq, 10))

	e := Echo{
		Server:  s.name,
		Method:  method,
		Target:  string(ctx.Request.Header.RequestURI()),
		Proto:   string(ctx.Request.Header.Protocol()),
		Headers: [][2]string{},
		Seq:     seq,
	}
	ctl := controls{size: -1}
	var ctlErr error
	var assertion []byte // the first identity header's value
	assertions := 0
	// AllInOrder re-parses the raw header block, the only view that keeps
	// wire order: fasthttp files Host, Content-Type, User-Agent, Cookie and
	// the framing headers apart from the others.
	for name, value := range ctx.Request.Header.AllInOrder() {
		e.Headers = append(e.Headers, [2]string{string(name), string(value)})
		if err := ctl.set(name, value); err != nil && ctlErr == nil {
			ctlErr = err
		}
		if s.identity != nil && strings.EqualFold(string(name), s.identity.header) {
			if assertions++; assertions == 1 {
				assertion = bytes.Clone(value)
			}
		}
	}
	n, sum, bodyErr := hashBody(ctx)
	e.BodyBytes, e.BodySHA256 = n, hex.EncodeToString(sum)
	s.logRequest(&e)

	if bodyErr != nil {
		// The framing of the connection is unknown now: do not reuse it.
		ctx.SetConnectionClose()
		badRequest(ctx, "request body", bodyErr)
		return
	}
	// Identity before the controls: a real mailbox server authorizes a
	// request before it does anything the request asks for.
	if s.identity != nil {
		id, reason, err := s.identity.check(assertion, assertions, time.Now())
		if err != nil {
			ctx.SetStatusCode(fasthttp.StatusForbidden)
			ctx.SetContentType("text/plain; charset=utf-8")
			ctx.SetBodyString("mailboxd: identity refused (" + reason + "): " + err.Error() + "\n")
			return
		}
		e.Identity = id
		ctx.Response.Header.Set(HeaderUser, id.User)
	}
	if ctlErr != nil {
		badRequest(ctx, "control header", ctlErr)
		return
	}

	if ctl.delay > 0 {
		t := time.NewTimer(ctl.delay)
		select {
		case <-t.C:
		case <-ctx.Done(): // shutting down
		}
		t.Stop()
	}

	status := fasthttp.StatusOK
	if ctl.status != 0 {
		status = ctl.status
	}
	b := &body{done: ctx.Done()}
	var contentType string
	if ctl.size >= 0 {
		contentType = "application/octet-stream"
		b.n = ctl.size
		if j := marshalCompact(&e); len(j) <= MaxEchoHeader {
			ctx.Response.Header.SetBytesV(HeaderEcho, j)
		}
	} else {
		contentType = "application/json"
		b.data = marshal(&e)
		b.n = int64(len(b.data))
	}
	if status == fasthttp.StatusNoContent || status == fasthttp.StatusNotModified {
		b, contentType = nil, ""
	}

	if ctl.unframed {
		s.unframed(ctx, status, contentType, b)
		return
	}
	ctx.SetStatusCode(status)
	if ctl.close {
		ctx.SetConnectionClose()
	}
	if b == nil {
		return
	}
	ctx.SetContentType(contentType)
	if ctl.chunked {
		b.chunkDelay = ctl.chunkDelay
		ctx.Response.SetBodyStream(b, -1)
	} else if b.data != nil {
		ctx.SetBody(b.data)
	} else {
		ctx.Response.SetBodyStream(b, int(b.n))
	}
}

// unframed answers with a response whose body ends where the connection
// does. fasthttp always frames what it writes, so the handler takes the
// connection over and writes the response itself; fasthttp closes the
// connection when the hijack handler returns, dropping anything pipelined
// behind this request.
func (s *server) unframed(ctx *fasthttp.RequestCtx, status int, contentType string, b *body) {
	var head bytes.Buffer
	fmt.Fprintf(&head, "HTTP/1.1 %d %s\r\n", status, fasthttp.StatusMessage(status))
	if contentType != "" {
		fmt.Fprintf(&head, "Content-Type: %s\r\n", contentType)
	}
	for name, value := range ctx.Response.Header.All() {
		// Only our X-Mailboxd-* headers: the defaults fasthttp would add
		// (Content-Type, Server, Date) are not wanted or already written.
		if bytes.HasPrefix(name, []byte("X-Mailboxd-")) {
			fmt.Fprintf(&head, "%s: %s\r\n", name, value)
		}
	}
	head.WriteString("\r\n")
	if ctx.IsHead() {
		b = nil
	}
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		if _, err := c.Write(head.Bytes()); err != nil || b == nil {
			return
		}
		_, _ = b.WriteTo(c)
	})
}

// hashBody reads the request body to its end, returning its length and
// SHA-256. With StreamRequestBody the body arrives through a stream when it
// is large or chunked; a small one may already sit in the body buffer.
func hashBody(ctx *fasthttp.RequestCtx) (int64, []byte, error) {
	h := sha256.New()
	var n int64
	var err error
	if r := ctx.RequestBodyStream(); r != nil {
		n, err = io.Copy(h, r)
	} else {
		b := ctx.Request.Body()
		h.Write(b)
		n = int64(len(b))
	}
	return n, h.Sum(nil), err
}

func (s *server) logRequest(e *Echo) {
	if s.requestLog == nil {
		return
	}
	line := marshal(struct {
		Seq     int64       `json:"seq"`
		Method  string      `json:"method"`
		Target  string      `json:"target"`
		Headers [][2]string `json:"headers"`
	}{e.Seq, e.Method, e.Target, e.Headers})
	s.logMu.Lock()
	defer s.logMu.Unlock()
	_, _ = s.requestLog.Write(line)
}

func badRequest(ctx *fasthttp.RequestCtx, what string, err error) {
	ctx.SetStatusCode(fasthttp.StatusBadRequest)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString("mailboxd: bad " + what + ": " + err.Error() + "\n")
}

func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
	ctx.Response.Header.Set("Allow", allow)
	ctx.SetBodyString("mailboxd: method not allowed\n")
}

// marshal encodes v as one line of JSON, newline-terminated, without
// escaping <, > and & (nothing here is embedded in HTML).
func marshal(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only strings, ints and maps of them: encoding cannot fail.
		panic(err)
	}
	return buf.Bytes()
}

// marshalCompact is marshal without the newline, for header values.
func marshalCompact(v any) []byte {
	b := marshal(v)
	return b[:len(b)-1]
}

// patternBlock holds Pattern repeated to cover ChunkSize bytes from any
// offset within the pattern, so a body at any offset is a plain sub-slice.
var patternBlock = []byte(strings.Repeat(Pattern, ChunkSize/len(Pattern)+1))

// body is a response body: data if non-nil, otherwise n bytes of Pattern.
// fasthttp consumes it through WriteTo (it implements fasthttp.BodyWriterTo),
// and WriteTo hands out at most ChunkSize bytes per Write. On the chunked
// path each Write becomes one chunk, flushed to the socket, which is what
// makes chunk sizes and pacing exact. (SetBodyStreamWriter cannot promise
// that: it goes through a pipe and a 4 KiB copy buffer.)
type body struct {
	data       []byte
	n          int64 // total length
	off        int64 // bytes already consumed
	chunkDelay time.Duration
	done       <-chan struct{} // closed at shutdown: stop pacing
}

func (b *body) next(limit int) []byte {
	k := min(int64(limit), b.n-b.off)
	if b.data != nil {
		return b.data[b.off : b.off+k]
	}
	start := int(b.off % int64(len(Pattern)))
	return patternBlock[start : start+int(k)]
}

// Read implements io.Reader.
func (b *body) Read(p []byte) (int, error) {
	if b.off >= b.n {
		return 0, io.EOF
	}
	k := copy(p, b.next(min(len(p), ChunkSize)))
	b.off += int64(k)
	return k, nil
}

// WriteTo implements io.WriterTo.
func (b *body) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for b.off < b.n {
		if b.chunkDelay > 0 && total > 0 {
			t := time.NewTimer(b.chunkDelay)
			select {
			case <-t.C:
			case <-b.done:
				b.chunkDelay = 0
			}
			t.Stop()
		}
		k, err := w.Write(b.next(ChunkSize))
		b.off += int64(k)
		total += int64(k)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// SupportsBodyWriteTo implements fasthttp.BodyWriterTo: WriteTo and Read
// produce the same bytes.
func (b *body) SupportsBodyWriteTo() bool { return true }

// fasthttpLogger routes fasthttp's own messages (mostly malformed requests
// and broken connections) to slog.
type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Warn("mailboxd: " + fmt.Sprintf(format, args...))
}

// connTracker counts connections and can close them all, which bounds
// shutdown: fasthttp only ever closes connections it considers idle.
type connTracker struct {
	stats *counters

	mu       sync.Mutex
	conns    map[*trackedConn]struct{} // open or still lingering
	noLinger bool                      // shutting down: close outright
	// lingering counts connections half-closed by lingerClose whose
	// draining goroutine has not finished. Add only happens under mu with
	// noLinger false, so every Add happens before wait's Wait.
	lingering sync.WaitGroup
}

func (t *connTracker) add(c *trackedConn) {
	t.stats.accepted.Add(1)
	t.stats.open.Add(1)
	t.mu.Lock()
	if t.conns == nil {
		t.conns = make(map[*trackedConn]struct{})
	}
	t.conns[c] = struct{}{}
	t.mu.Unlock()
}

func (t *connTracker) remove(c *trackedConn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// stopLingering makes every later Close immediate. Shutdown needs that:
// fasthttp closes idle connections from its shutdown goroutine to wake the
// goroutine blocked reading them, and a half-close would not wake it.
// (Every other Close comes from the goroutine that owns the connection,
// once it is done reading.)
func (t *connTracker) stopLingering() {
	t.mu.Lock()
	t.noLinger = true
	t.mu.Unlock()
}

// closeAll closes the sockets of every connection still known, including
// those lingering, which ends their draining goroutines.
func (t *connTracker) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.noLinger = true
	for c := range t.conns {
		_ = c.Conn.Close()
	}
}

func (t *connTracker) wait() { t.lingering.Wait() }

// trackingListener wraps every accepted connection in a trackedConn.
type trackingListener struct {
	net.Listener
	conns *connTracker
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, conns: l.conns}
	l.conns.add(tc)
	return tc, nil
}

// trackedConn keeps the connection counters honest and closes gracefully.
type trackedConn struct {
	net.Conn
	conns *connTracker

	mu      sync.Mutex
	control bool // first request was under ControlPrefix
	closed  bool
}

// markControl moves the connection from the gateway counters to
// ControlConnections.
func (c *trackedConn) markControl() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.control {
		return
	}
	c.control = true
	st := c.conns.stats
	st.accepted.Add(-1)
	st.control.Add(1)
	if !c.closed {
		st.open.Add(-1)
	}
}

// Close counts the connection closed and closes it with lingerClose.
// fasthttp may call it more than once (shutdown sweeps idle connections
// while their goroutine winds down); only the first call counts.
func (c *trackedConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	if !c.control {
		c.conns.stats.open.Add(-1)
	}
	c.mu.Unlock()
	return c.lingerClose()
}

// lingerClose sends FIN and keeps reading for a moment before releasing the
// socket. Closing a socket outright while unread request bytes sit in its
// receive buffer (a pipelined request after a "close" or unframed response,
// for instance) makes the kernel send RST, and an RST can destroy response
// bytes the peer has received but not yet read: the peer would see
// "connection reset" instead of the response followed by EOF. net/http's
// server does the same for the same reason.
func (c *trackedConn) lingerClose() error {
	t := c.conns
	tcp, ok := c.Conn.(*net.TCPConn)
	t.mu.Lock()
	if !ok || t.noLinger || tcp.CloseWrite() != nil {
		delete(t.conns, c)
		t.mu.Unlock()
		return c.Conn.Close()
	}
	t.lingering.Add(1)
	t.mu.Unlock()
	go func() {
		defer c.conns.lingering.Done()
		_ = tcp.SetReadDeadline(time.Now().Add(lingerTimeout))
		_, _ = io.Copy(io.Discard, tcp)
		_ = tcp.Close()
		c.conns.remove(c)
	}()
	return nil
}

// identityCheck verifies the identity assertions of requests and counts
// the outcomes.
type identityCheck struct {
	verifier *identity.Verifier
	header   string
	accepted atomic.Int64
	refused  map[string]*atomic.Int64 // by reason; the keys never change
}

func newIdentityCheck(v *identity.Verifier, header string) *identityCheck {
	c := &identityCheck{verifier: v, header: header, refused: make(map[string]*atomic.Int64)}
	for _, r := range append([]string{IdentityMissing, IdentityDuplicate}, identity.Reasons()...) {
		c.refused[r] = new(atomic.Int64)
	}
	return c
}

// check verifies the first of n assertion headers, value, at now. It
// returns the identity, or the reason for refusing it and why.
func (c *identityCheck) check(value []byte, n int, now time.Time) (*EchoIdentity, string, error) {
	var reason string
	var err error
	var claims identity.Claims
	switch {
	case n == 0:
		reason, err = IdentityMissing, fmt.Errorf("no %s header", c.header)
	case n > 1:
		reason, err = IdentityDuplicate, fmt.Errorf("%d %s headers, want one", n, c.header)
	default:
		if claims, err = c.verifier.Verify(value, now); err != nil {
			reason = identity.Reason(err)
		}
	}
	if err != nil {
		c.refused[reason].Add(1)
		return nil, reason, err
	}
	c.accepted.Add(1)
	id := &EchoIdentity{
		User:     claims.User,
		Mailbox:  claims.Mailbox,
		Database: claims.Database,
		Method:   string(claims.Method),
		Issuer:   claims.Issuer,
		KeyID:    claims.KeyID,
	}
	if claims.Client.IsValid() {
		id.Client = claims.Client.String()
	}
	return id, "", nil
}

func (c *identityCheck) snapshot() *IdentityStats {
	st := &IdentityStats{Accepted: c.accepted.Load(), Refused: make(map[string]int64, len(c.refused))}
	for r, n := range c.refused {
		st.Refused[r] = n.Load()
	}
	return st
}
