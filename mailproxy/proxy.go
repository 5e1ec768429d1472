package mailproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"frontdoor/l4"
	"frontdoor/poolmux"
	"frontdoor/tlsterm"
)

// Protocol is a mail listener's protocol.
type Protocol uint8

// The protocols.
const (
	None Protocol = iota
	IMAP
	POP3
)

func (p Protocol) String() string {
	switch p {
	case IMAP:
		return "imap"
	case POP3:
		return "pop3"
	}
	return "none"
}

// Listener is how one l4 listener serves mail.
type Listener struct {
	Protocol Protocol
	// TLS is the terminator of an implicit-TLS listener (IMAPS, POP3S);
	// nil on a plaintext one.
	TLS *tlsterm.Terminator
	// StartTLS is the terminator STARTTLS (IMAP) or STLS (POP3) upgrades a
	// plaintext connection with; nil: not offered.
	StartTLS *tlsterm.Terminator
	// AllowPlaintextLogin lets a client log in before TLS on a plaintext
	// connection. Off, IMAP advertises LOGINDISABLED and POP3 refuses
	// USER, PASS and AUTH until STLS.
	AllowPlaintextLogin bool
}

// Backend is where a user's mailbox is served: the active server of the
// user's database.
type Backend struct {
	Server   string // the server's name in the directory
	Database string
	Addr     string       // host:port of the protocol on that server
	TLS      *poolmux.TLS // nil: plaintext
}

// Verdict is an Authenticator's answer.
type Verdict struct {
	// Pending: the verification runs off the loop; wake is called when it
	// is done and the session asks again.
	Pending bool
	OK      bool
	// Throttled: too many failures for this user or address; no
	// verification was run.
	Throttled bool
	// Busy: the verification workers are overloaded.
	Busy bool
	// Unavailable: the credentials are good but the mailbox cannot be
	// served now (no routable server); Reason says why.
	Unavailable bool
	Reason      string
	// User is the directory's login of the authenticated user: the name the
	// backend is logged in as.
	User    string
	Backend Backend
}

// Authenticator checks credentials and finds the user's backend. Login runs
// on an event loop and must not block: a credential not in its cache is
// verified off the loop (Pending), and wake (callable from any goroutine,
// once) is called when the verdict is ready; the session then calls Login
// again with the same arguments.
type Authenticator interface {
	Login(proto Protocol, user, pass []byte, client netip.Addr, wake func()) Verdict
}

// LoginMode says how the gateway logs in to the backend.
type LoginMode uint8

const (
	// LoginMaster logs in with the master user on behalf of the user.
	LoginMaster LoginMode = iota
	// LoginClient logs in with the client's own credentials.
	LoginClient
)

// Config configures a Handler.
type Config struct {
	// Listeners is indexed by l4 listener index; a zero Listener
	// (Protocol None) is not a mail listener.
	Listeners []Listener
	Auth      Authenticator
	Login     LoginMode
	// MasterUser and MasterPassword are the backend's master account.
	MasterUser     string
	MasterPassword string
	// MasterFormat makes the login name from {user} and {master}:
	// "{user}*{master}" is Dovecot's default (auth_master_user_separator).
	// Empty: SASL PLAIN with the user as authorization identity and the
	// master as authentication identity (RFC 4616 section 2).
	MasterFormat string
	// MaxLineBytes bounds a command line before login (default 8 KiB).
	MaxLineBytes int
	// MaxLiteralBytes bounds one literal before login (default 8 KiB);
	// MaxCommandBytes a whole command with its literals (default 16 KiB).
	MaxLiteralBytes int
	MaxCommandBytes int
	// MaxRelayBufferBytes bounds what waits for a slow reader in either
	// direction once logged in (default 64 MiB).
	MaxRelayBufferBytes int
	// LoginTimeout bounds the time from connect to login (default 60s).
	LoginTimeout time.Duration
	// IMAPIdleTimeout and POP3IdleTimeout end quiet sessions after login
	// (defaults 30 and 10 minutes).
	IMAPIdleTimeout time.Duration
	POP3IdleTimeout time.Duration
	// FailureDelay delays the answer to a failed login (default 2s);
	// MaxFailures failed logins close the connection (default 3).
	FailureDelay time.Duration
	MaxFailures  int
	// ForwardClientAddress tells the backend the client's address before
	// the login: IMAP ID with x-originating-ip (RFC 2971; when the
	// greeting lists ID), POP3 XCLIENT (when the greeting offers it).
	// Dovecot believes them from its login_trusted_networks.
	ForwardClientAddress bool
	// FlushTimeout bounds the wait for a client to take what the server
	// sent before it ended the session (default 30s).
	FlushTimeout time.Duration
	// ConnectTimeout bounds the backend dial and TLS handshake (default 5s).
	ConnectTimeout time.Duration
	// MaxHalfClosed bounds the sessions kept going after their client
	// half-closed (default 1024): each holds a duplicate descriptor and a
	// goroutine, outside l4's connection count. Beyond it a half-close
	// closes the session as a full close does (counted in halfclose_lost).
	MaxHalfClosed int
	Log           *slog.Logger
}

