package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"frontdoor/directory"
	"frontdoor/gateway/config"
	"frontdoor/identity"
	"frontdoor/internal/testbed"
)

// The suite runner starts `BINARY mailboxd ...` and `BINARY run ...`. The
// tests point BINARY at the test executable itself, which TestMain turns
// into a stand-in frontdoor when fakeEnv is set: a net/http mailboxd with
// the stats endpoint, and a reverse-proxy gateway that reads the config the
// runner wrote. That tests the runner without depending on the real gateway.
const (
	fakeEnv       = "FRONTDOOR_BENCH_FAKE"
	fakeGwFailEnv = "FRONTDOOR_BENCH_FAKE_GW_FAIL"
	// fakeGwTLSEnv changes the fake gateway's TLS listener: "refuse" makes
	// it reject a config with tls = true, as a gateway whose schema has no
	// TLS would; "plain" makes it serve plaintext where TLS was asked for.
	fakeGwTLSEnv = "FRONTDOOR_BENCH_FAKE_GW_TLS"
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeEnv) == "1" {
		os.Exit(fakeFrontdoor(os.Args[1:]))
	}
	testbed.Main(m) // removes the frontdoor binary the IMAP test builds
}

func fakeFrontdoor(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "fake frontdoor: no command")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	switch args[0] {
	case "mailboxd":
		listen := fs.String("listen", "", "")
		name := fs.String("name", "", "")
		keys := fs.String("identity-keys", "", "")
		if fs.Parse(args[1:]) != nil {
			return 2
		}
		if *keys != "" {
			if _, err := os.Stat(*keys); err != nil {
				fmt.Fprintln(os.Stderr, "fake mailboxd:", err)
				return 1
			}
		}
		return fakeMailboxd(ctx, *listen, *name, *keys != "")
	case "tls-raw-server":
		return tlsRawServerMain(ctx)
	case "run":
		cfg := fs.String("config", "", "")
		if fs.Parse(args[1:]) != nil {
			return 2
		}
		if os.Getenv(fakeGwFailEnv) == "1" {
			fmt.Fprintln(os.Stderr, "frontdoor: config: unknown key \"engine.bogus\" (fake failure)")
			return 1
		}
		return fakeGateway(ctx, *cfg)
	}
	fmt.Fprintf(os.Stderr, "fake frontdoor: unknown command %q\n", args[0])
	return 2
}

// fakeMailboxd serves like mailboxd; with identity it refuses (403) requests
// without an X-Frontdoor-Identity field, as mailboxd --identity-keys does.
func fakeMailboxd(ctx context.Context, listen, name string, identity bool) int {
	var accepted, open atomic.Int64
	body100 := strings.Repeat("m", 100)
	srv := &http.Server{
		Addr: listen,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/healthcheck.htm":
				io.WriteString(w, "200 OK\r\n<br/>"+name)
			case "/_mailboxd/stats":
				// Unlike the real mailboxd, this stand-in counts the
				// harness's own connection, which exercises the runner's
				// calibration of the probe.
				json.NewEncoder(w).Encode(map[string]any{
					"server": name, "connections_accepted": accepted.Load(), "connections_open": open.Load(),
				})
			default:
				if identity && len(r.Header.Values("X-Frontdoor-Identity")) != 1 {
					http.Error(w, "mailboxd: identity refused (missing)", http.StatusForbidden)
					return
				}
				n, err := strconv.Atoi(r.Header.Get("X-Mailboxd-Size"))
				if err != nil {
					n = 100
				}
				w.Header().Set("X-Mailboxd-Server", name)
				if n == 100 {
					io.WriteString(w, body100)
				} else {
					w.Write(bytes.Repeat([]byte("0123456789abcdef"), n/16))
				}
			}
		}),
		ConnState: func(c net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				accepted.Add(1)
				open.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		},
	}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "fake mailboxd:", err)
		return 1
	}
	return 0
}

