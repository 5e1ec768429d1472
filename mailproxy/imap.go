package mailproxy

import (
	"bytes"
	"encoding/base64"
	"strconv"

	"github.com/panjf2000/gnet/v2"
)

// maxNonSyncLiteral is LITERAL-'s bound on a non-synchronizing literal
// (RFC 7888 section 5).
const maxNonSyncLiteral = 4096

// imapCapabilities lists what the gateway offers before login (RFC 9051
// section 7.2.2; RFC 3501 section 7.2.1 for IMAP4rev1 clients).
func (s *session) imapCapabilities() []byte {
	c := []byte("IMAP4rev1 SASL-IR ID LITERAL-")
	if s.canStartTLS() {
		c = append(c, " STARTTLS"...)
	}
	if s.plainAllowed() {
		c = append(c, " AUTH=PLAIN"...)
	} else {
		// RFC 9051 section 6.2.3: LOGIN (and plaintext SASL) refused
		// until TLS.
		c = append(c, " LOGINDISABLED"...)
	}
	return c
}

// resetCommand forgets the command being read.
func (s *session) resetCommand() {
	clear(s.args)
	s.args = s.args[:0]
	s.litNeed = -1
	s.cmdBytes = 0
}

// imapCommands reads and runs pre-login commands: lines with their
// literals (RFC 9051 section 4.3: "{n}" asks for a continuation, "{n+}"
// does not, RFC 7888).
func (s *session) imapCommands() gnet.Action {
	cfg := &s.h.cfg
	for s.state == stCommand || s.state == stSASL {
		buf, _ := s.io.Peek(-1)
		if len(buf) == 0 {
			return gnet.None
		}
		if s.litNeed >= 0 {
			n := min(len(buf), s.litNeed)
			last := len(s.args) - 1
			s.args[last] = append(s.args[last], buf[:n]...)
			_, _ = s.io.Discard(n)
			s.litNeed -= n
			if s.litNeed > 0 {
				return gnet.None
			}
			s.litNeed = -1
			continue // the command line goes on after the literal
		}
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			if len(buf) > cfg.MaxLineBytes {
				s.h.stats.Overflow.Add(1)
				return s.bye("[TOOBIG] command line too long")
			}
			return gnet.None
		}
		if i+1 > cfg.MaxLineBytes {
			s.h.stats.Overflow.Add(1)
			return s.bye("[TOOBIG] command line too long")
		}
		s.cmdBytes += i + 1
		if s.cmdBytes > cfg.MaxCommandBytes {
			s.h.stats.Overflow.Add(1)
			return s.bye("[TOOBIG] command too long")
		}
		line := buf[:i]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if s.state == stSASL {
			resp := bytes.Clone(line)
			_, _ = s.io.Discard(i + 1)
			s.cmdBytes = 0
			if act := s.imapSASLResponse(resp); act == gnet.Close {
				return act
			}
			continue
		}
		lit, nonSync, ok := s.parseIMAPLine(line)
		_, _ = s.io.Discard(i + 1)
		if !ok {
			s.imapBad("syntax error in command")
			continue
		}
		if lit >= 0 {
			s.cmdBytes += lit
			if lit > cfg.MaxLiteralBytes || nonSync && lit > maxNonSyncLiteral || s.cmdBytes > cfg.MaxCommandBytes {
				s.h.stats.Overflow.Add(1)
				if nonSync {
					// The literal is on its way and cannot be told from
					// commands: the connection cannot go on (RFC 7888
					// section 4).
					return s.bye("[TOOBIG] literal too large")
				}
				s.imapBad("[TOOBIG] literal too large")
				continue
			}
			s.args = append(s.args, make([]byte, 0, lit))
			s.litNeed = lit
			if !nonSync {
				_, _ = s.io.Write([]byte("+ Ready for literal data\r\n"))
			}
			continue
		}
		act := s.imapExecute()
		if act == gnet.Close {
			return act
		}
	}
	return gnet.None
}

// imapBad answers the command being read with BAD and forgets it.
func (s *session) imapBad(text string) {
	tag := []byte("*")
	if len(s.args) > 0 && validTag(s.args[0]) {
		tag = s.args[0]
	}
	out := append(append(append([]byte(nil), tag...), " BAD "...), text...)
	_, _ = s.io.Write(append(out, "\r\n"...))
	s.resetCommand()
}

// validTag: a tag is 1*<any ASTRING-CHAR except "+"> (RFC 9051 section 9).
func validTag(t []byte) bool {
	if len(t) == 0 {
		return false
	}
	for _, c := range t {
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte(`(){%*"\+`), c) >= 0 {
			return false
		}
	}
	return true
}

// parseIMAPLine appends the arguments of one line of a command (the
// first line, or the rest after a literal) to s.args. lit is the size of
// the literal that ends the line, -1 if none.
func (s *session) parseIMAPLine(line []byte) (lit int, nonSync bool, ok bool) {
	lit = -1
	for i := 0; i < len(line); {
		c := line[i]
		switch {
		case c == ' ':
			i++
		case c == '(' || c == ')':
			s.args = append(s.args, []byte{c})
			i++
		case c == '"':
			var v []byte
			j := i + 1
			for ; j < len(line) && line[j] != '"'; j++ {
				if line[j] == '\\' {
					j++
					if j == len(line) || line[j] != '"' && line[j] != '\\' {
						return -1, false, false
					}
				}
				v = append(v, line[j])
			}
			if j == len(line) {
				return -1, false, false
			}
			if v == nil {
				v = []byte{}
			}
			s.args = append(s.args, v)
			i = j + 1
		case c == '{':
			// Only at the end of the line: {n} or {n+}.
			end := len(line) - 1
			if line[end] != '}' {
				return -1, false, false
			}
			num := line[i+1 : end]
			if len(num) > 0 && num[len(num)-1] == '+' {
				nonSync = true
				num = num[:len(num)-1]
			}
			if len(num) == 0 || len(num) > 10 {
				return -1, false, false
			}
			n, err := strconv.Atoi(string(num))
			if err != nil || n < 0 {
				return -1, false, false
			}
			return n, nonSync, true
		default:
			j := i
			for j < len(line) && line[j] != ' ' && line[j] != '(' && line[j] != ')' && line[j] != '"' {
				j++
			}
			s.args = append(s.args, bytes.Clone(line[i:j]))
			i = j
		}
	}
	return -1, false, true
}