func (c *Config) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxLineBytes, 8<<10)
	def(&c.MaxLiteralBytes, 8<<10)
	def(&c.MaxCommandBytes, 16<<10)
	def(&c.MaxRelayBufferBytes, 64<<20)
	def(&c.MaxFailures, 3)
	def(&c.MaxHalfClosed, 1024)
	defd(&c.LoginTimeout, 60*time.Second)
	defd(&c.IMAPIdleTimeout, 30*time.Minute)
	defd(&c.POP3IdleTimeout, 10*time.Minute)
	defd(&c.FailureDelay, 2*time.Second)
	defd(&c.ConnectTimeout, 5*time.Second)
	defd(&c.FlushTimeout, 30*time.Second)
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// Stats are the mail counters, read with atomic loads.
type Stats struct {
	Sessions      atomic.Int64 // accepted
	Open          atomic.Int64 // open client sessions
	LoginsOK      atomic.Int64
	LoginsFailed  atomic.Int64
	Throttled     atomic.Int64
	StartTLS      atomic.Int64
	BackendFailed atomic.Int64 // dial, TLS or backend login failures
	Relaying      atomic.Int64 // sessions in the relay phase
	BytesUp       atomic.Int64 // client -> server after login
	BytesDown     atomic.Int64 // server -> client after login
	Failover      atomic.Int64 // sessions closed because their database moved
	Timeouts      atomic.Int64 // login and idle timeouts
	Overflow      atomic.Int64 // closed: a line, literal or relay buffer over its bound
	// HalfCloses counts the sessions whose client half-closed (a FIN, or
	// over TLS close_notify) and went on, HalfClosed those doing so now,
	// HalfCloseLost the half-closes that closed the session as a full
	// close does (gnet still held bytes for the client, MaxHalfClosed).
	HalfCloses    atomic.Int64
	HalfClosed    atomic.Int64
	HalfCloseLost atomic.Int64
	// HalfClosesServer counts the sessions whose server half-closed (or
	// closed: a FIN looks the same) while the client was still sending,
	// and went on (HalfClosed counts them too while they last).
	HalfClosesServer atomic.Int64
}

// Snapshot returns the counters by name.
func (s *Stats) Snapshot() map[string]int64 {
	return map[string]int64{
		"sessions": s.Sessions.Load(), "open": s.Open.Load(), "logins_ok": s.LoginsOK.Load(),
		"logins_failed": s.LoginsFailed.Load(), "throttled": s.Throttled.Load(), "starttls": s.StartTLS.Load(),
		"backend_failed": s.BackendFailed.Load(), "relaying": s.Relaying.Load(), "bytes_up": s.BytesUp.Load(),
		"bytes_down": s.BytesDown.Load(), "failover_closed": s.Failover.Load(), "timeouts": s.Timeouts.Load(),
		"overflow": s.Overflow.Load(), "halfcloses": s.HalfCloses.Load(), "halfclosed": s.HalfClosed.Load(),
		"halfclose_lost": s.HalfCloseLost.Load(), "halfcloses_server": s.HalfClosesServer.Load(),
	}
}

