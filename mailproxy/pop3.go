package mailproxy

import (
	"bytes"

	"github.com/panjf2000/gnet/v2"
)

// pop3Commands reads and runs pre-login POP3 commands (RFC 1939 section 3:
// a keyword, arguments separated by single spaces, CRLF; RFC 2449 section
// 4 bounds a command line at 255 octets, the configured line bound
// applies here).
func (s *session) pop3Commands() gnet.Action {
	cfg := &s.h.cfg
	for s.state == stCommand || s.state == stSASL {
		buf, _ := s.io.Peek(-1)
		if len(buf) == 0 {
			return gnet.None
		}
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			if len(buf) > cfg.MaxLineBytes {
				s.h.stats.Overflow.Add(1)
				return s.bye("line too long")
			}
			return gnet.None
		}
		if i+1 > cfg.MaxLineBytes {
			s.h.stats.Overflow.Add(1)
			return s.bye("line too long")
		}
		line := buf[:i]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		line = bytes.Clone(line)
		_, _ = s.io.Discard(i + 1)
		var act gnet.Action
		if s.state == stSASL {
			s.state = stCommand
			if string(line) == "*" {
				s.pop3Write("-ERR AUTH cancelled\r\n")
				continue
			}
			act = s.saslPlain(line)
		} else {
			act = s.pop3Execute(line)
		}
		if act == gnet.Close {
			return act
		}
	}
	return gnet.None
}

func (s *session) pop3Write(msg string) { _, _ = s.io.Write([]byte(msg)) }

func (s *session) pop3Execute(line []byte) gnet.Action {
	kw, rest, _ := bytes.Cut(line, []byte(" "))
	switch string(bytes.ToUpper(kw)) {
	case "CAPA":
		// RFC 2449 section 5.
		out := "+OK capability list follows\r\n"
		if s.plainAllowed() {
			out += "USER\r\nSASL PLAIN\r\n"
		}
		if s.canStartTLS() {
			out += "STLS\r\n"
		}
		out += "RESP-CODES\r\nAUTH-RESP-CODE\r\nIMPLEMENTATION frontdoor\r\n.\r\n"
		s.pop3Write(out)
	case "STLS":
		switch {
		case s.secure():
			s.pop3Write("-ERR TLS is already active\r\n")
		case !s.canStartTLS():
			s.pop3Write("-ERR STLS not available\r\n")
		default:
			s.startTLS("+OK begin TLS negotiation\r\n")
		}
	case "USER":
		if !s.plainAllowed() {
			// RFC 2595 section 4: plaintext login refused before STLS.
			s.pop3Write("-ERR [AUTH] plaintext authentication disallowed: use STLS\r\n")
			return gnet.None
		}
		if len(rest) == 0 {
			s.pop3Write("-ERR USER takes a name\r\n")
			return gnet.None
		}
		s.user = bytes.Clone(rest)
		s.pop3Write("+OK\r\n")
	case "PASS":
		if !s.plainAllowed() {
			s.pop3Write("-ERR [AUTH] plaintext authentication disallowed: use STLS\r\n")
			return gnet.None
		}
		if s.user == nil {
			s.pop3Write("-ERR USER first\r\n")
			return gnet.None
		}
		// RFC 1939 section 7: the password is the rest of the line and
		// may hold spaces.
		s.pass = bytes.Clone(rest)
		return s.login()
	case "AUTH":
		if len(rest) == 0 {
			// The mechanism list, as most servers answer a bare AUTH.
			s.pop3Write("+OK\r\nPLAIN\r\n.\r\n")
			return gnet.None
		}
		mech, ir, _ := bytes.Cut(rest, []byte(" "))
		if !bytes.EqualFold(mech, []byte("PLAIN")) {
			s.pop3Write("-ERR unsupported authentication mechanism\r\n")
			return gnet.None
		}
		if !s.plainAllowed() {
			s.pop3Write("-ERR [AUTH] plaintext authentication disallowed: use STLS\r\n")
			return gnet.None
		}
		if len(ir) > 0 {
			// RFC 5034 section 4: initial response, "=" for empty.
			if string(ir) == "=" {
				ir = nil
			}
			return s.saslPlain(ir)
		}
		s.state = stSASL
		s.pop3Write("+ \r\n")
	case "QUIT":
		s.pop3Write("+OK bye\r\n")
		return s.closeNow()
	default:
		s.pop3Write("-ERR command unknown or not allowed before login\r\n")
	}
	return gnet.None
}
