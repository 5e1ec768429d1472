package testbed

import (
	"frontdoor/internal/dovecot"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Dovecot is a Dovecot instance (IMAP and POP3, plaintext) for one test,
// started as a child process with the configuration of package
// internal/dovecot (users alice, bob and carol, password "password") under
// a temporary directory. Its master user is
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
const DovecotBinary = dovecot.Binary

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
	if err := dovecot.Installed(); err != nil {
		t.Skipf("%v (make test does)", err)
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
	master, err := os.ReadFile(DovecotMasterPasswordFile(t))
	if err != nil {
		t.Fatal(err)
	}
	confPath, err := dovecot.Prepare(dovecot.Config{
		Dir: dir, Name: name, IP: ip, IMAPPort: imapPort, POP3Port: pop3Port,
		MasterUser: DovecotMasterUser, MasterPassword: strings.TrimSpace(string(master)),
		Users: []string{"alice", "bob", "carol"}, Password: "password",
	})
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	argv := dovecot.Argv(confPath)
	p, err := startProcess(argv[0], argv[1:])
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
	if err := dovecot.WaitReady([]string{d.IMAPAddr(), d.POP3Addr()}, 15*time.Second, nil); err != nil {
		t.Fatalf("testbed: dovecot %s: %v\n%s\n%s", name, err, p.Output(), d.Log())
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
func (d *Dovecot) Log() string { return dovecot.Log(d.Dir) }
