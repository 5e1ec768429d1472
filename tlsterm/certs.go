package tlsterm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// CertPair names the files of one certificate.
type CertPair struct {
	// CertFile is PEM: the leaf first, then the intermediates in order
	// (RFC 8446 section 4.4.2). The root may be left out.
	CertFile string
	// KeyFile is the PEM private key (PKCS #8, PKCS #1 RSA or SEC 1 EC):
	// RSA, ECDSA or Ed25519.
	KeyFile string
	// OCSPFile, optional, is a DER OCSP response stapled for clients that
	// ask for it (status_request; RFC 6066 section 8, RFC 8446 section
	// 4.4.2.1). tlsterm does not fetch or verify it: whatever refreshes the
	// file also refreshes the staple, and Watch picks it up.
	OCSPFile string
}

// ExpiryWarning is how close to its NotAfter a certificate is reported.
const ExpiryWarning = 14 * 24 * time.Hour

// Expiry describes a loaded certificate that expires within ExpiryWarning
// (or has expired).
type Expiry struct {
	CertFile string
	Subject  string
	NotAfter time.Time
}

// Store holds the certificates of one listener and picks one per
// handshake by SNI (RFC 6066 section 3). Every DNS name in a certificate's
// subjectAltName serves it (the common name is ignored, as RFC 6125 section
// 6.4.4 and Go's verifier do): exact names, and wildcards "*.example.test"
// that match exactly one left-most label (RFC 6125 section 6.4.3: not
// "example.test", not "a.b.example.test"). Matching ignores case and a
// trailing dot. Several certificates may serve one name, an ECDSA and an
// RSA one say: the first the client supports (signature algorithms,
// curves, version) wins, in file order. A client without SNI, or with a
// name no certificate has, gets the first pair's certificate.
//
// The set is replaced atomically by Reload; a handshake sees either the old
// or the new set.
type Store struct {
	pairs []CertPair
	log   *slog.Logger

	set atomic.Pointer[certSet]

	mu       sync.Mutex // serializes Reload
	stamps   []fileStamp
	warnings []string
}

type certSet struct {
	certs []*tls.Certificate // in pair order; certs[0] is the default
	files []string           // CertFile of each
	exact map[string][]*tls.Certificate
	wild  map[string][]*tls.Certificate // keyed by the name after "*."
}

// NewStore loads pairs; the first is the default certificate. log may be
// nil.
func NewStore(pairs []CertPair, log *slog.Logger) (*Store, error) {
	if len(pairs) == 0 {
		return nil, errors.New("tlsterm: no certificates configured")
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Store{pairs: append([]CertPair(nil), pairs...), log: log}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// GetCertificate implements tls.Config.GetCertificate.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	set := s.set.Load()
	if name := normalizeName(hello.ServerName); name != "" {
		if cs := set.exact[name]; cs != nil {
			return pick(hello, cs), nil
		}
		if i := strings.IndexByte(name, '.'); i > 0 {
			if cs := set.wild[name[i+1:]]; cs != nil {
				return pick(hello, cs), nil
			}
		}
	}
	return set.certs[0], nil
}

// Lookup returns the certificate a client asking for serverName would get
// (ignoring what the client supports).
func (s *Store) Lookup(serverName string) *tls.Certificate {
	c, _ := s.GetCertificate(&tls.ClientHelloInfo{ServerName: serverName})
	return c
}

func pick(hello *tls.ClientHelloInfo, cs []*tls.Certificate) *tls.Certificate {
	if len(cs) > 1 && hello.CipherSuites != nil {
		for _, c := range cs {
			if hello.SupportsCertificate(c) == nil {
				return c
			}
		}
	}
	return cs[0]
}

func normalizeName(n string) string {
	n = strings.TrimSuffix(n, ".")
	for i := 0; i < len(n); i++ {
		if 'A' <= n[i] && n[i] <= 'Z' {
			return strings.ToLower(n)
		}
	}
	return n
}

// Reload reads every pair again and validates all of it: the PEM parses,
// the key matches the leaf's public key, every certificate of the chain
// parses and each is signed by the next. Only if everything is good does
// the new set replace the old one; otherwise the old set stays and the
// error names the file. Certificates that expire within ExpiryWarning are
// logged (and listed by Expiring and Warnings). Safe to call from a SIGHUP
// handler while handshakes run.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	stamps := statFiles(s.pairs)
	set, warnings, err := loadSet(s.pairs, time.Now())
	s.stamps = stamps
	if err != nil {
		return err
	}
	s.set.Store(set)
	s.warnings = warnings
	for _, w := range warnings {
		s.log.Warn("tls certificate", "warning", w)
	}
	s.log.Info("tls certificates loaded", "count", len(set.certs))
	return nil
}

// Warnings returns the warnings of the last successful load: certificates
// that expire soon, have expired or are not valid yet, and names that
// cannot be served.
func (s *Store) Warnings() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.warnings...)
}

// Expiring lists loaded certificates whose NotAfter is within ExpiryWarning
// of now (or past).
func (s *Store) Expiring(now time.Time) []Expiry {
	set := s.set.Load()
	var out []Expiry
	for i, c := range set.certs {
		if c.Leaf != nil && c.Leaf.NotAfter.Sub(now) < ExpiryWarning {
			out = append(out, Expiry{CertFile: set.files[i], Subject: c.Leaf.Subject.String(), NotAfter: c.Leaf.NotAfter})
		}
	}
	return out
}

