package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"frontdoor/gateway/config"
)

func readReport(t *testing.T, path string) Report {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

func findRow(rep Report, scenario, target string) *RunReport {
	for i := range rep.Results {
		if r := &rep.Results[i]; r.Scenario == scenario && r.Target == target {
			return r
		}
	}
	return nil
}

func TestSuiteTLSAndIdleWithFakeFrontdoor(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	t.Setenv(fakeEnv, "1")
	o := testSuiteOptions(t, "tls-keepalive-get", "tls-handshake-resumed", "idle-conns", "idle-conns-tls")
	var stdout, stderr bytes.Buffer
	code := runSuite(context.Background(), o, &stdout, &stderr)
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	if code != 0 {
		t.Fatalf("exit code %d", code)
	}
	rep := readReport(t, o.jsonFile)
	if len(rep.Results) != 6 || rep.TLSError != "" {
		t.Fatalf("%d results (want 6: idle scenarios have no direct row), TLS error %q", len(rep.Results), rep.TLSError)
	}
	for _, sc := range []string{"tls-keepalive-get", "tls-handshake-resumed"} {
		d, g := findRow(rep, sc, "direct"), findRow(rep, sc, "gateway")
		if d == nil || g == nil {
			t.Fatalf("%s: rows missing", sc)
		}
		if d.TLS || !d.PlaintextCeiling || d.Handshakes != 0 || d.Requests == 0 || d.ErrorsTotal != 0 {
			t.Errorf("%s/direct: tls %v ceiling %v handshakes %d requests %d errors %v", sc, d.TLS, d.PlaintextCeiling, d.Handshakes, d.Requests, d.Errors)
		}
		if !g.TLS || g.PlaintextCeiling || g.Handshakes == 0 || g.Requests == 0 || g.ErrorsTotal != 0 ||
			g.HandshakeLatency == nil || g.HandshakeLatency.P50 <= 0 || !strings.HasPrefix(g.TLSParams, "TLS 1.3") || g.HandshakesPerSecond <= 0 {
			t.Errorf("%s/gateway: %+v", sc, g)
		}
	}
	if g := findRow(rep, "tls-keepalive-get", "gateway"); g.Handshakes != int64(o.conns) || g.HandshakesResumed != 0 || g.GatewayCPUPerHandshakeUS != nil {
		t.Errorf("tls-keepalive-get/gateway: %d handshakes (%d resumed), want %d keep-alive connections; per-handshake CPU %v",
			g.Handshakes, g.HandshakesResumed, o.conns, g.GatewayCPUPerHandshakeUS)
	}
	// The warm-up fills the session cache: every measured handshake resumes.
	if g := findRow(rep, "tls-handshake-resumed", "gateway"); g.HandshakesResumed != g.Handshakes || g.Handshakes < g.Requests ||
		g.GatewayCPUPerHandshakeUS == nil || g.RequestsPerConn != 1 {
		t.Errorf("tls-handshake-resumed/gateway: %d handshakes, %d resumed, %d requests, CPU/handshake %v",
			g.Handshakes, g.HandshakesResumed, g.Requests, g.GatewayCPUPerHandshakeUS)
	}
	for _, sc := range []string{"idle-conns", "idle-conns-tls"} {
		g := findRow(rep, sc, "gateway")
		if g == nil || g.Idle == nil {
			t.Fatalf("%s: no idle row", sc)
		}
		ir := g.Idle
		if ir.Requested != 100 || ir.Attempted != 100 || ir.Held != 100 || g.Requests != 100 || g.Conns != 100 || g.ErrorsTotal != 0 {
			t.Errorf("%s: requested %d attempted %d held %d requests %d errors %v", sc, ir.Requested, ir.Attempted, ir.Held, g.Requests, g.Errors)
		}
		if ir.RSSBeforeBytes <= 0 || ir.RSSHeldBytes <= 0 || ir.GatewayCPUPerConnUS == nil || len(ir.SourceAddrs) != len(idleSourceAddrs) {
			t.Errorf("%s: %+v", sc, ir)
		}
		if want := float64(ir.RSSHeldBytes-ir.RSSBeforeBytes) / 100; ir.RSSPerConnBytes != want {
			t.Errorf("%s: RSS/conn %v, want %v", sc, ir.RSSPerConnBytes, want)
		}
		// The baseline may still count the admin connection of the trim
		// asked for just before it (the server closes its end a moment
		// after the client): allow that one descriptor.
		if ir.GatewayFDsBefore == nil || ir.GatewayFDsHeld == nil || *ir.GatewayFDsHeld-*ir.GatewayFDsBefore < 99 {
			t.Errorf("%s: gateway descriptors %s -> %s, want +100", sc, fmtOptInt(ir.GatewayFDsBefore), fmtOptInt(ir.GatewayFDsHeld))
		}
		if (sc == "idle-conns-tls") != (g.Handshakes == 100) {
			t.Errorf("%s: %d handshakes", sc, g.Handshakes)
		}
	}
	for _, s := range []string{"HS/S", "direct (no TLS)", "RSS/CONN", "AT 1M CONNS", "idle-conns-tls", "resumed"} {
		if !strings.Contains(stdout.String(), s) {
			t.Errorf("output lacks %q", s)
		}
	}
	// Every idle scenario restarted the gateway: 1 + 2 gateway starts.
	if n := strings.Count(stderr.String(), "gateway listening on"); n != 3 {
		t.Errorf("%d gateway starts, want 3", n)
	}
}

// A gateway that does not start with a TLS listener, or whose TLS listener
// does not answer, costs the TLS scenarios an error row each and nothing
// else.
func TestSuiteWithoutTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	for _, tc := range []struct{ mode, want string }{
		{"refuse", `unknown key "listener.tls"`},
		{"plain", "did not answer"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Setenv(fakeEnv, "1")
			t.Setenv(fakeGwTLSEnv, tc.mode)
			o := testSuiteOptions(t, "keepalive-get", "tls-keepalive-get", "idle-conns-tls", "idle-conns")
			o.startupTimeout = 1500 * time.Millisecond
			var stdout, stderr bytes.Buffer
			code := runSuite(context.Background(), o, &stdout, &stderr)
			t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
			if code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			rep := readReport(t, o.jsonFile)
			if !strings.Contains(rep.TLSError, tc.want) || rep.GatewayError != "" {
				t.Errorf("TLS error %q (want %q), gateway error %q", rep.TLSError, tc.want, rep.GatewayError)
			}
			for _, want := range []struct {
				scenario, target string
				measured         bool
			}{
				{"keepalive-get", "direct", true}, {"keepalive-get", "gateway", true},
				{"tls-keepalive-get", "direct", true}, {"tls-keepalive-get", "gateway", false},
				{"idle-conns-tls", "gateway", false}, {"idle-conns", "gateway", true},
			} {
				r := findRow(rep, want.scenario, want.target)
				if r == nil {
					t.Errorf("%s/%s: no row", want.scenario, want.target)
					continue
				}
				if measured := r.Error == "" && r.Requests > 0; measured != want.measured {
					t.Errorf("%s/%s: measured %v, want %v (error %q)", want.scenario, want.target, measured, want.measured, r.Error)
				}
			}
			if r := findRow(rep, "idle-conns-tls", "gateway"); r != nil && r.Idle == nil {
				t.Error("idle-conns-tls error row is not an idle row")
			}
			if !strings.Contains(stdout.String(), "NOT MEASURED") || !strings.Contains(stdout.String(), tc.want) {
				t.Error("table lacks the error rows or the reason")
			}
		})
	}
}

