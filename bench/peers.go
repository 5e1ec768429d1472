package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"frontdoor/tlsterm"
)

// The peers are established reverse proxies the suite measures side by
// side with the gateway (`frontdoor bench --peers nginx,haproxy`): each is
// started as a child process with a config rendered from a template in
// bench/peers/, in front of the same mailboxd, and runs the same scenarios.
//
//go:embed peers/nginx.conf peers/haproxy.cfg
var peerTemplates embed.FS

// PeerNames are the peers the suite knows, in the order their rows are
// printed.
var PeerNames = []string{"nginx", "haproxy"}

// peerKind describes how to run one peer.
type peerKind struct {
	name     string
	template string // file in peerTemplates
	confName string // rendered config's name in the peer's directory
	// versionArgs print the version and the OpenSSL it runs with.
	versionArgs []string
}

var peerKinds = map[string]peerKind{
	"nginx":   {name: "nginx", template: "peers/nginx.conf", confName: "nginx.conf", versionArgs: []string{"-V"}},
	"haproxy": {name: "haproxy", template: "peers/haproxy.cfg", confName: "haproxy.cfg", versionArgs: []string{"-vv"}},
}

func isPeer(name string) bool {
	_, ok := peerKinds[name]
	return ok
}

// peerConfig holds what the templates fill in.
type peerConfig struct {
	// Prefix is the peer's own directory (its config, pid file, temp
	// files, haproxy's PEM file).
	Prefix string
	// Workers is nginx's worker_processes, haproxy's nbthread: the
	// gateway's event loops.
	Workers int
	// MaxConns is nginx's worker_connections, haproxy's maxconn; NoFile
	// nginx's worker_rlimit_nofile, haproxy's ulimit-n. FDCapped says
	// NoFile is below twice MaxConns (the hard limit): HAProxy then
	// needs "no strict-limits" to start.
	MaxConns, NoFile int
	FDCapped         bool
	// HTTPPort and TLSPort are the listeners on 127.0.0.1.
	HTTPPort, TLSPort int
	// Backend is mailboxd's host:port.
	Backend string
	// IdleTimeout is the client keep-alive timeout (and the upstream
	// one), e.g. "600s".
	IdleTimeout string
	// CertFile and KeyFile are the suite's self-signed certificate and
	// key; CertKeyFile both in one file (HAProxy's crt).
	CertFile, KeyFile, CertKeyFile string
	// TLSGroups is the key-exchange groups list (OpenSSL names), and
	// TLSGroupsNote says why.
	TLSGroups, TLSGroupsNote string
}

// renderPeerConfig renders the config template of peer name.
func renderPeerConfig(name string, c peerConfig) ([]byte, error) {
	k, ok := peerKinds[name]
	if !ok {
		return nil, fmt.Errorf("unknown peer %q", name)
	}
	src, err := peerTemplates.ReadFile(k.template)
	if err != nil {
		return nil, err
	}
	t, err := template.New(k.confName).Option("missingkey=error").Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", k.template, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, c); err != nil {
		return nil, fmt.Errorf("%s: %w", k.template, err)
	}
	return b.Bytes(), nil
}

// PeerInfo describes one peer the suite ran (Report.Peers).
type PeerInfo struct {
	Name    string `json:"name"`
	Binary  string `json:"binary"`
	Version string `json:"version"`
	// OpenSSL is the library the peer runs with, e.g. "OpenSSL 3.0.19".
	OpenSSL string `json:"openssl,omitempty"`
	// TLSGroups is the key-exchange groups list it was configured with;
	// PostQuantum says whether X25519MLKEM768 is in it (OpenSSL 3.5 and
	// later).
	TLSGroups   string `json:"tls_groups"`
	PostQuantum bool   `json:"post_quantum"`
	// Command is the command line it ran with.
	Command string `json:"command,omitempty"`
	// Error says why its rows are missing, if they are.
	Error string `json:"error,omitempty"`
}

// findPeerBinary finds a peer's executable: on $PATH, or in the sbin
// directories a package installs it to (not on a user's $PATH).
func findPeerBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not installed (make bench-peers installs it from Debian)", name)
}

