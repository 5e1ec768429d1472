package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"frontdoor/auth/password"
	"frontdoor/internal/dovecot"
)

// IMAPMode makes a scenario an IMAP one (see the imap-* and
// idle-conns-imap* scenarios): the gateway's mail listeners in front of a
// Dovecot the suite starts, and the same load straight to Dovecot as the
// ceiling.
type IMAPMode int

const (
	IMAPNone IMAPMode = iota
	// IMAPLogin: each connection loops connect, greeting, LOGIN, LOGOUT,
	// close; a "request" is a login.
	IMAPLogin
	// IMAPFetch: logged-in connections SELECT INBOX and FETCH 1 BODY[]
	// (imapMessageBytes) in a loop; a "request" is a FETCH.
	IMAPFetch
	// IMAPIdle: --idle-conns logged-in sessions held idle (gateway only).
	IMAPIdle
	// IMAPIdlePreLogin: --idle-conns connections that read the greeting
	// and stay idle before login (gateway only).
	IMAPIdlePreLogin
)

const (
	// defaultIMAPUsers is the fixed population of IMAP users the login and idle
	// scenarios cycle through. Each one's first login costs the gateway an
	// argon2id verification; the suite logs every one in once before the
	// first measurement, so the runs measure the steady state of a client
	// population within auth.cache_ttl (5 minutes by default): cache hits.
	defaultIMAPUsers = 128
	// imapFetchUser holds the one message imap-fetch-10m fetches.
	imapFetchUser = "imap0000"
	// imapMessageBytes is that message's size.
	imapMessageBytes = 10 << 20
	// imapMasterUser logs in to Dovecot on the users' behalf.
	imapMasterUser = "frontdoor"
	// imapIOTimeout bounds every read and write of the IMAP client.
	imapIOTimeout = 30 * time.Second
	// imapIdleOpeners is how many idle sessions are opened at a time.
	imapIdleOpeners = 64
)

// imapUsers is defaultIMAPUsers; the fast test takes fewer.
var imapUsers = defaultIMAPUsers

func imapUser(i int) string { return fmt.Sprintf("imap%04d", i%imapUsers) }

// IMAPReport holds the figures of an IMAP row beyond the common ones.
type IMAPReport struct {
	// Listener says what the row's connections went to, e.g. "gateway
	// imaps (implicit TLS)", "dovecot plaintext".
	Listener string `json:"listener"`
	Users    int    `json:"users"`
	// CacheTTL is the gateway's auth.cache_ttl when the scenario sets one
	// (imap-login-miss); empty: the default, with the cache warmed.
	CacheTTL string `json:"auth_cache_ttl,omitempty"`
	// BytesFetched counts the message bytes of the FETCH answers (the
	// literals), MiBPerSecond their rate; GatewayCPUPerMiBUS the gateway's
	// CPU per MiB relayed. imap-fetch-10m only.
	BytesFetched       int64    `json:"bytes_fetched,omitempty"`
	MiBPerSecond       float64  `json:"mib_per_s,omitempty"`
	GatewayCPUPerMiBUS *float64 `json:"gateway_cpu_us_per_mib,omitempty"`
	// DovecotCPUPerOpUS is Dovecot's CPU (its whole process tree) per
	// login or FETCH.
	DovecotCPUPerOpUS *float64 `json:"dovecot_cpu_us_per_op,omitempty"`
	// GatewayMail is the growth of the gateway's mail counters (/stats
	// mail) over the measured run, on gateway rows.
	GatewayMail map[string]int64 `json:"gateway_mail,omitempty"`
}

// mailFixture is the Dovecot behind the IMAP scenarios and what the
// gateway's config needs to reach it.
type mailFixture struct {
	dir         string
	dovecot     *child
	port        int    // Dovecot's IMAP port on 127.0.0.1
	addr        string // 127.0.0.1:port
	hash        string // benchPassword's argon2id hash
	masterFile  string
	gwIMAP      string // the gateway's plaintext IMAP listener (allow_plaintext_login)
	gwIMAPS     string // its implicit-TLS IMAP listener
	gwIMAPPort  int
	gwIMAPSPort int
	// primedPID is the gateway process whose auth cache primeIMAP warmed.
	primedPID int
}

// imapSelected reports whether any selected scenario is an IMAP one.
func imapSelected(scs []Scenario) bool {
	for _, sc := range scs {
		if sc.IMAP != IMAPNone {
			return true
		}
	}
	return false
}