// Handler is the l4.Acceptor of the mail listeners.
type Handler struct {
	cfg   Config
	stats *Stats
	log   *slog.Logger
	// master is the master password in use: Config.MasterPassword until
	// SetMasterPassword replaces it.
	master atomic.Pointer[string]

	mu    sync.Mutex
	loops []*loopState
	// halfOpen counts the half-closed sessions, for MaxHalfClosed.
	halfOpen atomic.Int64
}

// NewHandler makes a Handler. stats may be shared with the Handler of an
// earlier configuration (nil: new counters).
func NewHandler(cfg Config, stats *Stats) *Handler {
	cfg.defaults()
	if stats == nil {
		stats = &Stats{}
	}
	h := &Handler{cfg: cfg, stats: stats, log: cfg.Log}
	h.master.Store(&cfg.MasterPassword)
	return h
}

// SetMasterPassword replaces the master password for the backend logins
// that start from now on (a rotated password file, reread on SIGHUP).
func (h *Handler) SetMasterPassword(pw string) { h.master.Store(&pw) }

func (h *Handler) masterPassword() string { return *h.master.Load() }

// Stats returns the counters.
func (h *Handler) Stats() *Stats { return h.stats }

// Serves reports whether listener index i is a mail listener.
func (h *Handler) Serves(i int) bool {
	return i >= 0 && i < len(h.cfg.Listeners) && h.cfg.Listeners[i].Protocol != None
}

// loopState is what the Handler keeps per event loop.
type loopState struct {
	h        *Handler
	lp       *l4.Loop
	login    *l4.DeadlineList
	delay    *l4.DeadlineList
	imapIdle *l4.DeadlineList
	pop3Idle *l4.DeadlineList
	// serverGone replaces the idle timeout once the server has
	// half-closed (downEOF): FlushTimeout of silence from the client.
	serverGone *l4.DeadlineList
	// flush is a poll (a zero-length list, re-armed every sweep) of the
	// sessions waiting for their client to take the rest (stFlush).
	flush *l4.DeadlineList
	// half holds the sessions whose client connection left gnet after a
	// half-close (halfClose): l4 no longer lists them, so drains and
	// CheckActive find them here.
	half map[*session]struct{}
	// shutWait holds the connections (a backend, or a client) whose write
	// side is to be shut once gnet has written what it holds for them
	// (shutWhenFlushed).
	shutWait []shutPending
}

// NewLoop implements l4.Acceptor.
func (h *Handler) NewLoop(lp *l4.Loop) {
	ls := &loopState{h: h, lp: lp,
		login:      lp.NewDeadlineList("mail_login", h.cfg.LoginTimeout),
		delay:      lp.NewDeadlineList("mail_login_failure_delay", h.cfg.FailureDelay),
		imapIdle:   lp.NewDeadlineList("imap_idle", h.cfg.IMAPIdleTimeout),
		pop3Idle:   lp.NewDeadlineList("pop3_idle", h.cfg.POP3IdleTimeout),
		serverGone: lp.NewDeadlineList("mail_server_half_closed", h.cfg.FlushTimeout),
		flush:      lp.NewDeadlineList("mail_flush", 0),
		half:       map[*session]struct{}{},
	}
	lp.OnSweep(ls.sweepShutWait)
	lp.OnDrain(func() {
		// A stop ends them with the protocol's farewell, like the
		// sessions l4 lists (Drain); a reload leaves them alone.
		if lp.Draining() {
			ls.endHalfClosed("[UNAVAILABLE] server shutting down")
		}
	})
	h.mu.Lock()
	h.loops = append(h.loops, ls)
	h.mu.Unlock()
}

// Release implements l4.Acceptor.
func (h *Handler) Release(lp *l4.Loop) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, ls := range h.loops {
		if ls.lp == lp {
			h.loops = append(h.loops[:i], h.loops[i+1:]...)
			// lp is swept no more: no idle timeout would end them.
			ls.endHalfClosed("[UNAVAILABLE] server reconfigured, please reconnect")
			return
		}
	}
}

