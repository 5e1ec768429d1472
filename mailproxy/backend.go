package mailproxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/panjf2000/gnet/v2"

	"frontdoor/l4"
	"frontdoor/tlsterm"
)

// backend states.
const (
	beDialing uint8 = iota
	beGreeting
	beLogin // the login command is written; reading its answer
	beRelay
	beClosed
)

// backendTag is the tag of the gateway's own IMAP login command,
// backendIDTag that of its ID command.
const (
	backendTag   = "fd1"
	backendIDTag = "fd0"
)

// stepXCLIENT: a POP3 backend's answer to XCLIENT is awaited.
const stepXCLIENT = -1

// hasCapability reports whether an IMAP greeting's CAPABILITY response
// code lists capa.
func hasCapability(greeting []byte, capa string) bool {
	i := bytes.Index(bytes.ToUpper(greeting), []byte("[CAPABILITY "))
	if i < 0 {
		return false
	}
	list := greeting[i+len("[CAPABILITY "):]
	if j := bytes.IndexByte(list, ']'); j >= 0 {
		list = list[:j]
	}
	for _, c := range bytes.Fields(list) {
		if bytes.EqualFold(c, []byte(capa)) {
			return true
		}
	}
	return false
}

// backend is the connection to the mailbox server of one session, owned
// by the session's loop once enrolled.
type backend struct {
	s     *session
	gc    gnet.Conn
	io    l4.Transport
	tc    *tlsterm.Conn
	state uint8
	step  int // POP3: 0 USER written, 1 PASS written, stepXCLIENT
	// idSent: the gateway's ID (the client's address) preceded the login.
	idSent bool
	// post collects the untagged answers to the login, for the client.
	post []byte
	// shut: the client half-closed and the write side is shut, or is to
	// be once gnet has written what it holds (shutBackend).
	shut bool
	// hc is the write side to the server after it half-closed and its
	// connection left gnet (halfclose.go); io is hc then.
	hc *halfConn
}

// newBackend dials the server off the loop and enrolls the connection on
// the session's loop.
func newBackend(s *session, v Verdict) *backend {
	b := &backend{s: s}
	cfg := &s.h.cfg
	lp := s.Loop
	go func() {
		nc, err := net.DialTimeout("tcp", v.Backend.Addr, cfg.ConnectTimeout)
		if err == nil && v.Backend.TLS != nil {
			var tc *tlsterm.Conn
			if tc, err = v.Backend.TLS.Client.Handshake(nc, v.Backend.TLS.Current(), cfg.ConnectTimeout); err != nil {
				nc.Close()
			} else {
				b.tc = tc // read by the loop after Enroll
			}
		}
		if err == nil {
			var ch <-chan gnet.RegisteredResult
			ch, err = lp.EventLoop().Enroll(gnet.NewContext(context.Background(), b), nc)
			if err == nil {
				err = (<-ch).Err
			} else {
				nc.Close()
			}
		}
		if err != nil {
			s.h.log.Warn("mail backend unreachable", "protocol", s.proto.String(), "server", v.Backend.Server,
				"address", v.Backend.Addr, "err", err)
			_ = lp.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
				lp.Tick()
				if b.state == beDialing {
					b.state = beClosed
					if s.be == b && s.state == stBackend {
						s.backendFailed()
					}
				}
				return nil
			}))
		}
	}()
	return b
}

// OnOpen implements l4.Opener.
func (b *backend) OnOpen(gc gnet.Conn) gnet.Action {
	b.gc = gc
	b.io = gc
	if b.tc != nil {
		b.tc.Attach(gc)
		b.io = b.tc
	}
	if b.state != beDialing || b.s.be != b || b.s.state != stBackend {
		b.state = beClosed
		return gnet.Close
	}
	b.state = beGreeting
	return gnet.None
}

// close closes the connection (from the session's side).
func (b *backend) close() {
	if b.state == beClosed {
		return
	}
	dialing := b.state == beDialing
	b.state = beClosed
	if !dialing && b.io != nil {
		_ = b.io.Close()
	}
}

// OnClose implements l4.Handler.
func (b *backend) OnClose(gc gnet.Conn, err error) {
	prev := b.state
	b.state = beClosed
	s := b.s
	if s.be == b && errors.Is(err, io.EOF) {
		// The server's FIN: maybe a half-close (halfclose.go).
		s.Loop.Tick()
		if b.halfClose(gc, prev) {
			if b.tc != nil {
				b.tc.OnClose()
			}
			return
		}
	}
	if b.tc != nil {
		b.tc.OnClose()
	}
	if s.be != b {
		return
	}
	s.Loop.Tick()
	switch {
	case s.state == stRelay:
		// The server ended the session (after LOGOUT, an autologout, a
		// shutdown): what it sent has been relayed; close the client
		// once it has taken it.
		s.be = nil
		s.closeAfterFlush()
	case s.state == stBackend && prev != beClosed:
		s.h.log.Warn("mail backend closed during login", "protocol", s.proto.String(),
			"server", s.verdict.Backend.Server, "err", err)
		s.backendFailed()
	}
}

