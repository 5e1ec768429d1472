package config

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"frontdoor/examples"
	"frontdoor/internal/tomlpos"
	"frontdoor/tlsterm"
)

// EmbeddedPath is the Path of the configuration Default returns. It names no
// file on disk: its DirectoryPath is "<embedded>/directory.toml", which
// callers map to examples.Directory.
const EmbeddedPath = "<embedded>/frontdoor.toml"

// Error is one problem in a configuration file. Load and Parse return every
// problem they find as a tomlpos.Errors list (its Error method prints one
// "FILE:LINE: KEY: message" line per problem); errors.As with a *Error
// target finds the first.
type Error = tomlpos.Error

// Load reads, decodes and validates the configuration file at path. Config.Path
// is set to path, and errors name the file as path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse decodes and validates a configuration read from the file name (used
// as Config.Path and in error messages). Decoding is strict: unknown keys,
// values of the wrong TOML type and out-of-range values are errors. Unset
// keys take the defaults documented in examples/frontdoor.toml.
func Parse(name string, data []byte) (*Config, error) {
	c := defaults()
	doc, err := tomlpos.Decode(name, data, c)
	if err != nil {
		return nil, err
	}
	c.Path = name
	c.doc = doc
	c.listenerDefaults()
	c.validate(doc)
	if err := doc.Err(); err != nil {
		return nil, err
	}
	if c.GatewayID == "" {
		c.GatewayID = hostname()
	}
	return c, nil
}

// Default returns the embedded default configuration, examples/frontdoor.toml,
// with Path EmbeddedPath.
func Default() (*Config, error) {
	return Parse(EmbeddedPath, examples.Config)
}

// DirectoryPath returns the directory file's path: Directory resolved with
// Resolve, except in the embedded default configuration, where it is
// "<embedded>/directory.toml": callers map that to examples.Directory.
func (c *Config) DirectoryPath() string {
	if c.Path == EmbeddedPath && c.Directory != "" && !filepath.IsAbs(c.Directory) {
		return filepath.Join(filepath.Dir(EmbeddedPath), c.Directory)
	}
	return c.Resolve(c.Directory)
}

// Resolve returns a path written in the configuration as the program must
// open it: unchanged when empty or absolute, else relative to the directory
// of the configuration file. The embedded default configuration has no
// directory on disk: its relative paths are relative to the current working
// directory (`make run` starts in the repository's root).
func (c *Config) Resolve(path string) string {
	switch {
	case path == "" || filepath.IsAbs(path):
		return path
	case c.Path == EmbeddedPath:
		return filepath.Clean(path)
	}
	return filepath.Join(filepath.Dir(c.Path), path)
}

// Equal reports whether a and b configure the same thing: every setting
// equal, wherever in the file it was written (comments and layout do not
// count). A reload of an unchanged file is then a no-op.
func Equal(a, b *Config) bool {
	x, y := *a, *b
	x.doc, y.doc = nil, nil
	return reflect.DeepEqual(x, y)
}

// Line returns the line of the file at which key (a path such as
// "listener[1].certificates[0].cert", as in errors) was written, or that of
// its nearest enclosing table or key that was; 1 when there is none. Callers
// that check what the file refers to (certificate files, say) use it to
// report problems as FILE:LINE: KEY: message.
func (c *Config) Line(key string) int {
	if c.doc == nil {
		return 1
	}
	return c.doc.Line(key)
}

// TLSSettings returns the tlsterm settings of listener i (which must have
// tls = true to be of use): its own TLS keys and the [tls] section, with
// every file path resolved with Resolve.
func (c *Config) TLSSettings(i int) tlsterm.Settings {
	l := &c.Listeners[i]
	certs := make([]tlsterm.CertPair, len(l.Certificates))
	for j, p := range l.Certificates {
		certs[j] = tlsterm.CertPair{CertFile: c.Resolve(p.Cert), KeyFile: c.Resolve(p.Key), OCSPFile: c.Resolve(p.OCSP)}
	}
	t := &c.TLS
	return tlsterm.Settings{
		MinVersion:            l.TLSMinVersion,
		Certificates:          certs,
		ClientAuth:            l.TLSClientAuth,
		ClientCAFile:          c.Resolve(l.TLSClientCA),
		HandshakeTimeout:      t.HandshakeTimeout.D(),
		MaxHandshakes:         t.MaxHandshakes,
		HandshakeQueue:        t.HandshakeQueue,
		MaxPlaintextBuffer:    t.MaxPlaintextBuffer,
		TicketKeyFile:         c.Resolve(t.TicketKeyFile),
		TicketRotation:        t.TicketRotation.D(),
		TicketLifetime:        t.TicketLifetime.D(),
		DisableSessionTickets: !t.SessionTickets,
		HSTS:                  l.HSTS,
		CryptoTLSRecords:      t.RecordLayer == "crypto/tls",
	}
}