// startDovecot starts the Dovecot of the IMAP scenarios under s.dir/dovecot
// with imapUsers users, the master user, and the message imap-fetch-10m
// fetches APPENDed once. It returns an error only for a Dovecot that is
// installed but would not run.
func (s *suite) startDovecot(ctx context.Context) (*mailFixture, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	pop3Port, err := freePort()
	if err != nil {
		return nil, err
	}
	m := &mailFixture{dir: filepath.Join(s.dir, "dovecot"), port: port, addr: "127.0.0.1:" + strconv.Itoa(port)}
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		return nil, err
	}
	master := rand.Text()
	m.masterFile = filepath.Join(s.dir, "mail-master.password")
	if err := os.WriteFile(m.masterFile, []byte(master+"\n"), 0o600); err != nil {
		return nil, err
	}
	if m.hash, err = password.Hash([]byte(benchPassword)); err != nil {
		return nil, err
	}
	users := make([]string, imapUsers)
	for i := range users {
		users[i] = imapUser(i)
	}
	conf, err := dovecot.Prepare(dovecot.Config{
		Dir: m.dir, Name: "bench", IP: "127.0.0.1", IMAPPort: port, POP3Port: pop3Port,
		MasterUser: imapMasterUser, MasterPassword: master, Users: users, Password: benchPassword,
		Extra: dovecotBenchConf,
	})
	if err != nil {
		return nil, err
	}
	argv := s.pinArgv(pinLoadCPU, dovecot.Argv(conf))
	if m.dovecot, err = startChild("dovecot", argv, s.dir); err != nil {
		return nil, err
	}
	if err := dovecot.WaitReady([]string{m.addr}, s.o.startupTimeout, m.dovecot.exited); err != nil {
		m.dovecot.dumpOutput(s.stderr)
		fmt.Fprintf(s.stderr, "%s\n", dovecot.Log(m.dir))
		m.dovecot.stop()
		return nil, err
	}
	if err := imapAppend(ctx, m.addr, imapFetchUser, imapMessageBytes); err != nil {
		m.dovecot.stop()
		return nil, fmt.Errorf("appending the %d-byte message: %w", imapMessageBytes, err)
	}
	fmt.Fprintf(s.stderr, "dovecot listening on %s (pid %d, %d users, a %d MiB message in %s's INBOX)\n",
		m.addr, m.dovecot.pid(), imapUsers, imapMessageBytes>>20, imapFetchUser)
	return m, nil
}

// dovecotBenchConf lifts Dovecot's limits for thousands of sessions:
// login processes in high-performance mode (one process, many clients),
// imap processes serving many sessions each (all users share one uid), no
// per-user connection cap, and no info log line per login.
const dovecotBenchConf = `
info_log_path = /dev/null
mail_max_userip_connections = 1000000
default_vsz_limit = 2G
service imap-login {
  service_count = 0
  client_limit = 10000
  process_min_avail = 1
  process_limit = 4
}
service imap {
  service_count = 0
  client_limit = 1000
  process_limit = 64
}
service anvil {
  client_limit = 20000
}
service auth {
  client_limit = 20000
}
`

// mailGatewayConfig is the gateway config's mail part: a plaintext IMAP
// listener that allows logins before TLS, an implicit-TLS one, and [mail]
// with the master user.
func (m *mailFixture) gatewayConfig(certDir string) string {
	return fmt.Sprintf(`
[[listener]]
name = "imap"
address = %q
mail = "imap"
allow_plaintext_login = true   # imap-login: LOGIN in plaintext, as to the direct row's Dovecot

[[listener]]
name = "imaps"
address = %q
mail = "imap"
tls = true
tls_self_signed = true
certificates = [{ cert = %q, key = %q }]

[mail]
master_user = %q
master_password_file = %q
imap_backend_port = %d
imap_idle_timeout = "30m"
`, m.gwIMAP, m.gwIMAPS, filepath.Join(certDir, "cert.pem"), filepath.Join(certDir, "key.pem"),
		imapMasterUser, m.masterFile, m.port)
}

// directoryUsers are the IMAP users in the gateway's directory (database
// DB01, on the server whose address Dovecot listens on).
func (m *mailFixture) directoryUsers() string {
	var b strings.Builder
	for i := range imapUsers {
		fmt.Fprintf(&b, "\n[[user]]\nlogin = %q\naddress = \"%s@example.test\"\ndatabase = \"DB01\"\npassword_hash = %q\n",
			imapUser(i), imapUser(i), m.hash)
	}
	return b.String()
}

// imapConn is one client connection.
type imapConn struct {
	c net.Conn
	r *bufio.Reader
}

