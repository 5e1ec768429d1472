package tlsterm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// Settings configures a Terminator (one per listener). Zero values take the
// defaults given per field.
type Settings struct {
	// MinVersion is "1.2" (default) or "1.3". TLS 1.0 and 1.1 are never
	// accepted (RFC 8996).
	MinVersion string
	// Certificates are served by SNI; the first is the default (see
	// Store). At least one is required.
	Certificates []CertPair
	// ClientAuth is "none" (default), "request" (verify a certificate if
	// the client sends one) or "require". Both verify the chain against
	// ClientCAFile, with the clientAuth extended key usage.
	ClientAuth string
	// ClientCAFile is a PEM bundle of the CAs client certificates must
	// chain to; required unless ClientAuth is "none".
	ClientCAFile string
	// HandshakeTimeout bounds the time from accepting a connection to the
	// end of its handshake, waiting in the queue included. Default 10s.
	HandshakeTimeout time.Duration
	// MaxHandshakes bounds concurrent handshakes (goroutines). Default 256.
	MaxHandshakes int
	// HandshakeQueue bounds the connections waiting for a handshake slot;
	// beyond it a connection is closed at once. Default 1024.
	HandshakeQueue int
	// MaxPlaintextBuffer bounds the decrypted bytes buffered per
	// connection, 4 KiB to 1 MiB. Default 64 KiB. A record is decrypted
	// whole, so below 16 KiB one record may exceed it.
	MaxPlaintextBuffer int
	// TicketKeyFile is a shared session-ticket key file (see
	// CreateOrRotateKeyFile); empty: per-process keys.
	TicketKeyFile string
	// TicketRotation is the rotation period of per-process ticket keys.
	// Default 12h.
	TicketRotation time.Duration
	// TicketLifetime is how long a superseded per-process key still
	// decrypts tickets. Default 24h.
	TicketLifetime time.Duration
	// TicketPoll is how often the ticket key file is checked for changes.
	// Default 10s.
	TicketPoll time.Duration
	// DisableSessionTickets turns resumption off.
	DisableSessionTickets bool
	// HSTS is the Strict-Transport-Security value responses on this
	// listener carry (RFC 6797 section 6.1), e.g. "max-age=31536000;
	// includeSubDomains"; empty: none. tlsterm validates it; the HTTP
	// layer adds the header.
	HSTS string
	// CryptoTLSRecords keeps crypto/tls's record layer after TLS 1.3
	// handshakes too, instead of tlsterm's own (record13.go): one
	// allocation per request more and about 6 KiB more per idle
	// connection, for an operator who wants the standard library's code
	// on every record.
	CryptoTLSRecords bool
}

// Terminator terminates TLS for one listener: it holds the tls.Config, the
// certificate store, the ticket keys, the handshake pool and the counters.
type Terminator struct {
	cfg      *tls.Config
	store    *Store
	tickets  *TicketKeys
	stats    Stats
	pool     pool
	maxPlain int
	hsts     string
	// ownRecords: TLS 1.3 connections go on tlsterm's record layer, with
	// their secrets from the key log.
	ownRecords bool
	secrets    secretLog
	log        *slog.Logger
	cancel     context.CancelFunc
}

