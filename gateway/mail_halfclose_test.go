package gateway_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"frontdoor/internal/gwtest"
)

// dialHalfClose connects over implicit TLS and reads the greeting (so the
// loop has taken the connection over from the handshake).
func dialHalfClose(t *testing.T, addr string) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
		&tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test's self-signed certificate
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") && !strings.HasPrefix(l, "+OK") {
		t.Fatalf("greeting: %q %v", l, err)
	}
	return c, r
}

// halfCloseTLS sends close_notify and then the FIN (RFC 8446 section
// 6.1, RFC 9293 section 3.6), and reads everything until the gateway's
// EOF.
func halfCloseTLS(t *testing.T, c *tls.Conn, r *bufio.Reader) []byte {
	t.Helper()
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := c.NetConn().(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read after the half-close: %v (%d bytes)", err, len(b))
	}
	return b
}

// mailHalfClose (issue 7): a client that pipelines its commands, LOGOUT
// or QUIT last, and half-closes gets every answer from Dovecot, a 1 MiB
// FETCH byte for byte, then EOF.
func mailHalfClose(t *testing.T, b *mailBed) {
	msg := bytes.Repeat([]byte("half-close propagated, every byte of it\r\n"), 1<<20/41+1)
	// APPEND first, in a session of its own, after the login's answer:
	// a literal this large may not wait behind a LOGIN being checked.
	c, r := dialHalfClose(t, b.imaps)
	fmt.Fprintf(c, "a LOGIN bob %s\r\n", gwtest.Password)
	for {
		l, err := r.ReadString('\n')
		if err != nil || strings.HasPrefix(l, "a ") && !strings.HasPrefix(l, "a OK") {
			t.Fatalf("LOGIN: %q %v", l, err)
		}
		if strings.HasPrefix(l, "a OK") {
			break
		}
	}
	fmt.Fprintf(c, "b APPEND INBOX {%d+}\r\n", len(msg))
	_, _ = c.Write(msg)
	fmt.Fprint(c, "\r\n")
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("APPEND: %v", err)
		}
		if strings.HasPrefix(l, "b ") {
			if !strings.HasPrefix(l, "b OK") {
				t.Fatalf("APPEND: %q", l)
			}
			break
		}
	}
	c.Close()

	c, r = dialHalfClose(t, b.imaps)
	// The message is removed again (the other subtests count bob's).
	fmt.Fprintf(c, "a LOGIN bob %s\r\nb SELECT INBOX\r\nc FETCH * BODY[]\r\n"+
		"d STORE * +FLAGS.SILENT (\\Deleted)\r\ne EXPUNGE\r\nf LOGOUT\r\n", gwtest.Password)
	got := halfCloseTLS(t, c, r)
	head := fmt.Appendf(nil, "BODY[] {%d}\r\n", len(msg))
	i := bytes.Index(got, head)
	if i < 0 || !bytes.HasPrefix(got[i+len(head):], msg) {
		t.Fatalf("the FETCH answer is not the message (%d bytes read): %q", len(got), got[:min(len(got), 300)])
	}
	tail := string(got[i+len(head)+len(msg):])
	if !strings.Contains(tail, "\r\nc OK") || !strings.Contains(tail, "\r\ne OK") || !strings.Contains(tail, "\r\n* BYE") ||
		!strings.HasPrefix(tail[strings.LastIndex(tail[:len(tail)-2], "\r\n")+2:], "f OK") {
		t.Fatalf("after the message: %q", tail)
	}

	c, r = dialHalfClose(t, b.pop3s)
	fmt.Fprintf(c, "USER bob\r\nPASS %s\r\nRETR 1\r\nQUIT\r\n", gwtest.Password)
	out := string(halfCloseTLS(t, c, r))
	if !strings.HasPrefix(out, "+OK") || !strings.Contains(out, "\r\n.\r\n") || !strings.HasSuffix(out, "+OK Logging out.\r\n") {
		t.Fatalf("POP3: %q", out[:min(len(out), 300)])
	}
	if n := b.gw.Snapshot().Mail["halfclose_lost"]; n != 0 {
		t.Errorf("halfclose_lost = %d", n)
	}
}
