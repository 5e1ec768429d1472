package config

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"frontdoor/tlsterm"
)

// doc joins lines with newlines, so that a test's line N is lines[N-1].
func doc(lines ...string) []byte { return []byte(strings.Join(lines, "\n") + "\n") }

func TestDefaultParsesExample(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatalf("Default: %v", err)
	}
	if c.Path != EmbeddedPath {
		t.Errorf("Path = %q, want %q", c.Path, EmbeddedPath)
	}
	if got, want := c.DirectoryPath(), "<embedded>/directory.toml"; got != want {
		t.Errorf("DirectoryPath = %q, want %q", got, want)
	}
	if len(c.Listeners) != 2 {
		t.Fatalf("Listeners = %+v, want \"http\" and \"https\"", c.Listeners)
	}
	if l := c.Listeners[0]; l.Name != "http" || l.Address != "127.0.0.1:8080" || len(l.Protocols) != 0 || l.TLS {
		t.Errorf("Listeners[0] = %+v, want \"http\" on 127.0.0.1:8080 serving all protocols, without TLS", l)
	}
	wantCerts := []Certificate{{Cert: "run/tls/cert.pem", Key: "run/tls/key.pem"}}
	if l := c.Listeners[1]; l.Name != "https" || l.Address != "127.0.0.1:8443" || len(l.Protocols) != 0 ||
		!l.TLS || !l.TLSSelfSigned || !reflect.DeepEqual(l.Certificates, wantCerts) || l.HSTS != "max-age=31536000" ||
		l.TLSMinVersion != "1.2" || l.TLSClientAuth != "none" || l.TLSClientCA != "" {
		t.Errorf("Listeners[1] = %+v, want \"https\" on 127.0.0.1:8443 with a self-signed certificate in run/tls/ and HSTS", l)
	}
	// The embedded file is not on disk: its paths are relative to the
	// working directory.
	if got := c.TLSSettings(1).Certificates; !reflect.DeepEqual(got, []tlsterm.CertPair{{CertFile: "run/tls/cert.pem", KeyFile: "run/tls/key.pem"}}) {
		t.Errorf("TLSSettings(1).Certificates = %+v", got)
	}
	want := map[string]string{
		"owa": "/owa", "ecp": "/ecp", "ews": "/EWS", "mapi": "/mapi",
		"eas": "/Microsoft-Server-ActiveSync", "autodiscover": "/autodiscover",
		"rpc": "/rpc", "oab": "/OAB",
	}
	if len(c.Protocols) != len(want) {
		t.Errorf("got %d protocols, want %d", len(c.Protocols), len(want))
	}
	for _, p := range c.Protocols {
		if want[p.Name] != p.PathPrefix || p.BackendPort != 18081 {
			t.Errorf("protocol %+v, want path_prefix %q and backend_port 18081", p, want[p.Name])
		}
	}
}

