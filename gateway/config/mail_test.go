package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mailDoc is a configuration with an HTTP listener and the given lines
// after it (mail listeners, [mail]).
func mailDoc(lines ...string) []byte {
	base := []string{
		`directory = "dir.toml"`,
		`[[protocol]]`, `name = "owa"`, `path_prefix = "/owa"`, `backend_port = 443`,
		`[[listener]]`, `name = "http"`, `address = ":8080"`,
	}
	return doc(append(base, lines...)...)
}

func TestMailConfig(t *testing.T) {
	c, err := Parse("f.toml", mailDoc(
		`[[listener]]`, `name = "imap"`, `address = ":143"`, `mail = "imap"`, `starttls = true`,
		`certificates = [{ cert = "c.pem", key = "k.pem" }]`,
		`[[listener]]`, `name = "pop3s"`, `address = ":995"`, `mail = "pop3"`, `tls = true`,
		`certificates = [{ cert = "c.pem", key = "k.pem" }]`,
		`[mail]`, `master_user = "frontdoor"`, `master_password_file = "master.pw"`, `imap_backend_port = 10143`,
	))
	if err != nil {
		t.Fatal(err)
	}
	if !c.HasMail() || c.Listeners[1].Mail != "imap" || !c.Listeners[1].StartTLS || c.Mail.IMAPBackendPort != 10143 ||
		c.Mail.POP3BackendPort != 110 || c.Mail.MasterFormat != "{user}*{master}" || c.Mail.Login != "master" {
		t.Fatalf("parsed: %+v %+v", c.Listeners, c.Mail)
	}
	if s := c.TLSSettings(1); len(s.Certificates) != 1 {
		t.Errorf("STARTTLS listener's TLS settings: %+v", s)
	}
	dir := t.TempDir()
	c.Path = filepath.Join(dir, "f.toml")
	if _, err := c.MasterPassword(); err == nil || !strings.Contains(err.Error(), "mail.master_password_file") {
		t.Errorf("missing password file: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "master.pw"), []byte("s3cret\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pw, err := c.MasterPassword(); err != nil || pw != "s3cret" {
		t.Errorf("MasterPassword = %q, %v", pw, err)
	}
}

func TestMailConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		want  []string
	}{
		{"unknown protocol", []string{`[[listener]]`, `name = "m"`, `address = ":143"`, `mail = "smtp"`},
			[]string{`f.toml:12: listener[1].mail: "smtp": must be imap or pop3`}},
		{"starttls on HTTP", []string{`[[listener]]`, `name = "m"`, `address = ":143"`, `starttls = true`},
			[]string{`f.toml:12: listener[1].starttls: only with mail = "imap" or "pop3"`}},
		{"starttls without certificates", []string{`[[listener]]`, `name = "m"`, `address = ":143"`, `mail = "imap"`, `starttls = true`,
			`[mail]`, `master_user = "m"`, `master_password_file = "p"`},
			[]string{`f.toml:9: listener[1].certificates: required with starttls = true, e.g. certificates = [{ cert = "cert.pem", key = "key.pem" }]`}},
		{"master user missing", []string{`[[listener]]`, `name = "m"`, `address = ":143"`, `mail = "pop3"`},
			[]string{`f.toml:1: mail.master_user: required`, `f.toml:1: mail.master_password_file: required`}},
		{"bad values", []string{`[[listener]]`, `name = "m"`, `address = ":143"`, `mail = "imap"`,
			`[mail]`, `login = "proxy"`, `imap_backend_port = 0`, `max_failures = 0`, `max_half_closed = 0`},
			[]string{`f.toml:14: mail.login: "proxy": must be master or client`, `f.toml:15: mail.imap_backend_port: must be between 1 and 65535, got 0`,
				`f.toml:16: mail.max_failures: must be between 1 and 100, got 0`, `f.toml:17: mail.max_half_closed: must be between 1 and 1048576, got 0`}},
		{"optional PROXY protocol", []string{`[[listener]]`, `name = "m"`, `address = ":143"`, `mail = "imap"`, `proxy_protocol = "optional"`,
			`proxy_protocol_from = ["10.0.0.0/8"]`, `[mail]`, `login = "client"`},
			[]string{`f.toml:13: listener[1].proxy_protocol: "optional" is not possible on a mail listener (the server speaks first): use "required" or "off"`}},
		{"protocols on a mail listener", []string{`[[listener]]`, `name = "m"`, `address = ":143"`, `mail = "imap"`, `protocols = ["owa"]`,
			`[mail]`, `login = "client"`},
			[]string{`f.toml:13: listener[1].protocols: not with mail = "imap" (a mail listener serves only imap)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.toml", mailDoc(tc.lines...))
			if err == nil {
				t.Fatal("no error")
			}
			got := strings.Split(err.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
