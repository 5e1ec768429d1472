package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"frontdoor/directory"
	"frontdoor/gateway"
	"frontdoor/gateway/config"
	"frontdoor/mailboxd"
	"frontdoor/tlsterm"
)

// run calls Main and returns its exit code and outputs.
func run(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = Main(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// stub replaces *p for the duration of the test.
func stub[T any](t *testing.T, p *T, v T) {
	old := *p
	*p = v
	t.Cleanup(func() { *p = old })
}

// failIfServing makes the test fail if a command reaches the gateway or
// mailboxd, for cases that must stop before.
func failIfServing(t *testing.T) {
	stub(t, &runGateway, func(context.Context, *config.Config, *directory.Directory, *slog.Logger, gateway.RunOptions) error {
		t.Error("gateway.Run called")
		return nil
	})
	stub(t, &runMailboxd, func(context.Context, mailboxd.Options, *slog.Logger) error {
		t.Error("mailboxd.Run called")
		return nil
	})
}

func TestVersion(t *testing.T) {
	stub(t, &Version, "1.2.3")
	code, out, errOut := run("version")
	want := "frontdoor 1.2.3 (" + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	if code != 0 || out != want || errOut != "" {
		t.Errorf("version: code %d, stdout %q, stderr %q; want 0, %q, \"\"", code, out, errOut, want)
	}
}

func TestHelp(t *testing.T) {
	failIfServing(t)
	for _, tc := range []struct {
		args []string
		want []string // in stdout
	}{
		{[]string{"--help"}, []string{"run", "check-config", "mailboxd", "bench", "cert selfsigned", "directory check", "directory hash-password", "directory set-active", "tls ticket-keys", "identity keygen", "identity verify", "version"}},
		{[]string{"-h"}, []string{"run", "check-config", "mailboxd", "bench", "cert selfsigned", "directory check", "directory hash-password", "directory set-active", "tls ticket-keys", "identity keygen", "identity verify", "version"}},
		{[]string{"help"}, []string{"run", "check-config", "mailboxd", "bench", "cert selfsigned", "directory check", "directory hash-password", "directory set-active", "tls ticket-keys", "identity keygen", "identity verify", "version"}},
		{[]string{"run", "--help"}, []string{"frontdoor run", "-config", "-log-level"}},
		{[]string{"run", "-h"}, []string{"frontdoor run", "-config", "-log-level"}},
		{[]string{"check-config", "--help"}, []string{"frontdoor check-config FILE"}},
		{[]string{"mailboxd", "--help"}, []string{"frontdoor mailboxd", "-listen", "-name", "-identity-keys", "-identity-header", "X-Frontdoor-Identity"}},
		{[]string{"version", "--help"}, []string{"frontdoor version"}},
		{[]string{"help", "run"}, []string{"frontdoor run", "-config", "-log-level"}},
		{[]string{"cert", "--help"}, []string{"frontdoor cert COMMAND", "selfsigned"}},
		{[]string{"help", "cert"}, []string{"frontdoor cert COMMAND", "selfsigned"}},
		{[]string{"cert", "selfsigned", "--help"}, []string{"frontdoor cert selfsigned --host NAME", "-host", "-out", "-valid-for", "720h", "development and tests only"}},
		{[]string{"help", "cert", "selfsigned"}, []string{"frontdoor cert selfsigned --host NAME", "-host", "-out", "-valid-for"}},
		{[]string{"tls", "-h"}, []string{"frontdoor tls COMMAND", "ticket-keys"}},
		{[]string{"directory", "--help"}, []string{"frontdoor directory COMMAND", "check", "hash-password", "set-active"}},
		{[]string{"help", "directory", "check"}, []string{"frontdoor directory check FILE", "FILE:LINE: KEY: message"}},
		{[]string{"directory", "hash-password", "--help"}, []string{"frontdoor directory hash-password", "argon2id", "m=19456 KiB, t=2, p=1", "empty password is refused"}},
		{[]string{"directory", "set-active", "--help"}, []string{"frontdoor directory set-active --file FILE --database NAME --server NAME",
			"-file", "-database", "-server", "by rename", "comments and layout"}},
		{[]string{"tls", "ticket-keys", "--help"}, []string{"frontdoor tls ticket-keys --out FILE", "-out", "-keep", "24h",
			"every member of an", "same file", "ticket_rotation", "systemd timer"}},
		{[]string{"identity", "--help"}, []string{"frontdoor identity COMMAND", "keygen", "verify"}},
		{[]string{"help", "identity", "keygen"}, []string{"frontdoor identity keygen --out FILE", "-alg", "ed25519", "ml-dsa-44",
			"-kid", "-public", "-keep", "(default 2)", "mode 0600", "docs/identity.md"}},
		{[]string{"identity", "verify", "-h"}, []string{"frontdoor identity verify --keys FILE", "-keys", "-audience",
			"frontdoor-backend", "-leeway", "1m0s", "standard input"}},
	} {
		code, out, errOut := run(tc.args...)
		if code != 0 || errOut != "" {
			t.Errorf("%q: code %d, stderr %q; want 0 and nothing on stderr", tc.args, code, errOut)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%q: stdout does not mention %q:\n%s", tc.args, w, out)
			}
		}
	}
}

func TestBadUsage(t *testing.T) {
	failIfServing(t)
	for _, tc := range []struct {
		args []string
		want string // in stderr
	}{
		{nil, "Usage:"},
		{[]string{"serve"}, `unknown command "serve"`},
		{[]string{"--verbose"}, `unknown command "--verbose"`},
		{[]string{"run", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"run", "extra"}, `unexpected argument "extra"`},
		{[]string{"run", "--log-level", "loud"}, `unknown log level "loud"`},
		{[]string{"run", "--config"}, "flag needs an argument: -config"},
		{[]string{"check-config"}, "want exactly one FILE, got 0 arguments"},
		{[]string{"check-config", "a.toml", "b.toml"}, "want exactly one FILE, got 2 arguments"},
		{[]string{"mailboxd", "--name", "mbx1"}, "--listen is required"},
		{[]string{"mailboxd", "--listen", ":18081"}, "--name is required"},
		{[]string{"mailboxd", "--listen", "18081", "--name", "mbx1"}, `--listen "18081": want host:port`},
		{[]string{"version", "now"}, `unexpected argument "now"`},
		{[]string{"help", "nope"}, `unknown command "nope"`},
		{[]string{"help", "run", "x"}, `want at most one COMMAND`},
		{[]string{"help", "cert", "nope"}, `frontdoor cert: unknown command "nope"`},
		{[]string{"cert"}, "Usage:\n  frontdoor cert COMMAND"},
		{[]string{"cert", "nope"}, `frontdoor cert: unknown command "nope"`},
		{[]string{"tls"}, "Usage:\n  frontdoor tls COMMAND"},
		{[]string{"tls", "ticket-key"}, `frontdoor tls: unknown command "ticket-key"`},
		{[]string{"cert", "selfsigned", "--out", "d"}, "at least one --host is required"},
		{[]string{"cert", "selfsigned", "--host", "gw.example.test"}, "--out is required"},
		{[]string{"cert", "selfsigned", "--host", "gw example", "--out", "d"}, `invalid value "gw example" for flag -host: "gw example" is neither an IP address nor a host name`},
		{[]string{"cert", "selfsigned", "--host", "*.test", "--out", "d"}, `"*.test": a wildcard needs at least two labels after "*."`},
		{[]string{"cert", "selfsigned", "--host", "a.test", "--out", "d", "--valid-for", "0s"}, "--valid-for 0s: must be positive"},
		{[]string{"cert", "selfsigned", "--host", "a.test", "--out", "d", "--valid-for", "30d"}, `invalid value "30d" for flag -valid-for`},
		{[]string{"cert", "selfsigned", "--host", "a.test", "--out", "d", "extra"}, `unexpected argument "extra"`},
		{[]string{"tls", "ticket-keys"}, "--out is required"},
		{[]string{"tls", "ticket-keys", "--out", "k", "--keep", "-1h"}, "--keep -1h0m0s: must not be negative"},
		{[]string{"tls", "ticket-keys", "--out", "k", "now"}, `unexpected argument "now"`},
		{[]string{"help", "directory", "nope"}, `frontdoor directory: unknown command "nope"`},
		{[]string{"help", "version", "x"}, `want at most one COMMAND (and a SUBCOMMAND of cert, directory, state, tls, identity)`},
		{[]string{"directory"}, "Usage:\n  frontdoor directory COMMAND"},
		{[]string{"directory", "check"}, "want exactly one FILE, got 0 arguments"},
		{[]string{"directory", "hash-password", "pw"}, `unexpected argument "pw"`},
		{[]string{"directory", "set-active", "--database", "D", "--server", "m"}, "--file is required"},
		{[]string{"directory", "set-active", "--file", "f", "--server", "m"}, "--database is required"},
		{[]string{"directory", "set-active", "--file", "f", "--database", "D"}, "--server is required"},
		{[]string{"directory", "set-active", "--file", "f", "--database", "D", "--server", "m", "now"}, `unexpected argument "now"`},
		{[]string{"identity"}, "Usage:\n  frontdoor identity COMMAND"},
		{[]string{"identity", "sign"}, `frontdoor identity: unknown command "sign"`},
		{[]string{"identity", "keygen"}, "--out is required"},
		{[]string{"identity", "keygen", "--out", "k", "--alg", "rsa"}, `--alg "rsa": want ed25519 or ml-dsa-44`},
		{[]string{"identity", "keygen", "--out", "k", "--keep", "0"}, "--keep 0: must be at least 1"},
		{[]string{"identity", "keygen", "--out", "k", "--kid", "two words"}, `--kid: key id "two words": only printable ASCII`},
		{[]string{"identity", "keygen", "--out", "k", "--public", "./k"}, "--public must name another file than --out"},
		{[]string{"identity", "keygen", "--out", "k", "x"}, `unexpected argument "x"`},
		{[]string{"identity", "verify"}, "--keys is required"},
		{[]string{"identity", "verify", "--keys", "k", "--leeway", "-1s"}, "--leeway -1s: must not be negative"},
		{[]string{"identity", "verify", "--keys", "nope.jwks"}, "identity: public key file nope.jwks: open nope.jwks: no such file or directory"},
		{[]string{"mailboxd", "--listen", ":18081", "--name", "mbx1", "--identity-header", "X-Id"}, "--identity-header needs --identity-keys"},
		{[]string{"upgrade"}, "want exactly one of --pid-file and --pid"},
		{[]string{"upgrade", "--pid", "1", "--pid-file", "f"}, "want exactly one of --pid-file and --pid"},
		{[]string{"upgrade", "--pid", "-3"}, "--pid -3: not a process id"},
		{[]string{"upgrade", "--pid", "1", "--timeout", "0s"}, "--timeout must be positive"},
		{[]string{"upgrade", "--pid", "1", "now"}, `unexpected argument "now"`},
	} {
		code, out, errOut := run(tc.args...)
		if code != 2 || out != "" {
			t.Errorf("%q: code %d, stdout %q; want 2 and nothing on stdout", tc.args, code, out)
		}
		if !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: stderr does not contain %q:\n%s", tc.args, tc.want, errOut)
		}
	}
}