func TestLoadExampleFromDisk(t *testing.T) {
	path := filepath.Join("..", "..", "examples", "frontdoor.toml")
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Path != path {
		t.Errorf("Path = %q, want %q", c.Path, path)
	}
	if got, want := c.DirectoryPath(), filepath.Join("..", "..", "examples", "directory.toml"); got != want {
		t.Errorf("DirectoryPath = %q, want %q", got, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing file: err = %v, want fs.ErrNotExist", err)
	}
}

// minimal is the smallest valid configuration: required keys only.
var minimal = doc(
	`directory = "dir.toml"`,
	`[[listener]]`,
	`name = "http"`,
	`address = ":8080"`,
	`[[protocol]]`,
	`name = "owa"`,
	`path_prefix = "/owa"`,
	`backend_port = 443`,
)

func TestDefaults(t *testing.T) {
	c, err := Parse("min.toml", minimal)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	// Spelled out rather than taken from defaults(), so that changing a
	// default is a deliberate act that fails here first.
	s := func(d time.Duration) Duration { return Duration(d) }
	want := Config{
		Engine: Engine{Loops: 0, ReusePort: true, ReadBufferBytes: 65536, WriteBufferBytes: 65536, SweepInterval: s(250 * time.Millisecond)},
		Limits: Limits{
			MaxConnections: 100000, MaxHeaderBytes: 16384, MaxBodyBytes: 104857600, MaxPipelineBytes: 65536,
			ClientBufferBytes: 262144, MaxResponseBufferBytes: 8388608, MaxUploadBufferBytes: 1048576,
			ChannelBufferBytes: 32768,
		},
		Timeouts: Timeouts{HeaderRead: s(10 * time.Second), BodyRead: s(30 * time.Second), Idle: s(75 * time.Second), Write: s(30 * time.Second), Drain: s(15 * time.Second),
			RPCChannelIdle: s(15 * time.Minute), MAPINotificationWaitIdle: s(6 * time.Minute)},
		Backend: Backend{
			ConnsPerLoop: 2, MaxPipeline: 16, MaxQueue: 16384,
			ConnectTimeout: s(3 * time.Second), ResponseTimeout: s(60 * time.Second), QueueTimeout: s(10 * time.Second),
			ReconnectMin: s(100 * time.Millisecond), ReconnectMax: s(5 * time.Second), RetryAfter: s(2 * time.Second),
			MaxChannelsPerServer: 2000,
			HealthInterval:       s(5 * time.Second), HealthTimeout: s(2 * time.Second),
			UnhealthyThreshold: 3, HealthyThreshold: 2, OutlierConsecutiveFailures: 5,
		},
		State: State{File: "", DrainGrace: s(10 * time.Second)},
		Log:   Log{Level: "info", Format: "text"},
		TLS: TLS{
			TicketKeyFile: "", TicketRotation: s(12 * time.Hour), TicketLifetime: s(24 * time.Hour),
			HandshakeTimeout: s(10 * time.Second), MaxHandshakes: 256, HandshakeQueue: 1024,
			MaxPlaintextBuffer: 65536, SessionTickets: true, RecordLayer: "frontdoor",
		},
	}
	if c.Engine != want.Engine {
		t.Errorf("Engine = %+v, want %+v", c.Engine, want.Engine)
	}
	if c.Limits != want.Limits {
		t.Errorf("Limits = %+v, want %+v", c.Limits, want.Limits)
	}
	if c.Timeouts != want.Timeouts {
		t.Errorf("Timeouts = %+v, want %+v", c.Timeouts, want.Timeouts)
	}
	if c.Backend != want.Backend {
		t.Errorf("Backend = %+v, want %+v", c.Backend, want.Backend)
	}
	if c.Log != want.Log {
		t.Errorf("Log = %+v, want %+v", c.Log, want.Log)
	}
	if c.TLS != want.TLS {
		t.Errorf("TLS = %+v, want %+v", c.TLS, want.TLS)
	}
	if c.State != want.State {
		t.Errorf("State = %+v, want %+v", c.State, want.State)
	}
	wantListener := Listener{Name: "http", Address: ":8080", TLSMinVersion: "1.2", TLSClientAuth: "none", ProxyProtocol: "off"}
	if !reflect.DeepEqual(c.Listeners, []Listener{wantListener}) {
		t.Errorf("Listeners = %+v, want [%+v]", c.Listeners, wantListener)
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "frontdoor"
	}
	if c.GatewayID != host {
		t.Errorf("GatewayID = %q, want the host name %q", c.GatewayID, host)
	}
	if c.Path != "min.toml" || c.Directory != "dir.toml" {
		t.Errorf("Path, Directory = %q, %q; want min.toml, dir.toml", c.Path, c.Directory)
	}
}

// The example documents every default by setting it: it must agree with
// the code.
func TestExampleSpellsOutDefaults(t *testing.T) {
	ex, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	min, err := Parse("min.toml", minimal)
	if err != nil {
		t.Fatal(err)
	}
	for _, section := range []string{"Engine", "Limits", "Timeouts", "Backend", "Log", "AccessLog", "TLS", "Auth", "Runtime", "Mail"} {
		a := reflect.ValueOf(*ex).FieldByName(section).Interface()
		b := reflect.ValueOf(*min).FieldByName(section).Interface()
		if !reflect.DeepEqual(a, b) {
			t.Errorf("examples/frontdoor.toml [%s] = %+v, but the defaults are %+v", strings.ToLower(section), a, b)
		}
	}
	// The example keeps component states in run/state.json so that make run
	// shows persistence; every other [state] key is the default.
	if ex.State.DrainGrace != min.State.DrainGrace || ex.State.File != "run/state.json" {
		t.Errorf("examples/frontdoor.toml [state] = %+v, defaults %+v", ex.State, min.State)
	}
}

func TestSetValuesOverrideDefaults(t *testing.T) {
	c, err := Parse("f.toml", append(append(doc(`gateway_id = "fd-7"`), minimal...), doc(
		`[engine]`,
		`reuse_port = false`,
		`[backend]`,
		`conns_per_loop = 64`,
		`reconnect_max = "1m"`,
		`[log]`,
		`format = "json"`,
	)...))
	if err != nil {
		t.Fatal(err)
	}
	if c.GatewayID != "fd-7" || c.Engine.ReusePort || c.Backend.ConnsPerLoop != 64 ||
		c.Backend.ReconnectMax.D() != time.Minute || c.Log.Format != "json" || c.Engine.ReadBufferBytes != 65536 {
		t.Errorf("got %+v", c)
	}
}

func TestDirectoryPath(t *testing.T) {
	for _, tc := range []struct{ path, dir, want string }{
		{"/etc/frontdoor/frontdoor.toml", "directory.toml", "/etc/frontdoor/directory.toml"},
		{"/etc/frontdoor/frontdoor.toml", "../shared/dir.toml", "/etc/shared/dir.toml"},
		{"/etc/frontdoor/frontdoor.toml", "/var/lib/dir.toml", "/var/lib/dir.toml"},
		{"frontdoor.toml", "directory.toml", "directory.toml"},
		{"conf/frontdoor.toml", "directory.toml", "conf/directory.toml"},
	} {
		c := &Config{Path: tc.path, Directory: tc.dir}
		if got := c.DirectoryPath(); got != tc.want {
			t.Errorf("Path %q, directory %q: DirectoryPath = %q, want %q", tc.path, tc.dir, got, tc.want)
		}
	}
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct{ path, p, want string }{
		{"/etc/frontdoor/frontdoor.toml", "tls/cert.pem", "/etc/frontdoor/tls/cert.pem"},
		{"/etc/frontdoor/frontdoor.toml", "../pki/cert.pem", "/etc/pki/cert.pem"},
		{"/etc/frontdoor/frontdoor.toml", "/var/lib/frontdoor/tickets", "/var/lib/frontdoor/tickets"},
		{"/etc/frontdoor/frontdoor.toml", "", ""},
		{"frontdoor.toml", "cert.pem", "cert.pem"},
		{"conf/frontdoor.toml", "tls/cert.pem", "conf/tls/cert.pem"},
		{"conf/frontdoor.toml", "/abs/cert.pem", "/abs/cert.pem"},
		// The embedded default: against the working directory.
		{EmbeddedPath, "run/tls/cert.pem", "run/tls/cert.pem"},
		{EmbeddedPath, "./run//tls/cert.pem", "run/tls/cert.pem"},
		{EmbeddedPath, "/etc/cert.pem", "/etc/cert.pem"},
		{EmbeddedPath, "", ""},
	} {
		c := &Config{Path: tc.path}
		if got := c.Resolve(tc.p); got != tc.want {
			t.Errorf("Path %q: Resolve(%q) = %q, want %q", tc.path, tc.p, got, tc.want)
		}
	}
	// The embedded directory is not on disk either, but it is mapped to
	// examples.Directory by name.
	c := &Config{Path: EmbeddedPath, Directory: "directory.toml"}
	if got, want := c.DirectoryPath(), "<embedded>/directory.toml"; got != want {
		t.Errorf("embedded DirectoryPath = %q, want %q", got, want)
	}
}

// tlsDoc is a configuration with a plaintext listener (lines 6-8) and a TLS
// listener (lines 9-23) that sets every TLS key.
var tlsDoc = doc(append(append([]string{}, base...),
	`[[listener]]`,
	`name = "https"`,
	`address = ":8443"`,
	`tls = true`,
	`tls_min_version = "1.3"`,
	`tls_client_auth = "require"`,
	`tls_client_ca = "pki/clients.pem"`,
	`hsts = "max-age=31536000; includeSubDomains"`,
	`certificates = [`,
	`  { cert = "pki/ecdsa.pem", key = "pki/ecdsa.key", ocsp = "pki/ecdsa.ocsp" },`,
	`  { cert = "/etc/pki/rsa.pem", key = "/etc/pki/rsa.key" },`,
	`]`,
	`[tls]`,
	`ticket_key_file = "tickets.keys"`,
	`ticket_rotation = "6h"`,
	`ticket_lifetime = "12h"`,
	`handshake_timeout = "5s"`,
	`max_handshakes = 64`,
	`handshake_queue = 128`,
	`max_plaintext_buffer = 16384`,
	`session_tickets = false`,
	`record_layer = "crypto/tls"`,
)...)

func TestTLSSettings(t *testing.T) {
	c, err := Parse("/etc/frontdoor/frontdoor.toml", tlsDoc)
	if err != nil {
		t.Fatal(err)
	}
	want := tlsterm.Settings{
		MinVersion: "1.3",
		Certificates: []tlsterm.CertPair{
			{CertFile: "/etc/frontdoor/pki/ecdsa.pem", KeyFile: "/etc/frontdoor/pki/ecdsa.key", OCSPFile: "/etc/frontdoor/pki/ecdsa.ocsp"},
			{CertFile: "/etc/pki/rsa.pem", KeyFile: "/etc/pki/rsa.key"},
		},
		ClientAuth:            "require",
		ClientCAFile:          "/etc/frontdoor/pki/clients.pem",
		HandshakeTimeout:      5 * time.Second,
		MaxHandshakes:         64,
		HandshakeQueue:        128,
		MaxPlaintextBuffer:    16384,
		TicketKeyFile:         "/etc/frontdoor/tickets.keys",
		TicketRotation:        6 * time.Hour,
		TicketLifetime:        12 * time.Hour,
		DisableSessionTickets: true,
		HSTS:                  "max-age=31536000; includeSubDomains",
		CryptoTLSRecords:      true,
	}
	if got := c.TLSSettings(1); !reflect.DeepEqual(got, want) {
		t.Errorf("TLSSettings(1) =\n%+v\nwant\n%+v", got, want)
	}

	// Defaults.
	c, err = Parse("conf/frontdoor.toml", withBase(`tls = true`, `certificates = [{ cert = "c.pem", key = "k.pem" }]`))
	if err != nil {
		t.Fatal(err)
	}
	want = tlsterm.Settings{
		MinVersion:         "1.2",
		Certificates:       []tlsterm.CertPair{{CertFile: "conf/c.pem", KeyFile: "conf/k.pem"}},
		ClientAuth:         "none",
		HandshakeTimeout:   10 * time.Second,
		MaxHandshakes:      256,
		HandshakeQueue:     1024,
		MaxPlaintextBuffer: 65536,
		TicketRotation:     12 * time.Hour,
		TicketLifetime:     24 * time.Hour,
	}
	if got := c.TLSSettings(0); !reflect.DeepEqual(got, want) {
		t.Errorf("TLSSettings(0) with defaults =\n%+v\nwant\n%+v", got, want)
	}
}

// What validation accepts, tlsterm must accept: a configuration that passes
// check-config must not fail when the gateway starts.
func TestTLSSettingsAcceptedByTlsterm(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := tlsterm.WriteSelfSigned(dir, []string{"localhost"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, hsts := range []string{
		"", "max-age=0", "max-age=31536000", "max-age=31536000; includeSubDomains",
		`max-age="600"; preload; includeSubDomains`, "MAX-AGE=1;", " max-age=1 ; includesubdomains ",
		"includeSubDomains", "max-age=", "max-age=-1", "max-age=1; max-age=2", "max-age=1; preload=yes", "max-age=1; secure",
	} {
		lines := []string{`tls = true`, `certificates = [{ cert = "cert.pem", key = "key.pem" }]`, `hsts = ` + strconv.Quote(hsts)}
		c, cfgErr := Parse(filepath.Join(dir, "frontdoor.toml"), withBase(lines...))
		var tsErr error
		if cfgErr == nil {
			term, err := tlsterm.NewTerminator(c.TLSSettings(0), slog.New(slog.DiscardHandler))
			if tsErr = err; err == nil {
				term.Close()
			}
		} else {
			// Validation refused it: so must tlsterm.
			s := tlsterm.Settings{Certificates: []tlsterm.CertPair{{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}}, HSTS: hsts}
			term, err := tlsterm.NewTerminator(s, slog.New(slog.DiscardHandler))
			if err == nil {
				term.Close()
				t.Errorf("hsts %q: config refuses it (%v), tlsterm accepts it", hsts, cfgErr)
			}
			continue
		}
		if tsErr != nil {
			t.Errorf("hsts %q: config accepts it, tlsterm refuses it: %v", hsts, tsErr)
		}
	}
}

func TestLine(t *testing.T) {
	c, err := Parse("f.toml", tlsDoc)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]int{
		"listener[1].certificates[0]":      18,
		"listener[1].certificates[1].key":  19,
		"listener[1].certificates[1].ocsp": 19, // not written: its table's line
		"listener[1].tls_client_ca":        15,
		"listener[1]":                      9,
		"tls.ticket_key_file":              22,
		"nope":                             1,
	} {
		if got := c.Line(key); got != want {
			t.Errorf("Line(%q) = %d, want %d", key, got, want)
		}
	}
	if got := (&Config{}).Line("directory"); got != 1 {
		t.Errorf("Line of a Config not parsed from a file = %d, want 1", got)
	}
}

// Base lines for error cases: with them a file is valid, so each case adds
// exactly the problem it tests. Lines 1-8.
var (
	base      = []string{`directory = "dir.toml"`, `[[protocol]]`, `name = "owa"`, `path_prefix = "/owa"`, `backend_port = 443`, `[[listener]]`, `name = "http"`, `address = ":8080"`}
	withBase  = func(lines ...string) []byte { return doc(append(append([]string{}, base...), lines...)...) }
	protoOnly = []string{`directory = "dir.toml"`, `[[protocol]]`, `name = "owa"`, `path_prefix = "/owa"`, `backend_port = 443`}
	withProto = func(lines ...string) []byte { return doc(append(append([]string{}, protoOnly...), lines...)...) }
)

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		want []string // every line of the error, exactly
	}{
		// TOML syntax.
		{"unterminated string", doc(`directory = "dir.toml`),
			[]string{`f.toml:1: directory: basic strings cannot have new lines`}},
		{"syntax error in a table", withBase(`[limits]`, `max_connections == 5`),
			[]string{`f.toml:10: limits.max_connections: unexpected character U+003D '=' at start of value`}},
		{"unclosed header", withBase(`[[listener`),
			[]string{`f.toml:9: listener: expected ']]' to close array table name`}},
		{"key defined twice", withBase(`[engine]`, `loops = 1`, `loops = 2`),
			[]string{`f.toml:11: engine.loops: key loops is already defined`}},
		{"table defined twice", withBase(`[engine]`, `[engine]`),
			[]string{`f.toml:10: engine: table engine already exists`}},

		// Unknown keys and tables; case matters.
		{"typo", withBase(`[limits]`, `max_conection = 5`),
			[]string{`f.toml:10: limits.max_conection: unknown key (did you mean "max_connections"?)`}},
		{"wrong case", withBase(`[limits]`, `MAX_CONNECTIONS = 5`),
			[]string{`f.toml:10: limits.MAX_CONNECTIONS: unknown key (did you mean "max_connections"?)`}},
		{"unknown key in second listener", withBase(`[[listener]]`, `name = "b"`, `adress = ":81"`),
			[]string{`f.toml:11: listener[1].adress: unknown key (did you mean "address"?)`}},
		{"unknown key, nothing close", withBase(`colour = "red"`),
			[]string{`f.toml:9: listener[0].colour: unknown key (valid keys: name, address, protocols, tls, tls_min_version, tls_client_auth, tls_client_ca, hsts, tls_self_signed, certificates, proxy_protocol, proxy_protocol_from, keytab, mail, starttls, allow_plaintext_login)`}},
		{"unknown table", withBase(`[limitz]`, `x = 1`),
			[]string{`f.toml:9: limitz: unknown table (did you mean "limits"?)`}},
		{"unknown dotted key", doc(`limits.nope = 1`),
			[]string{`f.toml:1: limits.nope: unknown key (valid keys: max_connections, max_header_bytes, max_body_bytes, max_pipeline_bytes, client_buffer_bytes, max_response_buffer_bytes, max_upload_buffer_bytes, channel_buffer_bytes)`}},
		{"Path is not a key", doc(append([]string{`Path = "x"`}, base...)...),
			[]string{`f.toml:1: Path: unknown key (did you mean "auth"?)`}},

		// TOML types.
		{"string for int", withBase(`[limits]`, `max_connections = "many"`),
			[]string{`f.toml:10: limits.max_connections: expected an integer, got string "many"`}},
		{"int for string", withBase(`[[listener]]`, `name = 7`, `address = ":81"`),
			[]string{`f.toml:10: listener[1].name: expected a string, got integer 7`}},
		{"string for array", withBase(`protocols = "owa"`),
			[]string{`f.toml:9: listener[0].protocols: expected an array of strings, got string "owa"`}},
		{"table for array of tables", withBase(`[protocol]`),
			[]string{`f.toml:9: protocol: expected an array of tables, got table`}},
		{"array of tables for table", withBase(`[[engine]]`),
			[]string{`f.toml:9: engine: expected a table, got array of tables`}},
		{"float for int", withBase(`[backend]`, `max_queue = 1.5`),
			[]string{`f.toml:10: backend.max_queue: expected an integer, got float 1.5`}},
		{"inline table element", doc(`directory = "d"`, `listener = [{name = "a", address = ":80"}, {name = "b", address = 81}]`),
			[]string{`f.toml:2: listener[1].address: expected a string, got integer 81`}},
		{"int overflow", withBase(`[limits]`, `max_body_bytes = 99999999999999999999`),
			[]string{`f.toml:10: limits.max_body_bytes: decimal number is too large to fit in a 64-bit signed integer`}},

		// Durations.
		{"bad duration", withBase(`[timeouts]`, `idle = "75x"`),
			[]string{`f.toml:10: timeouts.idle: bad duration "75x": want a number and a unit (ns, us, ms, s, m, h), e.g. "250ms" or "1m30s"`}},
		{"duration without unit", withBase(`[timeouts]`, `idle = "75"`),
			[]string{`f.toml:10: timeouts.idle: bad duration "75": want a number and a unit (ns, us, ms, s, m, h), e.g. "250ms" or "1m30s"`}},
		{"duration as integer", withBase(`[timeouts]`, `idle = 75`),
			[]string{`f.toml:10: timeouts.idle: expected a duration string, got integer 75`}},
		{"negative duration", withBase(`[timeouts]`, `drain = "-1s"`),
			[]string{`f.toml:10: timeouts.drain: must not be negative, got -1s`}},
		{"zero timeout", withBase(`[backend]`, `connect_timeout = "0s"`),
			[]string{`f.toml:10: backend.connect_timeout: must be at least 1ms, got 0s`}},
		{"reconnect_max below min", withBase(`[backend]`, `reconnect_min = "2s"`, `reconnect_max = "1s"`),
			[]string{`f.toml:11: backend.reconnect_max: must be at least backend.reconnect_min (2s), got 1s`}},
		{"fractional retry_after", withBase(`[backend]`, `retry_after = "1500ms"`),
			[]string{`f.toml:10: backend.retry_after: 1.5s: must be whole seconds (Retry-After carries seconds)`}},
		{"empty tls_ca", withBase(`[backend]`, `tls_ca = ""`),
			[]string{`f.toml:10: backend.tls_ca: must not be empty (leave it out to verify mailbox servers against the system roots)`}},
		{"tls_ca not a string", withBase(`[backend]`, `tls_ca = true`),
			[]string{`f.toml:10: backend.tls_ca: expected a string, got boolean true`}},
		{"tls_ca is fine", withBase(`[backend]`, `tls_ca = "pki/backend-ca.pem"`), nil},
		{"health checks off", withBase(`[backend]`, `health_interval = "0s"`, `health_timeout = "10s"`), nil},
		{"health interval too short", withBase(`[backend]`, `health_interval = "10ms"`),
			[]string{`f.toml:10: backend.health_interval: must be at least 50ms, got 10ms`}},
		{"health timeout over the interval", withBase(`[backend]`, `health_interval = "1s"`, `health_timeout = "2s"`),
			[]string{`f.toml:11: backend.health_timeout: must be at most backend.health_interval (1s), got 2s`}},
		{"zero threshold", withBase(`[backend]`, `healthy_threshold = 0`),
			[]string{`f.toml:10: backend.healthy_threshold: must be between 1 and 1000, got 0`}},
		{"negative outlier count", withBase(`[backend]`, `outlier_consecutive_failures = -1`),
			[]string{`f.toml:10: backend.outlier_consecutive_failures: must be between 0 and 1000000, got -1`}},
		{"empty state file", withBase(`[state]`, `file = ""`),
			[]string{`f.toml:10: state.file: must not be empty (leave it out to keep component states in memory only)`}},
		{"negative drain grace", withBase(`[state]`, `drain_grace = "-1s"`),
			[]string{`f.toml:10: state.drain_grace: must not be negative, got -1s`}},
		{"state is fine", withBase(`[state]`, `file = "state.json"`, `drain_grace = "0s"`), nil},
		{"reserved protocol name", withBase(`[[protocol]]`, `name = "serverwideoffline"`, `path_prefix = "/x"`, `backend_port = 1`),
			[]string{`f.toml:10: protocol[1].name: "serverwideoffline": reserved for the server-wide component state`}},
		{"sweep too slow", withBase(`[engine]`, `sweep_interval = "2m"`),
			[]string{`f.toml:10: engine.sweep_interval: must be at most 1m0s, got 2m0s`}},

		// Addresses.
		{"port out of range", withBase(`[[listener]]`, `name = "b"`, `address = "127.0.0.1:99999"`),
			[]string{`f.toml:11: listener[1].address: "127.0.0.1:99999": port out of range`}},
		{"port zero", withBase(`[[listener]]`, `name = "b"`, `address = "127.0.0.1:0"`),
			[]string{`f.toml:11: listener[1].address: "127.0.0.1:0": port out of range`}},
		{"no port", withProto(`[[listener]]`, `name = "a"`, `address = "127.0.0.1"`),
			[]string{`f.toml:8: listener[0].address: "127.0.0.1": want host:port, e.g. "127.0.0.1:8080", "[::1]:8080" or ":8080"`}},
		{"named port", withProto(`[[listener]]`, `name = "a"`, `address = "127.0.0.1:http"`),
			[]string{`f.toml:8: listener[0].address: "127.0.0.1:http": port "http" is not a number`}},
		{"signed port", withProto(`[[listener]]`, `name = "a"`, `address = "127.0.0.1:+80"`),
			[]string{`f.toml:8: listener[0].address: "127.0.0.1:+80": port "+80" is not a number`}},
		{"bad IPv4", withProto(`[[listener]]`, `name = "a"`, `address = "10.0.0.300:80"`),
			[]string{`f.toml:8: listener[0].address: "10.0.0.300:80": host "10.0.0.300" is neither an IP address nor a host name`}},
		{"bad host name", withProto(`[[listener]]`, `name = "a"`, `address = "bad_host:80"`),
			[]string{`f.toml:8: listener[0].address: "bad_host:80": host "bad_host" is neither an IP address nor a host name`}},
		{"IPv6 and names are fine", withProto(
			`[[listener]]`, `name = "a"`, `address = "[::1]:80"`,
			`[[listener]]`, `name = "b"`, `address = "gw.example.test:80"`,
			`[[listener]]`, `name = "c"`, `address = ":80"`), nil},

		// Duplicates.
		{"duplicate listener name", withBase(`[[listener]]`, `name = "http"`, `address = ":8081"`),
			[]string{`f.toml:10: listener[1].name: duplicate listener name "http" (first at line 7, listener[0].name)`}},
		{"duplicate listener address", withBase(`[[listener]]`, `name = "b"`, `address = ":8080"`),
			[]string{`f.toml:11: listener[1].address: duplicate listener address ":8080" (first at line 8, listener[0].address)`}},
		{"duplicate address spelled differently", withProto(
			`[[listener]]`, `name = "a"`, `address = "[::1]:80"`,
			`[[listener]]`, `name = "b"`, `address = "[0:0::1]:080"`),
			[]string{`f.toml:11: listener[1].address: duplicate listener address "[0:0::1]:080" (first at line 8, listener[0].address)`}},
		{"duplicate protocol name", withBase(`[[protocol]]`, `name = "owa"`, `path_prefix = "/owa2"`, `backend_port = 443`),
			[]string{`f.toml:10: protocol[1].name: duplicate protocol name "owa" (first at line 3, protocol[0].name)`}},
		{"duplicate path prefix, other case", withBase(`[[protocol]]`, `name = "owa2"`, `path_prefix = "/OWA"`, `backend_port = 443`),
			[]string{`f.toml:11: protocol[1].path_prefix: duplicate path_prefix "/OWA" (first at line 4, protocol[0].path_prefix)`}},
		{"protocol listed twice", withProto(`[[listener]]`, `name = "a"`, `address = ":80"`, `protocols = ["owa", "owa"]`),
			[]string{`f.toml:9: listener[0].protocols[1]: duplicate protocol "owa" (first at line 9, listener[0].protocols[0])`}},

		// Required keys: reported at the line of the enclosing table.
		{"no directory", doc(base[1:]...),
			[]string{`f.toml:1: directory: required`}},
		{"empty directory", doc(append([]string{`directory = ""`}, base[1:]...)...),
			[]string{`f.toml:1: directory: must not be empty`}},
		{"no listeners", doc(protoOnly...),
			[]string{`f.toml:1: listener: at least one [[listener]] is required`}},
		{"no protocols", doc(`directory = "d"`, `[[listener]]`, `name = "a"`, `address = ":80"`),
			[]string{`f.toml:1: protocol: at least one [[protocol]] is required`}},
		{"listener without name and address", withBase(`[[listener]]`),
			[]string{
				`f.toml:9: listener[1].name: required`,
				`f.toml:9: listener[1].address: required`,
			}},
		{"protocol without anything", withBase(`[[protocol]]`),
			[]string{
				`f.toml:9: protocol[1].name: required`,
				`f.toml:9: protocol[1].path_prefix: required`,
				`f.toml:9: protocol[1].backend_port: required`,
			}},

		// References, names and path prefixes.
		{"unknown protocol", withProto(`[[listener]]`, `name = "a"`, `address = ":80"`, `protocols = ["owa", "ews"]`),
			[]string{`f.toml:9: listener[0].protocols[1]: unknown protocol "ews" (defined: owa)`}},
		{"bad listener name", withProto(`[[listener]]`, `name = "my listener"`, `address = ":80"`),
			[]string{`f.toml:7: listener[0].name: "my listener": must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit`}},
		{"prefix without slash", doc(`directory = "d"`, `[[protocol]]`, `name = "owa"`, `path_prefix = "owa"`, `backend_port = 1`, `[[listener]]`, `name = "a"`, `address = ":80"`),
			[]string{`f.toml:4: protocol[0].path_prefix: "owa": must start with "/"`}},
		{"prefix with trailing slash", doc(`directory = "d"`, `[[protocol]]`, `name = "owa"`, `path_prefix = "/owa/"`, `backend_port = 1`, `[[listener]]`, `name = "a"`, `address = ":80"`),
			[]string{`f.toml:4: protocol[0].path_prefix: "/owa/": must not end with "/" (prefixes match on segment boundaries: "/owa" matches "/owa/x")`}},
		{"prefix root", doc(`directory = "d"`, `[[protocol]]`, `name = "owa"`, `path_prefix = "/"`, `backend_port = 1`, `[[listener]]`, `name = "a"`, `address = ":80"`),
			[]string{`f.toml:4: protocol[0].path_prefix: "/": "/" alone would match every request; use the protocol's first path segment, e.g. "/owa"`}},
		{"prefix with empty segment", doc(`directory = "d"`, `[[protocol]]`, `name = "owa"`, `path_prefix = "/a//b"`, `backend_port = 1`, `[[listener]]`, `name = "a"`, `address = ":80"`),
			[]string{`f.toml:4: protocol[0].path_prefix: "/a//b": empty, "." or ".." path segment`}},
		{"prefix with query", doc(`directory = "d"`, `[[protocol]]`, `name = "owa"`, `path_prefix = "/owa?x"`, `backend_port = 1`, `[[listener]]`, `name = "a"`, `address = ":80"`),
			[]string{`f.toml:4: protocol[0].path_prefix: "/owa?x": character '?' is not allowed in a path prefix`}},
		{"nested prefix is fine", withBase(`[[protocol]]`, `name = "owa-cal"`, `path_prefix = "/owa/calendar"`, `backend_port = 443`), nil},

		// Long-lived channels (docs/outlook.md).
		{"channel settings", withBase(`[[protocol]]`, `name = "rpc"`, `path_prefix = "/rpc"`, `backend_port = 443`,
			`stream_methods = ["SLOW_POST"]`, `[limits]`, `channel_buffer_bytes = 65536`, `[timeouts]`, `rpc_channel_idle = "30m"`,
			`mapi_notification_wait_idle = "10m"`, `[backend]`, `max_channels_per_server = 10`), nil},
		{"bad stream methods", withBase(`[[protocol]]`, `name = "rpc"`, `path_prefix = "/rpc"`, `backend_port = 443`,
			`stream_methods = ["GET", "BAD METHOD", ""]`),
			[]string{
				`f.toml:13: protocol[1].stream_methods[0]: "GET": must be a request method (a token), not GET, HEAD or CONNECT`,
				`f.toml:13: protocol[1].stream_methods[1]: "BAD METHOD": must be a request method (a token), not GET, HEAD or CONNECT`,
				`f.toml:13: protocol[1].stream_methods[2]: "": must be a request method (a token), not GET, HEAD or CONNECT`,
			}},
		{"bad channel limits", withBase(`[limits]`, `channel_buffer_bytes = 100`, `[timeouts]`, `rpc_channel_idle = "0s"`, `[backend]`, `max_channels_per_server = 0`),
			[]string{
				`f.toml:10: limits.channel_buffer_bytes: must be between 4096 and 16777216, got 100`,
				`f.toml:12: timeouts.rpc_channel_idle: must be at least 1ms, got 0s`,
				`f.toml:14: backend.max_channels_per_server: must be between 1 and 1048576, got 0`,
			}},

		// Ranges.
		{"negative limit", withBase(`[limits]`, `max_connections = -1`),
			[]string{`f.toml:10: limits.max_connections: must be at least 1, got -1`}},
		{"negative body limit", withBase(`[limits]`, `max_body_bytes = -5`),
			[]string{`f.toml:10: limits.max_body_bytes: must be at least 0, got -5`}},
		{"conns_per_loop zero", withBase(`[backend]`, `conns_per_loop = 0`),
			[]string{`f.toml:10: backend.conns_per_loop: must be between 1 and 64, got 0`}},
		{"conns_per_loop too many", withBase(`[backend]`, `conns_per_loop = 65`),
			[]string{`f.toml:10: backend.conns_per_loop: must be between 1 and 64, got 65`}},
		{"negative loops", withBase(`[engine]`, `loops = -1`),
			[]string{`f.toml:10: engine.loops: must be between 0 and 4096, got -1`}},
		{"response buffer below client buffer", withBase(`[limits]`, `client_buffer_bytes = 65536`, `max_response_buffer_bytes = 4096`),
			[]string{`f.toml:11: limits.max_response_buffer_bytes: must be at least limits.client_buffer_bytes (65536), got 4096`}},
		{"backend_port out of range", doc(`directory = "d"`, `[[protocol]]`, `name = "owa"`, `path_prefix = "/owa"`, `backend_port = 70000`, `[[listener]]`, `name = "a"`, `address = ":80"`),
			[]string{`f.toml:5: protocol[0].backend_port: must be between 1 and 65535, got 70000`}},
		{"log level", withBase(`[log]`, `level = "verbose"`, `format = "xml"`),
			[]string{
				`f.toml:10: log.level: "verbose": must be debug, info, warn or error`,
				`f.toml:11: log.format: "xml": must be text or json`,
			}},
		{"gateway_id with space", doc(append([]string{`gateway_id = "fd 1"`}, base...)...),
			[]string{`f.toml:1: gateway_id: "fd 1": must not contain spaces or control characters`}},

		// TLS listeners. The base listener is lines 6-8, so its keys start
		// at line 9.
		{"TLS keys without tls = true", withBase(
			`tls_min_version = "1.3"`,
			`tls_client_auth = "require"`,
			`tls_client_ca = "ca.pem"`,
			`hsts = "max-age=600"`,
			`tls_self_signed = true`,
			`certificates = [{ cert = "c.pem", key = "k.pem" }]`,
		), []string{
			`f.toml:9: listener[0].tls_min_version: only with tls = true`,
			`f.toml:10: listener[0].tls_client_auth: only with tls = true`,
			`f.toml:11: listener[0].tls_client_ca: only with tls = true`,
			`f.toml:12: listener[0].hsts: only with tls = true`,
			`f.toml:13: listener[0].tls_self_signed: only with tls = true`,
			`f.toml:14: listener[0].certificates: only with tls = true`,
		}},
		{"TLS keys with tls = false", withBase(`tls = false`, `certificates = [{ cert = "c.pem", key = "k.pem" }]`),
			[]string{`f.toml:10: listener[0].certificates: only with tls = true`}},
		{"tls not a boolean", withBase(`tls = "yes"`),
			[]string{`f.toml:9: listener[0].tls: expected a boolean (true or false), got string "yes"`}},
		{"tls without certificates", withBase(`tls = true`),
			[]string{`f.toml:6: listener[0].certificates: required with tls = true, e.g. certificates = [{ cert = "cert.pem", key = "key.pem" }]`}},
		{"empty certificates", withBase(`tls = true`, `certificates = []`),
			[]string{`f.toml:10: listener[0].certificates: at least one certificate is required with tls = true`}},
		{"certificate without key", withBase(`tls = true`, `certificates = [{ cert = "c.pem" }]`),
			[]string{`f.toml:10: listener[0].certificates[0].key: required`}},
		{"certificate with empty cert", withBase(`tls = true`, `certificates = [{ cert = "", key = "k.pem" }]`),
			[]string{`f.toml:10: listener[0].certificates[0].cert: must not be empty`}},
		{"second certificate on its own line", withBase(`tls = true`, `certificates = [`, `  { cert = "a.pem", key = "a.key" },`, `  { key = "b.key" },`, `]`),
			[]string{`f.toml:12: listener[0].certificates[1].cert: required`}},
		{"certificates as an array of tables", withBase(`tls = true`, `[[listener.certificates]]`, `cert = "c.pem"`),
			[]string{`f.toml:10: listener[0].certificates[0].key: required`}},
		{"certificate key of the wrong type", withBase(`tls = true`, `certificates = [{ cert = "c.pem", key = "k.pem" }, { cert = "d.pem", key = 1 }]`),
			[]string{`f.toml:10: listener[0].certificates[1].key: expected a string, got integer 1`}},
		{"certificate key typo", withBase(`tls = true`, `certificates = [{ cert = "c.pem", key = "k.pem", oscp = "o.der" }]`),
			[]string{`f.toml:10: listener[0].certificates[0].oscp: unknown key (did you mean "ocsp"?)`}},
		{"certificates not an array", withBase(`tls = true`, `certificates = "c.pem"`),
			[]string{`f.toml:10: listener[0].certificates: expected an array of tables, got string "c.pem"`}},
		{"TLS 1.1", withBase(`tls = true`, `certificates = [{ cert = "c", key = "k" }]`, `tls_min_version = "1.1"`),
			[]string{`f.toml:11: listener[0].tls_min_version: "1.1": must be "1.2" or "1.3" (TLS 1.0 and 1.1 are deprecated, RFC 8996)`}},
		{"unknown TLS version", withBase(`tls = true`, `certificates = [{ cert = "c", key = "k" }]`, `tls_min_version = "TLS1.3"`),
			[]string{`f.toml:11: listener[0].tls_min_version: "TLS1.3": must be "1.2" or "1.3"`}},
		{"TLS version as a number", withBase(`tls = true`, `certificates = [{ cert = "c", key = "k" }]`, `tls_min_version = 1.3`),
			[]string{`f.toml:11: listener[0].tls_min_version: expected a string, got float 1.3`}},
		{"bad client auth", withBase(`tls = true`, `certificates = [{ cert = "c", key = "k" }]`, `tls_client_auth = "optional"`),
			[]string{`f.toml:11: listener[0].tls_client_auth: "optional": must be none, request or require`}},
		{"client auth without CA", withBase(`tls = true`, `certificates = [{ cert = "c", key = "k" }]`, `tls_client_auth = "require"`),
			[]string{`f.toml:6: listener[0].tls_client_ca: required with tls_client_auth = "require": the PEM bundle of the CAs client certificates must chain to`}},
		{"client auth with empty CA", withBase(`tls = true`, `certificates = [{ cert = "c", key = "k" }]`, `tls_client_auth = "request"`, `tls_client_ca = ""`),
			[]string{`f.toml:12: listener[0].tls_client_ca: must not be empty`}},
		{"CA without client auth", withBase(`tls = true`, `certificates = [{ cert = "c", key = "k" }]`, `tls_client_ca = "ca.pem"`),
			[]string{`f.toml:11: listener[0].tls_client_ca: only with tls_client_auth = "request" or "require"`}},
		{"HSTS without max-age", withBase(`tls = true`, `certificates = [{ cert = "c", key = "k" }]`, `hsts = "includeSubDomains"`),
			[]string{`f.toml:11: listener[0].hsts: "includeSubDomains": max-age is required, e.g. "max-age=31536000"`}},
		{"HSTS max-age not a number", withBase(`tls = true`, `certificates = [{ cert = "c", key = "k" }]`, `hsts = "max-age=1y"`),
			[]string{`f.toml:11: listener[0].hsts: "max-age=1y": max-age needs a number of seconds, e.g. "max-age=31536000"`}},
		{"HSTS unknown directive", withBase(`tls = true`, `certificates = [{ cert = "c", key = "k" }]`, `hsts = "max-age=1; secure"`),
			[]string{`f.toml:11: listener[0].hsts: "max-age=1; secure": unknown directive "secure" (want max-age, includeSubDomains or preload)`}},
		{"HSTS repeated directive", withBase(`tls = true`, `certificates = [{ cert = "c", key = "k" }]`, `hsts = "max-age=1; preload; Preload"`),
			[]string{`f.toml:11: listener[0].hsts: "max-age=1; preload; Preload": directive preload repeated`}},
		{"HSTS directive with a value", withBase(`tls = true`, `certificates = [{ cert = "c", key = "k" }]`, `hsts = "max-age=1; includeSubDomains=1"`),
			[]string{`f.toml:11: listener[0].hsts: "max-age=1; includeSubDomains=1": includesubdomains takes no value`}},
		{"HSTS with a line break", withBase(`tls = true`, `certificates = [{ cert = "c", key = "k" }]`, `hsts = "max-age=1;\r\nincludeSubDomains"`),
			[]string{`f.toml:11: listener[0].hsts: "max-age=1;\r\nincludeSubDomains": must not contain control characters`}},
		{"self-signed with two certificates", withBase(`tls = true`, `tls_self_signed = true`, `certificates = [{ cert = "a", key = "a" }, { cert = "b", key = "b" }]`),
			[]string{`f.toml:10: listener[0].tls_self_signed: needs exactly one certificate (the one it generates), got 2`}},
		{"self-signed with OCSP", withBase(`tls = true`, `tls_self_signed = true`, `certificates = [{ cert = "a", key = "a", ocsp = "a.der" }]`),
			[]string{`f.toml:11: listener[0].certificates[0].ocsp: not with tls_self_signed (a self-signed certificate has no OCSP responder)`}},
		{"self-signed without certificates", withBase(`tls = true`, `tls_self_signed = true`),
			[]string{`f.toml:6: listener[0].certificates: required with tls = true, e.g. certificates = [{ cert = "cert.pem", key = "key.pem" }]`}},
		{"TLS listener with every key", tlsDoc, nil},
		{"TLS listener, defaults written out", withBase(
			`tls = true`, `tls_min_version = "1.2"`, `tls_client_auth = "none"`, `tls_client_ca = ""`, `hsts = ""`, `tls_self_signed = false`,
			`certificates = [{ cert = "c", key = "k", ocsp = "" }]`), nil},
		{"self-signed", withBase(`tls = true`, `tls_self_signed = true`, `certificates = [{ cert = "run/c.pem", key = "run/k.pem" }]`), nil},

		// PROXY protocol. The base listener's keys start at line 9.
		{"PROXY protocol, both modes", withBase(`proxy_protocol = "required"`, `proxy_protocol_from = ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "0.0.0.0/0"]`,
			`[[listener]]`, `name = "b"`, `address = ":8443"`, `tls = true`, `certificates = [{ cert = "c", key = "k" }]`,
			`proxy_protocol = "optional"`, `proxy_protocol_from = ["::1"]`), nil},
		{"PROXY protocol off, written out", withBase(`proxy_protocol = "off"`), nil},
		{"PROXY protocol mode", withBase(`proxy_protocol = "on"`, `proxy_protocol_from = ["10.0.0.0/8"]`),
			[]string{`f.toml:9: listener[0].proxy_protocol: "on": must be off, optional or required`}},
		{"PROXY protocol mode as a boolean", withBase(`proxy_protocol = true`),
			[]string{`f.toml:9: listener[0].proxy_protocol: expected a string, got boolean true`}},
		{"PROXY protocol without networks", withBase(`proxy_protocol = "required"`),
			[]string{`f.toml:6: listener[0].proxy_protocol_from: required with proxy_protocol = "required": the networks of the load balancers whose headers are believed, e.g. ["10.0.0.0/8"]`}},
		{"PROXY protocol with an empty list", withBase(`proxy_protocol = "optional"`, `proxy_protocol_from = []`),
			[]string{`f.toml:10: listener[0].proxy_protocol_from: must list at least one network`}},
		{"PROXY protocol networks without the mode", withBase(`proxy_protocol_from = ["10.0.0.0/8"]`),
			[]string{`f.toml:9: listener[0].proxy_protocol_from: only with proxy_protocol = "optional" or "required"`}},
		{"PROXY protocol bad networks", withBase(`proxy_protocol = "required"`,
			`proxy_protocol_from = ["10.0.0.1/8", "10.0.0.0/33", "lb.example.test", "::ffff:10.0.0.0/104", "fe80::1%eth0", "::ffff:0:0/96", ""]`),
			[]string{
				`f.toml:10: listener[0].proxy_protocol_from[0]: "10.0.0.1/8": host bits set; did you mean "10.0.0.0/8"?`,
				`f.toml:10: listener[0].proxy_protocol_from[1]: "10.0.0.0/33": want a network in CIDR notation, e.g. "10.0.0.0/8", or an address`,
				`f.toml:10: listener[0].proxy_protocol_from[2]: "lb.example.test": want a network in CIDR notation, e.g. "10.0.0.0/8", or an address`,
				`f.toml:10: listener[0].proxy_protocol_from[3]: "::ffff:10.0.0.0/104": IPv4-mapped IPv6 network; write it as "10.0.0.0/8"`,
				`f.toml:10: listener[0].proxy_protocol_from[4]: "fe80::1%eth0": want a network in CIDR notation, e.g. "10.0.0.0/8", or an address`,
				`f.toml:10: listener[0].proxy_protocol_from[5]: "::ffff:0:0/96": IPv4-mapped IPv6 network; write it as "0.0.0.0/0"`,
				`f.toml:10: listener[0].proxy_protocol_from[6]: "": want a network in CIDR notation, e.g. "10.0.0.0/8", or an address`,
			}},
		{"PROXY protocol networks not strings", withBase(`proxy_protocol = "required"`, `proxy_protocol_from = [10]`),
			[]string{`f.toml:10: listener[0].proxy_protocol_from[0]: expected a string, got integer 10`}},

		// The [tls] section.
		{"tls section ranges", withBase(
			`[tls]`,
			`ticket_rotation = "30s"`,
			`ticket_lifetime = "0s"`,
			`handshake_timeout = "0s"`,
			`max_handshakes = 0`,
			`handshake_queue = 0`,
			`max_plaintext_buffer = 2048`,
		), []string{
			`f.toml:10: tls.ticket_rotation: must be at least 1m0s, got 30s`,
			`f.toml:11: tls.ticket_lifetime: must be at least 1m0s, got 0s`,
			`f.toml:12: tls.handshake_timeout: must be at least 1ms, got 0s`,
			`f.toml:13: tls.max_handshakes: must be between 1 and 65536, got 0`,
			`f.toml:14: tls.handshake_queue: must be between 1 and 1048576, got 0`,
			`f.toml:15: tls.max_plaintext_buffer: must be between 4096 and 1048576, got 2048`,
		}},
		{"plaintext buffer too large", withBase(`[tls]`, `max_plaintext_buffer = 2097152`),
			[]string{`f.toml:10: tls.max_plaintext_buffer: must be between 4096 and 1048576, got 2097152`}},
		{"tls section types", withBase(`[tls]`, `session_tickets = "yes"`, `ticket_key_file = 1`, `ticket_rotation = 60`),
			[]string{
				`f.toml:10: tls.session_tickets: expected a boolean (true or false), got string "yes"`,
				`f.toml:11: tls.ticket_key_file: expected a string, got integer 1`,
				`f.toml:12: tls.ticket_rotation: expected a duration string, got integer 60`,
			}},
		{"unknown record layer", withBase(`[tls]`, `record_layer = "openssl"`),
			[]string{`f.toml:10: tls.record_layer: "openssl": must be frontdoor or crypto/tls`}},
		{"tls section typo", withBase(`[tls]`, `ticket_keyfile = "k"`),
			[]string{`f.toml:10: tls.ticket_keyfile: unknown key (did you mean "ticket_key_file"?)`}},
		{"tls section without TLS listeners is fine", withBase(`[tls]`, `max_handshakes = 8`), nil},

		// The [runtime] section.
		{"runtime ranges", withBase(`[runtime]`, `memory_trim_interval = "500ms"`, `memory_trim_min_bytes = 1000`),
			[]string{
				`f.toml:10: runtime.memory_trim_interval: must be at least 1s, got 500ms`,
				`f.toml:11: runtime.memory_trim_min_bytes: must be between 1048576 and 1099511627776, got 1000`,
			}},
		{"runtime trimmer off", withBase(`[runtime]`, `memory_trim_interval = "0s"`), nil},
		{"runtime trimmer interval too long", withBase(`[runtime]`, `memory_trim_interval = "25h"`),
			[]string{`f.toml:10: runtime.memory_trim_interval: must be at most 24h0m0s, got 25h0m0s`}},

		// Several problems are all reported, in line order.
		{"all at once", doc(
			`directory = "d"`,
			`[[listener]]`,
			`name = "a"`,
			`address = ":99999"`,
			`protocols = ["nope"]`,
			`[backend]`,
			`conns_per_loop = 100`,
			`[[protocol]]`,
			`name = "owa"`,
			`path_prefix = "/owa/"`,
			`backend_port = 80`,
		), []string{
			`f.toml:4: listener[0].address: ":99999": port out of range`,
			`f.toml:5: listener[0].protocols[0]: unknown protocol "nope" (defined: owa)`,
			`f.toml:7: backend.conns_per_loop: must be between 1 and 64, got 100`,
			`f.toml:10: protocol[0].path_prefix: "/owa/": must not end with "/" (prefixes match on segment boundaries: "/owa" matches "/owa/x")`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.toml", tc.data)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unexpected error:\n%v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error; want:\n%s", strings.Join(tc.want, "\n"))
			}
			if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got:\n%s\nwant:\n%s", err, strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestErrorsAs(t *testing.T) {
	_, err := Parse("x/frontdoor.toml", withBase(`[backend]`, `conns_per_loop = 0`))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("errors.As(%v, *Error) = false", err)
	}
	if e.File != "x/frontdoor.toml" || e.Line != 10 || e.Key != "backend.conns_per_loop" {
		t.Errorf("got %+v", e)
	}
}