func TestIdleCost(t *testing.T) {
	per, gib := idleCost(10<<20, 10<<20+4096*1000, 1000)
	if per != 4096 || gib != 4096e6/(1<<30) {
		t.Errorf("idleCost = %v B/conn, %v GiB; want 4096, %v", per, gib, 4096e6/(1<<30))
	}
	if math.Abs(gib-3.815) > 0.001 {
		t.Errorf("4 KiB x 1M = %v GiB, want about 3.815", gib)
	}
	if per, gib := idleCost(100, 200, 0); per != 0 || gib != 0 {
		t.Errorf("no connections: %v %v", per, gib)
	}
	if per, _ := idleCost(2000, 1000, 10); per != -100 {
		t.Errorf("shrinking RSS: %v, want -100 (shown, not hidden)", per)
	}
}

func TestFDRoom(t *testing.T) {
	for _, tc := range []struct {
		limits []uint64
		want   int
	}{
		{[]uint64{20000, 20000}, 19500},
		{[]uint64{20000, 4000}, 3500},
		{[]uint64{0, 8000}, 7500},
		{[]uint64{0, 0}, -1},
		{nil, -1},
		{[]uint64{300}, 0},
		{[]uint64{math.MaxUint64}, math.MaxInt32},
	} {
		if got := fdRoom(tc.limits...); got != tc.want {
			t.Errorf("fdRoom(%v) = %d, want %d", tc.limits, got, tc.want)
		}
	}
	if nofileLimit() == 0 {
		t.Error("cannot read this process's RLIMIT_NOFILE")
	}
	if n, err := ProcNoFile(os.Getpid()); err != nil || n != nofileLimit() {
		t.Errorf("ProcNoFile(self) = %d, %v; Getrlimit says %d", n, err, nofileLimit())
	}
	if n, err := ProcFDs(os.Getpid()); err != nil || n < 3 {
		t.Errorf("ProcFDs(self) = %d, %v", n, err)
	}
}

