// Package testbed is the harness frontdoor's tests run the gateway on.
//
// The standards it encodes: tests use real sockets on loopback, and every
// peer of the gateway — the reference mailbox server (see package mailboxd)
// and the gateway itself when a test exercises the CLI — runs as a separate
// process built from frontdoor/cmd/frontdoor, exactly as in production. That
// keeps in-process shortcuts (shared memory, shared runtime, a panic in one
// taking down the other) out of what the tests measure.
//
// A test package that uses testbed should hand its TestMain to Main, which
// removes the binary built for the run:
//
//	func TestMain(m *testing.M) { testbed.Main(m) }
//
// A typical test:
//
//	mbx := testbed.StartMailboxd(t, "mbx1")
//	gw := testbed.StartProcess(t, "run", "--config", cfgFile)
//	testbed.WaitHTTP(t, "http://127.0.0.1:"+port+"/healthcheck.htm", 10*time.Second)
//	// ... drive the gateway ...
//	if got := mbx.Stats(t).Requests; got != 0 { t.Errorf(...) }
//
// Child processes are killed when the test that started them ends, and
// their combined stdout and stderr is logged if it failed.
package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"testing"
	"time"
)

// BinaryEnv names an environment variable that, when set to the path of a
// prebuilt frontdoor binary, makes Binary use it instead of building one
// (to test an installed or differently-built binary, or to save the build).
const BinaryEnv = "FRONTDOOR_TEST_BINARY"

// buildTimeout bounds `go build` of the binary.
const buildTimeout = 5 * time.Minute

var build struct {
	once sync.Once
	dir  string // temporary directory holding the binary; removed by Main
	path string
	err  error
	out  []byte // go build's output when it failed
}

// Main runs the tests of a package that uses testbed, then removes the
// frontdoor binary Binary built for the run, and exits with the tests'
// status. Call it from TestMain. Without it the binary's temporary
// directory is left behind in os.TempDir().
func Main(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// Binary returns the path of a frontdoor binary built from this module's
// frontdoor/cmd/frontdoor, building it on the first call of the test
// process (or returning $FRONTDOOR_TEST_BINARY, see BinaryEnv). The build
// uses the go command of the toolchain running the tests, never downloads
// another, and adds -race when the tests themselves run with -race, so the
// race detector watches the child processes too. A failed build fails t
// with the compiler's output.
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(buildBinary)
	if build.err != nil {
		t.Fatalf("testbed: frontdoor binary: %v\n%s", build.err, build.out)
	}
	return build.path
}

func buildBinary() {
	if p := os.Getenv(BinaryEnv); p != "" {
		build.path, build.err = filepath.Abs(p)
		if build.err == nil {
			_, build.err = os.Stat(build.path)
		}
		return
	}
	root, err := moduleRoot()
	if err != nil {
		build.err = err
		return
	}
	if build.dir, err = os.MkdirTemp("", "frontdoor-testbed-"); err != nil {
		build.err = err
		return
	}
	build.path = filepath.Join(build.dir, "frontdoor")
	args := []string{"build", "-o", build.path}
	if raceEnabled() {
		args = append(args, "-race")
	}
	args = append(args, "frontdoor/cmd/frontdoor")

	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool(), args...)
	cmd.Dir = root
	// Build with exactly this toolchain, whatever go.mod's toolchain line says.
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	if build.out, err = cmd.CombinedOutput(); err != nil {
		build.err = fmt.Errorf("%s (in %s): %w", cmd, root, err)
	}
}

// GoCommand returns the go command of the toolchain that built the running
// test binary (for `go tool pprof` and the like), falling back to the one on
// $PATH.
func GoCommand() string { return goTool() }

// goTool returns the go command of the toolchain that built the running
// test binary, falling back to the one on $PATH.
func goTool() string {
	//lint:ignore SA1019 the toolchain's location is exactly what is wanted here.
	if root := runtime.GOROOT(); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// raceEnabled reports whether the running binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// moduleRoot walks up from the working directory (a test runs in its
// package's directory) to the directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testbed: no go.mod above the working directory")
		}
		dir = parent
	}
}

// FreePort returns a TCP port on host that was free a moment ago: it
// listens on port 0 and closes the listener. Another process can take the
// port before the caller binds it, so callers that start servers on it
// retry with a new port when the bind fails (StartMailboxd does).
func FreePort(t testing.TB, host string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("testbed: free port on %s: %v", host, err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// WaitHTTP polls url with GET until it answers 2xx, failing t if that does
// not happen within timeout. Each attempt uses a fresh connection.
func WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	if err := pollHTTP(url, timeout, nil, nil); err != nil {
		t.Fatalf("testbed: %v", err)
	}
}

// pollHTTP polls url until it answers 2xx and accept (if not nil) accepts
// the body, until timeout passes or exited (if not nil) is closed.
func pollHTTP(url string, timeout time.Duration, exited <-chan struct{}, accept func([]byte) error) error {
	client := &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true},
		Timeout:   time.Second,
	}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		last = getOnce(client, url, accept)
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("GET %s: not ready within %v: %v", url, timeout, last)
		}
		select {
		case <-exited:
			return fmt.Errorf("GET %s: %w (last attempt: %v)", url, errExited, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

var errExited = errors.New("the process exited")

func getOnce(client *http.Client, url string, accept func([]byte) error) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return errors.New(resp.Status + ": " + strconv.Quote(string(body)))
	}
	if accept != nil {
		return accept(body)
	}
	return nil
}
