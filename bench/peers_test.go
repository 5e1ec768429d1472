package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"frontdoor/tlsterm"
)

// testPeerConfig is a peer config with a real certificate in a temp dir.
func testPeerConfig(t *testing.T, name string, workers int) peerConfig {
	t.Helper()
	dir := t.TempDir()
	cert, key, err := tlsterm.WriteSelfSigned(dir, []string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	prefix := filepath.Join(dir, name)
	c := peerConfig{
		Prefix: prefix, Workers: workers, MaxConns: 12048, NoFile: 25120,
		HTTPPort: 18101, TLSPort: 18102, Backend: "127.0.0.1:18103", IdleTimeout: "600s",
		CertFile: cert, KeyFile: key, CertKeyFile: filepath.Join(prefix, "cert-key.pem"),
	}
	c.TLSGroups, c.TLSGroupsNote, _ = peerTLSGroups("OpenSSL 3.0.19")
	return c
}

func TestPeerConfigsRender(t *testing.T) {
	want := map[string][]string{
		"nginx": {
			"worker_processes 2;", "daemon off;", "master_process on;", "worker_connections 12048;", "worker_rlimit_nofile 25120;",
			"access_log off;", "keepalive_timeout 600s;", "keepalive_requests 1000000;",
			"server 127.0.0.1:18103;", "keepalive 1024;", "proxy_http_version 1.1;", `proxy_set_header Connection "";`,
			"listen 127.0.0.1:18101;", "listen 127.0.0.1:18102 ssl;", "ssl_ecdh_curve X25519:P-256;",
			"proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;", "client_header_timeout 10s;", "proxy_connect_timeout 3s;",
		},
		"haproxy": {
			"nbthread 2", "maxconn 12048", "option http-keep-alive", "http-reuse always", "option forwardfor", "no log",
			"timeout http-keep-alive 600s", "timeout client 600s", "timeout http-request 10s", "timeout connect 3s",
			"bind 127.0.0.1:18101", "bind 127.0.0.1:18102 ssl crt ", "ssl-default-bind-curves X25519:P-256",
			"server mbx1 127.0.0.1:18103", "ulimit-n 25120",
		},
	}
	for _, name := range PeerNames {
		c := testPeerConfig(t, name, 2)
		b, err := renderPeerConfig(name, c)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, w := range want[name] {
			if !bytes.Contains(b, []byte(w)) {
				t.Errorf("%s config lacks %q", name, w)
			}
		}
		if bytes.Contains(b, []byte("{{")) || bytes.Contains(b, []byte("<no value>")) {
			t.Errorf("%s config has an unrendered field:\n%s", name, b)
		}
		if bytes.Contains(b, []byte("strict-limits")) {
			t.Errorf("%s config gives up strict limits without FDCapped", name)
		}
		capped := c
		capped.NoFile, capped.FDCapped = 20000, true
		if b, err := renderPeerConfig(name, capped); err != nil || (name == "haproxy") != bytes.Contains(b, []byte("\n    no strict-limits\n")) {
			t.Errorf("%s config with FDCapped: %v\n%s", name, err, b)
		}
		// The peers' own parsers, when installed: the config is valid as
		// rendered (certificate and key included).
		bin, err := findPeerBinary(name)
		if err != nil {
			t.Logf("%s: %v: config not checked by %s itself", name, err, name)
			continue
		}
		conf, err := writePeerConfig(name, c)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkPeerConfig(name, bin, c.Prefix, conf); err != nil {
			t.Errorf("%s rejects the rendered config: %v", name, err)
		}
	}
	if _, err := renderPeerConfig("squid", peerConfig{}); err == nil {
		t.Error("unknown peer rendered")
	}
}

func TestWritePeerConfigPEM(t *testing.T) {
	c := testPeerConfig(t, "haproxy", 1)
	if _, err := writePeerConfig("haproxy", c); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(c.CertKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(b, b); err != nil {
		t.Errorf("haproxy's PEM file is not a certificate and key: %v", err)
	}
	if st, _ := os.Stat(c.CertKeyFile); st.Mode().Perm() != 0o600 {
		t.Errorf("PEM file mode %v, want 0600 (it holds the key)", st.Mode().Perm())
	}
}

func TestParsePeerVersion(t *testing.T) {
	for _, tc := range []struct{ name, out, version, openssl string }{
		{"nginx", "nginx version: nginx/1.22.1\nbuilt with OpenSSL 3.0.22 25 Aug 2026 (running with OpenSSL 3.0.19 27 Jan 2026)\nTLS SNI support enabled\n",
			"nginx/1.22.1", "OpenSSL 3.0.19"},
		{"nginx", "nginx version: nginx/1.26.3\nbuilt with OpenSSL 3.5.1 1 Jul 2025\n", "nginx/1.26.3", "OpenSSL 3.5.1"},
		{"haproxy", "HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/\nBuilt with OpenSSL version : OpenSSL 3.0.22 25 Aug 2026\nRunning on OpenSSL version : OpenSSL 3.0.19 27 Jan 2026\n",
			"haproxy/2.6.12-1+deb12u4", "OpenSSL 3.0.19"},
		{"haproxy", "garbage", "", ""},
	} {
		v, o := parsePeerVersion(tc.name, tc.out)
		if v != tc.version || o != tc.openssl {
			t.Errorf("%s %q: %q %q, want %q %q", tc.name, firstLine(tc.out), v, o, tc.version, tc.openssl)
		}
	}
}

func TestPeerTLSGroups(t *testing.T) {
	for v, want := range map[string]bool{
		"OpenSSL 3.0.19": false, "OpenSSL 3.4.1": false, "OpenSSL 3.5.0": true, "OpenSSL 3.10.2": true, "OpenSSL 4.0.0": true,
		"OpenSSL 1.1.1w": false, "LibreSSL 3.9.0": false, "": false, "OpenSSL x.y": false,
	} {
		if got := opensslHasMLKEM(v); got != want {
			t.Errorf("opensslHasMLKEM(%q) = %v", v, got)
		}
		groups, note, pq := peerTLSGroups(v)
		if pq != want || strings.HasPrefix(groups, "X25519MLKEM768") != want || note == "" {
			t.Errorf("peerTLSGroups(%q) = %q, %q, %v", v, groups, note, pq)
		}
	}
}

func TestParseTLSGroups(t *testing.T) {
	if g, err := parseTLSGroups("default"); err != nil || g != nil {
		t.Errorf("default: %v %v", g, err)
	}
	g, err := parseTLSGroups("X25519, p256,x25519mlkem768")
	if err != nil || !slices.Equal(g, []tls.CurveID{tls.X25519, tls.CurveP256, tls.X25519MLKEM768}) {
		t.Errorf("list: %v %v", g, err)
	}
	if _, err := parseTLSGroups("x448"); err == nil {
		t.Error("x448 accepted")
	}
}

func ptr[T any](v T) *T { return &v }

func TestComputeRatios(t *testing.T) {
	results := []RunReport{
		{Scenario: "keepalive-get", Target: "direct", RequestsPerSecond: 40000, Latency: LatencyUS{P99: 4000}},
		{Scenario: "keepalive-get", Target: "gateway", RequestsPerSecond: 20000, Latency: LatencyUS{P99: 6000}, GatewayCPUPerRequestUS: ptr(30.0)},
		{Scenario: "keepalive-get", Target: "nginx", RequestsPerSecond: 25000, Latency: LatencyUS{P99: 4000}, GatewayCPUPerRequestUS: ptr(20.0)},
		{Scenario: "keepalive-get", Target: "haproxy", Error: "not measured"},
		// A peer whose CPU was under one tick: no CPU ratio, the others.
		{Scenario: "pipelined-get", Target: "gateway", RequestsPerSecond: 10000, Latency: LatencyUS{P99: 1000}, GatewayCPUPerRequestUS: ptr(30.0)},
		{Scenario: "pipelined-get", Target: "haproxy", RequestsPerSecond: 40000, Latency: LatencyUS{P99: 2000}, GatewayCPUPerRequestUS: ptr(0.0)},
		{Scenario: "idle-conns-tls", Target: "gateway", Idle: &IdleReport{RSSPerConnBytes: 9000, GatewayCPUPerConnUS: ptr(500.0)}},
		{Scenario: "idle-conns-tls", Target: "nginx", Idle: &IdleReport{RSSPerConnBytes: 15000, GatewayCPUPerConnUS: ptr(400.0)}},
		// No gateway row: nothing to compare.
		{Scenario: "many-clients", Target: "nginx", RequestsPerSecond: 1, GatewayCPUPerRequestUS: ptr(1.0)},
	}
	got := computeRatios(results, []string{"nginx", "haproxy"})
	if len(got) != 3 {
		t.Fatalf("%d ratios, want 3: %+v", len(got), got)
	}
	near := func(p *float64, want float64) bool { return p != nil && *p > want-1e-9 && *p < want+1e-9 }
	r := got[0]
	if r.Scenario != "keepalive-get" || r.Peer != "nginx" || !near(r.CPUPerRequest, 1.5) || !near(r.RequestsPerSecond, 0.8) ||
		!near(r.P99, 1.5) || r.RSSPerConn != nil || *r.CPUUS != [2]float64{30, 20} {
		t.Errorf("keepalive-get/nginx: %+v", r)
	}
	r = got[1]
	if r.Scenario != "pipelined-get" || r.Peer != "haproxy" || r.CPUPerRequest != nil || !near(r.RequestsPerSecond, 0.25) || !near(r.P99, 0.5) {
		t.Errorf("pipelined-get/haproxy: %+v", r)
	}
	r = got[2]
	if r.Scenario != "idle-conns-tls" || !near(r.RSSPerConn, 0.6) || !near(r.CPUPerRequest, 1.25) || r.RequestsPerSecond != nil || r.P99 != nil {
		t.Errorf("idle-conns-tls/nginx: %+v", r)
	}
	var b bytes.Buffer
	writeRatios(&b, got)
	for _, w := range []string{"FRONTDOOR / PEER", "/ nginx", "1.50 (30.0us/20.0us)", "0.80 (20000/25000)", "0.60 (8.8KiB/14.6KiB)"} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("ratio table lacks %q:\n%s", w, b.String())
		}
	}
}

