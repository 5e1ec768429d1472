package testbed

import (
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Dovecot is a Dovecot instance (IMAP and POP3, plaintext) for one test,
// started as a child process with the configuration and users of
// testdata/dovecot under a temporary directory. Its master user is
// DovecotMasterUser with the password in DovecotMasterPasswordFile.
type Dovecot struct {
	Name     string
	IP       string
	IMAPPort int
	POP3Port int
	Dir      string
	proc     *Process
}

// The master user of the test instances.
const DovecotMasterUser = "frontdoor"

// DovecotBinary is where Debian installs Dovecot
// (scripts/install-dovecot.sh).
const DovecotBinary = "/usr/sbin/dovecot"

// DovecotMasterPasswordFile is the master user's password file.
func DovecotMasterPasswordFile(t testing.TB) string {
	return filepath.Join(dovecotTestdata(t), "master.password")
}

func dovecotTestdata(t testing.TB) string {
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	return filepath.Join(root, "internal", "testbed", "testdata", "dovecot")
}

// NeedDovecot skips t with a clear message when Dovecot is not installed
// (make test installs it with scripts/install-dovecot.sh).
func NeedDovecot(t testing.TB) {
	t.Helper()
	for _, p := range []string{DovecotBinary, "/usr/lib/dovecot/imap", "/usr/lib/dovecot/pop3"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("Dovecot is not installed (%s missing): run scripts/install-dovecot.sh (make test does)", p)
		}
	}
}

// PortFreeOn finds a TCP port free on every one of hosts, so that
// instances on several loopback addresses can share one port number (the
// gateway reaches every mail server on one port).
func PortFreeOn(t testing.TB, hosts ...string) int {
	t.Helper()
	for range 50 {
		p := FreePort(t, hosts[0])
		ok := true
		for _, h := range hosts[1:] {
			ln, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatalf("testbed: no port free on all of %v", hosts)
	return 0
}

// StartDovecot runs Dovecot named name on ip (a loopback address such as
// 127.0.0.2) with the given IMAP and POP3 ports, and waits until both
// answer. It is stopped when t ends.
func StartDovecot(t testing.TB, name, ip string, imapPort, pop3Port int) *Dovecot {
	t.Helper()
	NeedDovecot(t)
	dir := t.TempDir()
	// Dovecot's unprivileged processes must reach the runtime directory.
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755)
	}
	loginUser, internalUser, mailUser, mailGroup := "dovenull", "dovecot", "dovecot", "dovecot"
	if os.Getuid() != 0 {
		u, err := user.Current()
		if err != nil {
			t.Fatalf("testbed: %v", err)
		}
		g, _ := user.LookupGroupId(u.Gid)
		loginUser, internalUser, mailUser = u.Username, u.Username, u.Username
		mailGroup = u.Gid
		if g != nil {
			mailGroup = g.Name
		}
	}
	for _, sub := range []string{"run", "state", "mail", "home"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if os.Getuid() == 0 {
		// Mail is written as the mail user.
		if u, err := user.Lookup(mailUser); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			for _, sub := range []string{"mail", "home"} {
				_ = os.Chown(filepath.Join(dir, sub), uid, gid)
			}
		}
	}
	tmpl, err := os.ReadFile(filepath.Join(dovecotTestdata(t), "dovecot.conf.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer(
		"{{DIR}}", dir, "{{NAME}}", name, "{{IP}}", ip,
		"{{IMAP_PORT}}", strconv.Itoa(imapPort), "{{POP3_PORT}}", strconv.Itoa(pop3Port),
		"{{LOGIN_USER}}", loginUser, "{{INTERNAL_USER}}", internalUser,
		"{{MAIL_USER}}", mailUser, "{{MAIL_GROUP}}", mailGroup,
		"{{TESTDATA}}", dovecotTestdata(t),
	).Replace(string(tmpl))
	confPath := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := startProcess(DovecotBinary, []string{"-F", "-c", confPath})
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	d := &Dovecot{Name: name, IP: ip, IMAPPort: imapPort, POP3Port: pop3Port, Dir: dir, proc: p}
	t.Cleanup(func() {
		// SIGTERM lets the master stop its children; Kill is the backstop.
		_ = p.Signal(syscall.SIGTERM)
		select {
		case <-p.Exited():
		case <-time.After(5 * time.Second):
		}
		p.Kill()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Logf("testbed: dovecot %s output:\n%s\nlog:\n%s", name, p.Output(), log)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for _, port := range []int{imapPort, pop3Port} {
		addr := net.JoinHostPort(ip, strconv.Itoa(port))
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				buf := make([]byte, 64)
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, _ := c.Read(buf)
				c.Close()
				if n > 0 && (strings.HasPrefix(string(buf[:n]), "* OK") || strings.HasPrefix(string(buf[:n]), "+OK")) {
					break
				}
			}
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
				t.Fatalf("testbed: dovecot %s did not answer on %s within 15s: %v\n%s\n%s", name, addr, err, p.Output(), log)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return d
}

// IMAPAddr and POP3Addr are the instance's addresses.
func (d *Dovecot) IMAPAddr() string { return net.JoinHostPort(d.IP, strconv.Itoa(d.IMAPPort)) }
func (d *Dovecot) POP3Addr() string { return net.JoinHostPort(d.IP, strconv.Itoa(d.POP3Port)) }

// Messages counts the messages in user's INBOX on this instance (new and
// cur of the maildir), to tell which server a message landed on.
func (d *Dovecot) Messages(user string) int {
	n := 0
	for _, sub := range []string{"new", "cur"} {
		es, _ := os.ReadDir(filepath.Join(d.Dir, "mail", user, sub))
		n += len(es)
	}
	return n
}

// Log returns the instance's log so far.
func (d *Dovecot) Log() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "dovecot.log"))
	return string(b)
}
