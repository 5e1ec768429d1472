package cli

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/profile"

	"frontdoor/directory"
	"frontdoor/gateway"
	"frontdoor/gateway/config"
	"frontdoor/internal/gwtest"
	"frontdoor/internal/testbed"
)

func TestMain(m *testing.M) { testbed.Main(m) }

// TestRunProfileFlags checks the flags without serving: each mode maps to
// its pkg/profile option, the library's shutdown hook is off (it would
// os.Exit on SIGINT before the drain), and Stop runs after the gateway
// returned.
func TestRunProfileFlags(t *testing.T) {
	var events []string
	stub(t, &startProfile, func(opts ...func(*profile.Profile)) interface{ Stop() } {
		events = append(events, fmt.Sprintf("start %d options", len(opts)))
		return stopFunc(func() { events = append(events, "stop") })
	})
	stub(t, &runGateway, func(context.Context, *config.Config, *directory.Directory, *slog.Logger, gateway.RunOptions) error {
		events = append(events, "serve")
		return nil
	})
	dir := filepath.Join(t.TempDir(), "new")
	for _, mode := range profileModes {
		events = nil
		if code, _, errOut := run("run", "--profile", mode, "--profile-path", dir); code != 0 {
			t.Fatalf("--profile %s: code %d\n%s", mode, code, errOut)
		}
		if got := strings.Join(events, ", "); got != "start 4 options, serve, stop" {
			t.Errorf("--profile %s: %s", mode, got)
		}
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Errorf("--profile-path not created: %v", err)
	}
	failIfServing(t)
	for _, args := range [][]string{
		{"run", "--profile", "heap"},
		{"run", "--profile-path", dir},
	} {
		if code, _, errOut := run(args...); code != 2 || !strings.Contains(errOut, "--profile") {
			t.Errorf("%v: code %d\n%s", args, code, errOut)
		}
	}
	if code, out, _ := run("run", "--help"); code != 0 || !strings.Contains(out, "--profile MODE") || !strings.Contains(out, "cpu, mem, allocs, mutex, block, trace") {
		t.Errorf("run --help does not document --profile:\n%s", out)
	}
}

type stopFunc func()

func (f stopFunc) Stop() { f() }

// TestRunProfileProcess runs the real binary with --profile, serves a few
// requests, stops it with SIGINT or SIGTERM and reads the profile it wrote with
// `go tool pprof`.
func TestRunProfileProcess(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	for _, tc := range []struct {
		mode, file, typ string
		// SIGINT is the signal pkg/profile's own shutdown hook would
		// catch, exiting before the drain: it must not be installed.
		sig syscall.Signal
	}{
		{"cpu", "cpu.pprof", "Type: cpu", syscall.SIGINT},
		{"allocs", "mem.pprof", "Type: alloc_space", syscall.SIGTERM},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			dir := t.TempDir()
			addr := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort(t, "127.0.0.1"))
			cfg := filepath.Join(dir, "frontdoor.toml")
			writeTestFile(t, cfg, fmt.Sprintf("directory = \"directory.toml\"\n[[listener]]\nname = \"http\"\naddress = %q\n"+
				"[[protocol]]\nname = \"owa\"\npath_prefix = \"/owa\"\nbackend_port = 1\n", addr))
			writeTestFile(t, filepath.Join(dir, "directory.toml"), gwtest.DirectoryTOML(m1))
			profDir := filepath.Join(dir, "prof")
			p := testbed.StartProcess(t, "run", "--config", cfg, "--profile", tc.mode, "--profile-path", profDir)
			url := "http://" + addr + "/owa/u/alice@example.test/"
			testbed.WaitHTTP(t, url, 10*time.Second)
			client := &http.Client{Timeout: 5 * time.Second}
			for i := range 200 {
				resp, err := client.Get(url)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("request %d: %v %v", i, resp, err)
				}
				resp.Body.Close()
			}
			if err := p.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			if code, err := p.Wait(20 * time.Second); err != nil || code != 0 {
				t.Fatalf("after %v: exit %d, %v\n%s", tc.sig, code, err, p.Output())
			}
			out := p.Output()
			if !strings.Contains(out, "drained") || !strings.Contains(out, "profile written") ||
				strings.Index(out, "drained") > strings.Index(out, "profile written") {
				t.Errorf("the profile must be written after the drain:\n%s", out)
			}
			file := filepath.Join(profDir, tc.file)
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("no profile: %v\n%s", err, out)
			}
			if !bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
				t.Fatalf("%s is not a gzipped profile: % x", file, data[:min(len(data), 8)])
			}
			top, err := exec.Command(testbed.GoCommand(), "tool", "pprof", "-top", "-nodecount=5", file).CombinedOutput()
			if err != nil || !strings.Contains(string(top), tc.typ) {
				t.Fatalf("go tool pprof -top %s: %v\n%s", file, err, top)
			}
		})
	}
}

func writeTestFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