func TestCheckConfigExample(t *testing.T) {
	path := filepath.Join("..", "examples", "frontdoor.toml")
	code, out, errOut := run("check-config", path)
	want := path + ": ok (2 listeners, 8 protocols, 2 servers, 4 users)\n"
	if code != 0 || out != want || errOut != "" {
		t.Errorf("code %d, stdout %q, stderr %q; want 0, %q, \"\"", code, out, errOut, want)
	}
}

// writeFiles writes a configuration and a directory file into a temporary
// directory and returns the configuration's path.
func writeFiles(t *testing.T, cfg, dir string) string {
	t.Helper()
	d := t.TempDir()
	if err := os.WriteFile(filepath.Join(d, "directory.toml"), []byte(dir), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(d, "frontdoor.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const (
	goodConfig = `directory = "directory.toml"
[[listener]]
name = "http"
address = "127.0.0.1:18080"
[[protocol]]
name = "owa"
path_prefix = "/owa"
backend_port = 18081
`
	goodDirectory = `[[site]]
name = "a"
[[server]]
name = "m"
address = "127.0.0.1"
site = "a"
`
)

func TestCheckConfigErrors(t *testing.T) {
	failIfServing(t)
	for _, tc := range []struct {
		name, cfg, dir string
		want           string // stderr, after the temp directory
	}{
		{"config typo", strings.Replace(goodConfig, "backend_port", "backend_prot", 1), goodDirectory,
			`frontdoor.toml:8: protocol[0].backend_prot: unknown key (did you mean "backend_port"?)`},
		{"config bad port", strings.Replace(goodConfig, ":18080", ":99999", 1), goodDirectory,
			`frontdoor.toml:4: listener[0].address: "127.0.0.1:99999": port out of range`},
		{"directory problem", goodConfig, goodDirectory + "[[user]]\nlogin = \"bob\"\naddress = \"bob@ex.test\"\ndatabase = \"D1\"\n",
			`directory.toml:10: user[0].database: unknown database "D1" (none defined)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFiles(t, tc.cfg, tc.dir)
			code, out, errOut := run("check-config", path)
			want := filepath.Dir(path) + string(filepath.Separator) + tc.want + "\n"
			if code != 2 || out != "" || errOut != want {
				t.Errorf("code %d, stdout %q, stderr %q; want 2, \"\", %q", code, out, errOut, want)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope.toml")
		code, _, errOut := run("check-config", path)
		if code != 2 || !strings.Contains(errOut, path) {
			t.Errorf("code %d, stderr %q; want 2 and the path", code, errOut)
		}
	})
}

func TestRunHandsOver(t *testing.T) {
	var got struct {
		cfg *config.Config
		dir *directory.Directory
	}
	stub(t, &runGateway, func(ctx context.Context, cfg *config.Config, dir *directory.Directory, log *slog.Logger, _ gateway.RunOptions) error {
		got.cfg, got.dir = cfg, dir
		log.Debug("debug line")
		return nil
	})

	// Without --config: the embedded example pair.
	code, _, errOut := run("run", "--log-level", "debug")
	if code != 0 {
		t.Fatalf("run: code %d, stderr:\n%s", code, errOut)
	}
	if got.cfg.Path != config.EmbeddedPath || got.dir.Server("mbx2") == nil || len(got.dir.Users) != 4 {
		t.Errorf("run without --config: got config %q and %d users, want the embedded example", got.cfg.Path, len(got.dir.Users))
	}
	if got.cfg.Log.Level != "debug" || !strings.Contains(errOut, "debug line") {
		t.Errorf("--log-level debug: level %q, log:\n%s", got.cfg.Log.Level, errOut)
	}

	// With --config: that file and the directory next to it, JSON logs.
	path := writeFiles(t, goodConfig+"[log]\nformat = \"json\"\n", goodDirectory)
	code, _, errOut = run("run", "--config", path)
	if code != 0 {
		t.Fatalf("run --config: code %d, stderr:\n%s", code, errOut)
	}
	if got.cfg.Path != path || got.dir.Server("m") == nil {
		t.Errorf("run --config: got config %q, want %q and its directory", got.cfg.Path, path)
	}
	if !strings.HasPrefix(errOut, `{"time":`) || strings.Contains(errOut, "debug line") {
		t.Errorf("want JSON logs at info level, got:\n%s", errOut)
	}
}

func TestRunExitCodes(t *testing.T) {
	stub(t, &runGateway, func(context.Context, *config.Config, *directory.Directory, *slog.Logger, gateway.RunOptions) error {
		return errors.New("listen tcp 127.0.0.1:8080: bind: address already in use")
	})
	code, _, errOut := run("run")
	if code != 1 || !strings.Contains(errOut, "address already in use") {
		t.Errorf("runtime failure: code %d, stderr:\n%s\nwant 1 and the error", code, errOut)
	}

	failIfServing(t)
	path := writeFiles(t, goodConfig, "[[server]]\nname = 1\n")
	code, _, errOut = run("run", "--config", path)
	if want := "directory.toml:2: server[0].name: expected a string, got integer 1\n"; code != 2 || !strings.HasSuffix(errOut, want) {
		t.Errorf("bad directory: code %d, stderr %q; want 2 and %q", code, errOut, want)
	}
}

func TestMailboxdHandsOver(t *testing.T) {
	var got mailboxd.Options
	stub(t, &runMailboxd, func(ctx context.Context, opts mailboxd.Options, log *slog.Logger) error {
		got = opts
		return nil
	})
	if code, _, errOut := run("mailboxd", "--listen", "127.0.0.1:18081", "--name", "mbx1"); code != 0 {
		t.Fatalf("code %d, stderr:\n%s", code, errOut)
	}
	if got != (mailboxd.Options{Listen: "127.0.0.1:18081", Name: "mbx1"}) {
		t.Errorf("got %+v", got)
	}
	if code, _, errOut := run("mailboxd", "--listen", "127.0.0.1:18081", "--name", "mbx1",
		"--identity-keys", "/etc/mbx/identity.pub.jwks", "--identity-header", "X-Id"); code != 0 {
		t.Fatalf("code %d, stderr:\n%s", code, errOut)
	}
	if want := (mailboxd.Options{Listen: "127.0.0.1:18081", Name: "mbx1", IdentityKeys: "/etc/mbx/identity.pub.jwks",
		IdentityHeader: "X-Id"}); got != want {
		t.Errorf("with identity flags: got %+v, want %+v", got, want)
	}

	stub(t, &runMailboxd, func(context.Context, mailboxd.Options, *slog.Logger) error { return errors.New("boom") })
	if code, _, errOut := run("mailboxd", "--listen", "127.0.0.1:18081", "--name", "mbx1"); code != 1 || !strings.Contains(errOut, "boom") {
		t.Errorf("runtime failure: code %d, stderr:\n%s\nwant 1 and the error", code, errOut)
	}
}

func TestBenchHandsOver(t *testing.T) {
	var got []string
	stub(t, &runBench, func(args []string, stdout, stderr io.Writer) int {
		got = args
		io.WriteString(stdout, "bench output")
		return 3
	})
	code, out, _ := run("bench", "--help", "x")
	if code != 3 || out != "bench output" || strings.Join(got, " ") != "--help x" {
		t.Errorf("code %d, stdout %q, args %q; want bench's code, output and the args verbatim", code, out, got)
	}
}

func TestCertSelfSigned(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "tls")
	code, out, errOut := run("cert", "selfsigned", "--host", "localhost", "--host", "127.0.0.1", "--host", "::1",
		"--host", "*.gw.example.test", "--out", dir, "--valid-for", "48h")
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if want := "certificate: " + certPath + "\nprivate key: " + keyPath + "\n"; code != 0 || out != want || errOut != "" {
		t.Fatalf("code %d, stdout %q, stderr %q; want 0, %q, \"\"", code, out, errOut, want)
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatalf("the written pair does not load: %v", err)
	}
	leaf := pair.Leaf
	if !slices.Equal(leaf.DNSNames, []string{"localhost", "*.gw.example.test"}) {
		t.Errorf("DNS names %q, want localhost and *.gw.example.test", leaf.DNSNames)
	}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) || !leaf.IPAddresses[1].Equal(net.ParseIP("::1")) {
		t.Errorf("IP addresses %v, want 127.0.0.1 and ::1", leaf.IPAddresses)
	}
	if leaf.Subject.CommonName != "localhost" {
		t.Errorf("common name %q, want the first host", leaf.Subject.CommonName)
	}
	if left := time.Until(leaf.NotAfter); left < 47*time.Hour || left > 48*time.Hour {
		t.Errorf("NotAfter %s: %s from now, want 48h", leaf.NotAfter, left)
	}
	if err := leaf.VerifyHostname("x.gw.example.test"); err != nil {
		t.Errorf("wildcard: %v", err)
	}
	for path, want := range map[string]os.FileMode{keyPath: 0o600, dir: 0o700 | os.ModeDir} {
		if fi, err := os.Stat(path); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", path, fi.Mode(), err, want)
		}
	}

	// A DIR that cannot be created is a runtime failure.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = run("cert", "selfsigned", "--host", "localhost", "--out", filepath.Join(file, "tls"))
	if code != 1 || out != "" || !strings.Contains(errOut, file) {
		t.Errorf("unwritable DIR: code %d, stdout %q, stderr %q; want 1 and the path", code, out, errOut)
	}
}

func TestTLSTicketKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "tickets")
	wantOut := func(n int) string {
		if n == 1 {
			return path + ": 1 key, newest created "
		}
		return fmt.Sprintf("%s: %d keys, newest created ", path, n)
	}
	keys := func() [][32]byte {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		_, k, err := tlsterm.ParseTicketKeys(data)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}

	// Create.
	code, out, errOut := run("tls", "ticket-keys", "--out", path)
	if code != 0 || !strings.HasPrefix(out, wantOut(1)) || errOut != "" {
		t.Fatalf("create: code %d, stdout %q, stderr %q; want 0 and %q...", code, out, errOut, wantOut(1))
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode() != 0o600 {
		t.Errorf("mode %v (%v), want 0600", fi.Mode(), err)
	}
	first := keys()

	// Rotate: the new key goes first, the old one stays (it is younger
	// than --keep).
	code, out, errOut = run("tls", "ticket-keys", "--out", path, "--keep", "1h")
	if code != 0 || !strings.HasPrefix(out, wantOut(2)) || errOut != "" {
		t.Fatalf("rotate: code %d, stdout %q, stderr %q; want 0 and %q...", code, out, errOut, wantOut(2))
	}
	if got := keys(); len(got) != 2 || got[1] != first[0] || got[0] == first[0] {
		t.Errorf("after rotation: want a new key followed by the old one")
	}

	// --keep 0 keeps only the new key.
	code, out, _ = run("tls", "ticket-keys", "--out", path, "--keep", "0")
	if code != 0 || !strings.HasPrefix(out, wantOut(1)) {
		t.Errorf("--keep 0: code %d, stdout %q; want 0 and %q...", code, out, wantOut(1))
	}

	// A file that is not a key file is left alone: a runtime failure.
	bad := filepath.Join(t.TempDir(), "tickets")
	if err := os.WriteFile(bad, []byte("not keys\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = run("tls", "ticket-keys", "--out", bad)
	if data, _ := os.ReadFile(bad); code != 1 || out != "" || !strings.Contains(errOut, bad) || string(data) != "not keys\n" {
		t.Errorf("bad file: code %d, stdout %q, stderr %q, file %q; want 1, the path, the file untouched", code, out, errOut, data)
	}
}

// tlsFiles writes a configuration with a TLS listener (from line 9) and the
// directory, and returns the configuration's path; certificates are the
// caller's, relative to its directory.
func tlsFiles(t *testing.T, listener string) (path, dir string) {
	t.Helper()
	path = writeFiles(t, goodConfig+"[[listener]]\nname = \"https\"\naddress = \"127.0.0.1:18443\"\ntls = true\n"+listener, goodDirectory)
	return path, filepath.Dir(path)
}

func selfSigned(t *testing.T, dir string, validFor time.Duration) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tlsterm.WriteSelfSigned(dir, []string{"gw.example.test"}, validFor); err != nil {
		t.Fatal(err)
	}
}

func TestCheckConfigTLS(t *testing.T) {
	failIfServing(t)
	const pair = "certificates = [{ cert = \"tls/cert.pem\", key = \"tls/key.pem\" }]\n" // line 13
	for _, tc := range []struct {
		name     string
		listener string                         // from line 13
		tls      string                         // appended after the listener
		setup    func(t *testing.T, dir string) // dir: the configuration's
		want     []string                       // stderr lines, after the directory
		code     int
	}{
		{name: "good", listener: pair,
			setup: func(t *testing.T, d string) { selfSigned(t, filepath.Join(d, "tls"), 720*time.Hour) }},
		{name: "missing certificate", listener: pair,
			want: []string{`frontdoor.toml:13: listener[1].certificates[0]: certificate DIR/tls/cert.pem: open DIR/tls/cert.pem: no such file or directory`},
			code: 2},
		{name: "key of another certificate",
			listener: "certificates = [\n  { cert = \"a/cert.pem\", key = \"a/key.pem\" },\n  { cert = \"a/cert.pem\", key = \"b/key.pem\" },\n]\n",
			setup: func(t *testing.T, d string) {
				selfSigned(t, filepath.Join(d, "a"), time.Hour*720)
				selfSigned(t, filepath.Join(d, "b"), time.Hour*720)
			},
			want: []string{`frontdoor.toml:15: listener[1].certificates[1]: certificate DIR/a/cert.pem with key DIR/b/key.pem: tls: private key does not match public key`},
			code: 2},
		{name: "expiring certificate is a warning", listener: pair,
			setup: func(t *testing.T, d string) { selfSigned(t, filepath.Join(d, "tls"), 24*time.Hour) },
			want:  []string{`frontdoor.toml:13: listener[1].certificates[0]: warning: DIR/tls/cert.pem: certificate "CN=gw.example.test,O=frontdoor development" expires on `},
			code:  0},
		{name: "self-signed, not generated yet", listener: "tls_self_signed = true\n" + pair},
		{name: "self-signed, generated", listener: "tls_self_signed = true\n" + pair,
			setup: func(t *testing.T, d string) { selfSigned(t, filepath.Join(d, "tls"), 720*time.Hour) }},
		{name: "self-signed, broken", listener: "tls_self_signed = true\n" + pair,
			setup: func(t *testing.T, d string) {
				selfSigned(t, filepath.Join(d, "tls"), 720*time.Hour)
				if err := os.WriteFile(filepath.Join(d, "tls", "cert.pem"), []byte("junk"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{`frontdoor.toml:14: listener[1].certificates[0]: certificate DIR/tls/cert.pem with key DIR/tls/key.pem: tls: failed to find any PEM data in certificate input`},
			code: 2},
		{name: "client CA without certificates", listener: pair + "tls_client_auth = \"require\"\ntls_client_ca = \"clients.pem\"\n",
			setup: func(t *testing.T, d string) {
				selfSigned(t, filepath.Join(d, "tls"), 720*time.Hour)
				if err := os.WriteFile(filepath.Join(d, "clients.pem"), []byte("junk"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{`frontdoor.toml:15: listener[1].tls_client_ca: client CA file DIR/clients.pem: no PEM certificate found`},
			code: 2},
		{name: "missing client CA and certificate", listener: pair + "tls_client_auth = \"request\"\ntls_client_ca = \"clients.pem\"\n",
			want: []string{
				`frontdoor.toml:13: listener[1].certificates[0]: certificate DIR/tls/cert.pem: open DIR/tls/cert.pem: no such file or directory`,
				`frontdoor.toml:15: listener[1].tls_client_ca: client CA file DIR/clients.pem: open DIR/clients.pem: no such file or directory`,
			},
			code: 2},
		{name: "client CA", listener: pair + "tls_client_auth = \"request\"\ntls_client_ca = \"tls/cert.pem\"\n",
			setup: func(t *testing.T, d string) { selfSigned(t, filepath.Join(d, "tls"), 720*time.Hour) }},
		{name: "ticket key file missing", listener: pair, tls: "[tls]\nticket_key_file = \"tickets\"\n",
			setup: func(t *testing.T, d string) { selfSigned(t, filepath.Join(d, "tls"), 720*time.Hour) },
			want:  []string{`frontdoor.toml:15: tls.ticket_key_file: ticket key file DIR/tickets: stat DIR/tickets: no such file or directory (create it with: frontdoor tls ticket-keys --out DIR/tickets)`},
			code:  2},
		{name: "ticket key file readable by others", listener: pair, tls: "[tls]\nticket_key_file = \"tickets\"\n",
			setup: func(t *testing.T, d string) {
				selfSigned(t, filepath.Join(d, "tls"), 720*time.Hour)
				if err := tlsterm.CreateOrRotateKeyFile(filepath.Join(d, "tickets"), time.Now(), 0); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(filepath.Join(d, "tickets"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{`frontdoor.toml:15: tls.ticket_key_file: ticket key file DIR/tickets: mode 0644 is readable by others; want 0600`},
			code: 2},
		{name: "ticket key file", listener: pair, tls: "[tls]\nticket_key_file = \"tickets\"\n",
			setup: func(t *testing.T, d string) {
				selfSigned(t, filepath.Join(d, "tls"), 720*time.Hour)
				if code, _, errOut := run("tls", "ticket-keys", "--out", filepath.Join(d, "tickets")); code != 0 {
					t.Fatalf("tls ticket-keys: %s", errOut)
				}
			}},
		{name: "ticket key file unused without session tickets", listener: pair, tls: "[tls]\nticket_key_file = \"tickets\"\nsession_tickets = false\n",
			setup: func(t *testing.T, d string) { selfSigned(t, filepath.Join(d, "tls"), 720*time.Hour) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, dir := tlsFiles(t, tc.listener+tc.tls)
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			code, out, errOut := run("check-config", path)
			var want []string
			for _, w := range tc.want {
				want = append(want, filepath.Join(dir, strings.ReplaceAll(w, "DIR", dir)))
			}
			got := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
			if errOut == "" {
				got = nil
			}
			match := len(got) == len(want)
			for i := 0; match && i < len(got); i++ {
				// A warning ends with a date: compare its beginning.
				match = got[i] == want[i] || strings.Contains(want[i], "warning:") && strings.HasPrefix(got[i], want[i])
			}
			if !match || code != tc.code {
				t.Errorf("code %d, stderr:\n%s\nwant %d and:\n%s", code, errOut, tc.code, strings.Join(want, "\n"))
			}
			if wantOut := path + ": ok (2 listeners, 1 protocols, 1 servers, 0 users)\n"; tc.code == 0 && out != wantOut {
				t.Errorf("stdout %q, want %q", out, wantOut)
			}
		})
	}
}