func (h *Handler) loopOf(lp *l4.Loop) *loopState {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ls := range h.loops {
		if ls.lp == lp {
			return ls
		}
	}
	return nil
}

// Refusal implements l4.Acceptor: the protocol's "go away" before a close.
func (h *Handler) Refusal(ln *l4.Listener, reason string) []byte {
	if !h.Serves(ln.Index) || h.cfg.Listeners[ln.Index].TLS != nil {
		return nil
	}
	if h.cfg.Listeners[ln.Index].Protocol == POP3 {
		return []byte("-ERR [SYS/TEMP] server busy, try again later\r\n")
	}
	return []byte("* BYE [UNAVAILABLE] server busy, try again later\r\n")
}

// session states.
const (
	stHandshake uint8 = iota // implicit TLS: waiting for the handshake
	stCommand                // reading pre-login commands
	stStartTLS               // STARTTLS handshake running
	stSASL                   // waiting for the client's SASL response line
	stAuth                   // credentials being verified off the loop
	stDelay                  // failed login, answer delayed
	stBackend                // backend dial and login
	stRelay                  // logged in: relaying
	stFlush                  // the server ended the session: writing what is left, then closing
	stClosed
)

// session is one client connection.
type session struct {
	l4.ClientConn
	ls    *loopState
	h     *Handler
	proto Protocol
	ln    *Listener
	io    l4.Transport
	tc    *tlsterm.Conn
	state uint8

	// IMAP command being read: its arguments so far, the literal expected
	// and the bytes the command has taken.
	args     [][]byte
	litNeed  int // bytes of a literal still expected; -1: none
	cmdBytes int
	saslTag  []byte // IMAP tag of AUTHENTICATE, while stSASL
	tag      []byte // tag of the login command (IMAP)
	user     []byte // POP3 USER, then the credentials being checked
	pass     []byte
	failures int
	authSeq  uint32
	verdict  Verdict
	be       *backend
	relaying bool  // counted in Stats.Relaying
	flushEnd int64 // stFlush: when to give up on the client
	// upEOF: the client sends nothing more (a FIN, or close_notify over
	// TLS); once what it sent is relayed the backend's write side is shut.
	upEOF bool
	// hc is the client's write side after it half-closed with a FIN and
	// its connection left gnet (halfclose.go); s.io is hc then.
	hc       *halfConn
	finished bool // finish ran
	// downEOF: the server sends nothing more (it half-closed); the
	// client's write side is shut once it has taken what was sent
	// (clientShut: that is under way).
	downEOF    bool
	clientShut bool
}

// Accept implements l4.Acceptor.
func (h *Handler) Accept(cc l4.ClientConn) (l4.ClientHandler, []byte, gnet.Action) {
	ls := h.loopOf(cc.Loop)
	ln := &h.cfg.Listeners[cc.Listener.Index]
	s := &session{ClientConn: cc, ls: ls, h: h, proto: ln.Protocol, ln: ln, io: cc.Conn, litNeed: -1}
	h.stats.Sessions.Add(1)
	h.stats.Open.Add(1)
	ls.login.Arm(&s.Deadline, s, cc.Loop.Now())
	if ln.TLS != nil {
		s.tc = ln.TLS.AcceptFrom(cc.Conn, s.RemoteAddr())
		s.io = s.tc
		s.state = stHandshake
		return s, nil, gnet.None
	}
	s.state = stCommand
	return s, s.greeting(), gnet.None
}

// secure reports whether the client connection is TLS.
func (s *session) secure() bool { return s.tc != nil }

// plainAllowed reports whether credentials may be sent now.
func (s *session) plainAllowed() bool { return s.secure() || s.ln.AllowPlaintextLogin }

// canStartTLS reports whether STARTTLS/STLS is offered now.
func (s *session) canStartTLS() bool { return !s.secure() && s.ln.StartTLS != nil }

func (s *session) greeting() []byte {
	if s.proto == POP3 {
		return []byte("+OK frontdoor POP3 ready\r\n")
	}
	out := append([]byte("* OK [CAPABILITY "), s.imapCapabilities()...)
	return append(out, "] frontdoor IMAP ready\r\n"...)
}

