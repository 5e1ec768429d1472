package gateway_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"frontdoor/directory"
	"frontdoor/gateway/config"
	"frontdoor/internal/gwtest"
	"frontdoor/internal/testbed"
)

// mailBed is a gateway with IMAP and POP3 listeners in front of two
// Dovecot instances: mbx1 on 127.0.0.2 holds DB01 (alice), mbx2 on
// 127.0.0.3 DB02 (bob), each database with a passive copy on the other.
type mailBed struct {
	gw                       *gwtest.Gateway
	mbx1, mbx2               *testbed.Dovecot
	imap, imaps, pop3, pop3s string // the gateway's listener addresses
	dirTOML                  string
	cfgText, cfgPath         string
}

func mailDirectory(db01Active string) string {
	other := map[string]string{"mbx1": "mbx2", "mbx2": "mbx1"}
	return `[[site]]
name = "site-a"
external_url = "https://mail-a.example.test"
[[server]]
name = "mbx1"
address = "127.0.0.2"
site = "site-a"
[[server]]
name = "mbx2"
address = "127.0.0.3"
site = "site-a"
[[database]]
name = "DB01"
active = "` + db01Active + `"
copies = ["` + other[db01Active] + `"]
[[database]]
name = "DB02"
active = "mbx2"
copies = ["mbx1"]
[[user]]
login = "alice"
address = "alice@example.test"
database = "DB01"
password_hash = "` + gwtest.PasswordHash + `"
[[user]]
login = "carol"
address = "carol@example.test"
database = "DB01"
password_hash = "` + gwtest.PasswordHash + `"
[[user]]
login = "bob"
address = "bob@example.test"
database = "DB02"
password_hash = "` + gwtest.PasswordHash + `"
`
}

func startMailBed(t *testing.T, extra string) *mailBed {
	t.Helper()
	testbed.NeedDovecot(t)
	if _, err := exec.LookPath(python()); err != nil {
		t.Skip("python3 is not installed: the mail tests drive the gateway with Python's imaplib and poplib")
	}
	imapPort := testbed.PortFreeOn(t, "127.0.0.2", "127.0.0.3")
	pop3Port := testbed.PortFreeOn(t, "127.0.0.2", "127.0.0.3")
	b := &mailBed{}
	b.mbx1 = testbed.StartDovecot(t, "mbx1", "127.0.0.2", imapPort, pop3Port)
	b.mbx2 = testbed.StartDovecot(t, "mbx2", "127.0.0.3", imapPort, pop3Port)
	certDir := t.TempDir()
	cert := fmt.Sprintf("certificates = [{ cert = %q, key = %q }]\ntls_self_signed = true\n",
		filepath.Join(certDir, "cert.pem"), filepath.Join(certDir, "key.pem"))
	addr := func() string { return fmt.Sprintf("127.0.0.1:%d", testbed.FreePort(t, "127.0.0.1")) }
	b.imap, b.imaps, b.pop3, b.pop3s = addr(), addr(), addr(), addr()
	var c strings.Builder
	fmt.Fprintf(&c, "directory = \"directory.toml\"\ngateway_id = \"gw-mail\"\n[engine]\nloops = 2\n")
	fmt.Fprintf(&c, "[[listener]]\nname = \"imap\"\naddress = %q\nmail = \"imap\"\nstarttls = true\n%s", b.imap, cert)
	fmt.Fprintf(&c, "[[listener]]\nname = \"imaps\"\naddress = %q\nmail = \"imap\"\ntls = true\n%s", b.imaps, cert)
	fmt.Fprintf(&c, "[[listener]]\nname = \"pop3\"\naddress = %q\nmail = \"pop3\"\nstarttls = true\n%s", b.pop3, cert)
	fmt.Fprintf(&c, "[[listener]]\nname = \"pop3s\"\naddress = %q\nmail = \"pop3\"\ntls = true\n%s", b.pop3s, cert)
	c.WriteString("[[protocol]]\nname = \"owa\"\npath_prefix = \"/owa\"\nbackend_port = 1\n")
	fmt.Fprintf(&c, "[mail]\nmaster_user = %q\nmaster_password_file = %q\nimap_backend_port = %d\npop3_backend_port = %d\nfailure_delay = \"50ms\"\n",
		testbed.DovecotMasterUser, testbed.DovecotMasterPasswordFile(t), imapPort, pop3Port)
	c.WriteString(extra)
	b.cfgText, b.cfgPath = c.String(), filepath.Join(t.TempDir(), "mail.toml")
	cfg, err := config.Parse(b.cfgPath, []byte(b.cfgText))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, c.String())
	}
	b.dirTOML = mailDirectory("mbx1")
	dir, err := directory.Parse("directory.toml", []byte(b.dirTOML))
	if err != nil {
		t.Fatal(err)
	}
	b.gw = gwtest.StartWith(t, cfg, dir, b.imap, testWriter{t})
	return b
}

