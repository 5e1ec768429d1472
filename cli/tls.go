package cli

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"frontdoor/gateway/config"
	"frontdoor/internal/hostport"
	"frontdoor/tlsterm"
)

// hostList is a repeatable --host flag.
type hostList []string

func (h *hostList) String() string { return strings.Join(*h, ",") }

func (h *hostList) Set(s string) error {
	if ip := net.ParseIP(s); ip != nil {
		*h = append(*h, s)
		return nil
	}
	name, wildcard := strings.CutPrefix(s, "*.")
	if _, ok := hostport.CanonicalHost(name); !ok {
		return fmt.Errorf("%q is neither an IP address nor a host name", s)
	}
	// A wildcard stands for one left-most label of a name with at least
	// two more (RFC 6125 section 6.4.3); tlsterm serves no other.
	if wildcard && !strings.Contains(strings.TrimSuffix(name, "."), ".") {
		return fmt.Errorf("%q: a wildcard needs at least two labels after \"*.\"", s)
	}
	*h = append(*h, s)
	return nil
}

func cmdCertSelfSigned(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("cert selfsigned", "--host NAME [--host NAME ...] --out DIR [--valid-for DURATION]",
		"Write a self-signed ECDSA P-256 certificate and its private key to DIR as\n"+
			"cert.pem and key.pem (mode 0600), replacing any that are there, and print\n"+
			"their paths. DIR is created (mode 0700) if it does not exist. Each --host\n"+
			"becomes a subjectAltName: host names (\"*.example.test\" too) as DNS names,\n"+
			"IP addresses as IP addresses; the first is also the common name.\n"+
			"\n"+
			"For development and tests only: clients do not trust the certificate unless\n"+
			"told to (curl --cacert DIR/cert.pem, or curl -k to skip verification). A\n"+
			"listener with tls_self_signed = true generates one itself on start.")
	var hosts hostList
	fs.Var(&hosts, "host", "host `NAME` or IP address the certificate is for (repeatable; at least one)")
	out := fs.String("out", "", "`DIR` to write cert.pem and key.pem to (required)")
	validFor := fs.Duration("valid-for", 720*time.Hour, "validity `DURATION`, from now")
	if code, done := parse(fs, args, stdout, stderr); done {
		return code
	}
	switch {
	case fs.NArg() > 0:
		return usageError(fs, stderr, "unexpected argument %q", fs.Arg(0))
	case len(hosts) == 0:
		return usageError(fs, stderr, "at least one --host is required")
	case *out == "":
		return usageError(fs, stderr, "--out is required")
	case *validFor <= 0:
		return usageError(fs, stderr, "--valid-for %s: must be positive", *validFor)
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		fmt.Fprintf(stderr, "frontdoor cert selfsigned: %v\n", err)
		return exitFailure
	}
	certPath, keyPath, err := tlsterm.WriteSelfSigned(*out, hosts, *validFor)
	if err != nil {
		fmt.Fprintf(stderr, "frontdoor cert selfsigned: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "certificate: %s\nprivate key: %s\n", certPath, keyPath)
	return exitOK
}

func cmdTLSTicketKeys(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("tls ticket-keys", "--out FILE [--keep DURATION]",
		"Create the session-ticket key file FILE with one new key, or rotate it: put a\n"+
			"new key first (it encrypts new tickets; every key in the file decrypts) and\n"+
			"drop the keys created --keep or longer ago. The file is replaced atomically,\n"+
			"with mode 0600; its directory is created (mode 0700) if it does not exist.\n"+
			"Prints how many keys the file holds.\n"+
			"\n"+
			"Point [tls] ticket_key_file at FILE on every member of an array: all must\n"+
			"use the same file (the same keys), or a client resumes only at the member\n"+
			"that issued its ticket. Run this command on one host from a timer (cron or a\n"+
			"systemd timer) every [tls] ticket_rotation, e.g. every 12h, and distribute\n"+
			"the file to the other members (or keep it on shared storage); the gateways\n"+
			"reload it when it changes. --keep should be at least the rotation period\n"+
			"plus the time it takes to copy the file everywhere: a ticket stays usable\n"+
			"for --keep minus the rotation period at least.")
	out := fs.String("out", "", "key `FILE` to create or rotate (required)")
	keep := fs.Duration("keep", 24*time.Hour, "drop keys created this long ago or earlier (`DURATION`; 0 keeps only the new key)")
	if code, done := parse(fs, args, stdout, stderr); done {
		return code
	}
	switch {
	case fs.NArg() > 0:
		return usageError(fs, stderr, "unexpected argument %q", fs.Arg(0))
	case *out == "":
		return usageError(fs, stderr, "--out is required")
	case *keep < 0:
		return usageError(fs, stderr, "--keep %s: must not be negative", *keep)
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o700); err != nil {
		fmt.Fprintf(stderr, "frontdoor tls ticket-keys: %v\n", err)
		return exitFailure
	}
	if err := tlsterm.CreateOrRotateKeyFile(*out, time.Now(), *keep); err != nil {
		fmt.Fprintf(stderr, "frontdoor tls ticket-keys: %v\n", err)
		return exitFailure
	}
	data, err := os.ReadFile(*out)
	if err != nil {
		fmt.Fprintf(stderr, "frontdoor tls ticket-keys: %v\n", err)
		return exitFailure
	}
	created, _, err := tlsterm.ParseTicketKeys(data)
	if err != nil {
		fmt.Fprintf(stderr, "frontdoor tls ticket-keys: %s: %v\n", *out, err)
		return exitFailure
	}
	noun := "keys"
	if len(created) == 1 {
		noun = "key"
	}
	fmt.Fprintf(stdout, "%s: %d %s, newest created %s\n", *out, len(created), noun, created[0].UTC().Format(time.RFC3339))
	return exitOK
}

// finding is one result of checkTLSFiles.
type finding struct {
	err     *config.Error
	warning bool
}

// checkTLSFiles loads what the TLS listeners of cfg refer to, as the gateway
// does on start: each certificate with its key and OCSP response, the
// client CA bundle, and the session-ticket key file. It returns the
// problems and warnings, each naming the configuration key that refers to
// the file, in line order. Warnings (certificates that expire soon, have
// expired or cannot be served) do not fail a check.
func checkTLSFiles(cfg *config.Config) []finding {
	var out []finding
	add := func(key string, warning bool, msg string) {
		msg = strings.TrimPrefix(msg, "tlsterm: ")
		if warning {
			msg = "warning: " + msg
		}
		out = append(out, finding{&config.Error{File: cfg.Path, Line: cfg.Line(key), Key: key, Message: msg}, warning})
	}
	quiet := slog.New(slog.DiscardHandler)
	anyTLS := false
	for i, l := range cfg.Listeners {
		if !l.TLS && !(l.StartTLS && l.Mail != "") { // a mail listener's STARTTLS has certificates too
			continue
		}
		anyTLS = true
		at := fmt.Sprintf("listener[%d]", i)
		s := cfg.TLSSettings(i)
		// Development certificates are generated on start when missing.
		if !(l.TLSSelfSigned && (missing(s.Certificates[0].CertFile) || missing(s.Certificates[0].KeyFile))) {
			ok := true
			for j, p := range s.Certificates {
				if _, err := tlsterm.NewStore([]tlsterm.CertPair{p}, quiet); err != nil {
					add(fmt.Sprintf("%s.certificates[%d]", at, j), false, err.Error())
					ok = false
				}
			}
			if ok {
				// Together, for the warnings about the set.
				store, err := tlsterm.NewStore(s.Certificates, quiet)
				if err != nil {
					add(at+".certificates", false, err.Error())
				} else {
					for _, w := range store.Warnings() {
						key := at + ".certificates"
						for j, p := range s.Certificates {
							if strings.HasPrefix(w, p.CertFile+": ") {
								key = fmt.Sprintf("%s.certificates[%d]", at, j)
								break
							}
						}
						add(key, true, w)
					}
				}
			}
		}
		if s.ClientCAFile != "" {
			if err := checkCAFile(s.ClientCAFile); err != nil {
				add(at+".tls_client_ca", false, err.Error())
			}
		}
	}
	if anyTLS && cfg.TLS.SessionTickets && cfg.TLS.TicketKeyFile != "" {
		path := cfg.Resolve(cfg.TLS.TicketKeyFile)
		if _, err := tlsterm.NewTicketKeys(path, 0, 0, quiet); err != nil {
			msg := err.Error()
			if errors.Is(err, fs.ErrNotExist) {
				msg += " (create it with: frontdoor tls ticket-keys --out " + path + ")"
			}
			add("tls.ticket_key_file", false, msg)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].err.Line < out[j].err.Line })
	return out
}

// missing reports whether path does not exist.
func missing(path string) bool {
	_, err := os.Stat(path)
	return errors.Is(err, fs.ErrNotExist)
}

// checkCAFile loads a client CA bundle as tlsterm does.
func checkCAFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("client CA file %s: %w", path, err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		return fmt.Errorf("client CA file %s: no PEM certificate found", path)
	}
	return nil
}