func (s *session) imapWrite(parts ...string) {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	_, _ = s.io.Write(out)
}

// imapExecute runs the complete command in s.args.
func (s *session) imapExecute() gnet.Action {
	args := s.args
	if len(args) < 2 || !validTag(args[0]) {
		s.imapBad("missing tag or command")
		return gnet.None
	}
	tag := string(args[0])
	cmd := string(bytes.ToUpper(args[1]))
	params := args[2:]
	defer s.resetCommand()
	switch cmd {
	case "CAPABILITY":
		s.imapWrite("* CAPABILITY ", string(s.imapCapabilities()), "\r\n", tag, " OK CAPABILITY completed\r\n")
	case "NOOP":
		s.imapWrite(tag, " OK NOOP completed\r\n")
	case "LOGOUT":
		s.imapWrite("* BYE logging out\r\n", tag, " OK LOGOUT completed\r\n")
		return s.closeNow()
	case "ID":
		// RFC 2971 section 3.1: the client's list is read (and ignored),
		// the server answers with its own.
		s.imapWrite(`* ID ("name" "frontdoor")`+"\r\n", tag, " OK ID completed\r\n")
	case "STARTTLS":
		switch {
		case s.secure():
			s.imapWrite(tag, " BAD TLS is already active\r\n")
		case !s.canStartTLS():
			s.imapWrite(tag, " BAD STARTTLS not available\r\n")
		case len(params) != 0:
			s.imapWrite(tag, " BAD STARTTLS takes no arguments\r\n")
		default:
			s.startTLS(tag + " OK Begin TLS negotiation now\r\n")
		}
	case "LOGIN":
		if !s.plainAllowed() {
			s.imapWrite(tag, " NO [PRIVACYREQUIRED] plaintext login disallowed: use STARTTLS\r\n")
			return gnet.None
		}
		if len(params) != 2 {
			s.imapWrite(tag, " BAD LOGIN takes a user name and a password\r\n")
			return gnet.None
		}
		s.tag = []byte(tag)
		s.user, s.pass = params[0], params[1]
		params[0], params[1] = nil, nil
		return s.login()
	case "AUTHENTICATE":
		if len(params) < 1 || len(params) > 2 {
			s.imapWrite(tag, " BAD AUTHENTICATE takes a mechanism and an optional initial response\r\n")
			return gnet.None
		}
		if !bytes.EqualFold(params[0], []byte("PLAIN")) {
			s.imapWrite(tag, " NO [CANNOT] unsupported authentication mechanism\r\n")
			return gnet.None
		}
		if !s.plainAllowed() {
			s.imapWrite(tag, " NO [PRIVACYREQUIRED] plaintext authentication disallowed: use STARTTLS\r\n")
			return gnet.None
		}
		s.tag = []byte(tag)
		if len(params) == 2 {
			// SASL-IR (RFC 4959 section 3): "=" is an empty response.
			ir := params[1]
			if string(ir) == "=" {
				ir = nil
			}
			return s.saslPlain(ir)
		}
		s.state = stSASL
		s.imapWrite("+ \r\n")
	default:
		s.imapWrite(tag, " BAD command unknown or not allowed before login\r\n")
	}
	return gnet.None
}

// imapSASLResponse takes the client's response to the "+ " continuation.
func (s *session) imapSASLResponse(resp []byte) gnet.Action {
	s.state = stCommand
	if string(resp) == "*" {
		// RFC 9051 section 6.2.2: the client cancelled.
		s.imapWrite(string(s.tag), " BAD AUTHENTICATE cancelled\r\n")
		return gnet.None
	}
	return s.saslPlain(resp)
}

// saslPlain decodes a PLAIN response (RFC 4616 section 2: [authzid] NUL
// authcid NUL passwd, base64 in IMAP and POP3) and logs in with it.
func (s *session) saslPlain(b64 []byte) gnet.Action {
	user, pass, ok := decodePlain(b64)
	if !ok {
		s.state = stCommand
		if s.proto == POP3 {
			_, _ = s.io.Write([]byte("-ERR malformed PLAIN response\r\n"))
		} else {
			s.imapWrite(string(s.tag), " BAD malformed PLAIN response\r\n")
		}
		return gnet.None
	}
	s.user, s.pass = user, pass
	return s.login()
}

// decodePlain decodes a base64 PLAIN message. An authorization identity
// other than the authentication identity is refused: the gateway does not
// let one user act as another.
func decodePlain(b64 []byte) (user, pass []byte, ok bool) {
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(b64)))
	n, err := base64.StdEncoding.Decode(raw, b64)
	if err != nil {
		return nil, nil, false
	}
	raw = raw[:n]
	parts := bytes.Split(raw, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 {
		return nil, nil, false
	}
	if len(parts[0]) > 0 && !bytes.EqualFold(parts[0], parts[1]) {
		return nil, nil, false
	}
	return parts[1], parts[2], true
}