// OnTraffic implements l4.Handler.
func (s *session) OnTraffic(c gnet.Conn) gnet.Action {
	s.Loop.Tick()
	if s.state == stClosed {
		_, _ = c.Discard(-1)
		return gnet.Close
	}
	peerEOF := false
	if s.tc != nil {
		ready, err := s.tc.OnTraffic()
		if err == io.EOF || (err == nil && s.tc.PeerClosed()) {
			// close_notify: the client's half-close over TLS (RFC 8446
			// section 6.1), the TCP connection left open. What came
			// before it is processed first.
			peerEOF, err = true, nil
		}
		if err != nil {
			return gnet.Close
		}
		if !ready {
			return gnet.None
		}
		switch s.state {
		case stHandshake:
			s.state = stCommand
			_, _ = s.io.Write(s.greeting())
		case stStartTLS:
			s.state = stCommand
		}
	}
	act := s.process()
	if peerEOF && act != gnet.Close && s.state != stClosed && !s.clientEOF() {
		return gnet.Close
	}
	return act
}

// clientEOF is told that the client sends nothing more over TLS
// (close_notify) and reports whether the session goes on: while its
// login is decided or it relays, what the server sends still reaches the
// client, and the backend's write side is shut once everything the client
// sent is relayed.
func (s *session) clientEOF() bool {
	switch s.state {
	case stAuth, stDelay, stBackend, stRelay:
	default:
		return false
	}
	if !s.upEOF {
		s.upEOF = true
		// Nothing after close_notify is read: drop what more arrives
		// rather than let it pile up in gnet's buffer.
		_, _ = s.Conn.Discard(-1)
	}
	if s.state == stRelay {
		s.relayUp()
		s.shutBackend()
	}
	return true
}

// process handles what the client has sent, by state.
func (s *session) process() gnet.Action {
	switch s.state {
	case stCommand, stSASL:
		var act gnet.Action
		if s.proto == POP3 {
			act = s.pop3Commands()
		} else {
			act = s.imapCommands()
		}
		if act == gnet.Close {
			s.state = stClosed
		}
		return act
	case stRelay:
		return s.relayUp()
	case stFlush:
		// The server is gone: what the client sends now has nowhere to go.
		_, _ = s.io.Discard(-1)
		return gnet.None
	default:
		// stAuth, stDelay, stBackend: what the client sends waits in the
		// buffer, bounded: by the command bound until the credentials are
		// known good, then by the relay's.
		if s.overWaitBound() {
			return s.closeNow()
		}
		return gnet.None
	}
}

// overWaitBound reports (and counts) a client that queued more than it may
// while its login is being decided: the command bound until the
// credentials are known good, then the relay's.
func (s *session) overWaitBound() bool {
	limit := s.h.cfg.MaxCommandBytes
	if s.state == stBackend {
		limit += s.h.cfg.MaxRelayBufferBytes
	}
	if s.io.InboundBuffered() <= limit {
		return false
	}
	s.h.stats.Overflow.Add(1)
	return true
}

// closeWith writes msg (plaintext or over TLS) and closes.
func (s *session) closeWith(msg string) gnet.Action {
	if msg != "" && !s.clientShut {
		_, _ = s.io.Write([]byte(msg))
	}
	return s.closeNow()
}

func (s *session) closeNow() gnet.Action {
	s.state = stClosed
	s.Disarm()
	if s.hc != nil {
		// The client connection left gnet: the writer flushes what is
		// queued for it and closes it (halfEnded follows); the session
		// ends now.
		_ = s.hc.Close()
		s.finish()
		return gnet.None
	}
	if s.tc != nil {
		_ = s.tc.Close()
		return gnet.None
	}
	_ = s.Conn.Close()
	return gnet.None
}