var (
	nginxVersionRE   = regexp.MustCompile(`nginx version: (\S+)`)
	haproxyVersionRE = regexp.MustCompile(`HAProxy version (\S+)`)
	// "running with OpenSSL 3.0.19 27 Jan 2026" (nginx), "Running on
	// OpenSSL version : OpenSSL 3.0.19 27 Jan 2026" (haproxy); a binary
	// built against the library it runs with may print only "built with".
	runningOpenSSLRE = regexp.MustCompile(`(?i)running (?:with|on openssl version :) (OpenSSL [0-9][0-9.]*[a-z]?)`)
	builtOpenSSLRE   = regexp.MustCompile(`(?i)built with (?:openssl version : )?(OpenSSL [0-9][0-9.]*[a-z]?)`)
)

// peerVersion runs the peer's version command and parses what it prints.
func peerVersion(name, bin string) (version, openssl string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, peerKinds[name].versionArgs...).CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("%s %s: %v: %s", bin, strings.Join(peerKinds[name].versionArgs, " "), err, bytes.TrimSpace(out))
	}
	version, openssl = parsePeerVersion(name, string(out))
	if version == "" {
		return "", "", fmt.Errorf("%s: no version in %q", bin, firstLine(string(out)))
	}
	return version, openssl, nil
}