// Certificates returns the loaded certificates in pair order.
func (s *Store) Certificates() []*tls.Certificate {
	return append([]*tls.Certificate(nil), s.set.Load().certs...)
}

// Watch polls the files' size and modification time every interval and
// reloads when one changed, until ctx is done. A failed reload is logged
// and retried only after the files change again. SIGHUP handling is the
// caller's: it calls Reload.
func (s *Store) Watch(ctx context.Context, interval time.Duration) {
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		s.mu.Lock()
		changed := !equalStamps(s.stamps, statFiles(s.pairs))
		s.mu.Unlock()
		if changed {
			if err := s.Reload(); err != nil {
				s.log.Error("tls certificate reload failed; keeping the loaded certificates", "err", err)
			}
		}
	}
}

func loadSet(pairs []CertPair, now time.Time) (*certSet, []string, error) {
	set := &certSet{
		exact: make(map[string][]*tls.Certificate),
		wild:  make(map[string][]*tls.Certificate),
	}
	var warnings []string
	for _, p := range pairs {
		cert, err := loadPair(p)
		if err != nil {
			return nil, nil, err
		}
		leaf := cert.Leaf
		set.certs = append(set.certs, cert)
		set.files = append(set.files, p.CertFile)
		switch left := leaf.NotAfter.Sub(now); {
		case left < 0:
			warnings = append(warnings, fmt.Sprintf("%s: certificate %q expired on %s", p.CertFile, leaf.Subject, leaf.NotAfter.UTC().Format(time.RFC3339)))
		case left < ExpiryWarning:
			warnings = append(warnings, fmt.Sprintf("%s: certificate %q expires on %s (in %d days)", p.CertFile, leaf.Subject, leaf.NotAfter.UTC().Format(time.RFC3339), int(left.Hours()/24)))
		}
		if now.Before(leaf.NotBefore) {
			warnings = append(warnings, fmt.Sprintf("%s: certificate %q is not valid before %s", p.CertFile, leaf.Subject, leaf.NotBefore.UTC().Format(time.RFC3339)))
		}
		if len(leaf.DNSNames) == 0 && len(set.certs) > 1 {
			warnings = append(warnings, fmt.Sprintf("%s: certificate %q has no DNS names and is not the default: no client can get it", p.CertFile, leaf.Subject))
		}
		for _, n := range leaf.DNSNames {
			n = normalizeName(n)
			switch {
			case strings.HasPrefix(n, "*.") && !strings.Contains(n[2:], "*") && strings.Contains(n[2:], "."):
				set.wild[n[2:]] = append(set.wild[n[2:]], cert)
			case strings.Contains(n, "*"):
				// RFC 6125 6.4.3 permits only a whole left-most label.
				warnings = append(warnings, fmt.Sprintf("%s: wildcard name %q is not supported and is ignored", p.CertFile, n))
			case n != "":
				set.exact[n] = append(set.exact[n], cert)
			}
		}
	}
	return set, warnings, nil
}

func loadPair(p CertPair) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(p.CertFile)
	if err != nil {
		return nil, fmt.Errorf("tlsterm: certificate %s: %w", p.CertFile, err)
	}
	keyPEM, err := os.ReadFile(p.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsterm: key %s: %w", p.KeyFile, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tlsterm: certificate %s with key %s: %w", p.CertFile, p.KeyFile, err)
	}
	chain := make([]*x509.Certificate, len(cert.Certificate))
	for i, der := range cert.Certificate {
		if chain[i], err = x509.ParseCertificate(der); err != nil {
			return nil, fmt.Errorf("tlsterm: certificate %s: certificate %d of the chain: %w", p.CertFile, i, err)
		}
	}
	for i := 0; i+1 < len(chain); i++ {
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return nil, fmt.Errorf("tlsterm: certificate %s: certificate %d (%s) is not signed by certificate %d (%s), chain out of order?: %w",
				p.CertFile, i, chain[i].Subject, i+1, chain[i+1].Subject, err)
		}
	}
	cert.Leaf = chain[0]
	if p.OCSPFile != "" {
		staple, err := os.ReadFile(p.OCSPFile)
		if err != nil {
			return nil, fmt.Errorf("tlsterm: OCSP response %s: %w", p.OCSPFile, err)
		}
		// An OCSPResponse is a DER SEQUENCE (RFC 6960 section 4.2.1).
		if len(staple) < 2 || staple[0] != 0x30 {
			return nil, fmt.Errorf("tlsterm: OCSP response %s: not a DER OCSP response", p.OCSPFile)
		}
		cert.OCSPStaple = staple
	}
	return &cert, nil
}

// fileStamp identifies a version of a file by size and modification time.
type fileStamp struct {
	size  int64
	mtime int64
	ok    bool
}

func statFiles(pairs []CertPair) []fileStamp {
	var out []fileStamp
	for _, p := range pairs {
		for _, f := range [...]string{p.CertFile, p.KeyFile, p.OCSPFile} {
			if f != "" {
				out = append(out, stampOf(f))
			}
		}
	}
	return out
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano(), ok: true}
}

func equalStamps(a, b []fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