// imapDial connects to addr (from local, if set), completes the TLS
// handshake with tc, and reads the greeting. The error is counted in e.
func imapDial(ctx context.Context, addr, local string, tc *tls.Config, e *ErrorCounts) (*imapConn, *tls.ConnectionState, error) {
	d := net.Dialer{Timeout: imapIOTimeout}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		e.Connect++
		return nil, nil, err
	}
	_ = c.SetDeadline(time.Now().Add(imapIOTimeout))
	var st *tls.ConnectionState
	if tc != nil {
		tcn := tls.Client(c, tc)
		if err := tcn.HandshakeContext(ctx); err != nil {
			c.Close()
			e.Handshake++
			return nil, nil, err
		}
		cs := tcn.ConnectionState()
		st, c = &cs, tcn
	}
	ic := &imapConn{c: c, r: bufio.NewReaderSize(c, 16<<10)}
	l, err := ic.r.ReadSlice('\n')
	if err != nil || !bytes.HasPrefix(l, []byte("* OK")) {
		c.Close()
		if err == nil {
			e.Status++
			err = fmt.Errorf("greeting %q", l)
		} else {
			countIOErr(e, err, false)
		}
		return nil, nil, err
	}
	return ic, st, nil
}

func countIOErr(e *ErrorCounts, err error, write bool) {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		e.Timeout++
	case write:
		e.Write++
	default:
		e.Read++
	}
}

// cmd sends "tag command" and reads to the tagged answer, discarding the
// untagged lines and the literals in them (whose sizes it returns). A
// tagged answer other than OK is a Status error.
func (ic *imapConn) cmd(tag, command string, e *ErrorCounts) (literal int64, err error) {
	_ = ic.c.SetDeadline(time.Now().Add(imapIOTimeout))
	if _, err := io.WriteString(ic.c, tag+" "+command+"\r\n"); err != nil {
		countIOErr(e, err, true)
		return 0, err
	}
	return ic.readTagged(tag, command, e)
}

// readTagged reads to the answer tagged tag (see cmd).
func (ic *imapConn) readTagged(tag, command string, e *ErrorCounts) (literal int64, err error) {
	for {
		l, err := ic.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A long untagged line: skip the rest of it.
			for err == bufio.ErrBufferFull {
				_, err = ic.r.ReadSlice('\n')
			}
			if err == nil {
				continue
			}
		}
		if err != nil {
			countIOErr(e, err, false)
			return literal, err
		}
		if n, ok := literalSize(l); ok {
			_ = ic.c.SetDeadline(time.Now().Add(imapIOTimeout))
			if _, err := ic.r.Discard(int(n)); err != nil {
				countIOErr(e, err, false)
				return literal, err
			}
			literal += n
			continue
		}
		if bytes.HasPrefix(l, []byte(tag+" ")) {
			if !bytes.HasPrefix(l[len(tag)+1:], []byte("OK")) {
				e.Status++
				return literal, fmt.Errorf("%s: %q", command, bytes.TrimSpace(l))
			}
			return literal, nil
		}
	}
}

// literalSize parses a line ending in "{N}\r\n".
func literalSize(l []byte) (int64, bool) {
	l = bytes.TrimRight(l, "\r\n")
	if len(l) < 3 || l[len(l)-1] != '}' {
		return 0, false
	}
	i := bytes.LastIndexByte(l, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(l[i+1:len(l)-1]), 10, 64)
	return n, err == nil && n >= 0
}

func (ic *imapConn) login(user string, e *ErrorCounts) error {
	_, err := ic.cmd("a", "LOGIN "+user+" "+benchPassword, e)
	return err
}

// imapAppend stores one message of size bytes in user's INBOX at addr
// (Dovecot, plaintext).
func imapAppend(ctx context.Context, addr, user string, size int) error {
	var e ErrorCounts
	ic, _, err := imapDial(ctx, addr, "", nil, &e)
	if err != nil {
		return err
	}
	defer ic.c.Close()
	if err := ic.login(user, &e); err != nil {
		return err
	}
	_ = ic.c.SetDeadline(time.Now().Add(imapIOTimeout))
	if _, err := fmt.Fprintf(ic.c, "p APPEND INBOX {%d}\r\n", size); err != nil {
		return err
	}
	if l, err := ic.r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "+") {
		return fmt.Errorf("APPEND: %q %v", l, err)
	}
	hdr := "From: bench@example.test\r\nTo: " + user + "@example.test\r\nSubject: 10 MiB\r\n\r\n"
	line := strings.Repeat("x", 76) + "\r\n"
	body := []byte(hdr)
	for len(body)+len(line) <= size {
		body = append(body, line...)
	}
	body = append(body, strings.Repeat("y", size-len(body))...)
	if _, err := ic.c.Write(append(body, "\r\n"...)); err != nil {
		return err
	}
	_, err = ic.readTagged("p", "APPEND", &e)
	return err
}

// imapLoad describes one IMAP load run.
type imapLoad struct {
	mode       IMAPMode
	addr       string
	tls        *tls.Config
	conns      int
	duration   time.Duration
	localAddrs []string
}

