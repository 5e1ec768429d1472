// Package dovecot writes the configuration of a throwaway Dovecot instance
// (IMAP and POP3 in plaintext on one loopback address, everything under one
// directory, a master user and users in passwd-files) and waits for it to
// answer. The mail tests (internal/testbed) and the IMAP scenarios of
// `frontdoor bench` (package bench) both run Dovecot this way, as a child
// process: `dovecot -F -c DIR/dovecot.conf`.
package dovecot

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Binary is where Debian installs Dovecot (scripts/install-dovecot.sh).
const Binary = "/usr/sbin/dovecot"

//go:embed dovecot.conf.tmpl
var confTemplate string

// Installed returns nil when Dovecot's master, imap and pop3 binaries are
// there, else an error naming the one missing.
func Installed() error {
	for _, p := range []string{Binary, "/usr/lib/dovecot/imap", "/usr/lib/dovecot/pop3"} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("Dovecot is not installed (%s missing): run scripts/install-dovecot.sh", p)
		}
	}
	return nil
}

// Config describes one instance.
type Config struct {
	// Dir holds everything: configuration, passwd-files, runtime, state,
	// log (dovecot.log) and mail (maildir under Dir/mail/USER).
	Dir                string
	Name, IP           string
	IMAPPort, POP3Port int
	// MasterUser and MasterPassword may log in as any user
	// ("USER*MASTER", Dovecot's master users).
	MasterUser, MasterPassword string
	// Users are the logins of the passwd-file, all with Password.
	Users    []string
	Password string
	// Extra is appended to the configuration (e.g. service limits).
	Extra string
}

// Prepare creates c.Dir's layout and writes the configuration and the
// passwd-files, and returns the path of the configuration. Run as root,
// Dovecot's processes run as its own unprivileged users, which must reach
// the directory; otherwise as the current user.
func Prepare(c Config) (string, error) {
	if c.Dir == "" || c.Name == "" || c.IP == "" {
		return "", errors.New("dovecot: Dir, Name and IP are required")
	}
	// Dovecot's unprivileged processes must reach the runtime directory.
	for d := c.Dir; d != "/" && d != os.TempDir() && d != "."; d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755)
	}
	loginUser, internalUser, mailUser, mailGroup := "dovenull", "dovecot", "dovecot", "dovecot"
	if os.Getuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return "", fmt.Errorf("dovecot: %w", err)
		}
		g, _ := user.LookupGroupId(u.Gid)
		loginUser, internalUser, mailUser = u.Username, u.Username, u.Username
		mailGroup = u.Gid
		if g != nil {
			mailGroup = g.Name
		}
	}
	for _, sub := range []string{"run", "state", "mail", "home"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, sub), 0o755); err != nil {
			return "", err
		}
	}
	if os.Getuid() == 0 {
		// Mail is written as the mail user.
		if u, err := user.Lookup(mailUser); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			for _, sub := range []string{"mail", "home"} {
				_ = os.Chown(filepath.Join(c.Dir, sub), uid, gid)
			}
		}
	}
	var users strings.Builder
	for _, u := range c.Users {
		fmt.Fprintf(&users, "%s:{PLAIN}%s\n", u, c.Password)
	}
	files := map[string]string{
		"master.passwd": fmt.Sprintf("%s:{PLAIN}%s\n", c.MasterUser, c.MasterPassword),
		"users.passwd":  users.String(),
	}
	for name, text := range files {
		// Read by Dovecot's auth process, which runs unprivileged.
		if err := os.WriteFile(filepath.Join(c.Dir, name), []byte(text), 0o644); err != nil {
			return "", err
		}
	}
	conf := strings.NewReplacer(
		"{{DIR}}", c.Dir, "{{NAME}}", c.Name, "{{IP}}", c.IP,
		"{{IMAP_PORT}}", strconv.Itoa(c.IMAPPort), "{{POP3_PORT}}", strconv.Itoa(c.POP3Port),
		"{{LOGIN_USER}}", loginUser, "{{INTERNAL_USER}}", internalUser,
		"{{MAIL_USER}}", mailUser, "{{MAIL_GROUP}}", mailGroup,
		"{{EXTRA}}", c.Extra,
	).Replace(confTemplate)
	path := filepath.Join(c.Dir, "dovecot.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// Argv is the command line that runs the instance configured at confPath
// in the foreground.
func Argv(confPath string) []string { return []string{Binary, "-F", "-c", confPath} }

// WaitReady waits until every one of addrs greets ("* OK" or "+OK"), at
// most timeout; exited, if not nil, reports that the process is gone.
func WaitReady(addrs []string, timeout time.Duration, exited func() bool) error {
	deadline := time.Now().Add(timeout)
	for _, addr := range addrs {
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
				err = fmt.Errorf("no greeting: %q", buf[:n])
			}
			if exited != nil && exited() {
				return fmt.Errorf("dovecot exited before %s answered", addr)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("dovecot did not answer on %s within %v: %v", addr, timeout, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// Log returns the instance's log so far.
func Log(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
	return string(b)
}
