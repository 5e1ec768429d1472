package mailproxy_test

import (
	"strings"
	"testing"
)

func TestPOP3(t *testing.T) {
	t.Parallel()
	h := startHarness(t, true, nil)
	c := h.dial(t, lPOP3)
	c.expect("+OK")
	c.send("CAPA\r\n")
	caps := c.until(".")
	if s := strings.Join(caps, " "); !strings.Contains(s, "STLS") || strings.Contains(s, "USER") || strings.Contains(s, "SASL") {
		t.Fatalf("CAPA before TLS: %q", caps)
	}
	c.send("USER alice\r\nPASS password\r\nAUTH PLAIN " + plain("", "alice", "password") + "\r\nSTAT\r\n")
	c.expect("-ERR [AUTH]")
	c.expect("-ERR [AUTH]")
	c.expect("-ERR [AUTH]")
	c.expect("-ERR")
	c.send("STLS\r\n")
	c.expect("+OK")
	c.startTLS(h.roots)
	c.send("CAPA\r\n")
	caps = c.until(".")
	if s := strings.Join(caps, " "); strings.Contains(s, "STLS") || !strings.Contains(s, "USER") || !strings.Contains(s, "SASL PLAIN") {
		t.Fatalf("CAPA after TLS: %q", caps)
	}
	c.send("PASS password\r\n")
	c.expect("-ERR USER first")
	c.send("USER alice\r\nPASS wrong\r\n")
	c.expect("+OK")
	c.expect("-ERR [AUTH]")
	c.send("AUTH PLAIN\r\n")
	c.expect("+ ")
	c.send(plain("", "alice", "password") + "\r\n")
	c.expect("+OK Logged in.")
	c.send("STAT\r\n")
	c.expect("+OK STAT")
	if got := h.stub.Logins(); len(got) != 2 || got[0] != "USER alice*master" || got[1] != "PASS m-pw" {
		t.Fatalf("backend login: %q", got)
	}
	c.send("QUIT-NOW\r\n")
	c.closed()

	c = h.dial(t, lPOP3)
	c.expect("+OK")
	c.send("QUIT\r\n")
	if ls := c.closed(); len(ls) != 1 || !strings.HasPrefix(ls[0], "+OK") {
		t.Fatalf("QUIT: %q", ls)
	}
}

// TestPOP3FailoverAndStop: a POP3 session whose database moved gets -ERR
// with a POP3 response code; a stop says goodbye to the others.
func TestPOP3FailoverAndStop(t *testing.T) {
	t.Parallel()
	h := startHarness(t, true, nil)
	login := func() *conn {
		c := h.dial(t, lPOP3)
		c.expect("+OK")
		c.send("STLS\r\n")
		c.expect("+OK")
		c.startTLS(h.roots)
		c.send("USER alice\r\nPASS password\r\n")
		c.expect("+OK")
		c.expect("+OK Logged in.")
		return c
	}
	moved, alsoMoved := login(), login()
	h.h.CheckActive(func(db, server string) bool { return false })
	if ls := moved.closed(); len(ls) != 1 || !strings.HasPrefix(ls[0], "-ERR [SYS/TEMP] mailbox moved") {
		t.Fatalf("after the move: %q", ls)
	}
	alsoMoved.closed() // same user, same database
	c := h.dial(t, lPOP3)
	c.expect("+OK")
	h.stop()
	if ls := c.closed(); len(ls) != 1 || ls[0] != "-ERR [SYS/TEMP] server shutting down" {
		t.Fatalf("stop: %q", ls)
	}
}