// OnTraffic implements l4.Handler.
func (b *backend) OnTraffic(gc gnet.Conn) gnet.Action {
	s := b.s
	if b.state == beClosed || s.be != b {
		return gnet.Close
	}
	s.Loop.Tick()
	peerEOF := false
	if b.tc != nil {
		_, err := b.tc.OnTraffic()
		if b.state == beRelay && (err == io.EOF || (err == nil && b.tc.PeerClosed())) {
			// close_notify: the server's half-close over TLS (RFC 8446
			// section 6.1); what came before it is relayed first.
			peerEOF, err = true, nil
		}
		if err != nil {
			return gnet.Close
		}
	}
	if b.state == beRelay {
		act := b.relayDown()
		if peerEOF && act != gnet.Close && b.state == beRelay {
			if !s.serverEOF() {
				return gnet.Close
			}
			// Nothing after close_notify is read.
			_, _ = gc.Discard(-1)
		}
		return act
	}
	for b.state == beGreeting || b.state == beLogin {
		buf, _ := b.io.Peek(-1)
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			if len(buf) > s.h.cfg.MaxCommandBytes {
				return b.fail("answer line too long")
			}
			return gnet.None
		}
		line := bytes.Clone(buf[:i+1])
		_, _ = b.io.Discard(i + 1)
		if act := b.line(line); act == gnet.Close {
			return act
		}
	}
	if b.state == beRelay && b.io.InboundBuffered() > 0 {
		return b.relayDown()
	}
	return gnet.None
}

// fail ends a login that went wrong on the server's side.
func (b *backend) fail(why string) gnet.Action {
	s := b.s
	s.h.log.Warn("mail backend login failed", "protocol", s.proto.String(), "server", s.verdict.Backend.Server,
		"user", s.verdict.User, "reason", why)
	b.state = beClosed
	if s.be == b {
		s.backendFailed()
	}
	return gnet.Close
}

// line handles one line of the server's answers before the relay.
func (b *backend) line(line []byte) gnet.Action {
	s := b.s
	text := bytes.TrimRight(line, "\r\n")
	if s.proto == POP3 {
		if b.step == stepXCLIENT {
			// The server's answer to XCLIENT: the login follows
			// whatever it was (a server that refused it still logs
			// the gateway's address).
			b.step = 0
			b.writeLogin()
			return gnet.None
		}
		if !bytes.HasPrefix(text, []byte("+OK")) {
			return b.fail("server said: " + string(text))
		}
		switch {
		case b.state == beGreeting:
			b.state = beLogin
			b.step = 0
			if s.h.cfg.ForwardClientAddress && bytes.Contains(text, []byte("[XCLIENT]")) {
				// Dovecot's POP3 XCLIENT, offered to its
				// login_trusted_networks: the client's address for
				// its logs and auth penalties.
				b.step = stepXCLIENT
				_, _ = b.io.Write(fmt.Appendf(nil, "XCLIENT ADDR=%s PORT=%d\r\n", s.Remote.Addr().Unmap(), s.Remote.Port()))
				return gnet.None
			}
			b.writeLogin()
		case b.step == 0 && b.usesUserPass():
			b.step = 1
			_, _ = b.io.Write(b.pop3Pass())
		default:
			b.state = beRelay
			s.loggedIn(line)
		}
		return gnet.None
	}
	switch b.state {
	case beGreeting:
		switch {
		case bytes.HasPrefix(text, []byte("* OK")):
			b.state = beLogin
			if s.h.cfg.ForwardClientAddress && hasCapability(text, "ID") {
				// RFC 2971 with the fields Dovecot takes from its
				// login_trusted_networks: the client's address for its
				// logs and auth penalties. Pipelined with the login.
				b.idSent = true
				_, _ = b.io.Write(fmt.Appendf(nil, "%s ID (\"x-originating-ip\" \"%s\" \"x-originating-port\" \"%d\")\r\n",
					backendIDTag, s.Remote.Addr().Unmap(), s.Remote.Port()))
			}
			b.writeLogin()
		case bytes.HasPrefix(text, []byte("* PREAUTH")):
			return b.fail("server greeted with PREAUTH")
		default:
			return b.fail("server said: " + string(text))
		}
	case beLogin:
		if b.idSent && (bytes.HasPrefix(text, []byte(backendIDTag+" ")) || bytes.HasPrefix(text, []byte("* ID "))) {
			// The answer to the gateway's ID is not the client's.
			return gnet.None
		}
		if bytes.HasPrefix(text, []byte("* ")) {
			// Untagged data of the login (a CAPABILITY, say): the
			// client's now.
			b.post = append(b.post, line...)
			return gnet.None
		}
		if bytes.HasPrefix(text, []byte("+")) {
			return b.fail("server asked for more than the login")
		}
		rest, ok := bytes.CutPrefix(text, []byte(backendTag+" "))
		if !ok {
			return b.fail("unexpected answer: " + string(text))
		}
		if !bytes.HasPrefix(bytes.ToUpper(rest), []byte("OK")) {
			return b.fail("server said: " + string(text))
		}
		// The server's OK, capabilities included (RFC 9051 section
		// 7.1, CAPABILITY response code), under the client's tag.
		post := append(b.post, s.tag...)
		post = append(post, ' ')
		post = append(post, rest...)
		post = append(post, "\r\n"...)
		b.post = nil
		b.state = beRelay
		s.loggedIn(post)
	}
	return gnet.None
}