// ParseLogLevel maps a log level name as written in [log] level (debug, info,
// warn, error) to its slog level.
func ParseLogLevel(s string) (slog.Level, error) {
	switch s {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
}

// defaults returns a Config holding the default of every key; Parse decodes
// over it, so keys the file leaves out keep these values. Keep in step with
// examples/frontdoor.toml (TestExampleSpellsOutDefaults checks).
func defaults() *Config {
	return &Config{
		Mail: mailDefaults(),
		Engine: Engine{
			Loops:            0,
			ReusePort:        true,
			ReadBufferBytes:  64 << 10,
			WriteBufferBytes: 64 << 10,
			SweepInterval:    Duration(250 * time.Millisecond),
		},
		Limits: Limits{
			MaxConnections:         100_000,
			MaxHeaderBytes:         16 << 10,
			MaxBodyBytes:           100 << 20,
			MaxPipelineBytes:       64 << 10,
			ClientBufferBytes:      256 << 10,
			MaxResponseBufferBytes: 8 << 20,
			MaxUploadBufferBytes:   1 << 20,
			ChannelBufferBytes:     32 << 10,
		},
		Timeouts: Timeouts{
			HeaderRead: Duration(10 * time.Second),
			BodyRead:   Duration(30 * time.Second),
			Idle:       Duration(75 * time.Second),
			Write:      Duration(30 * time.Second),
			Drain:      Duration(15 * time.Second),

			RPCChannelIdle:           Duration(15 * time.Minute),
			MAPINotificationWaitIdle: Duration(6 * time.Minute),
		},
		Backend: Backend{
			ConnsPerLoop:    2,
			MaxPipeline:     16,
			MaxQueue:        16384,
			ConnectTimeout:  Duration(3 * time.Second),
			ResponseTimeout: Duration(60 * time.Second),
			QueueTimeout:    Duration(10 * time.Second),
			ReconnectMin:    Duration(100 * time.Millisecond),
			ReconnectMax:    Duration(5 * time.Second),
			RetryAfter:      Duration(2 * time.Second),

			MaxChannelsPerServer: 2000,

			HealthInterval:             Duration(5 * time.Second),
			HealthTimeout:              Duration(2 * time.Second),
			UnhealthyThreshold:         3,
			HealthyThreshold:           2,
			OutlierConsecutiveFailures: 5,
		},
		Log:       Log{Level: "info", Format: "text"},
		AccessLog: AccessLog{BufferBytes: 1 << 20},
		TLS: TLS{
			TicketRotation:     Duration(12 * time.Hour),
			TicketLifetime:     Duration(24 * time.Hour),
			HandshakeTimeout:   Duration(10 * time.Second),
			MaxHandshakes:      256,
			HandshakeQueue:     1024,
			MaxPlaintextBuffer: 64 << 10,
			SessionTickets:     true,
			RecordLayer:        "frontdoor",
		},
		Auth: Auth{
			Realm:              "frontdoor",
			CacheTTL:           Duration(5 * time.Minute),
			FailureTTL:         Duration(30 * time.Second),
			CacheEntries:       100_000,
			Workers:            0,
			Queue:              1024,
			MaxFailures:        5,
			MaxAddressFailures: 20,
			FailureWindow:      Duration(5 * time.Minute),
			JWTUserClaim:       "sub",

			KeytabCheckInterval:   Duration(time.Second),
			KerberosMaxSkew:       Duration(5 * time.Minute),
			KerberosMaxTokenBytes: 48000,
			KerberosReplayEntries: 262144,
		},
		Identity: Identity{
			Header:   "X-Frontdoor-Identity",
			Lifetime: Duration(10 * time.Minute),
			Audience: "frontdoor-backend",
		},
		Runtime: Runtime{
			MemoryTrimInterval: Duration(10 * time.Second),
			MemoryTrimMinBytes: 16 << 20,
		},
		State: State{DrainGrace: Duration(10 * time.Second)},
	}
}

// Defaults of the per-listener keys, which defaults cannot pre-fill: the
// listeners are elements of an array.
const (
	defaultTLSMinVersion = "1.2"
	defaultTLSClientAuth = "none"
	defaultProxyProtocol = "off"
)

// listenerDefaults gives every listener the defaults of the keys it does
// not set. A key written as "" stays empty, for validate to report.
func (c *Config) listenerDefaults() {
	for i := range c.Listeners {
		l := &c.Listeners[i]
		at := fmt.Sprintf("listener[%d]", i)
		if !c.doc.Has(at + ".tls_min_version") {
			l.TLSMinVersion = defaultTLSMinVersion
		}
		if !c.doc.Has(at + ".tls_client_auth") {
			l.TLSClientAuth = defaultTLSClientAuth
		}
		if !c.doc.Has(at + ".proxy_protocol") {
			l.ProxyProtocol = defaultProxyProtocol
		}
	}
	for i := range c.Protocols {
		p := &c.Protocols[i]
		at := fmt.Sprintf("protocol[%d]", i)
		if !c.doc.Has(at + ".cross_site") {
			p.CrossSite = "proxy"
		}
		if !c.doc.Has(at + ".older_server") {
			p.OlderServer = "proxy"
		}
	}
}

// hostname is the default gateway_id.
func hostname() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "frontdoor"
}