func TestCountEstablished(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:1F90 0200007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
   2: 0100007F:1F90 0300007F:C351 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1
   3: 0200007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0 20 4 30 10 -1
   4: 0100007F:1F90 0400007F:C352 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0
   5: 0100007F:11F90 0400007F:C352 01 00000000:00000000 03:00000000 00000000     0        0 0 3 0
`
	if n, err := countEstablished([]byte(table), 8080); err != nil || n != 2 {
		t.Errorf("countEstablished = %d, %v; want 2 (listener, client end, TIME_WAIT and other ports left out)", n, err)
	}
	if _, err := EstablishedOn(1); err != nil {
		t.Errorf("EstablishedOn: %v", err)
	}
}

func TestProcTreeSumsChildren(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep")
	}
	cmd := exec.Command(sleep, "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	tree, err := ProcTree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if tree[0] != os.Getpid() || !slices.Contains(tree, cmd.Process.Pid) {
		t.Errorf("ProcTree(self) = %v, want self first and the child %d", tree, cmd.Process.Pid)
	}
	// This process's RSS moves while other tests run (the runtime returns
	// memory): sample again (a few times) until the tree holds at least this
	// process and half the child.
	var self, child, sum ProcSample
	for attempt := range 5 {
		debug.FreeOSMemory()
		var err1, err2, err3 error
		self, err1 = SampleProc(os.Getpid())
		child, err2 = SampleProc(cmd.Process.Pid)
		sum, err3 = SampleTree(os.Getpid())
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatal(err1, err2, err3)
		}
		if sum.RSS >= self.RSS+child.RSS/2 && sum.CPU >= self.CPU {
			break
		}
		if attempt == 4 {
			t.Errorf("SampleTree %+v, self %+v, child %+v", sum, self, child)
		}
	}
	if n, err := TreeFDs(os.Getpid()); err != nil || n < 3 {
		t.Errorf("TreeFDs = %d, %v", n, err)
	}
	if _, err := ProcTree(1 << 30); err == nil {
		t.Error("ProcTree of a missing pid succeeded")
	}
}

func TestPinSelf(t *testing.T) {
	if err := canPin(); err != nil {
		t.Skip(err)
	}
	before, err := selfAffinity()
	if err != nil {
		t.Fatal(err)
	}
	restore, err := pinSelf(pinLoadCPU)
	if err != nil {
		t.Fatal(err)
	}
	// A goroutine on another thread sees the same mask.
	got := make(chan []int)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		c, _ := selfAffinity()
		got <- c
	}()
	if c := <-got; !slices.Equal(c, []int{pinLoadCPU}) {
		t.Errorf("pinned: affinity %v, want [%d]", c, pinLoadCPU)
	}
	restore()
	if after, _ := selfAffinity(); !slices.Equal(after, before) {
		t.Errorf("restored: affinity %v, want %v", after, before)
	}
}

func TestMainPeerUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	for _, args := range [][]string{
		{"--peers", "squid"}, {"--targets", "direct,envoy"}, {"--pin", "--cpu-pin"}, {"--tls-groups", "x448"},
	} {
		stderr.Reset()
		if code := Main(args, &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// TestSuitePeersSmoke runs a short keep-alive, two TLS and an idle scenario
// through each installed peer, in front of the stand-in mailboxd, with the
// stand-in gateway for the ratios. A few seconds.
func TestSuitePeersSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	var peers []string
	for _, name := range PeerNames {
		if _, err := findPeerBinary(name); err == nil {
			peers = append(peers, name)
		}
	}
	if len(peers) == 0 {
		t.Skip("neither nginx nor haproxy installed (make bench-peers installs them)")
	}
	t.Setenv(fakeEnv, "1")
	o := testSuiteOptions(t, "keepalive-get", "tls-keepalive-get", "tls-handshake-full", "idle-conns")
	o.targets = map[string]bool{"gateway": true}
	for _, p := range peers {
		o.targets[p] = true
	}
	o.peers = peers
	o.pin = canPin() == nil
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	before := pidsByComm(peers)
	var stdout, stderr bytes.Buffer
	code := runSuite(ctx, o, &stdout, &stderr)
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	if code != 0 {
		t.Fatalf("exit code %d", code)
	}
	rep := readReport(t, o.jsonFile)
	if len(rep.Peers) != len(peers) {
		t.Fatalf("report describes %d peers, want %d", len(rep.Peers), len(peers))
	}
	for _, p := range rep.Peers {
		if p.Error != "" || p.Version == "" || p.TLSGroups == "" || p.Command == "" {
			t.Errorf("peer %+v", p)
		}
	}
	for _, p := range peers {
		for _, sc := range []string{"keepalive-get", "tls-keepalive-get"} {
			r := findRow(rep, sc, p)
			if r == nil {
				t.Errorf("no %s/%s row", sc, p)
				continue
			}
			if r.Requests == 0 || r.ErrorsTotal != 0 || r.StatusClasses["2xx"] != r.Requests {
				t.Errorf("%s/%s: requests %d errors %v classes %v", sc, p, r.Requests, r.Errors, r.StatusClasses)
			}
			if r.GatewayCPUPerRequestUS == nil || r.GatewayRSSBytes == nil || r.BackendConnectionsOpen == nil {
				t.Errorf("%s/%s: proxy CPU, RSS or backend figures missing", sc, p)
			}
			if sc == "tls-keepalive-get" && (!r.TLS || !strings.HasPrefix(r.TLSParams, "TLS 1.3")) {
				t.Errorf("%s/%s: TLS %v %q", sc, p, r.TLS, r.TLSParams)
			}
		}
		r := findRow(rep, "idle-conns", p)
		if r == nil || r.Idle == nil || r.Idle.Held != o.idleConns || r.Idle.ConnsEstablished == nil || *r.Idle.ConnsEstablished < o.idleConns {
			t.Errorf("idle-conns/%s: %+v", p, r)
		}
	}
	// tls-handshake-full: the peers' rows and the ratios are like for
	// like, and the gateway also has a row at Go's default.
	kxPeer := map[string]string{}
	for _, p := range rep.Peers {
		kxPeer[p.Name] = kxX25519
		if p.PostQuantum {
			kxPeer[p.Name] = kxHybrid
		}
	}
	for _, r := range rep.Results {
		if r.Scenario != "tls-handshake-full" || r.Target == "direct" {
			continue
		}
		if r.Error != "" || r.Requests == 0 || r.KeyExchange == "" || !strings.HasSuffix(r.TLSParams, " "+r.KeyExchange) ||
			(r.Target != "gateway" && r.KeyExchange != kxPeer[r.Target]) {
			t.Errorf("tls-handshake-full/%s: key exchange %q, TLS %q, requests %d, error %q", r.Target, r.KeyExchange, r.TLSParams, r.Requests, r.Error)
		}
	}
	if !slices.ContainsFunc(rep.Results, func(r RunReport) bool { return r.Target == "gateway" && r.KeyExchange == kxHybrid }) {
		t.Error("no gateway (X25519MLKEM768) row")
	}
	if len(rep.Ratios) != 4*len(peers) {
		t.Errorf("%d ratios, want %d", len(rep.Ratios), 4*len(peers))
	}
	for _, r := range rep.Ratios {
		if (r.Scenario == "tls-handshake-full") != (r.KeyExchange != "") || (r.KeyExchange != "" && r.KeyExchange != kxPeer[r.Peer]) {
			t.Errorf("ratio %s / %s: key exchange %q", r.Scenario, r.Peer, r.KeyExchange)
		}
	}
	for _, w := range append([]string{"FRONTDOOR / PEER", "PROXY CPU/REQ"}, peers...) {
		if !strings.Contains(stdout.String(), w) {
			t.Errorf("table lacks %q", w)
		}
	}
	// Every peer process, workers included, is gone.
	if left := newPids(before, pidsByComm(peers)); len(left) > 0 {
		t.Errorf("peer processes left after the suite: %v", left)
	}
}

// pidsByComm lists the processes whose command name (/proc/PID/comm) is one
// of names.
func pidsByComm(names []string) map[int]string {
	out := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if c := strings.TrimSpace(string(b)); err == nil && slices.Contains(names, c) {
			out[pid] = c
		}
	}
	return out
}

func newPids(before, after map[int]string) map[int]string {
	for pid := range before {
		delete(after, pid)
	}
	return after
}

// TestComputeRatiosRounds: with --rounds, the ratio divides the medians of
// the rounds (the mean of the middle two for an even count) and the range
// holds the lowest and highest ratio of one round's rows.
func TestComputeRatiosRounds(t *testing.T) {
	row := func(target string, round int, cpu, rps float64) RunReport {
		return RunReport{Scenario: "keepalive-get", Target: target, Round: round, RequestsPerSecond: rps,
			Latency: LatencyUS{P99: rps / 10}, GatewayCPUPerRequestUS: ptr(cpu)}
	}
	results := []RunReport{
		row("gateway", 1, 12, 40000), row("nginx", 1, 20, 30000),
		row("gateway", 2, 11, 50000), row("nginx", 2, 22, 20000),
		row("gateway", 3, 13, 45000), row("nginx", 3, 18, 25000),
		row("gateway", 4, 30, 10000), // a round the peer did not finish
		{Scenario: "keepalive-get", Target: "nginx", Round: 4, Error: "not measured"},
	}
	got := computeRatios(results, []string{"nginx"})
	if len(got) != 1 {
		t.Fatalf("%d ratios, want 1: %+v", len(got), got)
	}
	r := got[0]
	near := func(p float64, want float64) bool { return p > want-1e-9 && p < want+1e-9 }
	// gateway CPU 11, 12, 13, 30 -> 12.5; nginx 18, 20, 22 -> 20.
	if r.CPUPerRequest == nil || !near(*r.CPUPerRequest, 12.5/20) || *r.CPUUS != [2]float64{12.5, 20} {
		t.Errorf("CPU ratio %v of %v, want 0.625 of 12.5/20", r.CPUPerRequest, r.CPUUS)
	}
	// Rounds 1-3: 0.6, 0.5, 0.7222.
	if r.CPURange == nil || !near(r.CPURange[0], 0.5) || !near(r.CPURange[1], 13.0/18) {
		t.Errorf("CPU range %v, want [0.5 0.722]", r.CPURange)
	}
	if r.Rounds != 3 || r.RequestsPerSecond == nil || !near(*r.RequestsPerSecond, 42500.0/25000) {
		t.Errorf("rounds %d, req/s ratio %v; want 3 and 1.7", r.Rounds, r.RequestsPerSecond)
	}
	var b bytes.Buffer
	writeRatios(&b, got)
	for _, w := range []string{"/ nginx (median of 3)", "0.62 (12.5us/20.0us) [0.50-0.72]"} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("ratio table lacks %q:\n%s", w, b.String())
		}
	}
}

// TestSuiteRows: a handshake-bound scenario compared with a peer without
// ML-KEM measures the gateway twice, offered only X25519 (as that peer) and
// at the default; --tls-groups, other scenarios, peers with ML-KEM and
// runs without the gateway leave every row at the same offer.
func TestSuiteRows(t *testing.T) {
	sc := func(name string) Scenario {
		for _, s := range Scenarios {
			if s.Name == name {
				return s
			}
		}
		t.Fatalf("no scenario %s", name)
		return Scenario{}
	}
	newSuite := func(pq ...bool) *suite {
		s := &suite{o: suiteOptions{targets: map[string]bool{"direct": true, "gateway": true}}, peerInfo: map[string]*PeerInfo{}}
		for i, p := range pq {
			name := PeerNames[i]
			s.o.peers = append(s.o.peers, name)
			s.o.targets[name] = true
			s.peerInfo[name] = &PeerInfo{Name: name, PostQuantum: p}
		}
		return s
	}
	str := func(rows []row) string {
		var b []string
		for _, r := range rows {
			b = append(b, strings.TrimSpace(r.target+" "+r.kx))
		}
		return strings.Join(b, ", ")
	}
	split := "direct, gateway X25519, gateway X25519MLKEM768, nginx X25519, haproxy X25519"
	plain := "direct, gateway, nginx, haproxy"
	for _, name := range []string{"tls-handshake-full", "tls-handshake-resumed", "idle-conns-tls"} {
		if got := str(newSuite(false, false).rows(sc(name))); got != split {
			t.Errorf("%s: %s, want %s", name, got, split)
		}
	}
	for _, name := range []string{"keepalive-get", "tls-keepalive-get", "idle-conns", "imap-login-tls"} {
		if got := str(newSuite(false, false).rows(sc(name))); got != plain {
			t.Errorf("%s: %s, want %s", name, got, plain)
		}
	}
	s := newSuite(false, false)
	s.o.tlsGroupsSet = true
	if got := str(s.rows(sc("tls-handshake-full"))); got != plain {
		t.Errorf("--tls-groups: %s, want %s", got, plain)
	}
	if got := str(newSuite(true, true).rows(sc("tls-handshake-full"))); got != plain {
		t.Errorf("peers with ML-KEM: %s, want %s", got, plain)
	}
	// One of each: each peer is compared with the gateway row of its key
	// exchange.
	if got, want := str(newSuite(true, false).rows(sc("tls-handshake-full"))),
		"direct, gateway X25519, gateway X25519MLKEM768, nginx X25519MLKEM768, haproxy X25519"; got != want {
		t.Errorf("mixed peers: %s, want %s", got, want)
	}
	s = newSuite(false, false)
	s.peerInfo["nginx"].Error = "not installed"
	if got, want := str(s.rows(sc("tls-handshake-full"))), "direct, gateway X25519, gateway X25519MLKEM768, nginx, haproxy X25519"; got != want {
		t.Errorf("nginx missing: %s, want %s", got, want)
	}
	s = newSuite(false, false)
	delete(s.o.targets, "gateway")
	if got := str(s.rows(sc("tls-handshake-full"))); got != plain {
		t.Errorf("without the gateway: %s, want %s", got, plain)
	}
}

// TestComputeRatiosKeyExchange: the ratios divide the gateway row with the
// peer's key exchange; the post-quantum row has none, and the tables name
// the rows.
func TestComputeRatiosKeyExchange(t *testing.T) {
	results := []RunReport{
		{Scenario: "tls-handshake-full", Target: "gateway", KeyExchange: kxX25519, GatewayCPUPerRequestUS: ptr(300.0), TLS: true,
			TLSParams: "TLS 1.3 TLS_AES_128_GCM_SHA256 X25519"},
		{Scenario: "tls-handshake-full", Target: "gateway", KeyExchange: kxHybrid, GatewayCPUPerRequestUS: ptr(470.0), TLS: true,
			TLSParams: "TLS 1.3 TLS_AES_128_GCM_SHA256 X25519"}, // not what its label says
		{Scenario: "tls-handshake-full", Target: "nginx", KeyExchange: kxX25519, GatewayCPUPerRequestUS: ptr(400.0), TLS: true},
	}
	got := computeRatios(results, []string{"nginx"})
	if len(got) != 1 || got[0].KeyExchange != kxX25519 || got[0].CPUUS == nil || *got[0].CPUUS != [2]float64{300, 400} {
		t.Fatalf("ratios %+v, want one of gateway (X25519) 300us / nginx 400us", got)
	}
	var b bytes.Buffer
	writeTable(&b, &Report{Results: results, Ratios: got, Peers: []PeerInfo{{Name: "nginx", OpenSSL: "OpenSSL 3.0.19"}}})
	for _, w := range []string{"gateway (X25519)", "gateway (X25519MLKEM768)", "nginx (X25519)", "gateway (X25519) / nginx", "0.75 (300.0us/400.0us)",
		"the gateway was measured twice", "tls-handshake-full/gateway (X25519MLKEM768): negotiated TLS 1.3 TLS_AES_128_GCM_SHA256 X25519, not"} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("table lacks %q:\n%s", w, b.String())
		}
	}
	if strings.Contains(b.String(), "cheaper than the gateway's") {
		t.Errorf("table says the peer's handshake is cheaper although it was compared like for like:\n%s", b.String())
	}
}
