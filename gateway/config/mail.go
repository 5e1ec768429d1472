package config

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// Mail is the [mail] section: how the IMAP and POP3 listeners (listener
// key mail = "imap" or "pop3") log in to the mailbox servers, and their
// limits and timeouts. See docs/mail.md.
type Mail struct {
	// Login is "master" (default): the gateway logs in to the server with
	// MasterUser on behalf of the user; or "client": with the client's own
	// credentials.
	Login string `toml:"login"`
	// MasterUser is the server's master account (Dovecot: a passdb with
	// master = yes). Required with login = "master".
	MasterUser string `toml:"master_user"`
	// MasterPasswordFile holds the master user's password (first line).
	// Required with login = "master".
	MasterPasswordFile string `toml:"master_password_file"`
	// MasterFormat makes the login name from {user} and {master}; Dovecot's
	// default separator gives "{user}*{master}" (default). Empty: SASL
	// PLAIN with the user as authorization identity instead.
	MasterFormat string `toml:"master_format"`
	// IMAPBackendPort and POP3BackendPort are the servers' ports (defaults
	// 143 and 110); the host is the host of the server's address in the
	// directory.
	IMAPBackendPort int `toml:"imap_backend_port"`
	POP3BackendPort int `toml:"pop3_backend_port"`
	// BackendTLS connects to the servers with implicit TLS, verified
	// against [backend] tls_ca (default false).
	BackendTLS bool `toml:"backend_tls"`
	// ForwardClientAddress tells the servers the client's address before
	// the login (IMAP ID x-originating-ip, POP3 XCLIENT when offered),
	// which Dovecot believes from its login_trusted_networks (default
	// true).
	ForwardClientAddress bool `toml:"forward_client_address"`
	// LoginTimeout bounds the time from connect to login (default 60s).
	LoginTimeout Duration `toml:"login_timeout"`
	// IMAPIdleTimeout and POP3IdleTimeout end quiet sessions (defaults 30m,
	// which covers IMAP IDLE, and 10m).
	IMAPIdleTimeout Duration `toml:"imap_idle_timeout"`
	POP3IdleTimeout Duration `toml:"pop3_idle_timeout"`
	// FailureDelay delays the answer to a failed login (default 2s);
	// MaxFailures failed logins close the connection (default 3).
	FailureDelay Duration `toml:"failure_delay"`
	MaxFailures  int      `toml:"max_failures"`
	// Bounds before login: a command line, a literal, a whole command.
	MaxLineBytes    int `toml:"max_line_bytes"`
	MaxLiteralBytes int `toml:"max_literal_bytes"`
	MaxCommandBytes int `toml:"max_command_bytes"`
	// MaxRelayBufferBytes bounds what waits for a slow reader after login,
	// per direction; beyond it the session is closed (default 64 MiB).
	MaxRelayBufferBytes int `toml:"max_relay_buffer_bytes"`
	// MaxHalfClosed bounds the sessions relayed on after one side
	// half-closed (each holds a duplicate descriptor and a goroutine);
	// beyond it a half-close closes the session (default 1024).
	MaxHalfClosed int `toml:"max_half_closed"`
}

func mailDefaults() Mail {
	return Mail{
		Login:                "master",
		MasterFormat:         "{user}*{master}",
		IMAPBackendPort:      143,
		POP3BackendPort:      110,
		ForwardClientAddress: true,
		LoginTimeout:         Duration(60 * time.Second),
		IMAPIdleTimeout:      Duration(30 * time.Minute),
		POP3IdleTimeout:      Duration(10 * time.Minute),
		FailureDelay:         Duration(2 * time.Second),
		MaxFailures:          3,
		MaxLineBytes:         8 << 10,
		MaxLiteralBytes:      8 << 10,
		MaxCommandBytes:      16 << 10,
		MaxRelayBufferBytes:  64 << 20,
		MaxHalfClosed:        1024,
	}
}

// HasMail reports whether a listener serves IMAP or POP3.
func (c *Config) HasMail() bool {
	for _, l := range c.Listeners {
		if l.Mail == "imap" || l.Mail == "pop3" {
			return true
		}
	}
	return false
}