// testWriter sends the gateway's log to the test's, shown on failure.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// mailClient runs testdata/mailclient.py and returns its output; it fails t
// when the script does.
func mailClient(t *testing.T, args ...string) string {
	t.Helper()
	out, err := clientCmd(t, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("mailclient %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func clientCmd(t *testing.T, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	script := filepath.Join("..", "internal", "testbed", "testdata", "mailclient.py")
	return exec.CommandContext(ctx, python(), append([]string{script}, args...)...)
}

// python is Debian's python3 when there is one (it starts faster than a
// version manager's shim), else the one in PATH.
func python() string {
	if _, err := exec.LookPath("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3"
	}
	return "python3"
}

func hostPort(addr string) (string, string) {
	i := strings.LastIndexByte(addr, ':')
	return addr[:i], addr[i+1:]
}

// TestMailDovecot drives the gateway with Python's imaplib and poplib in
// front of two real Dovecot instances: logins over STARTTLS and implicit
// TLS, SELECT, APPEND of a 1 MiB message and FETCH of it, IDLE, logout;
// POP3 over STLS and TLS; wrong passwords and plaintext logins refused;
// each user lands on the server of its database; then a switchover.
func TestMailDovecot(t *testing.T) {
	b := startMailBed(t, "")
	h, p := hostPort(b.imap)
	out := mailClient(t, "imap-session", h, p, "starttls", "alice", gwtest.Password, "1048576")
	if !strings.Contains(out, "ok messages=1 fetched=1048576") {
		t.Fatalf("alice over STARTTLS: %s", out)
	}
	// bob's database is on mbx2: his message lands there, alice's on mbx1.
	h, p = hostPort(b.imaps)
	out = mailClient(t, "imap-session", h, p, "tls", "bob", gwtest.Password, "2048")
	if !strings.Contains(out, "ok messages=1") {
		t.Fatalf("bob over TLS: %s", out)
	}
	if got := [4]int{b.mbx1.Messages("alice"), b.mbx2.Messages("alice"), b.mbx1.Messages("bob"), b.mbx2.Messages("bob")}; got != [4]int{1, 0, 0, 1} {
		t.Fatalf("messages alice@mbx1, alice@mbx2, bob@mbx1, bob@mbx2 = %v, want [1 0 0 1]", got)
	}

	h, p = hostPort(b.imap)
	if out := mailClient(t, "imap-plain-refused", h, p, "plain", "alice", gwtest.Password); !strings.Contains(out, "PRIVACYREQUIRED") {
		t.Errorf("plaintext LOGIN: %s", out)
	}
	if out := mailClient(t, "imap-login-fail", h, p, "starttls", "alice", "wrong"); !strings.Contains(out, "AUTHENTICATIONFAILED") {
		t.Errorf("wrong password: %s", out)
	}

	h, p = hostPort(b.pop3)
	out = mailClient(t, "pop3-session", h, p, "starttls", "alice", gwtest.Password)
	if !strings.Contains(out, "ok messages=1") || !strings.Contains(out, "retr 1") {
		t.Errorf("POP3 over STLS: %s", out)
	}
	if out := mailClient(t, "pop3-plain-refused", h, p, "plain", "alice", gwtest.Password); !strings.Contains(out, "refused") {
		t.Errorf("POP3 USER before STLS: %s", out)
	}
	h, p = hostPort(b.pop3s)
	if out := mailClient(t, "pop3-login-fail", h, p, "tls", "bob", "wrong"); !strings.Contains(out, "refused") {
		t.Errorf("POP3 wrong password: %s", out)
	}
	out = mailClient(t, "pop3-session", h, p, "tls", "bob", gwtest.Password)
	if !strings.Contains(out, "ok messages=1") {
		t.Errorf("POP3 over TLS: %s", out)
	}

	snap := b.gw.Snapshot()
	if snap.Mail["logins_ok"] < 4 || snap.Mail["logins_failed"] < 2 || snap.Mail["starttls"] < 3 {
		t.Errorf("mail counters: %v", snap.Mail)
	}
	if snap.TLS["imap"]["handshakes"] < 2 || snap.TLS["imaps"]["handshakes"] < 1 {
		t.Errorf("TLS counters of the STARTTLS and implicit-TLS listeners: %v", snap.TLS)
	}
	// Both Dovecots saw the master user log in on the users' behalf
	// (their logs were written before the sessions ended).
	if !strings.Contains(b.mbx1.Log(), "user=<alice>") || !strings.Contains(b.mbx2.Log(), "user=<bob>") {
		t.Errorf("dovecot logs lack the logins:\n%s\n%s", b.mbx1.Log(), b.mbx2.Log())
	}
	t.Run("halfclose", func(t *testing.T) { mailHalfClose(t, b) })
	t.Run("coalesce", func(t *testing.T) { mailCoalesce(t, b) })
	t.Run("client-address", func(t *testing.T) { mailClientAddress(t, b) })
	t.Run("throttle", func(t *testing.T) { mailThrottle(t, b) })
	t.Run("reload", func(t *testing.T) { mailReload(t, b) })
	// Last: it moves alice's database.
	t.Run("switchover", func(t *testing.T) { mailSwitchover(t, b) })
}

// mailSwitchover moves alice's database to mbx2 while she is logged in:
// her session gets "* BYE" and her next login lands on mbx2.
func mailSwitchover(t *testing.T, b *mailBed) {
	aliceBefore := b.mbx1.Messages("alice")
	h, p := hostPort(b.imaps)
	cmd := clientCmd(t, "imap-hold", h, p, "tls", "alice", gwtest.Password)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(stdout)
	line, err := r.ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("imap-hold: %q %v", line, err)
	}
	moved, err := directory.Parse("directory.toml", []byte(mailDirectory("mbx2")))
	if err != nil {
		t.Fatal(err)
	}
	// What the directory's file watch does on `frontdoor directory
	// set-active --database DB01 --server mbx2` (process.go).
	b.gw.SetDirectory(moved)
	var rest strings.Builder
	for {
		l, err := r.ReadString('\n')
		rest.WriteString(l)
		if err != nil {
			break
		}
	}
	_ = cmd.Wait()
	if !strings.Contains(rest.String(), "* BYE") || !strings.Contains(rest.String(), "moved") {
		t.Fatalf("the session on the old server did not get BYE: %q", rest.String())
	}
	if n := b.gw.Snapshot().Mail["failover_closed"]; n != 1 {
		t.Errorf("failover_closed = %d, want 1", n)
	}
	out := mailClient(t, "imap-session", h, p, "tls", "alice", gwtest.Password, "1024")
	if !strings.Contains(out, "ok messages=1") {
		t.Fatalf("alice after the switchover: %s", out)
	}
	if b.mbx2.Messages("alice") != 1 || b.mbx1.Messages("alice") != aliceBefore {
		t.Fatalf("alice's messages: mbx1 %d (before %d), mbx2 %d; want the new one on mbx2", b.mbx1.Messages("alice"), aliceBefore, b.mbx2.Messages("alice"))
	}
}

// imapsLogin logs in over implicit TLS with raw commands and returns the
// connection and the tagged answer.
func imapsLogin(addr, user, pass string) (*tls.Conn, *bufio.Reader, string, error) {
	c, r, l, _, err := imapsLoginFrom(nil, addr, user, pass)
	return c, r, l, err
}

// imapsLoginFrom is imapsLogin from the local address from (nil: any); it
// also returns the untagged lines before the tagged answer.
func imapsLoginFrom(from net.Addr, addr, user, pass string) (*tls.Conn, *bufio.Reader, string, []string, error) {
	d := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: from}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test's self-signed certificate
	if err != nil {
		return nil, nil, "", nil, err
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	var untagged []string
	fmt.Fprintf(c, "a LOGIN %s %s\r\n", user, pass)
	for range 50 {
		l, err := r.ReadString('\n')
		if err != nil {
			c.Close()
			return nil, nil, "", nil, err
		}
		if strings.HasPrefix(l, "a ") {
			return c, r, l, untagged, nil
		}
		untagged = append(untagged, l)
	}
	c.Close()
	return nil, nil, "", untagged, fmt.Errorf("no tagged answer")
}

// mailClientAddress: Dovecot logs the client's address, not the
// gateway's: IMAP ID x-originating-ip and POP3 XCLIENT before the login.
// The client connects from 127.0.0.9 (any 127/8 address is local).
func mailClientAddress(t *testing.T, b *mailBed) {
	from := &net.TCPAddr{IP: net.ParseIP("127.0.0.9")}
	c, _, l, untagged, err := imapsLoginFrom(from, b.imaps, "alice", gwtest.Password)
	if err != nil || !strings.HasPrefix(l, "a OK") {
		t.Fatalf("login: %q %v", l, err)
	}
	for _, u := range untagged {
		if !strings.HasPrefix(u, "* OK [CAPABILITY") && !strings.HasPrefix(u, "* CAPABILITY") {
			t.Errorf("the client got %q: the answer to the gateway's ID leaked?", u)
		}
	}
	c.Close()
	d := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: from}
	pc, err := tls.DialWithDialer(d, "tcp", b.pop3s, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test's self-signed certificate
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	_ = pc.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(pc)
	fmt.Fprintf(pc, "USER bob\r\nPASS %s\r\n", gwtest.Password)
	for _, want := range []string{"+OK", "+OK", "+OK Logged in."} {
		if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, want) {
			t.Fatalf("POP3: %q %v, want %q", l, err, want)
		}
	}
	// Dovecot's log process writes the lines a moment after the login.
	waitLog := func(d *testbed.Dovecot, line string) {
		t.Helper()
		for range 100 {
			if strings.Contains(d.Log(), line) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Errorf("%s did not log %q:\n%s", d.Name, line, d.Log())
	}
	waitLog(b.mbx1, "imap-login: Info: Login: user=<alice>, method=PLAIN, rip=127.0.0.9")
	waitLog(b.mbx2, "pop3-login: Info: Login: user=<bob>, method=PLAIN, rip=127.0.0.9")
}

// mailThrottle: failed mail logins count in HTTP's throttle ([auth]
// max_failures, 5 by default, per user and address); once throttled, a
// login is refused without a verification, while the user's cached good
// credential still works (a signed-in user is not locked out by a guesser).
// From 127.0.0.7, so that the address's count is this subtest's own.
func mailThrottle(t *testing.T, b *mailBed) {
	from := &net.TCPAddr{IP: net.ParseIP("127.0.0.7")}
	throttled := false
	for i := 0; i < 10 && !throttled; i++ {
		c, _, l, _, err := imapsLoginFrom(from, b.imaps, "carol", "guess")
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		switch {
		case strings.Contains(l, "too many failed logins"):
			throttled = true
			if i != 5 {
				t.Errorf("throttled after %d failures, want 5", i)
			}
		case !strings.HasPrefix(l, "a NO [AUTHENTICATIONFAILED]"):
			t.Fatalf("attempt %d: %q", i, l)
		}
	}
	if !throttled {
		t.Fatal("10 failed logins and no throttling")
	}
	c, _, l, _, err := imapsLoginFrom(from, b.imaps, "carol", gwtest.Password)
	if err != nil || !strings.HasPrefix(l, "a OK") {
		t.Fatalf("carol's good (cached) password while throttled: %q %v", l, err)
	}
	c.Close()
	if n := b.gw.Snapshot().Mail["throttled"]; n < 1 {
		t.Errorf("mail throttled = %d", n)
	}
}

// mailCoalesce: a client opening several connections at once with a
// credential not yet verified costs one verification.
func mailCoalesce(t *testing.T, b *mailBed) {
	before := b.gw.Snapshot().Auth["verifications"]
	const n = 5
	errs := make(chan error, n)
	for range n {
		go func() {
			c, _, l, err := imapsLogin(b.imaps, "carol", gwtest.Password)
			if err == nil {
				c.Close()
				if !strings.HasPrefix(l, "a OK") {
					err = fmt.Errorf("login: %q", l)
				}
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := b.gw.Snapshot().Auth["verifications"] - before; got != 1 {
		t.Fatalf("%d concurrent logins ran %d verifications, want 1", n, got)
	}
}

// mailReload reloads the configuration while bob is logged in: his session
// stays with the old generation and keeps working, new logins are served
// by the new one, which logs in to Dovecot with SASL PLAIN and an
// authorization identity.
func mailReload(t *testing.T, b *mailBed) {
	c, err := tls.Dial("tcp", b.imaps, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test's self-signed certificate
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	until := func(prefix string) string {
		t.Helper()
		for range 50 {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("waiting for %q: %v", prefix, err)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
		t.Fatalf("no %q", prefix)
		return ""
	}
	until("* OK")
	fmt.Fprintf(c, "a LOGIN bob %s\r\n", gwtest.Password)
	if l := until("a "); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("login: %q", l)
	}
	// The new configuration logs in to Dovecot with SASL PLAIN and an
	// authorization identity instead of "user*master" ([mail] is the
	// last table).
	cfg, err := config.Parse(b.cfgPath, []byte(b.cfgText+"master_format = \"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := b.gw.ReloadConfig(cfg); !changed || err != nil {
		t.Fatalf("reload: %v %v", changed, err)
	}
	fmt.Fprint(c, "b SELECT INBOX\r\n")
	if l := until("b "); !strings.HasPrefix(l, "b OK") {
		t.Fatalf("the old generation's session after the reload: %q", l)
	}
	h, p := hostPort(b.pop3s)
	if out := mailClient(t, "pop3-session", h, p, "tls", "bob", gwtest.Password); !strings.Contains(out, "ok messages=1") {
		t.Errorf("a POP3 login after the reload (AUTH PLAIN with authzid to Dovecot): %s", out)
	}
	c2, _, l, err := imapsLogin(b.imaps, "bob", gwtest.Password)
	if err != nil || !strings.HasPrefix(l, "a OK") {
		t.Fatalf("an IMAP login after the reload (AUTHENTICATE PLAIN with authzid to Dovecot): %q %v", l, err)
	}
	c2.Close()
	fmt.Fprint(c, "c LOGOUT\r\n")
	until("c OK")
}