// imapResult is a Result (Requests: logins or FETCHes) and the bytes
// fetched.
type imapResult struct {
	*Result
	bytes int64
	// firstErr is the first error of the run, for the progress output.
	firstErr string
}

// runIMAP drives the load of l for l.duration. Login latency runs from the
// start of the dial to the tagged OK of LOGIN (TCP connect, TLS handshake,
// greeting, LOGIN: what a client waits for); FETCH latency from the
// command's write to its tagged OK.
func runIMAP(ctx context.Context, l imapLoad) *imapResult {
	ctx, cancel := context.WithTimeout(ctx, l.duration)
	defer cancel()
	// The dialer's deadline comes from ctx's and can pass a moment before
	// ctx says so: over is the test for both.
	deadline, _ := ctx.Deadline()
	over := func() bool { return ctx.Err() != nil || !time.Now().Before(deadline) }
	type worker struct {
		res   Result
		bytes int64
	}
	ws := make([]worker, l.conns)
	var next atomic.Int64
	var tlsParams, firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for i := range ws {
		w := &ws[i]
		w.res.Latency = NewHistogram()
		if l.tls != nil {
			w.res.HandshakeLatency = NewHistogram()
		}
		wg.Go(func() {
			local := ""
			if len(l.localAddrs) > 0 {
				local = l.localAddrs[i%len(l.localAddrs)]
			}
			for !over() {
				user := imapUser(int(next.Add(1)))
				if l.mode == IMAPFetch {
					user = imapFetchUser
				}
				var e ErrorCounts
				t0 := time.Now()
				ic, st, err := imapDial(ctx, l.addr, local, l.tls, &e)
				if err == nil {
					w.res.Dials++
					if st != nil {
						w.res.Handshakes++
						w.res.HandshakeLatency.Record(time.Since(t0))
						tlsParams.CompareAndSwap(nil, describeTLS(st))
					}
					err = ic.login(user, &e)
				}
				if err == nil && l.mode == IMAPLogin {
					w.res.Latency.Record(time.Since(t0))
					w.res.Requests++
					_, _ = ic.cmd("b", "LOGOUT", &ErrorCounts{})
				}
				if err == nil && l.mode == IMAPFetch {
					if _, err = ic.cmd("s", "SELECT INBOX", &e); err == nil {
						for !over() {
							t := time.Now()
							n, err := ic.cmd("f", "FETCH 1 BODY[]", &e)
							if err != nil {
								break
							}
							w.res.Latency.Record(time.Since(t))
							w.res.Requests++
							w.bytes += n
						}
					}
				}
				if ic != nil {
					ic.c.Close()
				}
				if !over() {
					w.res.Errors.add(e)
					if err != nil {
						firstErr.CompareAndSwap(nil, fmt.Sprintf("%v (at %v)", err, time.Since(start).Round(time.Millisecond)))
					}
				}
			}
		})
	}
	wg.Wait()
	out := &imapResult{Result: &Result{Latency: NewHistogram(), Elapsed: time.Since(start)}}
	if l.tls != nil {
		out.HandshakeLatency = NewHistogram()
	}
	for i := range ws {
		w := &ws[i]
		out.Requests += w.res.Requests
		out.Dials += w.res.Dials
		out.Handshakes += w.res.Handshakes
		out.Errors.add(w.res.Errors)
		out.Latency.Merge(w.res.Latency)
		if out.HandshakeLatency != nil {
			out.HandshakeLatency.Merge(w.res.HandshakeLatency)
		}
		out.bytes += w.bytes
	}
	out.StatusClasses[2] = out.Requests
	if p, ok := tlsParams.Load().(string); ok {
		out.TLSParams = p
	}
	out.firstErr, _ = firstErr.Load().(string)
	return out
}

func describeTLS(st *tls.ConnectionState) string {
	return fmt.Sprintf("%s %s %s", tlsVersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.CurveID)
}

func tlsVersionName(v uint16) string {
	if v == tls.VersionTLS13 {
		return "TLS 1.3"
	}
	return tls.VersionName(v)
}