func fakeGateway(ctx context.Context, cfgPath string) int {
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.ReadFile(filepath.Join(filepath.Dir(cfgPath), "directory.toml"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	listen := regexp.MustCompile(`(?m)^address = "([^"]+)"`).FindAllSubmatch(cfg, -1)
	backend := regexp.MustCompile(`(?m)^address = "([^"]+)"`).FindSubmatch(dir)
	ports := regexp.MustCompile(`(?m)^backend_port = (\d+)`).FindAllSubmatch(cfg, -1)
	if listen == nil || backend == nil || ports == nil || !bytes.Contains(dir, []byte(`address = "alice@example.test"`)) {
		fmt.Fprintf(os.Stderr, "fake gateway: config not as expected:\n%s\n%s", cfg, dir)
		return 1
	}
	// Like the gateway: the server's address has no port, each protocol's
	// backend_port applies; the second protocol, if any, is /ews with
	// Basic, whose requests get an identity field.
	backendURL := func(i int) *url.URL {
		return &url.URL{Scheme: "http", Host: net.JoinHostPort(string(backend[1]), string(ports[i][1]))}
	}
	var authProxy http.Handler
	var auth fakeAuthCounters
	if len(ports) > 1 {
		if !bytes.Contains(cfg, []byte(`path_prefix = "/ews"`)) || !bytes.Contains(cfg, []byte(`auth = ["basic"]`)) ||
			!bytes.Contains(dir, []byte("password_hash = ")) {
			fmt.Fprintf(os.Stderr, "fake gateway: auth config not as expected:\n%s\n%s", cfg, dir)
			return 1
		}
		p := httputil.NewSingleHostReverseProxy(backendURL(1))
		p.Transport = &http.Transport{MaxIdleConnsPerHost: 64}
		authProxy = p
	}
	wantTLS := regexp.MustCompile(`(?m)^tls = true`).Match(cfg)
	if wantTLS && os.Getenv(fakeGwTLSEnv) == "refuse" {
		fmt.Fprintf(os.Stderr, "frontdoor: %s: unknown key \"listener.tls\" (fake gateway without TLS)\n", cfgPath)
		return 1
	}
	proxy := httputil.NewSingleHostReverseProxy(backendURL(0))
	proxy.Transport = &http.Transport{MaxIdleConnsPerHost: 64}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if authProxy != nil && strings.HasPrefix(r.URL.Path, "/ews") {
			authz := r.Header.Get("Authorization")
			if !strings.HasPrefix(authz, "Basic ") {
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
			auth.see(authz)
			r.Header.Set("X-Frontdoor-Identity", "fake")
			authProxy.ServeHTTP(w, r)
			return
		}
		if r.Header.Get("X-AnchorMailbox") == "" || !strings.HasPrefix(r.URL.Path, "/owa") {
			http.Error(w, "no route", http.StatusNotFound)
			return
		}
		proxy.ServeHTTP(w, r)
	})
	srv := &http.Server{Addr: string(listen[0][1]), Handler: handler}
	servers := []*http.Server{srv}
	if wantTLS {
		// Like the gateway's tls_self_signed: write the certificate where
		// the config says if it is not there.
		m := regexp.MustCompile(`(?m)^certificates = \[\{ cert = "([^"]+)", key = "([^"]+)" \}\]`).FindSubmatch(cfg)
		if len(listen) < 2 || m == nil {
			fmt.Fprintf(os.Stderr, "fake gateway: TLS listener not as expected:\n%s", cfg)
			return 1
		}
		certFile, keyFile := string(m[1]), string(m[2])
		if _, err := os.Stat(certFile); err != nil {
			_, certPEM, keyPEM, err := selfSigned()
			if err == nil {
				err = errors.Join(os.WriteFile(certFile, certPEM, 0o644), os.WriteFile(keyFile, keyPEM, 0o600))
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "fake gateway:", err)
				return 1
			}
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fake gateway:", err)
			return 1
		}
		tsrv := &http.Server{Addr: string(listen[1][1]), Handler: handler}
		servers = append(servers, tsrv)
		go func() {
			var err error
			if os.Getenv(fakeGwTLSEnv) == "plain" {
				err = tsrv.ListenAndServe()
			} else {
				tsrv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
				err = tsrv.ListenAndServeTLS("", "")
			}
			if err != http.ErrServerClosed {
				fmt.Fprintln(os.Stderr, "fake gateway TLS listener:", err)
			}
		}()
	}
	if m := regexp.MustCompile(`(?m)^\[admin\]\naddress = "([^"]+)"`).FindSubmatch(cfg); m != nil {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
			json.NewEncoder(w).Encode(map[string]any{"requests": 1, "auth": auth.snapshot()})
		})
		asrv := &http.Server{Addr: string(m[1]), Handler: mux}
		servers = append(servers, asrv)
		go asrv.ListenAndServe()
	}
	go func() {
		<-ctx.Done()
		for _, s := range servers {
			s.Close()
		}
	}()
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "fake gateway:", err)
		return 1
	}
	return 0
}

// fakeAuthCounters counts like the gateway's auth cache: a credential's
// first request is a miss, one verification and one signature, and counts
// two hits (the gateway routes it again after each); later ones are hits.
// It remembers fewer credentials than auth-login cycles through
// (fakeAuthCapacity), so that how many logins are misses does not depend on
// how fast the machine runs the warm-up: each is.
type fakeAuthCounters struct {
	mu           sync.Mutex
	seen         map[string]bool
	hits, misses int64
}