// closeAfterFlush closes the session once the client has taken what was
// written to it (gnet's close writes only what the socket takes at once),
// within FlushTimeout: the server ended the session right after its last
// answer (LOGOUT, QUIT, a pipelined RETR then QUIT).
func (s *session) closeAfterFlush() {
	if s.hc != nil || s.io.OutboundBuffered() == 0 {
		s.closeNow()
		return
	}
	s.state = stFlush
	now := s.Loop.Now()
	s.flushEnd = now + int64(s.h.cfg.FlushTimeout)
	s.ls.flush.Arm(&s.Deadline, s, now)
}

// bye closes the session with the protocol's farewell.
func (s *session) bye(text string) gnet.Action {
	if s.proto == POP3 {
		return s.closeWith("-ERR " + pop3Code(text) + "\r\n")
	}
	return s.closeWith("* BYE " + text + "\r\n")
}

// OnClose implements l4.Handler. A client's EOF (a FIN: gnet closes on
// it; our own closes pass nil, and failures other errors) may be a
// half-close, which the session outlives (halfClose).
func (s *session) OnClose(c gnet.Conn, err error) {
	if s.hc == nil && errors.Is(err, io.EOF) {
		switch {
		case !s.downEOF && s.halfClose(c):
			if s.tc != nil {
				s.tc.OnClose()
			}
			return
		case (s.downEOF || s.state == stFlush) && c.OutboundBuffered() > 0:
			// The client half-closed while the server's last answers
			// were still being written to it: what gnet cannot write at
			// its close is lost (halfClose counts the other states).
			s.h.stats.HalfCloseLost.Add(1)
		}
	}
	if s.tc != nil {
		s.tc.OnClose()
	}
	s.state = stClosed
	s.Disarm()
	s.finish()
}

// finish releases what the session holds once it is over (once).
func (s *session) finish() {
	if s.finished {
		return
	}
	s.finished = true
	clear(s.pass)
	s.pass = nil
	if s.relaying {
		s.relaying = false
		s.h.stats.Relaying.Add(-1)
	}
	s.h.stats.Open.Add(-1)
	if s.be != nil {
		s.be.close()
	}
}

// Drain implements l4.ClientHandler. A stop (closeIdle) ends every
// session with BYE; a reload or an upgrade leaves them alone (a mail
// session is long-lived and has no exchange boundary to end at).
func (s *session) Drain(closeIdle bool) {
	if !closeIdle || s.state == stClosed {
		return
	}
	s.bye("[UNAVAILABLE] server shutting down")
}

// Expire implements l4.Expirer.
func (s *session) Expire(now int64) {
	switch s.state {
	case stDelay:
		s.loginFailedNow()
	case stRelay:
		s.h.stats.Timeouts.Add(1)
		if s.downEOF {
			s.closeNow() // the client's write side is shut: no BYE
			return
		}
		s.bye("autologout: idle for too long")
	case stFlush:
		switch {
		case s.io.OutboundBuffered() == 0:
			s.closeNow()
		case now >= s.flushEnd:
			s.h.stats.Timeouts.Add(1)
			s.closeNow()
		default:
			s.ls.flush.Arm(&s.Deadline, s, now)
		}
	case stClosed:
	default:
		s.h.stats.Timeouts.Add(1)
		s.bye("login timeout")
	}
}

// startTLS switches the connection to TLS after the plaintext answer ok
// was written. Plaintext the client sent after the command is discarded:
// it must wait for the answer (RFC 2595 section 3.1; RFC 9051 section
// 6.2.1), and bytes injected before the handshake must never be taken as
// commands of the TLS session.
func (s *session) startTLS(ok string) {
	_, _ = s.io.Write([]byte(ok))
	if n := s.Conn.InboundBuffered(); n > 0 {
		_, _ = s.Conn.Discard(n)
	}
	s.h.stats.StartTLS.Add(1)
	s.tc = s.ln.StartTLS.AcceptFrom(s.Conn, s.RemoteAddr())
	s.io = s.tc
	s.state = stStartTLS
	s.args = s.args[:0]
	s.litNeed = -1
	s.cmdBytes = 0
}

// login starts checking the credentials in s.user and s.pass (owned
// copies).
func (s *session) login() gnet.Action {
	s.state = stAuth
	s.authSeq++
	if s.overWaitBound() {
		// What came with the command already is more than may wait.
		s.clearCredentials()
		return s.closeNow()
	}
	return s.checkLogin()
}