// openIMAPIdle opens n sessions to addr, imapIdleOpeners at a time, from
// local round-robin; each logs in (unless preLogin) and is then left idle.
// Result.Requests counts the sessions held, Latency their logins (or
// greetings).
func openIMAPIdle(ctx context.Context, addr string, tc *tls.Config, local []string, n int, preLogin bool) (*IdleConns, error) {
	if n <= 0 {
		return nil, errors.New("bench: openIMAPIdle needs a positive connection count")
	}
	res := &Result{Latency: NewHistogram()}
	if tc != nil {
		res.HandshakeLatency = NewHistogram()
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		next  atomic.Int64
		wg    sync.WaitGroup
	)
	start := time.Now()
	for range min(imapIdleOpeners, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				src := ""
				if len(local) > 0 {
					src = local[i%len(local)]
				}
				var e ErrorCounts
				t0 := time.Now()
				ic, st, err := imapDial(ctx, addr, src, tc, &e)
				if err == nil && !preLogin {
					err = ic.login(imapUser(i), &e)
				}
				d := time.Since(t0)
				mu.Lock()
				res.Errors.add(e)
				if err != nil {
					if ic != nil {
						ic.c.Close()
					}
					mu.Unlock()
					continue
				}
				_ = ic.c.SetDeadline(time.Time{})
				res.Dials++
				res.Requests++
				res.Latency.Record(d)
				if st != nil {
					res.Handshakes++
					res.HandshakeLatency.Record(d)
					if res.TLSParams == "" {
						res.TLSParams = describeTLS(st)
					}
				}
				conns = append(conns, ic.c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.StatusClasses[2] = res.Requests
	return &IdleConns{conns: conns, Result: res}, nil
}

// primeIMAP logs every IMAP user in once through the gateway's plaintext
// listener, so that the measured runs see the auth cache warm.
func (s *suite) primeIMAP(ctx context.Context) error {
	if s.mail.primedPID == s.gw.pid() {
		return nil
	}
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		errs atomic.Int64
		last atomic.Value
	)
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= imapUsers || ctx.Err() != nil {
					return
				}
				var e ErrorCounts
				ic, _, err := imapDial(ctx, s.mail.gwIMAP, "", nil, &e)
				if err == nil {
					err = ic.login(imapUser(i), &e)
					ic.c.Close()
				}
				if err != nil {
					errs.Add(1)
					last.Store(err.Error())
				}
			}
		})
	}
	wg.Wait()
	if n := errs.Load(); n > 0 {
		return fmt.Errorf("%d of %d logins failed, e.g. %v", n, imapUsers, last.Load())
	}
	s.mail.primedPID = s.gw.pid()
	return nil
}

// gatewayMailStats reads the mail section of the gateway's /stats.
func gatewayMailStats(admin string) (map[string]int64, error) {
	return gatewayStatsSection(admin, "mail")
}

// imapTarget is where a row's connections go, and how.
func (s *suite) imapTarget(sc Scenario, target string) (addr string, tc *tls.Config, listener string) {
	if target == "direct" {
		return s.mail.addr, nil, "dovecot, plaintext"
	}
	if sc.TLS {
		return s.mail.gwIMAPS, s.imapTLSConfig(), "gateway imaps (implicit TLS)"
	}
	return s.mail.gwIMAP, nil, "gateway imap (plaintext, allow_plaintext_login)"
}

func (s *suite) imapTLSConfig() *tls.Config {
	tc := benchTLSConfig(false)
	if len(s.o.tlsGroups) > 0 {
		tc.CurvePreferences = s.o.tlsGroups
	}
	return tc
}