// parsePeerVersion reads the version and the OpenSSL library from the
// output of `nginx -V` or `haproxy -vv`.
func parsePeerVersion(name, out string) (version, openssl string) {
	re := nginxVersionRE
	if name == "haproxy" {
		re = haproxyVersionRE
	}
	if m := re.FindStringSubmatch(out); m != nil {
		version = m[1]
		if name == "haproxy" {
			version = "haproxy/" + version
		}
	}
	if m := runningOpenSSLRE.FindStringSubmatch(out); m != nil {
		openssl = m[1]
	} else if m := builtOpenSSLRE.FindStringSubmatch(out); m != nil {
		openssl = m[1]
	}
	return version, openssl
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// opensslHasMLKEM says whether an OpenSSL version ("OpenSSL 3.5.0") has the
// hybrid key exchange X25519MLKEM768 built in: 3.5 and later.
func opensslHasMLKEM(v string) bool {
	f := strings.Fields(v)
	if len(f) < 2 || f[0] != "OpenSSL" {
		return false
	}
	parts := strings.SplitN(f[1], ".", 3)
	if len(parts) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return major > 3 || (major == 3 && minor >= 5)
}

// peerTLSGroups returns the key-exchange groups a peer is configured with
// for its OpenSSL, and a comment for the config: the gateway's (Go's)
// default is X25519MLKEM768 first; OpenSSL before 3.5 (Debian 12 has 3.0)
// has no ML-KEM, so such a peer does X25519, a cheaper handshake.
func peerTLSGroups(openssl string) (groups, note string, pq bool) {
	if opensslHasMLKEM(openssl) {
		return "X25519MLKEM768:X25519:P-256", "Post-quantum hybrid first, as the gateway (Go) prefers.", true
	}
	return "X25519:P-256", fmt.Sprintf("%s has no X25519MLKEM768 (3.5 and later do): X25519, a cheaper handshake than the gateway's default.", orDash(openssl)), false
}

// peerArgv is the command line that runs peer name in the foreground with
// the config conf in directory prefix.
func peerArgv(name, bin, prefix, conf string) []string {
	switch name {
	case "nginx":
		// -p: paths relative to the prefix; -e: the error log before the
		// config is read (the config then sends it to stderr too).
		return []string{bin, "-p", prefix + "/", "-c", conf, "-e", "stderr"}
	default:
		// -db: foreground, no daemon; one process with nbthread threads.
		return []string{bin, "-db", "-f", conf}
	}
}

// peerCheckArgv is the command line that checks the config conf.
func peerCheckArgv(name, bin, prefix, conf string) []string {
	switch name {
	case "nginx":
		return []string{bin, "-t", "-q", "-p", prefix + "/", "-c", conf, "-e", "stderr"}
	default:
		return []string{bin, "-c", "-q", "-f", conf}
	}
}

// writePeerConfig prepares the peer's directory c.Prefix (temp paths,
// HAProxy's PEM file with certificate and key) and writes the rendered
// config into it; it returns the config's path.
func writePeerConfig(name string, c peerConfig) (string, error) {
	k, ok := peerKinds[name]
	if !ok {
		return "", fmt.Errorf("unknown peer %q", name)
	}
	if err := os.MkdirAll(filepath.Join(c.Prefix, "tmp"), 0o700); err != nil {
		return "", err
	}
	if name == "haproxy" && c.CertKeyFile != "" {
		cert, err1 := os.ReadFile(c.CertFile)
		key, err2 := os.ReadFile(c.KeyFile)
		if err := errors.Join(err1, err2); err != nil {
			return "", err
		}
		if err := os.WriteFile(c.CertKeyFile, append(append(cert, '\n'), key...), 0o600); err != nil {
			return "", err
		}
	}
	b, err := renderPeerConfig(name, c)
	if err != nil {
		return "", err
	}
	conf := filepath.Join(c.Prefix, k.confName)
	return conf, os.WriteFile(conf, b, 0o600)
}

// checkPeerConfig runs the peer's own config check on conf.
func checkPeerConfig(name, bin, prefix, conf string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	argv := peerCheckArgv(name, bin, prefix, conf)
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Ratio compares the gateway with one peer in one scenario: frontdoor's
// figure divided by the peer's. Below 1 is better for frontdoor in CPU,
// p99 and memory; above 1 is better in requests/s. A ratio is nil when
// either figure is missing.
type Ratio struct {
	Scenario string `json:"scenario"`
	Peer     string `json:"peer"`
	// Loadgen is the external load generator both rows ran with; empty
	// for the built-in one.
	Loadgen string `json:"loadgen,omitempty"`
	// KeyExchange is the key_exchange of both rows, when the suite chose
	// one (RunReport.KeyExchange): the gateway's row with the peer's key
	// exchange, e.g. "gateway (X25519)", was the one divided.
	KeyExchange string `json:"key_exchange,omitempty"`
	// CPUPerRequest compares CPU per request (per connection for the
	// handshake scenarios, per connection opened for the idle ones).
	CPUPerRequest     *float64 `json:"cpu_per_request,omitempty"`
	RequestsPerSecond *float64 `json:"requests_per_s,omitempty"`
	P99               *float64 `json:"p99,omitempty"`
	// RSSPerConn compares the memory per idle connection (idle rows).
	RSSPerConn *float64 `json:"rss_per_conn,omitempty"`
	// The figures compared: [frontdoor, peer].
	CPUUS    *[2]float64 `json:"cpu_us,omitempty"`
	ReqPerS  *[2]float64 `json:"req_per_s,omitempty"`
	P99US    *[2]float64 `json:"p99_us,omitempty"`
	RSSBytes *[2]float64 `json:"rss_per_conn_bytes,omitempty"`
	// Rounds is how many rounds the medians above are of (--rounds); 0
	// for a single run. CPURange is the lowest and highest CPU ratio of
	// one round's rows.
	Rounds   int         `json:"rounds,omitempty"`
	CPURange *[2]float64 `json:"cpu_ratio_range,omitempty"`
}

// computeRatios pairs every gateway row with the same scenario's row of each
// peer (in peers' order) with the same load generator and key exchange, and
// divides their figures: a gateway row whose key exchange no peer did (the
// post-quantum row of a scenario compared with peers without ML-KEM) has
// no ratio. Rows that were not measured (Error) are skipped. With --rounds, a scenario has a row per
// round for each target: the ratio divides the medians of the rounds, and
// CPURange holds the lowest and highest ratio of one round's rows.
func computeRatios(results []RunReport, peers []string) []Ratio {
	type key struct{ scenario, target, loadgen, kx string }
	var gateways []key
	rows := map[key][]*RunReport{}
	for i := range results {
		r := &results[i]
		if r.Error != "" {
			continue
		}
		k := key{r.Scenario, r.Target, r.Loadgen, r.KeyExchange}
		if r.Target == "gateway" && rows[k] == nil {
			gateways = append(gateways, k)
		}
		rows[k] = append(rows[k], r)
	}
	var out []Ratio
	for _, gk := range gateways {
		gw := rows[gk]
		for _, p := range peers {
			pr := rows[key{gk.scenario, p, gk.loadgen, gk.kx}]
			if pr == nil {
				continue
			}
			r := Ratio{Scenario: gk.scenario, Peer: p, Loadgen: gk.loadgen, KeyExchange: gk.kx}
			if gw[0].Idle != nil && pr[0].Idle != nil {
				rss := func(rr *RunReport) *float64 { return &rr.Idle.RSSPerConnBytes }
				cpu := func(rr *RunReport) *float64 { return rr.Idle.GatewayCPUPerConnUS }
				r.RSSPerConn, r.RSSBytes = ratioOf(medianOf(gw, rss), medianOf(pr, rss))
				r.CPUPerRequest, r.CPUUS = ratioOf(medianOf(gw, cpu), medianOf(pr, cpu))
				r.CPURange = roundRange(gw, pr, cpu)
			} else {
				cpu := func(rr *RunReport) *float64 { return rr.GatewayCPUPerRequestUS }
				rps := func(rr *RunReport) *float64 { return &rr.RequestsPerSecond }
				p99 := func(rr *RunReport) *float64 { return &rr.Latency.P99 }
				r.CPUPerRequest, r.CPUUS = ratioOf(medianOf(gw, cpu), medianOf(pr, cpu))
				r.RequestsPerSecond, r.ReqPerS = ratioOf(medianOf(gw, rps), medianOf(pr, rps))
				r.P99, r.P99US = ratioOf(medianOf(gw, p99), medianOf(pr, p99))
				r.CPURange = roundRange(gw, pr, cpu)
			}
			if len(gw) > 1 || len(pr) > 1 {
				r.Rounds = min(len(gw), len(pr))
			}
			out = append(out, r)
		}
	}
	return out
}

// medianOf returns the median of a figure over rows (the mean of the middle
// two for an even count), or nil when no row has it.
func medianOf(rows []*RunReport, figure func(*RunReport) *float64) *float64 {
	var v []float64
	for _, r := range rows {
		if f := figure(r); f != nil {
			v = append(v, *f)
		}
	}
	if len(v) == 0 {
		return nil
	}
	slices.Sort(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + m) / 2
	}
	return &m
}

// roundRange returns the lowest and highest ratio of a figure between the
// gateway's and the peer's rows of the same round, or nil with fewer than
// two rounds measured on both.
func roundRange(gw, peer []*RunReport, figure func(*RunReport) *float64) *[2]float64 {
	var lo, hi float64
	n := 0
	for _, g := range gw {
		for _, p := range peer {
			if g.Round == 0 || g.Round != p.Round {
				continue
			}
			r, _ := ratioOf(figure(g), figure(p))
			if r == nil {
				continue
			}
			if n == 0 || *r < lo {
				lo = *r
			}
			if n == 0 || *r > hi {
				hi = *r
			}
			n++
		}
	}
	if n < 2 {
		return nil
	}
	return &[2]float64{lo, hi}
}

// ratioOf returns a/b and the pair, or nils when either is missing or b is
// not positive (a peer that used no measurable CPU: under the 10 ms tick).
func ratioOf(a, b *float64) (*float64, *[2]float64) {
	if a == nil || b == nil || *b <= 0 || *a < 0 {
		return nil, nil
	}
	r := *a / *b
	return &r, &[2]float64{*a, *b}
}

// proxyUnder is the proxy a row measures: the gateway or a peer.
type proxyUnder struct {
	addr, tlsAddr string
	pid           int
	// tree: the proxy is a process tree (a peer), sampled as a whole.
	tree bool
	// baseOpen is mailboxd's connections_open before the proxy started,
	// less the stats probe's: connections other processes hold, which
	// the row's backend figure leaves out.
	baseOpen int64
}

func (p *proxyUnder) sample() (ProcSample, error) {
	if p.tree {
		return SampleTree(p.pid)
	}
	return SampleProc(p.pid)
}

// proxyFor returns the proxy target's rows measure; nil for direct (and
// for a peer that is not running).
func (s *suite) proxyFor(target string) *proxyUnder {
	switch {
	case target == "gateway" && s.gw != nil:
		return &proxyUnder{addr: s.gwAddr, tlsAddr: s.gwTLSAddr, pid: s.gw.pid()}
	case s.peer != nil && s.peer.name == target:
		return &proxyUnder{addr: s.peer.addr, tlsAddr: s.peer.tlsAddr, pid: s.peer.pid(), tree: true, baseOpen: s.peer.baseOpen}
	}
	return nil
}

// peerProc is a running peer.
type peerProc struct {
	*child
	name          string
	cfg           peerConfig
	addr, tlsAddr string
	baseOpen      int64
}

// certFiles are the paths of the suite's TLS certificate and key: where
// the gateway's tls_self_signed listener would write its own.
func (s *suite) certFiles() (cert, key string) {
	return filepath.Join(s.dir, "tls", "cert.pem"), filepath.Join(s.dir, "tls", "key.pem")
}

// writeCertificate writes the self-signed certificate (ECDSA P-256, as the
// gateway's tls_self_signed makes it) that the gateway and every peer
// serve, so that all of them sign handshakes with the same key type.
func (s *suite) writeCertificate() error {
	dir := filepath.Join(s.dir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	_, _, err := tlsterm.WriteSelfSigned(dir, []string{tlsServerName, "127.0.0.1", "::1"}, 24*time.Hour)
	return err
}

// preparePeers finds every selected peer and its version. A peer that is
// not installed gets an Error and no rows.
func (s *suite) preparePeers() {
	s.peerInfo = map[string]*PeerInfo{}
	for _, name := range s.o.peers {
		info := &PeerInfo{Name: name}
		s.peerInfo[name] = info
		bin, err := findPeerBinary(name)
		if err == nil {
			info.Binary = bin
			info.Version, info.OpenSSL, err = peerVersion(name, bin)
		}
		if err != nil {
			info.Error = err.Error()
			fmt.Fprintf(s.stderr, "frontdoor bench: peer %s will not be measured: %v\n", name, err)
			continue
		}
		info.TLSGroups, _, info.PostQuantum = peerTLSGroups(info.OpenSSL)
		fmt.Fprintf(s.stderr, "peer %s: %s, %s, TLS groups %s\n", name, info.Version, orDash(info.OpenSSL), info.TLSGroups)
	}
}

// peerReport lists the peers in PeerNames order for the report.
func (s *suite) peerReport() []PeerInfo {
	var out []PeerInfo
	for _, name := range s.o.peers {
		if info := s.peerInfo[name]; info != nil {
			out = append(out, *info)
		}
	}
	return out
}

// startPeer renders the peer's config with fresh ports into its own
// directory, starts it (pinned with --pin) and waits until it routes a
// request to mailboxd in plaintext and over TLS.
func (s *suite) startPeer(ctx context.Context, name string) error {
	info := s.peerInfo[name]
	var ports [2]int
	for i := range ports {
		var err error
		if ports[i], err = freePort(); err != nil {
			return fmt.Errorf("picking a port: %w", err)
		}
	}
	workers := s.o.loops
	if workers == 0 {
		workers = runtime.NumCPU()
	}
	// Client connections (idle-conns holds --idle-conns at once) plus
	// backend ones; descriptors for twice that, as far as the hard limit
	// allows (HAProxy refuses to start when it cannot raise its limit to
	// what it asks for; idle client connections need no backend one).
	maxConns := max(s.o.idleConns+2048, 4096)
	noFile, capped := 2*maxConns+1024, false
	if hard := nofileHardLimit(); hard > 0 && uint64(noFile) > hard {
		noFile, capped = int(hard), true
	}
	cert, key := s.certFiles()
	prefix := filepath.Join(s.dir, "peers", name)
	c := peerConfig{
		Prefix: prefix, Workers: workers, MaxConns: maxConns, NoFile: noFile, FDCapped: capped,
		HTTPPort: ports[0], TLSPort: ports[1], Backend: s.mbx.addr,
		IdleTimeout: "600s", // the gateway's [timeouts] idle as writeConfig sets it
		CertFile:    cert, KeyFile: key, CertKeyFile: filepath.Join(prefix, "cert-key.pem"),
	}
	c.TLSGroups, c.TLSGroupsNote, _ = peerTLSGroups(info.OpenSSL)
	conf, err := writePeerConfig(name, c)
	if err != nil {
		return fmt.Errorf("writing the %s config: %w", name, err)
	}
	// Connections other processes (the gateway) hold to mailboxd, so that
	// the peer's row counts only its own.
	var baseOpen int64
	if st, err := mailboxdStats(s.mbx.addr); err == nil {
		baseOpen = max(st.ConnectionsOpen-s.mbx.probeOpen, 0)
	}
	argv := s.pinArgv(pinProxyCPU, peerArgv(name, info.Binary, prefix, conf))
	info.Command = strings.Join(argv, " ")
	ch, err := startChild(name, argv, prefix)
	if err != nil {
		return err
	}
	p := &peerProc{child: ch, name: name, cfg: c, baseOpen: baseOpen,
		addr: "127.0.0.1:" + strconv.Itoa(c.HTTPPort), tlsAddr: "127.0.0.1:" + strconv.Itoa(c.TLSPort)}
	s.peer = p
	hdr := http.Header{"X-AnchorMailbox": {anchorMailbox}}
	if err := waitReady(ctx, ch, probeClient, "http://"+p.addr+"/owa/", hdr, s.o.startupTimeout); err != nil {
		return err
	}
	if err := waitReady(ctx, ch, tlsProbeClient, "https://"+p.tlsAddr+"/owa/", hdr, s.o.startupTimeout); err != nil {
		return fmt.Errorf("TLS listener: %w", err)
	}
	pin := ""
	if s.o.pin {
		pin = fmt.Sprintf(", pinned to CPU %d", pinProxyCPU)
	}
	fmt.Fprintf(s.stderr, "%s listening on %s, TLS on %s (pid %d, %d workers%s)\n", name, p.addr, p.tlsAddr, ch.pid(), workers, pin)
	return nil
}

// stopPeer stops the running peer, if any. SIGTERM makes nginx's master
// stop its workers and haproxy exit; whatever of its process tree is left
// in its process group then is killed, so no worker outlives it.
func (s *suite) stopPeer() {
	p := s.peer
	if p == nil {
		return
	}
	s.peer = nil
	pid := p.pid()
	tree, _ := ProcTree(pid)
	p.stop()
	if len(tree) > 1 {
		killStragglers(tree[1:], pid)
	}
}

// measurePeer runs scenario sc against peer name, started afresh for the
// row (a clean memory baseline for the idle scenarios, and backend
// connections of its own) and stopped after it.
func (s *suite) measurePeer(ctx context.Context, sc Scenario, name string) (*RunReport, error) {
	defer s.stopPeer()
	if err := s.startPeer(ctx, name); err != nil {
		if s.peer != nil {
			s.peer.dumpOutput(s.stderr)
		}
		if ctx.Err() == nil {
			// It would fail the same way for every other scenario.
			s.peerInfo[name].Error = "did not start: " + err.Error()
		}
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	var (
		rr  *RunReport
		err error
	)
	if sc.Idle {
		rr, err = s.measureIdle(ctx, sc, name)
	} else {
		rr, err = s.measure(ctx, sc, name)
	}
	if s.peer != nil && s.peer.exited() {
		s.peer.dumpOutput(s.stderr)
		s.peerInfo[name].Error = fmt.Sprintf("exited during %s: %v", sc.Name, s.peer.exitErr())
		return nil, fmt.Errorf("%s %s", name, s.peerInfo[name].Error)
	}
	return rr, err
}

// writeRatios prints the ratio table: one row per scenario and peer, each
// ratio with the two figures it divides.
func writeRatios(w io.Writer, ratios []Ratio) {
	rows := [][]string{{"SCENARIO", "FRONTDOOR / PEER", "CPU/REQ", "REQ/S", "P99", "RSS/CONN"}}
	for _, r := range ratios {
		peer := "/ " + r.Peer
		if r.KeyExchange != "" {
			// Which of the gateway's rows: the one with the peer's key
			// exchange.
			peer = fmt.Sprintf("gateway (%s) / %s", r.KeyExchange, r.Peer)
		}
		if r.Loadgen != "" {
			peer += " [" + r.Loadgen + "]"
		}
		cpu := fmtRatio(r.CPUPerRequest, r.CPUUS, func(v float64) string { return fmt.Sprintf("%.1fus", v) })
		if r.CPURange != nil {
			cpu += fmt.Sprintf(" [%.2f-%.2f]", r.CPURange[0], r.CPURange[1])
		}
		if r.Rounds > 1 {
			peer += fmt.Sprintf(" (median of %d)", r.Rounds)
		}
		rows = append(rows, []string{
			r.Scenario, peer,
			cpu,
			fmtRatio(r.RequestsPerSecond, r.ReqPerS, func(v float64) string { return fmt.Sprintf("%.0f", v) }),
			fmtRatio(r.P99, r.P99US, fmtUS),
			fmtRatio(r.RSSPerConn, r.RSSBytes, fmtBytes),
		})
	}
	writeColumns(w, rows, 2)
}

// fmtRatio formats "1.93 (29.2us/15.1us)", or "-".
func fmtRatio(r *float64, pair *[2]float64, f func(float64) string) string {
	if r == nil || pair == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f (%s/%s)", *r, f(pair[0]), f(pair[1]))
}

// parseTLSGroups parses --tls-groups: "default" (nil: crypto/tls's own
// preferences) or a comma-separated list of key exchanges.
func parseTLSGroups(s string) ([]tls.CurveID, error) {
	if s = strings.TrimSpace(strings.ToLower(s)); s == "" || s == "default" {
		return nil, nil
	}
	var out []tls.CurveID
	for _, name := range splitList(s) {
		switch name {
		case "x25519mlkem768":
			out = append(out, tls.X25519MLKEM768)
		case "x25519":
			out = append(out, tls.X25519)
		case "p256", "p-256", "secp256r1", "prime256v1":
			out = append(out, tls.CurveP256)
		default:
			return nil, fmt.Errorf("unknown group %q (want default, or x25519mlkem768, x25519, p256)", name)
		}
	}
	return out, nil
}