func TestParseProcLimitsNoFile(t *testing.T) {
	limits := "Limit                     Soft Limit           Hard Limit           Units     \n" +
		"Max cpu time              unlimited            unlimited            seconds   \n" +
		"Max open files            20000                20000                files     \n"
	if n, err := parseProcLimitsNoFile([]byte(limits)); n != 20000 || err != nil {
		t.Errorf("got %d, %v", n, err)
	}
	unl := strings.Replace(limits, "20000                20000", "unlimited            unlimited", 1)
	if n, err := parseProcLimitsNoFile([]byte(unl)); n != 0 || err != nil {
		t.Errorf("unlimited: got %d, %v", n, err)
	}
	if _, err := parseProcLimitsNoFile([]byte("Max cpu time  unlimited unlimited seconds\n")); err == nil {
		t.Error("missing line accepted")
	}
}

// TestRunIdleWithFakeProcess checks runIdle's arithmetic end to end: the
// "process" is a fake whose RSS grows by exactly 3000 bytes, and whose
// descriptor count by one, per connection a real server holds open.
func TestRunIdleWithFakeProcess(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		var clientTLS, serverTLS *tls.Config
		if useTLS {
			serverTLS, clientTLS = testServerTLSConfig(t), insecure()
		}
		cs := newCountingServer(t, serverTLS)
		const base, perConn = 50 << 20, 3000
		var cpuCalls atomic.Int64
		const n = 40
		probe := idleProbe{
			RSS: func() (int64, error) { return base + perConn*cs.open.Load(), nil },
			FDs: func() (int, error) { return 10 + int(cs.open.Load()), nil },
			// 1 ms of CPU per call: the opening costs 1 ms in all.
			CPU: func() (time.Duration, error) { return time.Duration(cpuCalls.Add(1)) * time.Millisecond, nil },
		}
		// The gateway's /stats: the live heap grows by 2000 bytes per
		// connection; every read has seen one more collection; the
		// trimmer trims on the fourth read after all are open (the runner
		// reads once when they are, then every 100ms after the hold).
		const heapBase, heapPerConn = 8 << 20, 2000
		var rtCalls, heldCalls, trims atomic.Int64
		probe.Trim = func() error { trims.Add(100); return nil } // on demand: not counted as automatic
		probe.Runtime = func() (*gatewayRuntime, error) {
			open := cs.open.Load()
			auto := int64(0)
			if open == n && heldCalls.Add(1) >= 4 {
				auto = 1
			}
			return &gatewayRuntime{HeapLiveBytes: heapBase + heapPerConn*open, GCCycles: rtCalls.Add(1),
				MemoryTrimIntervalSeconds: 10, MemoryTrimWanted: auto == 0, MemoryTrims: auto}, nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		opts := Options{Addr: cs.addr, TLS: clientTLS, Conns: 3, LocalAddrs: []string{"127.0.0.2", "127.0.0.3"},
			Request: Request{Path: "/owa/"}}
		ir, res, err := runIdle(ctx, opts, n, 50*time.Millisecond, time.Second, probe)
		if err != nil {
			t.Fatal(err)
		}
		if ir.Held != n || ir.Attempted != n || res.Requests != n || res.Errors.Total() != 0 {
			t.Fatalf("tls %v: held %d attempted %d requests %d errors %v", useTLS, ir.Held, ir.Attempted, res.Requests, res.Errors)
		}
		if ir.RSSBeforeBytes != base || ir.RSSHeldBytes != base+perConn*n {
			t.Errorf("tls %v: RSS %d -> %d", useTLS, ir.RSSBeforeBytes, ir.RSSHeldBytes)
		}
		if ir.RSSPerConnBytes != perConn || ir.Extrapolated1MGiB != perConn*1e6/(1<<30) {
			t.Errorf("tls %v: %v B/conn, %v GiB at 1M; want %d and %v", useTLS, ir.RSSPerConnBytes, ir.Extrapolated1MGiB, perConn, perConn*1e6/(1<<30))
		}
		if *ir.GatewayFDsBefore != 10 || *ir.GatewayFDsHeld != 10+n {
			t.Errorf("tls %v: descriptors %d -> %d", useTLS, *ir.GatewayFDsBefore, *ir.GatewayFDsHeld)
		}
		if want := 1000.0 / n; ir.GatewayCPUPerConnUS == nil || *ir.GatewayCPUPerConnUS != want {
			t.Errorf("tls %v: CPU/conn %v, want %v us", useTLS, ir.GatewayCPUPerConnUS, want)
		}
		if !ir.BaselineTrimmed || trims.Load() != 100 {
			t.Errorf("tls %v: baseline trimmed %v (%d trims on demand)", useTLS, ir.BaselineTrimmed, trims.Load()/100)
		}
		if ir.HeapPerConnBytes == nil || *ir.HeapPerConnBytes != heapPerConn || *ir.HeapLiveBeforeBytes != heapBase {
			t.Errorf("tls %v: heap/conn %v, live before %v", useTLS, ir.HeapPerConnBytes, ir.HeapLiveBeforeBytes)
		}
		// The runner waited for the automatic trim, and not much longer.
		if ir.MemoryTrims == nil || *ir.MemoryTrims != 1 || *ir.MemoryTrimsOpening != 0 || ir.SettleSeconds < 0.15 || ir.SettleSeconds > 0.8 || ir.SettleEnd != "trimmed" {
			t.Errorf("tls %v: trims %v, settled %vs", useTLS, ir, ir.SettleSeconds)
		}
		if useTLS != (res.Handshakes == n) {
			t.Errorf("tls %v: %d handshakes", useTLS, res.Handshakes)
		}
		// runIdle closed the connections.
		if !waitFor(func() bool { return cs.open.Load() == 0 }) {
			t.Errorf("tls %v: server still holds %d connections", useTLS, cs.open.Load())
		}
	}
}