// measureIMAP runs an IMAP load scenario against target (direct: Dovecot;
// gateway) with a warm-up, bracketed by /proc samples of the gateway,
// Dovecot's process tree and the runner.
func (s *suite) measureIMAP(ctx context.Context, sc Scenario, target string) (*RunReport, error) {
	if target == "gateway" && sc.AuthCacheTTL == 0 {
		if err := s.primeIMAP(ctx); err != nil {
			return nil, fmt.Errorf("logging the %d IMAP users in once: %w", imapUsers, err)
		}
	}
	addr, tc, listener := s.imapTarget(sc, target)
	conns := orDefault(sc.Conns, s.o.conns)
	load := imapLoad{mode: sc.IMAP, addr: addr, tls: tc, conns: conns}
	if sc.SourceAddrs {
		// Thousands of logins a second would run one source address's
		// ports to the listener into TIME_WAIT.
		load.localAddrs = s.o.sourceAddrs
		if len(load.localAddrs) == 0 {
			load.localAddrs = idleSourceAddrs
		}
	}
	what := "connect, LOGIN, LOGOUT, close"
	if sc.IMAP == IMAPFetch {
		what = fmt.Sprintf("FETCH 1 BODY[] of %d MiB", imapMessageBytes>>20)
	}
	fmt.Fprintf(s.stderr, "running %s -> %s: %d conns to %s, %s, %v (+%v warm-up)\n",
		sc.Name, target, conns, listener, what, s.o.duration, s.o.warmup)
	if s.o.warmup > 0 {
		load.duration = s.o.warmup
		runIMAP(ctx, load)
	}
	sleepCtx(ctx, 100*time.Millisecond)

	px, proxySample := s.proxySampler(target)
	dovecotSample := func() (ProcSample, error) { return SampleTree(s.mail.dovecot.pid()) }
	var mailBefore, authBefore map[string]int64
	if px != nil && s.gwAdminAddr != "" {
		mailBefore, _ = gatewayMailStats(s.gwAdminAddr)
		authBefore, _ = gatewayAuthStats(s.gwAdminAddr)
	}
	before := sampleAll(proxySample, dovecotSample, procSampler(os.Getpid()))
	load.duration = s.o.duration
	res := runIMAP(ctx, load)
	after := sampleAll(proxySample, dovecotSample, procSampler(os.Getpid()))
	if res.firstErr != "" {
		fmt.Fprintf(s.stderr, "frontdoor bench: %s %s: %s errors, the first: %s\n", sc.Name, target, res.Errors, res.firstErr)
	}

	rr := &RunReport{
		Scenario: sc.Name, Target: target, Conns: conns, Pipeline: 1,
		ElapsedSeconds: res.Elapsed.Seconds(), Requests: res.Requests, RequestsPerSecond: res.RequestsPerSecond(),
		Latency: latencyOf(res.Latency), Errors: res.Errors, ErrorsTotal: res.Errors.Total(),
		StatusClasses: map[string]int64{"2xx": res.Requests}, Dials: res.Dials,
		TLS: tc != nil, PlaintextCeiling: sc.TLS && tc == nil,
		IMAP: &IMAPReport{Listener: listener, Users: imapUsers},
	}
	if sc.AuthCacheTTL > 0 {
		rr.IMAP.CacheTTL = sc.AuthCacheTTL.String()
	}
	if sc.IMAP == IMAPFetch {
		rr.IMAP.Users = 1
	}
	rr.setProcFigures(before, after, px != nil, res.Requests)
	// MBX CPU/REQ: Dovecot's (its whole process tree) per login or FETCH.
	rr.IMAP.DovecotCPUPerOpUS = rr.MailboxdCPUPerRequestUS
	rr.LoadgenCPUPerRequestUS = cpuPer(before, after, 2, res.Requests)
	if res.bytes > 0 {
		rr.IMAP.BytesFetched = res.bytes
		mib := float64(res.bytes) / (1 << 20)
		rr.IMAP.MiBPerSecond = mib / res.Elapsed.Seconds()
		if px != nil && before[0].err == nil && after[0].err == nil {
			v := float64((after[0].CPU - before[0].CPU).Microseconds()) / mib
			rr.IMAP.GatewayCPUPerMiBUS = &v
		}
	}
	if mailBefore != nil {
		if mailAfter, err := gatewayMailStats(s.gwAdminAddr); err == nil {
			rr.IMAP.GatewayMail = authDelta(mailBefore, mailAfter)
		}
	}
	if authBefore != nil && sc.IMAP == IMAPLogin {
		// The table's note then says how many logins were verified
		// (argon2id) and how many were cache hits.
		if authAfter, err := gatewayAuthStats(s.gwAdminAddr); err == nil {
			rr.GatewayAuth = authDelta(authBefore, authAfter)
		}
	}
	if tc != nil {
		rr.Handshakes = res.Handshakes
		rr.HandshakesPerSecond = res.HandshakesPerSecond()
		hl := latencyOf(res.HandshakeLatency)
		rr.HandshakeLatency = &hl
		rr.TLSParams = res.TLSParams
		if px != nil && res.Handshakes > 0 {
			rr.GatewayCPUPerHandshakeUS = cpuPer(before, after, 0, res.Handshakes)
		}
	}
	return rr, nil
}