// checkLogin asks the Authenticator; it runs again when a verification
// that was pending finishes.
func (s *session) checkLogin() gnet.Action {
	seq := s.authSeq
	v := s.h.cfg.Auth.Login(s.proto, s.user, s.pass, s.Remote.Addr(), func() { s.wake(seq) })
	switch {
	case v.Pending:
		return gnet.None
	case v.Throttled:
		s.h.stats.Throttled.Add(1)
		s.h.stats.LoginsFailed.Add(1)
		s.clearCredentials()
		return s.loginAnswer(false, "[UNAVAILABLE] too many failed logins: try again later", true)
	case v.Busy:
		s.clearCredentials()
		return s.loginAnswer(false, "[UNAVAILABLE] authentication service busy: try again later", false)
	case !v.OK:
		s.h.stats.LoginsFailed.Add(1)
		s.clearCredentials()
		s.failures++
		s.state = stDelay
		s.ls.delay.Arm(&s.Deadline, s, s.Loop.Now())
		return gnet.None
	case v.Unavailable:
		s.clearCredentials()
		return s.loginAnswer(false, "[UNAVAILABLE] "+v.Reason, false)
	}
	s.verdict = v
	s.state = stBackend
	if s.h.cfg.Login == LoginMaster {
		s.clearCredentials()
	}
	s.be = newBackend(s, v)
	return gnet.None
}

func (s *session) clearCredentials() {
	clear(s.pass)
	s.pass = nil
	if s.proto == POP3 {
		s.user = nil
	}
}

// wake runs the login check again on the session's loop.
func (s *session) wake(seq uint32) {
	_ = s.Loop.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		if s.state != stAuth || s.authSeq != seq {
			return nil
		}
		s.Loop.Tick()
		if s.checkLogin() == gnet.Close {
			s.closeNow()
		}
		return nil
	}))
}

// loginFailedNow answers a failed login once its delay has passed.
func (s *session) loginFailedNow() {
	if s.failures >= s.h.cfg.MaxFailures {
		s.loginAnswer(false, "[AUTHENTICATIONFAILED] authentication failed", true)
		return
	}
	s.loginAnswer(false, "[AUTHENTICATIONFAILED] authentication failed", false)
}

// loginAnswer answers the login command with a failure (IMAP tagged NO,
// POP3 -ERR), closing the session when final; otherwise the session reads
// commands again.
func (s *session) loginAnswer(_ bool, text string, final bool) gnet.Action {
	var out []byte
	if s.proto == POP3 {
		out = append(out, "-ERR "...)
		out = append(out, pop3Code(text)...)
		out = append(out, "\r\n"...)
	} else {
		out = append(out, s.tag...)
		out = append(out, " NO "...)
		out = append(out, text...)
		out = append(out, "\r\n"...)
	}
	_, _ = s.io.Write(out)
	if final {
		return s.bye("too many failed logins")
	}
	if s.upEOF {
		// The client has half-closed: what it pipelined behind a failed
		// login is not answered; the answer is flushed and the
		// connection closed.
		s.closeAfterFlush()
		return gnet.None
	}
	s.state = stCommand
	s.ls.login.Arm(&s.Deadline, s, s.Loop.Now())
	// Commands the client sent meanwhile are read now.
	if s.io.InboundBuffered() > 0 {
		if s.process() == gnet.Close {
			s.closeNow()
		}
	}
	return gnet.None
}

// pop3Code turns an IMAP response code into POP3's (RFC 3206): [AUTH] for
// a refusal, [SYS/TEMP] for a temporary failure, [IN-USE] never.
func pop3Code(text string) string {
	switch {
	case bytes.HasPrefix([]byte(text), []byte("[AUTHENTICATIONFAILED] ")):
		return "[AUTH] " + text[len("[AUTHENTICATIONFAILED] "):]
	case bytes.HasPrefix([]byte(text), []byte("[UNAVAILABLE] ")):
		return "[SYS/TEMP] " + text[len("[UNAVAILABLE] "):]
	}
	return text
}