func TestWrittenTLSConfig(t *testing.T) {
	s := &suite{o: suiteOptions{loops: 1}, dir: t.TempDir(), gwAdminAddr: "127.0.0.1:18999"}
	if err := s.writeConfig(gatewayPorts{HTTP: 18080, TLS: 18443, Mbx: 18081, Admin: 18999}); err != nil {
		t.Fatal(err)
	}
	cfg, _ := os.ReadFile(filepath.Join(s.dir, "frontdoor.toml"))
	certFile, keyFile := filepath.Join(s.dir, "tls", "cert.pem"), filepath.Join(s.dir, "tls", "key.pem")
	for _, want := range []string{`name = "http"`, `name = "https"`, `address = "127.0.0.1:18443"`, "tls = true", "tls_self_signed = true",
		`certificates = [{ cert = "` + certFile + `", key = "` + keyFile + `" }]`} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
	if st, err := os.Stat(filepath.Dir(certFile)); err != nil || !st.IsDir() {
		t.Errorf("certificate directory not created: %v", err)
	}

	// The contract with the config package, as TestWrittenConfigLoads.
	c, err := config.Load(filepath.Join(s.dir, "frontdoor.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Listeners) != 2 || c.Listeners[0].TLS || !c.Listeners[1].TLS || !c.Listeners[1].TLSSelfSigned ||
		c.Listeners[1].Address != "127.0.0.1:18443" || len(c.Listeners[1].Protocols) != 0 {
		t.Errorf("listeners decoded as %+v", c.Listeners)
	}
	if got := c.TLSSettings(1).Certificates; len(got) != 1 || got[0].CertFile != certFile || got[0].KeyFile != keyFile {
		t.Errorf("certificates %+v", got)
	}
	if c.Admin.Address != "127.0.0.1:18999" || c.Runtime.MemoryTrimInterval.D() == 0 {
		t.Errorf("admin %q, memory trimmer every %v: the idle scenarios need /stats and the default trimmer", c.Admin.Address, c.Runtime.MemoryTrimInterval.D())
	}
	if c.Timeouts.Idle.D() < 5*time.Minute {
		t.Errorf("idle timeout %v: idle-conns needs connections to stay open while thousands more are opened", c.Timeouts.Idle.D())
	}
}

func fmtOptInt(p *int) string {
	if p == nil {
		return "none"
	}
	return strconv.Itoa(*p)
}