// measureIMAPIdle is measureIdle for IMAP sessions: on a freshly started
// gateway whose auth cache is warmed (every user logged in once), it opens
// as many sessions as the descriptor limits allow (a logged-in session
// costs the gateway two descriptors, client and backend), holds them, and
// samples the gateway's RSS and heap as runIdle does.
func (s *suite) measureIMAPIdle(ctx context.Context, sc Scenario) (*RunReport, error) {
	rr := &RunReport{Scenario: sc.Name, Target: "gateway", TLS: sc.TLS, StatusClasses: map[string]int64{},
		Idle: &IdleReport{Requested: s.o.idleConns}}
	fmt.Fprintf(s.stderr, "running %s -> gateway: restarting the gateway for a clean memory baseline\n", sc.Name)
	if err := s.restartGateway(ctx); err != nil {
		if s.gw != nil {
			s.gw.dumpOutput(s.stderr)
			s.gw.stop()
			s.gw = nil
		}
		return nil, fmt.Errorf("restarting the gateway: %w", err)
	}
	if err := s.primeIMAP(ctx); err != nil {
		return nil, fmt.Errorf("logging the %d IMAP users in once: %w", imapUsers, err)
	}
	if sc.TLS {
		// A few handshakes, so the TLS state is built before the baseline.
		ic, err := openIMAPIdle(ctx, s.mail.gwIMAPS, s.imapTLSConfig(), nil, 4, false)
		if err == nil {
			ic.Close()
		}
	}
	sleepCtx(ctx, 500*time.Millisecond)
	pid := s.gw.pid()
	gwLimit, err := ProcNoFile(pid)
	if err != nil {
		fmt.Fprintf(s.stderr, "frontdoor bench: gateway fd limit unknown, assuming it is the runner's: %v\n", err)
		gwLimit = nofileLimit()
	}
	perSession := uint64(2)
	if sc.IMAP == IMAPIdlePreLogin {
		perSession = 1
	}
	n := s.o.idleConns
	if gwLimit > 0 {
		// fdRoom keeps idleFDHeadroom of each limit and counts one
		// descriptor per connection: the gateway's limit in sessions.
		gwLimit = gwLimit/perSession + idleFDHeadroom - idleFDHeadroom/perSession
	}
	if room := fdRoom(nofileLimit(), gwLimit); room >= 0 {
		rr.Idle.Limit = room
		n = min(n, room)
	}
	if n <= 0 {
		rr.Error = "not measured: the file-descriptor limit leaves no room for idle sessions"
		return rr, nil
	}
	addr, tc := s.mail.gwIMAP, (*tls.Config)(nil)
	port := s.mail.gwIMAPPort
	if sc.TLS {
		addr, tc, port = s.mail.gwIMAPS, s.imapTLSConfig(), s.mail.gwIMAPSPort
	}
	local := s.o.sourceAddrs
	if len(local) == 0 {
		local = idleSourceAddrs
	}
	kind := "logged-in"
	if sc.IMAP == IMAPIdlePreLogin {
		kind = "pre-login"
	}
	fmt.Fprintf(s.stderr, "running %s -> gateway: opening %d idle %s IMAP sessions to %s from %d source addresses, %d at a time, holding them %v\n",
		sc.Name, n, kind, addr, len(local), imapIdleOpeners, s.o.idleHold)
	admin := s.gwAdminAddr
	probe := idleProbe{
		RSS:     func() (int64, error) { return ProcRSS(pid) },
		FDs:     func() (int, error) { return ProcFDs(pid) },
		CPU:     func() (time.Duration, error) { return ProcCPU(pid) },
		Conns:   func() (int, error) { return EstablishedOn(port) },
		Runtime: func() (*gatewayRuntime, error) { return gatewayRuntimeStats(admin) },
		Trim:    func() error { return gatewayTrim(admin) },
		Open: func(ctx context.Context, n int) (*IdleConns, error) {
			return openIMAPIdle(ctx, addr, tc, local, n, sc.IMAP == IMAPIdlePreLogin)
		},
	}
	ir, res, err := runIdle(ctx, Options{LocalAddrs: local}, n, s.o.idleHold, s.o.idleSettle, probe)
	if err != nil {
		return nil, err
	}
	ir.Requested, ir.Limit = rr.Idle.Requested, rr.Idle.Limit
	rr.Idle = ir
	rr.IMAP = &IMAPReport{Listener: addr, Users: imapUsers}
	rr.Conns, rr.Pipeline = ir.Held, 1
	rr.ElapsedSeconds = res.Elapsed.Seconds()
	rr.Requests, rr.RequestsPerSecond = res.Requests, res.RequestsPerSecond()
	rr.Latency = latencyOf(res.Latency)
	rr.Errors, rr.ErrorsTotal = res.Errors, res.Errors.Total()
	rr.Dials = res.Dials
	rr.StatusClasses["2xx"] = res.Requests
	if ps, err := SampleProc(pid); err == nil {
		rr.GatewayRSSBytes = &ps.RSS
	}
	if tc != nil {
		rr.Handshakes = res.Handshakes
		rr.HandshakesPerSecond = res.HandshakesPerSecond()
		hl := latencyOf(res.HandshakeLatency)
		rr.HandshakeLatency = &hl
		rr.TLSParams = res.TLSParams
	}
	return rr, nil
}