func TestAdminAddress(t *testing.T) {
	base := "directory = \"d.toml\"\n[[listener]]\nname = \"h\"\naddress = \"127.0.0.1:8080\"\n[[protocol]]\nname = \"owa\"\npath_prefix = \"/owa\"\nbackend_port = 1\n"
	c, err := Parse("f.toml", []byte(base))
	if err != nil || c.Admin.Address != "" {
		t.Fatalf("admin must default to off: %q %v", c.Admin.Address, err)
	}
	_, err = Parse("f.toml", []byte(base+"[admin]\naddress = \"127.0.0.1:99999\"\n"))
	if err == nil || !strings.Contains(err.Error(), "f.toml:10: admin.address") {
		t.Fatalf("bad admin address: %v", err)
	}
}

func TestParseProxySource(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.0/8": "10.0.0.0/8", "192.0.2.7": "192.0.2.7/32", "2001:db8::/32": "2001:db8::/32", "::1": "::1/128",
		"0.0.0.0/0": "0.0.0.0/0", "::/0": "::/0",
	} {
		p, err := ParseProxySource(in)
		if err != nil || p.String() != want {
			t.Errorf("ParseProxySource(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
}

func TestAccessLogKeys(t *testing.T) {
	base := "directory = \"d.toml\"\n[[listener]]\nname = \"h\"\naddress = \"127.0.0.1:8080\"\n[[protocol]]\nname = \"owa\"\npath_prefix = \"/owa\"\nbackend_port = 1\n"
	c, err := Parse("f.toml", []byte(base))
	if err != nil || c.AccessLog.Path != "" || c.AccessLog.BufferBytes != 1<<20 || c.AccessLog.Query {
		t.Fatalf("access log must default to off with a 1 MiB buffer: %+v %v", c.AccessLog, err)
	}
	c, err = Parse("f.toml", []byte(base+"[access_log]\npath = \"-\"\nbuffer_bytes = 65536\nquery = true\n"))
	if err != nil || c.AccessLog.Path != "-" || c.AccessLog.BufferBytes != 65536 || !c.AccessLog.Query {
		t.Fatalf("set: %+v %v", c.AccessLog, err)
	}
	for _, tc := range []struct{ toml, want string }{
		{"[access_log]\npath = \"a.log\"\nbuffer_bytes = 4096\n", "f.toml:11: access_log.buffer_bytes: must be between 65536 and 1073741824, got 4096"},
		{"[access_log]\nquery = true\n", "f.toml:10: access_log.query: only with access_log.path (the log is off)"},
		{"[access_log]\npath = 3\n", "f.toml:10: access_log.path"},
	} {
		_, err := Parse("f.toml", []byte(base+tc.toml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.toml, err, tc.want)
		}
	}
}

func TestNegotiateConfig(t *testing.T) {
	negotiate := func(lines ...string) []byte {
		return doc(append([]string{`directory = "dir.toml"`, `[[protocol]]`, `name = "owa"`, `path_prefix = "/owa"`,
			`backend_port = 443`, `auth = ["negotiate", "basic"]`}, lines...)...)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string // "" for valid
	}{
		{"global keytab", negotiate(`[auth]`, `keytab = "http.keytab"`, `[[listener]]`, `name = "http"`, `address = ":8080"`), ""},
		{"listener keytab", negotiate(`[[listener]]`, `name = "http"`, `address = ":8080"`, `keytab = "http.keytab"`), ""},
		{"no keytab", negotiate(`[[listener]]`, `name = "http"`, `address = ":8080"`),
			`f.toml:7: listener[0]: a protocol accepts negotiate: set [auth] keytab or this listener's keytab`},
		{"keytab on a mail listener", negotiate(`[auth]`, `keytab = "http.keytab"`, `[[listener]]`, `name = "http"`, `address = ":8080"`,
			`[[listener]]`, `name = "imap"`, `address = ":1143"`, `mail = "imap"`, `allow_plaintext_login = true`, `keytab = "x.keytab"`),
			`f.toml:17: listener[1].keytab: only on HTTP listeners (Negotiate is HTTP authentication)`},
		{"bad realm and skew", negotiate(`[auth]`, `keytab = "k"`, `kerberos_realms = ["A@B"]`, `kerberos_max_skew = "0s"`,
			`[[listener]]`, `name = "http"`, `address = ":8080"`),
			`f.toml:10: auth.kerberos_max_skew: `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.toml", tc.data)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