// tls12Suites are the TLS 1.2 cipher suites offered: ECDHE key exchange
// (forward secrecy) with AEAD ciphers only (RFC 5289 AES-GCM, RFC 7905
// ChaCha20-Poly1305). CBC modes (Lucky Thirteen, no encrypt-then-MAC in Go),
// RSA key exchange (no forward secrecy, ROBOT) and 3DES are left out, as in
// Mozilla's "intermediate" profile.
//
// The order does not matter: crypto/tls ignores PreferServerCipherSuites
// (a legacy field since Go 1.17) and orders suites itself, by security and
// by inferred hardware support: AES-GCM first when the server has AES
// instructions and the client lists an AES-GCM suite first, otherwise
// ChaCha20-Poly1305. TLS 1.3
// suites (RFC 8446 appendix B.4) are not configurable in crypto/tls; all
// three are AEADs.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// NewTerminator validates s, loads the certificates, the client CAs and
// the ticket keys, and builds the tls.Config:
//
//   - MinVersion TLS 1.2 or 1.3; TLS 1.2 with tls12Suites only.
//   - CurvePreferences left nil: Go's default, which puts the hybrid
//     post-quantum X25519MLKEM768 first (Go 1.24+) and adds
//     SecP256r1MLKEM768 and SecP384r1MLKEM1024 (Go 1.26). Setting a list
//     without them would silently give up the post-quantum share.
//   - ALPN "http/1.1" only (RFC 7301): a client that offers ALPN without
//     it is refused by crypto/tls with no_application_protocol.
//   - GetCertificate from the Store (SNI).
//   - Client certificates per ClientAuth, verified against ClientCAFile.
//   - Session tickets from TicketKeys (shared file or per-process).
//   - KeyLogWriter to tlsterm's secret log, unless CryptoTLSRecords.
//
// It starts the ticket rotation or key-file polling goroutine; Close stops
// it. log may be nil.
func NewTerminator(s Settings, log *slog.Logger) (*Terminator, error) {
	if log == nil {
		log = slog.Default()
	}
	t := &Terminator{log: log}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: tls12Suites,
		NextProtos:   []string{"http/1.1"},
	}
	switch s.MinVersion {
	case "", "1.2":
	case "1.3":
		cfg.MinVersion = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("tlsterm: min version %q: want \"1.2\" or \"1.3\"", s.MinVersion)
	}
	store, err := NewStore(s.Certificates, log)
	if err != nil {
		return nil, err
	}
	t.store = store
	cfg.GetCertificate = store.GetCertificate

	switch s.ClientAuth {
	case "", "none":
		if s.ClientCAFile != "" {
			return nil, errors.New("tlsterm: client CA file given but client auth is \"none\"")
		}
	case "request", "require":
		if s.ClientCAFile == "" {
			return nil, fmt.Errorf("tlsterm: client auth %q needs a client CA file", s.ClientAuth)
		}
		pool, err := loadCAFile(s.ClientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if s.ClientAuth == "require" {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	default:
		return nil, fmt.Errorf("tlsterm: client auth %q: want \"none\", \"request\" or \"require\"", s.ClientAuth)
	}

	timeout := s.HandshakeTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	maxHS := s.MaxHandshakes
	if maxHS <= 0 {
		maxHS = 256
	}
	queue := s.HandshakeQueue
	if queue < 0 {
		return nil, errors.New("tlsterm: negative handshake queue")
	}
	if queue == 0 {
		queue = 1024
	}
	t.maxPlain = s.MaxPlaintextBuffer
	switch {
	case t.maxPlain == 0:
		t.maxPlain = 64 << 10
	case t.maxPlain < plainMin || t.maxPlain > plainMax:
		return nil, fmt.Errorf("tlsterm: max plaintext buffer %d: want %d to %d", t.maxPlain, plainMin, plainMax)
	}
	if s.HSTS != "" {
		if err := CheckHSTS(s.HSTS); err != nil {
			return nil, fmt.Errorf("tlsterm: HSTS %q: %w", s.HSTS, err)
		}
		t.hsts = s.HSTS
	}

	ctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	if s.DisableSessionTickets {
		cfg.SessionTicketsDisabled = true
	} else {
		tk, err := NewTicketKeys(s.TicketKeyFile, s.TicketRotation, s.TicketLifetime, log)
		if err != nil {
			cancel()
			return nil, err
		}
		t.tickets = tk
		tk.Register(cfg)
		go tk.Run(ctx, s.TicketPoll)
	}
	if !s.CryptoTLSRecords {
		// The key log is how crypto/tls gives out the traffic secrets
		// (secrets.go). It is tlsterm's own: no file is written.
		t.ownRecords = true
		t.secrets.max = max(2*maxHS, 64) // legitimately, at most one per running handshake
		t.secrets.ttl = int64(timeout)
		cfg.KeyLogWriter = &t.secrets
	}
	t.cfg = cfg
	t.pool.init(&t.stats, maxHS, queue, timeout)
	return t, nil
}

func loadCAFile(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlsterm: client CA file %s: %w", path, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("tlsterm: client CA file %s: no PEM certificate found", path)
	}
	return pool, nil
}

// CheckHSTS checks a Strict-Transport-Security value (RFC 6797 section
// 6.1): a required max-age in seconds, optional includeSubDomains and
// preload (the browsers' list convention), each at most once, and no
// control characters (the value becomes a header line). The config
// validation uses it too, so both refuse the same values.
func CheckHSTS(v string) error {
	if strings.IndexFunc(v, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) >= 0 {
		return errors.New("must not contain control characters")
	}
	seen := map[string]bool{}
	for _, d := range strings.Split(v, ";") {
		d = strings.TrimSpace(d)
		if d == "" {
			continue
		}
		name, val, hasVal := strings.Cut(d, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		if seen[name] {
			return fmt.Errorf("directive %s repeated", name)
		}
		seen[name] = true
		switch name {
		case "max-age":
			val = strings.Trim(strings.TrimSpace(val), `"`)
			if _, err := strconv.ParseUint(val, 10, 63); !hasVal || err != nil {
				return fmt.Errorf("max-age needs a number of seconds, e.g. \"max-age=31536000\"")
			}
		case "includesubdomains", "preload":
			if hasVal {
				return fmt.Errorf("%s takes no value", name)
			}
		default:
			return fmt.Errorf("unknown directive %q (want max-age, includeSubDomains or preload)", name)
		}
	}
	if !seen["max-age"] {
		return fmt.Errorf("max-age is required, e.g. \"max-age=31536000\"")
	}
	return nil
}

// Config returns the tls.Config. Do not modify it after connections were
// accepted, and do not use it for connections of your own: its
// KeyLogWriter belongs to the Terminator.
func (t *Terminator) Config() *tls.Config { return t.cfg }

// Store returns the certificate store (Reload on SIGHUP, Watch, Expiring).
func (t *Terminator) Store() *Store { return t.store }

// TicketKeys returns the session-ticket keys, nil when tickets are
// disabled.
func (t *Terminator) TicketKeys() *TicketKeys { return t.tickets }

// Stats returns the handshake counters.
func (t *Terminator) Stats() *Stats { return &t.stats }

// HSTS returns the validated Strict-Transport-Security value, or "".
func (t *Terminator) HSTS() string { return t.hsts }

// Close stops the ticket-key goroutine. Connections keep working; call it
// when the listener is gone.
func (t *Terminator) Close() { t.cancel() }