// imapNotes are the notes of one IMAP row.
func imapNotes(rr *RunReport) []string {
	m := rr.IMAP
	if m == nil || rr.Error != "" {
		return nil
	}
	var notes []string
	switch {
	case m.BytesFetched > 0:
		n := fmt.Sprintf("%s: %s, %.0f MiB/s relayed (%d MiB in %d FETCHes)", rr.rowName(), m.Listener,
			m.MiBPerSecond, m.BytesFetched>>20, rr.Requests)
		if m.GatewayCPUPerMiBUS != nil {
			n += fmt.Sprintf(", gateway CPU %.0fus per MiB", *m.GatewayCPUPerMiBUS)
		}
		notes = append(notes, n+dovecotCPUNote(m))
	case rr.Idle != nil:
		if ir := rr.Idle; ir.Held > 0 {
			what := "logged-in sessions held (2 gateway descriptors each: client and backend)"
			if strings.Contains(rr.Scenario, "prelogin") {
				what = "connections held before login (1 gateway descriptor each)"
			}
			notes = append(notes, fmt.Sprintf("%s: %d %s, %.2f GiB extrapolated to 1M",
				rr.rowName(), ir.Held, what, ir.Extrapolated1MGiB))
		}
	default:
		cache := "auth cache warm"
		if m.CacheTTL != "" {
			cache = "auth.cache_ttl " + m.CacheTTL + ", users cycled: cache misses, argon2id per login"
		}
		n := fmt.Sprintf("%s: %s, %d users (%s), REQ/S is logins/s", rr.rowName(), m.Listener, m.Users, cache)
		if rr.GatewayCPUPerRequestUS != nil {
			n += fmt.Sprintf(", gateway CPU %.0fus per login", *rr.GatewayCPUPerRequestUS)
		}
		notes = append(notes, n+dovecotCPUNote(m))
	}
	if rr.Target == "direct" {
		ceiling := "Dovecot without the gateway (ssl = no)"
		if rr.PlaintextCeiling {
			ceiling += ": the same logins in plaintext"
		}
		notes = append(notes, fmt.Sprintf("%s/direct: %s, the ceiling; MBX CPU/REQ is Dovecot's whole process tree per login or FETCH", rr.Scenario, ceiling))
	}
	if g := m.GatewayMail; g != nil {
		notes = append(notes, fmt.Sprintf("%s: gateway mail counters over the run: %d logins ok, %d failed",
			rr.rowName(), g["logins_ok"], g["logins_failed"]))
	}
	return notes
}

func dovecotCPUNote(m *IMAPReport) string {
	if m.DovecotCPUPerOpUS == nil {
		return ""
	}
	return fmt.Sprintf(", Dovecot CPU %.0fus per op", *m.DovecotCPUPerOpUS)
}

const (
	// imapLoginConns connections log in and out in a loop.
	imapLoginConns = 16
	// imapFetchConns connections FETCH the 10 MiB message in a loop.
	imapFetchConns = 4
)

// startIMAPBackend starts Dovecot for the IMAP scenarios, or says once why
// they are skipped (Dovecot not installed, or not starting) and returns
// nil: a missing Dovecot never fails the suite.
func (s *suite) startIMAPBackend(ctx context.Context) *mailFixture {
	skip := func(why string) *mailFixture {
		note := "IMAP scenarios skipped: " + why
		s.report.Skipped = append(s.report.Skipped, note)
		fmt.Fprintf(s.stderr, "frontdoor bench: %s\n", note)
		return nil
	}
	if err := dovecot.Installed(); err != nil {
		return skip(err.Error())
	}
	m, err := s.startDovecot(ctx)
	if err != nil {
		return skip("Dovecot did not start: " + err.Error())
	}
	return m
}

// pickPorts picks the gateway's IMAP listener ports into p.
func (m *mailFixture) pickPorts(p *gatewayPorts) error {
	var err error
	if p.IMAP, err = freePort(); err != nil {
		return fmt.Errorf("picking a port: %w", err)
	}
	if p.IMAPS, err = freePort(); err != nil {
		return fmt.Errorf("picking a port: %w", err)
	}
	m.gwIMAPPort, m.gwIMAPSPort = p.IMAP, p.IMAPS
	m.gwIMAP, m.gwIMAPS = "127.0.0.1:"+strconv.Itoa(p.IMAP), "127.0.0.1:"+strconv.Itoa(p.IMAPS)
	return nil
}

// waitGateway waits until the gateway's IMAP listeners greet and a user
// logs in through the plaintext one.
func (m *mailFixture) waitGateway(gw *child, timeout time.Duration) error {
	if err := dovecot.WaitReady([]string{m.gwIMAP}, timeout, gw.exited); err != nil {
		return fmt.Errorf("IMAP listener: %w", err)
	}
	var e ErrorCounts
	ic, _, err := imapDial(context.Background(), m.gwIMAPS, "", benchTLSConfig(false), &e)
	if err != nil {
		return fmt.Errorf("IMAP TLS listener %s: %w", m.gwIMAPS, err)
	}
	ic.c.Close()
	ic, _, err = imapDial(context.Background(), m.gwIMAP, "", nil, &e)
	if err == nil {
		err = ic.login(imapFetchUser, &e)
		ic.c.Close()
	}
	if err != nil {
		return fmt.Errorf("IMAP login through %s: %w", m.gwIMAP, err)
	}
	return nil
}