// usesUserPass: POP3 with USER/PASS rather than AUTH PLAIN.
func (b *backend) usesUserPass() bool {
	cfg := &b.s.h.cfg
	return cfg.Login == LoginClient || cfg.MasterFormat != ""
}

// loginName is the name the backend is logged in as.
func (b *backend) loginName() string {
	s := b.s
	cfg := &s.h.cfg
	if cfg.Login == LoginClient {
		return s.verdict.User
	}
	r := strings.NewReplacer("{user}", s.verdict.User, "{master}", cfg.MasterUser)
	return r.Replace(cfg.MasterFormat)
}

func (b *backend) password() string {
	if b.s.h.cfg.Login == LoginClient {
		return string(b.s.pass)
	}
	return b.s.h.masterPassword()
}

// saslPlain is the PLAIN initial response of a master login: the user as
// authorization identity, the master user as authentication identity
// (RFC 4616 section 2).
func (b *backend) saslPlain() string {
	cfg := &b.s.h.cfg
	msg := b.s.verdict.User + "\x00" + cfg.MasterUser + "\x00" + b.s.h.masterPassword()
	return base64.StdEncoding.EncodeToString([]byte(msg))
}

// writeLogin writes the login command.
func (b *backend) writeLogin() {
	var out []byte
	if b.s.proto == POP3 {
		if b.usesUserPass() {
			out = append(append(append(out, "USER "...), b.loginName()...), "\r\n"...)
		} else {
			out = append(append(append(out, "AUTH PLAIN "...), b.saslPlain()...), "\r\n"...)
		}
	} else if b.usesUserPass() {
		out = append(out, backendTag+" LOGIN "...)
		out = appendIMAPString(out, b.loginName())
		out = append(out, ' ')
		out = appendIMAPString(out, b.password())
		out = append(out, "\r\n"...)
	} else {
		// SASL-IR (RFC 4959).
		out = append(append(append(out, backendTag+" AUTHENTICATE PLAIN "...), b.saslPlain()...), "\r\n"...)
	}
	_, _ = b.io.Write(out)
	clear(out)
	if b.s.h.cfg.Login == LoginClient && (b.s.proto == IMAP || !b.usesUserPass()) {
		b.s.clearCredentials()
	}
}

func (b *backend) pop3Pass() []byte {
	out := append(append([]byte("PASS "), b.password()...), "\r\n"...)
	b.s.clearCredentials()
	return out
}

// appendIMAPString appends v as an IMAP quoted string, or as a
// non-synchronizing literal when it holds bytes a quoted string cannot
// (RFC 9051 section 4.3; LITERAL+, which Dovecot supports).
func appendIMAPString(out []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' || c == 0 || c >= 0x80 {
			out = append(out, '{')
			out = append(out, []byte(itoa(len(v)))...)
			out = append(out, "+}\r\n"...)
			return append(out, v...)
		}
	}
	out = append(out, '"')
	for i := 0; i < len(v); i++ {
		if v[i] == '"' || v[i] == '\\' {
			out = append(out, '\\')
		}
		out = append(out, v[i])
	}
	return append(out, '"')
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// relayDown moves the server's bytes to the client.
func (b *backend) relayDown() gnet.Action {
	s := b.s
	if !s.relay(b.io, s.io, &s.h.stats.BytesDown) {
		return gnet.Close
	}
	return gnet.None
}
