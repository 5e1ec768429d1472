package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
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
	if len(c.Listeners) != 1 || c.Listeners[0].Name != "http" || c.Listeners[0].Address != "127.0.0.1:8080" || len(c.Listeners[0].Protocols) != 0 {
		t.Errorf("Listeners = %+v, want one \"http\" on 127.0.0.1:8080 serving all protocols", c.Listeners)
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
		},
		Timeouts: Timeouts{HeaderRead: s(10 * time.Second), BodyRead: s(30 * time.Second), Idle: s(75 * time.Second), Write: s(30 * time.Second), Drain: s(15 * time.Second)},
		Backend: Backend{
			ConnsPerLoop: 2, MaxPipeline: 16, MaxQueue: 1024,
			ConnectTimeout: s(3 * time.Second), ResponseTimeout: s(60 * time.Second), QueueTimeout: s(10 * time.Second),
			ReconnectMin: s(100 * time.Millisecond), ReconnectMax: s(5 * time.Second), RetryAfter: s(2 * time.Second),
		},
		Log: Log{Level: "info", Format: "text"},
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
	for _, section := range []string{"Engine", "Limits", "Timeouts", "Backend", "Log"} {
		a := reflect.ValueOf(*ex).FieldByName(section).Interface()
		b := reflect.ValueOf(*min).FieldByName(section).Interface()
		if a != b {
			t.Errorf("examples/frontdoor.toml [%s] = %+v, but the defaults are %+v", strings.ToLower(section), a, b)
		}
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
			[]string{`f.toml:9: listener[0].colour: unknown key (valid keys: name, address, protocols)`}},
		{"unknown table", withBase(`[limitz]`, `x = 1`),
			[]string{`f.toml:9: limitz: unknown table (did you mean "limits"?)`}},
		{"unknown dotted key", doc(`limits.nope = 1`),
			[]string{`f.toml:1: limits.nope: unknown key (valid keys: max_connections, max_header_bytes, max_body_bytes, max_pipeline_bytes, client_buffer_bytes, max_response_buffer_bytes, max_upload_buffer_bytes)`}},
		{"Path is not a key", doc(append([]string{`Path = "x"`}, base...)...),
			[]string{`f.toml:1: Path: unknown key (valid keys: gateway_id, directory, engine, limits, timeouts, backend, log, admin, listener, protocol)`}},

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
