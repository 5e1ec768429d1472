package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"frontdoor/directory"
	"frontdoor/gateway/config"
	"frontdoor/mailboxd"
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
	stub(t, &runGateway, func(context.Context, *config.Config, *directory.Directory, *slog.Logger, func()) error {
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
		{[]string{"--help"}, []string{"run", "check-config", "mailboxd", "bench", "version"}},
		{[]string{"-h"}, []string{"run", "check-config", "mailboxd", "bench", "version"}},
		{[]string{"help"}, []string{"run", "check-config", "mailboxd", "bench", "version"}},
		{[]string{"run", "--help"}, []string{"frontdoor run", "-config", "-log-level"}},
		{[]string{"run", "-h"}, []string{"frontdoor run", "-config", "-log-level"}},
		{[]string{"check-config", "--help"}, []string{"frontdoor check-config FILE"}},
		{[]string{"mailboxd", "--help"}, []string{"frontdoor mailboxd", "-listen", "-name"}},
		{[]string{"version", "--help"}, []string{"frontdoor version"}},
		{[]string{"help", "run"}, []string{"frontdoor run", "-config", "-log-level"}},
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
	want := path + ": ok (1 listeners, 8 protocols, 2 servers, 3 mailboxes)\n"
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
		{"directory problem", goodConfig, goodDirectory + "[[mailbox]]\naddress = \"bob@ex.test\"\ndatabase = \"D1\"\n",
			`directory.toml:9: mailbox[0].database: unknown database "D1" (none defined)`},
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
	stub(t, &runGateway, func(ctx context.Context, cfg *config.Config, dir *directory.Directory, log *slog.Logger, ready func()) error {
		got.cfg, got.dir = cfg, dir
		log.Debug("debug line")
		return nil
	})

	// Without --config: the embedded example pair.
	code, _, errOut := run("run", "--log-level", "debug")
	if code != 0 {
		t.Fatalf("run: code %d, stderr:\n%s", code, errOut)
	}
	if got.cfg.Path != config.EmbeddedPath || got.dir.Server("mbx2") == nil || len(got.dir.Mailboxes) != 3 {
		t.Errorf("run without --config: got config %q and %d mailboxes, want the embedded example", got.cfg.Path, len(got.dir.Mailboxes))
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
	stub(t, &runGateway, func(context.Context, *config.Config, *directory.Directory, *slog.Logger, func()) error {
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