func (a *fakeAuthCounters) see(authz string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.seen[authz] {
		a.hits++
		return
	}
	if a.seen == nil {
		a.seen = map[string]bool{}
	}
	if len(a.seen) >= fakeAuthCapacity {
		clear(a.seen)
	}
	a.seen[authz] = true
	a.misses++
	a.hits += 2
}

const fakeAuthCapacity = authUsers / 2

func (a *fakeAuthCounters) snapshot() map[string]int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return map[string]int64{"cache_hits": a.hits, "cache_misses": a.misses, "verifications": a.misses, "signed": a.misses,
		"cache_entries": int64(len(a.seen)), "accepted_basic": a.hits - a.misses, "refused_basic": 0, "overloaded": 0}
}

func testSuiteOptions(t *testing.T, scenarios ...string) suiteOptions {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	o := suiteOptions{
		duration: 300 * time.Millisecond, warmup: 100 * time.Millisecond, startupTimeout: 10 * time.Second,
		conns: 4, pipeline: 1, loops: 1, binary: exe, idleConns: 100, idleHold: 200 * time.Millisecond, identityAlg: identity.EdDSA,
		targets:  map[string]bool{"direct": true, "gateway": true},
		jsonFile: filepath.Join(t.TempDir(), "out.json"),
	}
	for _, name := range scenarios {
		for _, s := range Scenarios {
			if s.Name == name {
				o.scenarios = append(o.scenarios, s)
			}
		}
	}
	return o
}

func TestSuiteWithFakeFrontdoor(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	t.Setenv(fakeEnv, "1")
	o := testSuiteOptions(t, "keepalive-get", "keepalive-get-16k")
	o.cpuPin = true
	var stdout, stderr bytes.Buffer
	code := runSuite(context.Background(), o, &stdout, &stderr)
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	if code != 0 {
		t.Fatalf("exit code %d", code)
	}
	rep := readReport(t, o.jsonFile)
	if len(rep.Results) != 4 {
		t.Fatalf("%d results, want 4", len(rep.Results))
	}
	for i, want := range []struct{ scenario, target string }{
		{"keepalive-get", "direct"}, {"keepalive-get", "gateway"},
		{"keepalive-get-16k", "direct"}, {"keepalive-get-16k", "gateway"},
	} {
		r := rep.Results[i]
		if r.Scenario != want.scenario || r.Target != want.target {
			t.Errorf("result %d is %s/%s, want %s/%s", i, r.Scenario, r.Target, want.scenario, want.target)
		}
		if r.Requests == 0 || r.ErrorsTotal != 0 || r.StatusClasses["2xx"] != r.Requests || r.Latency.P50 <= 0 {
			t.Errorf("%s/%s: requests %d errors %v classes %v p50 %v", r.Scenario, r.Target, r.Requests, r.Errors, r.StatusClasses, r.Latency.P50)
		}
		if r.MailboxdCPUPerRequestUS == nil || r.LoadgenCPUPerRequestUS == nil || r.BackendConnectionsOpen == nil {
			t.Errorf("%s/%s: missing CPU or backend figures", r.Scenario, r.Target)
		}
		gw := r.Target == "gateway"
		if gw != (r.GatewayCPUPerRequestUS != nil) || gw != (r.GatewayRSSBytes != nil) {
			t.Errorf("%s/%s: gateway figures present = %v", r.Scenario, r.Target, r.GatewayCPUPerRequestUS != nil)
		}
		if gw && *r.BackendConnectionsOpen == 0 {
			t.Errorf("%s/%s: gateway holds no backend connection after the run", r.Scenario, r.Target)
		}
	}
	for _, s := range []string{"SCENARIO", "keepalive-get-16k", "gateway", "direct", "CPU/REQ"} {
		if !strings.Contains(stdout.String(), s) {
			t.Errorf("table lacks %q", s)
		}
	}
}

// TestSuiteRounds: --rounds 2 measures every row twice, the targets taking
// turns (direct, gateway, direct, gateway), and numbers the rows.
func TestSuiteRounds(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	t.Setenv(fakeEnv, "1")
	o := testSuiteOptions(t, "keepalive-get")
	o.rounds = 2
	var stdout, stderr bytes.Buffer
	if code := runSuite(context.Background(), o, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	rep := readReport(t, o.jsonFile)
	var got []string
	for _, r := range rep.Results {
		got = append(got, fmt.Sprintf("%s#%d", r.Target, r.Round))
	}
	if want := "direct#1 gateway#1 direct#2 gateway#2"; strings.Join(got, " ") != want || rep.Rounds != 2 {
		t.Fatalf("rows %v, rounds %d; want %s in 2 rounds", got, rep.Rounds, want)
	}
	if !strings.Contains(stdout.String(), "gateway #2") {
		t.Errorf("table lacks the round numbers:\n%s", stdout.String())
	}
}

func TestSuiteGatewayFailsToStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	t.Setenv(fakeEnv, "1")
	t.Setenv(fakeGwFailEnv, "1")
	o := testSuiteOptions(t, "many-clients")
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := runSuite(context.Background(), o, &stdout, &stderr)
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "engine.bogus") {
		t.Error("gateway's stderr not shown")
	}
	// The direct (ceiling) numbers are still measured and printed.
	if !strings.Contains(stdout.String(), "many-clients") || !strings.Contains(stdout.String(), "gateway not measured") {
		t.Error("direct results or gateway note missing from the table")
	}
	if el := time.Since(start); el > 15*time.Second {
		t.Errorf("took %v", el)
	}
}

func TestSuiteInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	t.Setenv(fakeEnv, "1")
	o := testSuiteOptions(t, "keepalive-get")
	o.duration = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(1500*time.Millisecond, cancel)
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := runSuite(ctx, o, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("exit code %d, stderr:\n%s", code, stderr.String())
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("interrupted suite took %v", el)
	}
	// The children were stopped: their listeners are gone.
	pids := regexp.MustCompile(`pid (\d+)`).FindAllStringSubmatch(stderr.String(), -1)
	if len(pids) != 2 {
		t.Fatalf("want 2 child pids in stderr, got %v", pids)
	}
	for _, m := range pids {
		pid, _ := strconv.Atoi(m[1])
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("child %d still running", pid)
		}
	}
}

func TestMainUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"--help"}, &stdout, &stderr); code != 0 {
		t.Errorf("--help: exit %d", code)
	}
	if !strings.Contains(stderr.String(), "-duration") {
		t.Errorf("--help output lacks flags:\n%s", stderr.String())
	}
	for _, args := range [][]string{
		{"--scenario", "nope"}, {"--conns", "0"}, {"--targets", "x"}, {"extra"}, {"--bogus"},
		{"--source-addrs", "10.0.0.1"}, {"--idle-conns", "0"}, {"--idle-hold", "-1s"}, {"--identity-alg", "rsa"},
	} {
		stderr.Reset()
		if code := Main(args, &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	stdout.Reset()
	if code := Main([]string{"--list"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "pipelined-get") ||
		!strings.Contains(stdout.String(), "idle-conns-tls") || !strings.Contains(stdout.String(), "tls-handshake-resumed") {
		t.Errorf("--list: exit %d, output %q", code, stdout.String())
	}
}

func TestWrittenConfig(t *testing.T) {
	s := &suite{o: suiteOptions{loops: 1}, dir: t.TempDir()}
	if err := s.writeConfig(gatewayPorts{HTTP: 18080, Mbx: 18081}); err != nil {
		t.Fatal(err)
	}
	cfg, _ := os.ReadFile(filepath.Join(s.dir, "frontdoor.toml"))
	dir, _ := os.ReadFile(filepath.Join(s.dir, "directory.toml"))
	for _, want := range []string{`directory = "directory.toml"`, "loops = 1", `address = "127.0.0.1:18080"`, `path_prefix = "/owa"`, "backend_port = 18081"} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
	for _, want := range []string{`address = "127.0.0.1"`, `active = "mbx1"`, `address = "alice@example.test"`, `external_url = "https://mail-a.example.test"`} {
		if !strings.Contains(string(dir), want) {
			t.Errorf("directory lacks %q:\n%s", want, dir)
		}
	}
}

// TestWrittenConfigLoads is the contract with the config and directory
// packages: the files the runner writes must pass their strict decoding and
// validation, and route alice to mbx1.
func TestWrittenConfigLoads(t *testing.T) {
	s := &suite{o: suiteOptions{loops: 1}, dir: t.TempDir()}
	if err := s.writeConfig(gatewayPorts{HTTP: 18080, Mbx: 18081}); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(filepath.Join(s.dir, "frontdoor.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Engine.Loops != 1 || len(c.Listeners) != 1 || c.Listeners[0].Address != "127.0.0.1:18080" ||
		len(c.Protocols) != 1 || c.Protocols[0].BackendPort != 18081 || c.Protocols[0].PathPrefix != "/owa" {
		t.Errorf("config decoded as %+v", c)
	}
	if got, want := c.DirectoryPath(), filepath.Join(s.dir, "directory.toml"); got != want {
		t.Errorf("directory path %q, want %q", got, want)
	}
	d, err := directory.Load(c.DirectoryPath())
	if err != nil {
		t.Fatal(err)
	}
	m := d.LookupMailbox([]byte(anchorMailbox))
	if m == nil || m.Database.Active.Name != mailboxdName || m.Database.Active.HostPort(c.Protocols[0].BackendPort) != "127.0.0.1:18081" {
		t.Errorf("alice resolves to %+v", m)
	}
}