// loggedIn is called by the backend once it is logged in: post is the
// answer to relay to the client (with the client's tag for IMAP).
func (s *session) loggedIn(post []byte) {
	s.h.stats.LoginsOK.Add(1)
	s.h.stats.Relaying.Add(1)
	s.relaying = true
	s.clearCredentials()
	s.user = nil
	s.state = stRelay
	_, _ = s.io.Write(post)
	s.armIdle()
	if s.io.InboundBuffered() > 0 {
		s.relayUp()
	}
	s.shutBackend()
}

// backendFailed is called when the backend could not be reached or
// refused the login.
func (s *session) backendFailed() {
	s.be = nil
	s.h.stats.BackendFailed.Add(1)
	s.clearCredentials()
	s.loginAnswer(false, "[UNAVAILABLE] mailbox server not available, try again later", false)
}

func (s *session) armIdle() {
	if s.downEOF {
		// The server said all it will say and a mail server that
		// half-closes has ended the session (after BYE, or +OK to
		// QUIT): a client still sending is relayed, but one that
		// neither sends nor closes is not held for the idle timeout.
		s.ls.serverGone.Arm(&s.Deadline, s, s.Loop.Now())
		return
	}
	if s.proto == POP3 {
		s.ls.pop3Idle.Arm(&s.Deadline, s, s.Loop.Now())
	} else {
		s.ls.imapIdle.Arm(&s.Deadline, s, s.Loop.Now())
	}
}

// relayUp moves the client's bytes to the backend.
func (s *session) relayUp() gnet.Action {
	be := s.be
	if be == nil || be.state != beRelay {
		return gnet.None
	}
	s.relay(s.io, be.io, &s.h.stats.BytesUp)
	return gnet.None
}

// relay moves what from holds to to, counting the bytes in moved. Over TLS,
// Peek after a Discard decrypts what the plaintext bound left as
// ciphertext: it loops until nothing is left, or the rest would wait for
// the next readable event, which may never come. It returns false when
// to's unsent bytes passed max_relay_buffer_bytes: the session is closed.
func (s *session) relay(from, to l4.Transport, moved *atomic.Int64) bool {
	for n := 0; ; {
		buf, _ := from.Peek(-1)
		if len(buf) == 0 {
			if n > 0 {
				moved.Add(int64(n))
				s.armIdle()
			}
			return true
		}
		_, _ = to.Write(buf)
		_, _ = from.Discard(len(buf))
		n += len(buf)
		if to.OutboundBuffered() > s.h.cfg.MaxRelayBufferBytes {
			moved.Add(int64(n))
			s.h.stats.Overflow.Add(1)
			s.closeNow()
			return false
		}
	}
}

// CheckActive closes, on every loop, the sessions logged in to a server
// that active says no longer holds their database's active copy (a
// switchover or failover in the directory): IMAP gets "* BYE", POP3
// "-ERR", and the client's reconnect is routed to the new server. It
// returns at once; the closes happen on the loops.
func (h *Handler) CheckActive(active func(database, server string) bool) {
	h.mu.Lock()
	loops := append([]*loopState(nil), h.loops...)
	h.mu.Unlock()
	for _, ls := range loops {
		ls := ls
		_ = ls.lp.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			ls.lp.Tick()
			check := func(s *session) {
				if (s.state == stRelay || s.state == stBackend) && !active(s.verdict.Backend.Database, s.verdict.Backend.Server) {
					h.stats.Failover.Add(1)
					h.log.Info("mail session closed: its database moved", "protocol", s.proto.String(),
						"user", s.verdict.User, "database", s.verdict.Backend.Database, "server", s.verdict.Backend.Server)
					s.bye("[UNAVAILABLE] mailbox moved to another server, please reconnect")
				}
			}
			ls.lp.EachClient(func(ch l4.ClientHandler) {
				if s, ok := ch.(*session); ok && s.h == h {
					check(s)
				}
			})
			// The half-closed sessions (l4 lists them no more); the
			// BYE can still be read.
			for s := range ls.half {
				check(s)
			}
			return nil
		}))
	}
}