// MasterPassword reads [mail] master_password_file (first line).
func (c *Config) MasterPassword() (string, error) {
	data, err := os.ReadFile(c.Resolve(c.Mail.MasterPasswordFile))
	if err != nil {
		return "", fmt.Errorf("%s:%d: mail.master_password_file: %w", c.Path, c.Line("mail.master_password_file"), err)
	}
	pw, _, _ := strings.Cut(string(data), "\n")
	pw = strings.TrimRight(pw, "\r")
	if pw == "" {
		return "", fmt.Errorf("%s:%d: mail.master_password_file: %s: empty", c.Path, c.Line("mail.master_password_file"), c.Mail.MasterPasswordFile)
	}
	return pw, nil
}

// validateMail checks [mail] and the mail keys of the listeners.
func (c *Config) validateMail(v checker) {
	for i, l := range c.Listeners {
		at := fmt.Sprintf("listener[%d]", i)
		switch l.Mail {
		case "":
			for _, k := range []string{"starttls", "allow_plaintext_login"} {
				if v.Has(at + "." + k) {
					v.Report(at+"."+k, `only with mail = "imap" or "pop3"`)
				}
			}
			continue
		case "imap", "pop3":
		default:
			v.Report(at+".mail", "%q: must be imap or pop3", l.Mail)
			continue
		}
		if len(l.Protocols) > 0 {
			v.Report(at+".protocols", "not with mail = %q (a mail listener serves only %s)", l.Mail, l.Mail)
		}
		if l.ProxyProtocol == "optional" {
			// The client waits for the greeting: "optional" would wait
			// for its first bytes until the header timeout.
			v.Report(at+".proxy_protocol", `"optional" is not possible on a mail listener (the server speaks first): use "required" or "off"`)
		}
		if l.StartTLS && l.TLS {
			v.Report(at+".starttls", "not with tls = true (the connection is TLS from the start)")
		}
	}
	if !c.HasMail() {
		return
	}
	m := &c.Mail
	switch m.Login {
	case "master":
		v.Required("mail.master_user", m.MasterUser)
		v.Required("mail.master_password_file", m.MasterPasswordFile)
		if m.MasterFormat != "" && !strings.Contains(m.MasterFormat, "{user}") {
			v.Report("mail.master_format", "%q: must contain {user} (or be empty for SASL PLAIN with an authorization identity)", m.MasterFormat)
		}
		if strings.ContainsAny(m.MasterUser, "\r\n\x00") {
			v.Report("mail.master_user", "must not contain CR, LF or NUL")
		}
	case "client":
	default:
		v.Report("mail.login", "%q: must be master or client", m.Login)
	}
	v.intIn("mail.imap_backend_port", int64(m.IMAPBackendPort), 1, 65535)
	v.intIn("mail.pop3_backend_port", int64(m.POP3BackendPort), 1, 65535)
	v.durIn("mail.login_timeout", m.LoginTimeout, time.Second, time.Hour)
	v.durIn("mail.imap_idle_timeout", m.IMAPIdleTimeout, time.Second, 24*time.Hour)
	v.durIn("mail.pop3_idle_timeout", m.POP3IdleTimeout, time.Second, 24*time.Hour)
	v.durIn("mail.failure_delay", m.FailureDelay, time.Millisecond, time.Minute)
	v.intIn("mail.max_failures", int64(m.MaxFailures), 1, 100)
	v.intIn("mail.max_line_bytes", int64(m.MaxLineBytes), 512, 1<<20)
	v.intIn("mail.max_literal_bytes", int64(m.MaxLiteralBytes), 512, 1<<20)
	v.intIn("mail.max_command_bytes", int64(m.MaxCommandBytes), 1024, 4<<20)
	v.intIn("mail.max_relay_buffer_bytes", int64(m.MaxRelayBufferBytes), 64<<10, 1<<30)
	v.intIn("mail.max_half_closed", int64(m.MaxHalfClosed), 1, 1<<20)
}
