// Package bench is frontdoor's benchmark suite: a low-overhead HTTP/1.1 load
// generator (Run), process CPU and memory accounting from /proc
// (SampleProc, CPUPerRequest), and the scenario runner behind
// `frontdoor bench` (Main), which starts a reference mailbox server and the
// gateway as child processes and measures every scenario twice: directly
// against the mailbox server, which is the ceiling, and through the gateway.
// The difference between the two rows, and the gateway's CPU time per
// request, are what the suite is for.
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
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"frontdoor/identity"
)

// Scenario is one benchmark workload. Zero Conns and Pipeline take the
// --conns and --pipeline flags.
type Scenario struct {
	Name        string
	Description string
	Conns       int
	Pipeline    int
	// RequestsPerConn > 0 closes each connection after that many requests
	// and opens a new one (see Options.RequestsPerConn).
	RequestsPerConn int
	// Header is added to the base request (GET /owa/ with X-AnchorMailbox).
	Header []Header
	// TLS runs the gateway row against the gateway's TLS listener. mailboxd
	// has no TLS, so the direct row runs the same load in plaintext: the
	// ceiling.
	TLS bool
	// Resume gives the TLS client a session cache, so that handshakes after
	// the first (the warm-up's) resume a session with a ticket.
	Resume bool
	// LatencyFromDial counts each connection's first request from the start
	// of its dial (see Options.LatencyFromDial).
	LatencyFromDial bool
	// Idle makes the scenario an idle-connection measurement (see
	// measureIdle) rather than a load run: --idle-conns keep-alive
	// connections are opened and held, and the gateway's memory is sampled.
	// It has no direct row.
	Idle bool
	// Auth makes the scenario authenticated (see AuthMode): its requests
	// go to /ews/, a protocol that requires Basic, and carry an
	// Authorization field; the gateway forwards them with a signed
	// identity assertion to a second mailboxd that verifies it. The
	// direct row sends the same requests to the mailboxd without identity
	// checks: the ceiling.
	Auth AuthMode
	// SourceAddrs spreads the connections over 127.0.0.2-9 (unless
	// --source-addrs names others), so that tens of thousands of them do
	// not run out of one source address's ports.
	SourceAddrs bool
	// AuthCacheTTL, if set, is the gateway's auth.cache_ttl for the
	// scenario (default: the gateway's own); the gateway is restarted when
	// the next scenario needs another.
	AuthCacheTTL time.Duration
	// Channels, when set, runs Outlook's long-lived channels to the same
	// server in the background of the measured run (bench/channels.go).
	Channels *ChannelLoad
	// IMAP makes the scenario an IMAP one (bench/imap.go): Dovecot behind
	// the gateway's mail listeners; TLS picks the implicit-TLS listener.
	IMAP IMAPMode

	// kx is the key exchange the load generator offers one row of the
	// scenario (kxX25519, kxHybrid; see suite.rows), set on the copy the
	// row is measured with; empty: --tls-groups or crypto/tls's default.
	kx string
}

// handshakeBound says whether the figures a peer is compared on are the
// TLS handshake's: a connection per request (CPU per connection), or idle
// TLS connections (CPU per connection opened, and memory that crypto/tls
// sizes by the ClientHello's key shares).
func (sc Scenario) handshakeBound() bool {
	return sc.TLS && sc.IMAP == IMAPNone && (sc.RequestsPerConn == 1 || sc.Idle)
}

// Scenarios lists the suite's workloads in the order they run. Every request
// is GET /owa/ with X-AnchorMailbox (so the gateway routes it through the
// directory to mbx1) and X-Mailboxd-Size, which makes mailboxd answer a body
// of exactly that many bytes rather than its default JSON echo of the
// request, whose size would depend on what the gateway adds to it.
var Scenarios = []Scenario{
	{
		Name:        "keepalive-get",
		Description: "GET /owa/, 100-byte answers, keep-alive, one request at a time: per-request overhead",
		Header:      []Header{{"X-Mailboxd-Size", "100"}},
	},
	{
		Name: "auth-keepalive",
		Description: "keepalive-get through a protocol that requires Basic, every request alice's (auth cache hit after the first), " +
			"identity assertion verified by mailboxd: per-request cost of authentication (direct row: mailboxd without auth)",
		Auth:   AuthCached,
		Header: []Header{{"X-Mailboxd-Size", "100"}},
	},
	{
		Name: "negotiate-keepalive",
		Description: "as auth-keepalive with HTTP Negotiate: each connection authenticated once by a Kerberos token (a KDC the suite " +
			"runs), then keep-alive requests without credentials: per-request cost after authentication, next to auth-keepalive's Basic cache hit",
		Auth:   AuthNegotiateKeepalive,
		Header: []Header{{"X-Mailboxd-Size", "100"}},
	},
	{
		Name:        "keepalive-get-16k",
		Description: "as keepalive-get with 16 KiB answers: cost of moving body bytes",
		Header:      []Header{{"X-Mailboxd-Size", "16384"}},
	},
	{
		Name:        "pipelined-get",
		Description: "as keepalive-get with 8 requests outstanding per connection: pipelining and batching",
		Pipeline:    8,
		Header:      []Header{{"X-Mailboxd-Size", "100"}},
	},
	{
		Name:            "many-clients",
		Description:     "1000 connections, each closed and replaced after 10 requests: accept/close cost at high concurrency",
		Conns:           1000,
		Pipeline:        1,
		RequestsPerConn: 10,
		Header:          []Header{{"X-Mailboxd-Size", "100"}},
	},
	{
		Name: "many-clients-10k",
		Description: "10,000 keep-alive connections from 127.0.0.2-9, one request at a time each: many clients over few " +
			"backend connections (the gateway's BACKEND OPEN stays at conns_per_loop per loop; a peer's grows with the requests in flight)",
		Conns:       10000,
		Pipeline:    1,
		SourceAddrs: true,
		Header:      []Header{{"X-Mailboxd-Size", "100"}},
	},
	{
		Name: "keepalive-get-channels",
		Description: "keepalive-get while 1000 MAPI NotificationWait long polls and 50 RPC over HTTP channel pairs to the " +
			"same server stream in the background: its p99 against keepalive-get's is what the channels cost ordinary requests",
		Header:   []Header{{"X-Mailboxd-Size", "100"}},
		Channels: &ChannelLoad{Polls: 1000, RPCPairs: 50},
	},
	{
		Name:        "tls-keepalive-get",
		Description: "keepalive-get over TLS to the gateway's TLS listener: per-request cost of TLS records (direct row: plaintext)",
		TLS:         true,
		Header:      []Header{{"X-Mailboxd-Size", "100"}},
	},
	{
		Name:            "tls-handshake-full",
		Description:     "a new TLS connection per request, no session cache: full handshakes/s and gateway CPU per handshake",
		Pipeline:        1,
		RequestsPerConn: 1,
		TLS:             true,
		LatencyFromDial: true,
		Header:          []Header{{"X-Mailboxd-Size", "100"}},
	},
	{
		Name:            "tls-handshake-resumed",
		Description:     "as tls-handshake-full with a client session cache: resumed handshakes (tickets)",
		Pipeline:        1,
		RequestsPerConn: 1,
		TLS:             true,
		Resume:          true,
		LatencyFromDial: true,
		Header:          []Header{{"X-Mailboxd-Size", "100"}},
	},
	{
		Name: "auth-login",
		Description: "as auth-keepalive, every request another user's first Basic login (auth cache miss): argon2id and " +
			"identity signing per request; logins/s and gateway CPU per login (direct row: mailboxd without auth)",
		Conns:        authLoginConns,
		Auth:         AuthLogin,
		AuthCacheTTL: time.Second,
		Header:       []Header{{"X-Mailboxd-Size", "100"}},
	},
	{
		Name: "negotiate-login",
		Description: "a new connection per request, each with a fresh Negotiate (Kerberos) token for alice: SPNEGO and AP-REQ " +
			"verification, replay check, per request; logins/s and gateway CPU per Negotiate authentication (direct row: mailboxd without auth)",
		Conns:           authLoginConns,
		Pipeline:        1,
		RequestsPerConn: 1,
		Auth:            AuthNegotiateLogin,
		Header:          []Header{{"X-Mailboxd-Size", "100"}},
	},
	{
		Name:        "idle-conns",
		Description: "--idle-conns idle keep-alive connections (one request each): gateway RSS per connection, extrapolated to 1M",
		Idle:        true,
		Header:      []Header{{"X-Mailboxd-Size", "100"}},
	},
	{
		Name:        "idle-conns-tls",
		Description: "as idle-conns over TLS: RSS per idle TLS connection, extrapolated to 1M",
		Idle:        true,
		TLS:         true,
		Header:      []Header{{"X-Mailboxd-Size", "100"}},
	},
	// The IMAP scenarios (bench/imap.go): the gateway's mail listeners in
	// front of a Dovecot the suite starts (skipped when Dovecot is not
	// installed); not for the peers, which have no IMAP proxy here.
	{
		Name: "imap-login",
		Description: "IMAP: connect, greeting, LOGIN, LOGOUT, close, in a loop on the plaintext listener (allow_plaintext_login), " +
			"128 users, auth cache warm: logins/s, login latency, gateway CPU per login (direct row: Dovecot)",
		Conns:       imapLoginConns,
		IMAP:        IMAPLogin,
		SourceAddrs: true,
	},
	{
		Name:        "imap-login-tls",
		Description: "as imap-login on the implicit-TLS listener, a full handshake per login (direct row: Dovecot in plaintext)",
		Conns:       imapLoginConns,
		TLS:         true,
		IMAP:        IMAPLogin,
		SourceAddrs: true,
	},
	{
		Name: "imap-login-miss",
		Description: "as imap-login with the gateway's auth.cache_ttl 1s, the 128 users cycled: every login a cache miss, " +
			"an argon2id verification per login (as auth-login for HTTP); logins/s, gateway CPU per login",
		Conns:        authLoginConns,
		IMAP:         IMAPLogin,
		SourceAddrs:  true,
		AuthCacheTTL: time.Second,
	},
	{
		Name: "imap-fetch-10m",
		Description: "IMAP: logged-in connections FETCH 1 BODY[] of a 10 MiB message in a loop (plaintext): " +
			"MiB/s relayed and gateway CPU per MiB (direct row: Dovecot)",
		Conns: imapFetchConns,
		IMAP:  IMAPFetch,
	},
	{
		Name: "idle-conns-imap",
		Description: "--idle-conns idle logged-in IMAP sessions (plaintext) from 127.0.0.2-9, capped by the gateway's descriptors " +
			"(two per session): gateway RSS per session, extrapolated to 1M",
		Idle: true,
		IMAP: IMAPIdle,
	},
	{
		Name:        "idle-conns-imap-tls",
		Description: "as idle-conns-imap on the implicit-TLS listener: RSS per idle logged-in IMAP TLS session",
		Idle:        true,
		TLS:         true,
		IMAP:        IMAPIdle,
	},
	{
		Name:        "idle-conns-imap-prelogin",
		Description: "--idle-conns idle IMAP connections that got the greeting and did not log in (plaintext): RSS per pre-login connection",
		Idle:        true,
		IMAP:        IMAPIdlePreLogin,
	},
}

const (
	anchorMailbox = "alice@example.test"
	mailboxdName  = "mbx1"
	// tlsServerName is the SNI the TLS scenarios send. The gateway serves
	// its self-signed certificate whatever the name (the first certificate
	// is the default), and the client does not verify it.
	tlsServerName = "localhost"
	// idleFDHeadroom is the number of file descriptors left to a process
	// beyond one per idle connection (listeners, backend connections,
	// epoll, pipes, /proc reads).
	idleFDHeadroom = 500
)

// idleSourceAddrs spread idle connections over several source IPs when
// --source-addrs is not given.
var idleSourceAddrs = []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8", "127.0.0.9"}

// suiteOptions are the parsed flags.
type suiteOptions struct {
	duration, warmup, startupTimeout time.Duration
	conns, pipeline, loops           int
	// rounds is how many times every row is measured (--rounds): the
	// targets of a scenario take turns, round after round.
	rounds           int
	binary, jsonFile string
	scenarios        []Scenario
	targets          map[string]bool
	cpuPin           bool
	// pin puts the proxy under test (gateway or peer) on CPU 1 and the
	// load generator and mailboxd on CPU 0 (--pin).
	pin bool
	// peers are the peer targets selected (--peers, or peer names in
	// --targets), in PeerNames order.
	peers []string
	// tlsGroups, if set, are the only key exchanges the load generator
	// offers (--tls-groups); nil: crypto/tls's defaults. tlsGroupsSet
	// says --tls-groups was given (even as "default"): the suite then
	// offers every row what it says (see suite.rows).
	tlsGroups            []tls.CurveID
	tlsGroupsSet         bool
	sourceAddrs          []string
	idleConns            int
	idleHold, idleSettle time.Duration
	identityAlg          identity.Alg
	// loadgens are the external load generators --loadgen names,
	// loadgenAuto adds every one installed (see external.go).
	loadgens    []string
	loadgenAuto bool
}

// maxRounds bounds --rounds: every round repeats every row.
const maxRounds = 20

// Main is `frontdoor bench`: args are the arguments after "bench". It
// returns the process exit code: 0 success, 2 usage error, 1 failure (a
// child that would not start or died, a run without a single successful
// request, or an interrupt).
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("frontdoor bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		o                             suiteOptions
		scenarioList, targets, source string
		peers, tlsGroups              string
		identityAlg, loadgen          string
		list                          bool
	)
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured duration of each run")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each run (fills pools, warms caches); 0 disables")
	fs.IntVar(&o.conns, "conns", 50, "client connections, for scenarios that do not fix their own")
	fs.IntVar(&o.pipeline, "pipeline", 1, "requests outstanding per connection, for scenarios that do not fix their own")
	fs.IntVar(&o.rounds, "rounds", 1, "measure every row this many times, the targets of a scenario taking turns round\nafter round; the ratio table then divides the medians and shows the per-round range\n(a noisy machine moves a single run's CPU per request by about 10%)")
	fs.IntVar(&o.loops, "loops", 1, "gateway event loops (engine.loops). 1 leaves the second core of a\n2-core machine to the load generator and mailbox server; 0 = one per CPU")
	fs.StringVar(&o.binary, "binary", "", "frontdoor binary to run mailboxd and the gateway from (default: this executable)")
	fs.StringVar(&o.jsonFile, "json", "", "also write all results as JSON to `FILE`")
	fs.StringVar(&scenarioList, "scenario", "all", "comma-separated scenarios to run (see --list)")
	fs.StringVar(&targets, "targets", "direct,gateway", "comma-separated targets: direct (mailboxd), gateway, and peers (nginx, haproxy)")
	fs.StringVar(&peers, "peers", "", "comma-separated established proxies to measure side by side with the gateway\n(nginx, haproxy; added to --targets), configured from bench/peers/")
	fs.BoolVar(&o.cpuPin, "cpu-pin", false, "run the gateway pinned to CPU 0 with taskset -c 0 (ignored if taskset is missing)")
	fs.StringVar(&tlsGroups, "tls-groups", "default", "key exchanges the load generator offers in TLS handshakes: default (Go's:\nX25519MLKEM768 first) or a list of x25519mlkem768, x25519, p256. Without it, when a peer's\nOpenSSL has no ML-KEM, tls-handshake-full, tls-handshake-resumed and idle-conns-tls measure\nthe gateway twice: offered only X25519, as the peers are (the row the ratios use), and at\nGo's default X25519MLKEM768 (the post-quantum cost); given, it applies to every row")
	fs.BoolVar(&o.pin, "pin", false, "pin the proxy under test (gateway or peer) to CPU 1 and the load generator and\nmailboxd to CPU 0 (needs taskset and CPUs 0 and 1)")
	fs.StringVar(&source, "source-addrs", "", "comma-separated 127.0.0.x source IPs to spread client connections over")
	fs.DurationVar(&o.startupTimeout, "startup-timeout", 15*time.Second, "how long to wait for mailboxd and the gateway to answer")
	fs.IntVar(&o.idleConns, "idle-conns", 10000, "idle connections the idle-conns scenarios open (capped by the\nfile-descriptor limit, less 500 for each process's other descriptors)")
	fs.DurationVar(&o.idleHold, "idle-hold", 2*time.Second, "how long the idle-conns scenarios hold the connections before sampling the gateway's RSS")
	fs.DurationVar(&o.idleSettle, "idle-settle", 15*time.Second, "after --idle-hold, how much longer the idle-conns scenarios wait for the gateway's\nmemory trimmer to act (it trims about a second after the last handshake); 0 = not at all")
	fs.StringVar(&identityAlg, "identity-alg", "ed25519", "signature `ALGORITHM` of the identity key the auth-* scenarios generate: ed25519 or ml-dsa-44")
	fs.StringVar(&loadgen, "loadgen", "auto", "comma-separated load generators: builtin (always runs: the reference), wrk, h2load,\n"+
		"or auto (builtin plus whichever of wrk and h2load is on PATH). The keep-alive scenarios get\n"+
		"a row per tool and target, e.g. \"gateway [wrk]\", with PROXY CPU/REQ from /proc as for the builtin rows")
	fs.BoolVar(&list, "list", false, "list the scenarios and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: frontdoor bench [flags]\n\n"+
			"Starts `frontdoor mailboxd` and `frontdoor run` as child processes on loopback and\n"+
			"runs each scenario directly against mailboxd and through the gateway (the imap-* scenarios:\n"+
			"against Dovecot, started the same way when installed), with the built-in\n"+
			"load generator and, for the keep-alive scenarios, wrk and h2load when installed (--loadgen).\n"+
			"The table goes to stdout, progress and child output to stderr.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "frontdoor bench: "+format+"\n", a...)
		return 2
	}
	if fs.NArg() > 0 {
		return usage("unexpected argument %q", fs.Arg(0))
	}
	if list {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		for _, s := range Scenarios {
			fmt.Fprintf(tw, "%s\t%s\n", s.Name, s.Description)
		}
		tw.Flush()
		return 0
	}
	if o.duration <= 0 || o.warmup < 0 || o.conns <= 0 || o.pipeline <= 0 || o.loops < 0 || o.startupTimeout <= 0 ||
		o.idleConns <= 0 || o.idleHold < 0 || o.idleSettle < 0 || o.rounds <= 0 || o.rounds > maxRounds {
		return usage("--duration, --conns, --pipeline, --idle-conns and --startup-timeout must be positive, --rounds 1 to %d, --warmup, --loops, --idle-hold and --idle-settle not negative", maxRounds)
	}
	for _, name := range splitList(scenarioList) {
		if name == "all" {
			o.scenarios = Scenarios
			continue
		}
		found := false
		for _, s := range Scenarios {
			if s.Name == name {
				o.scenarios = append(o.scenarios, s)
				found = true
			}
		}
		if !found {
			return usage("unknown scenario %q (see --list)", name)
		}
	}
	if len(o.scenarios) == 0 {
		return usage("no scenario selected")
	}
	alg, err := identity.ParseAlg(identityAlg)
	if err != nil {
		return usage("--identity-alg %q: want ed25519 or ml-dsa-44", identityAlg)
	}
	o.identityAlg = alg
	o.targets = map[string]bool{}
	for _, t := range append(splitList(targets), splitList(peers)...) {
		if t != "direct" && t != "gateway" && !isPeer(t) {
			return usage("unknown target %q (want direct, gateway, %s)", t, strings.Join(PeerNames, ", "))
		}
		o.targets[t] = true
	}
	if len(o.targets) == 0 {
		return usage("no target selected")
	}
	for _, p := range PeerNames {
		if o.targets[p] {
			o.peers = append(o.peers, p)
		}
	}
	if o.tlsGroups, err = parseTLSGroups(tlsGroups); err != nil {
		return usage("--tls-groups: %v", err)
	}
	fs.Visit(func(f *flag.Flag) { o.tlsGroupsSet = o.tlsGroupsSet || f.Name == "tls-groups" })
	if o.loadgens, o.loadgenAuto, err = parseLoadgen(loadgen); err != nil {
		return usage("--loadgen: %v", err)
	}
	if o.pin && o.cpuPin {
		return usage("--pin and --cpu-pin exclude each other")
	}
	if o.pin {
		if err := canPin(); err != nil {
			return usage("--pin: %v", err)
		}
	}
	for _, a := range splitList(source) {
		if ip := net.ParseIP(a); ip == nil || !ip.IsLoopback() {
			return usage("--source-addrs: %q is not a loopback IP", a)
		}
		o.sourceAddrs = append(o.sourceAddrs, a)
	}
	if o.binary == "" {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(stderr, "frontdoor bench: cannot find own executable (use --binary): %v\n", err)
			return 1
		}
		o.binary = exe
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runSuite(ctx, o, stdout, stderr)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Report is the --json output.
type Report struct {
	Started   time.Time `json:"started"`
	GoVersion string    `json:"go_version"`
	CPUs      int       `json:"cpus"`
	Binary    string    `json:"binary"`
	// DurationSeconds and WarmupSeconds are per run.
	DurationSeconds float64 `json:"duration_s"`
	WarmupSeconds   float64 `json:"warmup_s"`
	// Rounds is how many times every row was measured (--rounds).
	Rounds       int `json:"rounds,omitempty"`
	GatewayLoops int `json:"gateway_loops"`
	// CPUPinned is true when the gateway really ran under taskset -c 0.
	CPUPinned bool `json:"cpu_pinned"`
	// Pin describes --pin ("proxy on CPU 1, load generator and mailboxd
	// on CPU 0"); empty without it.
	Pin string `json:"pin,omitempty"`
	// ClientTLSGroups lists the key exchanges the load generator offered
	// (--tls-groups); empty: crypto/tls's defaults.
	ClientTLSGroups string `json:"client_tls_groups,omitempty"`
	// Peers describes the established proxies measured side by side with
	// the gateway (--peers): version, OpenSSL, TLS groups, command line.
	Peers []PeerInfo `json:"peers,omitempty"`
	// Loadgens are the external load generators used (--loadgen).
	Loadgens []LoadgenInfo `json:"loadgens,omitempty"`
	// Ratios divide the gateway's figures by each peer's, per scenario.
	Ratios []Ratio `json:"ratios,omitempty"`
	// Skipped says which scenarios a target could not run, and why.
	Skipped []string `json:"skipped,omitempty"`
	// IdentityAlg is the algorithm of the identity key the auth-*
	// scenarios signed with, AuthUsers the users auth-login cycled
	// through; both empty without auth scenarios.
	IdentityAlg string `json:"identity_alg,omitempty"`
	AuthUsers   int    `json:"auth_users,omitempty"`
	// GatewayError says why gateway rows are missing, if they are.
	GatewayError string `json:"gateway_error,omitempty"`
	// TLSError says why the gateway rows of TLS scenarios were not
	// measured (the gateway refused the TLS listener's configuration, or
	// its TLS listener did not answer); they are error rows then.
	TLSError    string      `json:"tls_error,omitempty"`
	Interrupted bool        `json:"interrupted,omitempty"`
	Results     []RunReport `json:"results"`
}

// RunReport is one row of the table. Latencies are microseconds. Pointer
// fields are null when they do not apply (gateway figures on direct rows)
// or could not be measured.
type RunReport struct {
	Scenario string `json:"scenario"`
	// Round numbers the row's measurement from 1 when --rounds is above
	// 1; 0 otherwise.
	Round int `json:"round,omitempty"`
	// Target is "direct" (mailboxd), "gateway", or a peer ("nginx",
	// "haproxy"). On a peer's row the gateway_* figures are the peer's,
	// summed over its process tree (nginx's master and workers).
	Target string `json:"target"`
	// KeyExchange is set on the rows of a handshake-bound scenario that
	// the suite measured with a key exchange of its choice (see
	// suite.rows): "X25519" when the load generator offered only X25519,
	// as to the peers without ML-KEM (the gateway's row the ratios use),
	// "X25519MLKEM768" for crypto/tls's default offer (the gateway's
	// post-quantum row, and peers with ML-KEM). Empty otherwise:
	// --tls-groups (client_tls_groups) or the default applied. The table
	// shows it after the target, e.g. "gateway (X25519)".
	KeyExchange string `json:"key_exchange,omitempty"`
	// Loadgen names the external load generator of the row ("wrk",
	// "h2load"); empty for the built-in one. LoadgenCommand is its
	// command line, LatencyNote says which latency figures it gave.
	Loadgen           string      `json:"loadgen,omitempty"`
	LoadgenCommand    string      `json:"loadgen_command,omitempty"`
	LatencyNote       string      `json:"latency_note,omitempty"`
	Conns             int         `json:"conns"`
	Pipeline          int         `json:"pipeline"`
	RequestsPerConn   int         `json:"requests_per_conn,omitempty"`
	ElapsedSeconds    float64     `json:"elapsed_s"`
	Requests          int64       `json:"requests"`
	RequestsPerSecond float64     `json:"requests_per_s"`
	Latency           LatencyUS   `json:"latency_us"`
	Errors            ErrorCounts `json:"errors"`
	ErrorsTotal       int64       `json:"errors_total"`
	// StatusClasses counts responses by class, e.g. {"2xx": 1000}.
	StatusClasses map[string]int64 `json:"status_classes"`
	Dials         int64            `json:"client_connections_opened"`

	GatewayCPUPerRequestUS  *float64 `json:"gateway_cpu_us_per_request"`
	GatewayRSSBytes         *int64   `json:"gateway_rss_bytes"`
	MailboxdCPUPerRequestUS *float64 `json:"mailboxd_cpu_us_per_request"`
	LoadgenCPUPerRequestUS  *float64 `json:"loadgen_cpu_us_per_request"`
	// BackendConnectionsOpen is mailboxd's connections_open after the run
	// (minus the stats probe's own connection); BackendConnectionsNew is
	// the growth of connections_accepted during the measured run.
	BackendConnectionsOpen *int64 `json:"backend_connections_open"`
	BackendConnectionsNew  *int64 `json:"backend_connections_new"`

	// TLS is true when the row's connections used TLS. PlaintextCeiling
	// marks the direct row of a TLS scenario: mailboxd has no TLS, so it
	// is the same load in plaintext.
	TLS              bool `json:"tls"`
	PlaintextCeiling bool `json:"plaintext_ceiling,omitempty"`
	// Auth says how the row's requests authenticated (AuthMode.String:
	// "basic-cached", "basic-login"; empty for anonymous requests).
	// NoAuthCeiling marks the direct row of such a scenario, sent to the
	// mailboxd without identity checks.
	Auth          string `json:"auth,omitempty"`
	NoAuthCeiling bool   `json:"no_auth_ceiling,omitempty"`
	// GatewayAuth holds the growth of the gateway's authentication
	// counters (the auth section of its admin /stats: verifications,
	// signed, cache_hits, cache_misses, ...) over the measured run, on
	// gateway rows of auth-* scenarios; cache_entries is its value after.
	// A login counts one cache miss and two hits: the request is routed
	// again after its verification and again after its signing.
	GatewayAuth map[string]int64 `json:"gateway_auth,omitempty"`
	// Handshakes counts successful TLS handshakes of the measured run (or
	// of the opening, for idle rows), HandshakesResumed those that resumed
	// a session; HandshakesPerSecond is Handshakes / elapsed.
	Handshakes          int64   `json:"handshakes,omitempty"`
	HandshakesResumed   int64   `json:"handshakes_resumed,omitempty"`
	HandshakesPerSecond float64 `json:"handshakes_per_s,omitempty"`
	// HandshakeLatency is the time from the start of a dial to the end of
	// its TLS handshake. TLSParams describes a handshake, e.g. "TLS 1.3
	// TLS_AES_128_GCM_SHA256 X25519MLKEM768".
	HandshakeLatency *LatencyUS `json:"handshake_latency_us,omitempty"`
	TLSParams        string     `json:"tls_params,omitempty"`
	// GatewayCPUPerHandshakeUS is the gateway's CPU time per successful
	// handshake, for scenarios with one request per connection (where it
	// covers the accept, the handshake, the request and the close).
	GatewayCPUPerHandshakeUS *float64 `json:"gateway_cpu_us_per_handshake,omitempty"`

	// Idle holds the figures of an idle-connection scenario.
	Idle *IdleReport `json:"idle,omitempty"`
	// IMAP holds the figures of an IMAP scenario (imap.go).
	IMAP *IMAPReport `json:"imap,omitempty"`
	// Error says why the row could not be measured; its figures are then
	// zero.
	Error string `json:"error,omitempty"`
}

// IdleReport is the idle-connection measurement of one row. For these rows
// RunReport.Conns is the number of connections held, Requests the requests
// that succeeded (one per connection), ElapsedSeconds the time it took to
// open them, Latency that of the one request (after the handshake).
type IdleReport struct {
	// Requested is --idle-conns; Limit what the file-descriptor limits
	// allowed (the smaller of the runner's and the gateway's soft
	// RLIMIT_NOFILE, less 500 headroom each; 0 if unknown); Attempted is
	// the smaller of the two, the number of connections tried.
	Requested int `json:"conns_requested"`
	Limit     int `json:"conns_limit,omitempty"`
	Attempted int `json:"conns_attempted"`
	// Held is the number of idle connections open when RSS was sampled.
	Held int `json:"conns_held"`
	// SourceAddrs are the client IPs the connections came from.
	SourceAddrs []string `json:"source_addrs"`
	HoldSeconds float64  `json:"hold_s"`
	// SettleSeconds is how much longer than HoldSeconds the runner waited
	// for the gateway's memory trimmer (--idle-settle) before sampling.
	SettleSeconds float64 `json:"settle_s"`
	// SettleEnd says how that wait ended: "trimmed", "nothing to trim" (the
	// gateway reported no memory worth a trim), "gave up" (--idle-settle
	// passed); empty when there was no wait.
	SettleEnd string `json:"settle_end,omitempty"`
	// BaselineTrimmed says the gateway was asked for a memory trim (POST
	// /debug/memory/trim) before RSSBeforeBytes was sampled, so that the
	// baseline holds no garbage the gateway would return later on its own.
	BaselineTrimmed bool `json:"baseline_trimmed"`
	// RSSBeforeBytes is the gateway's VmRSS after the warm-up, before the
	// connections were opened; RSSHeldBytes after holding them HoldSeconds
	// (+ SettleSeconds).
	RSSBeforeBytes int64 `json:"rss_before_bytes"`
	RSSHeldBytes   int64 `json:"rss_held_bytes"`
	// RSSPerConnBytes is (RSSHeldBytes - RSSBeforeBytes) / Held, and
	// Extrapolated1MGiB that times one million, in GiB.
	RSSPerConnBytes   float64 `json:"rss_per_conn_bytes"`
	Extrapolated1MGiB float64 `json:"extrapolated_1m_conns_gib"`
	// HeapLiveBeforeBytes and HeapLiveHeldBytes are the gateway's live
	// heap (its /stats runtime.heap_live_bytes: what survived the last
	// collection) at the two samples, HeapPerConnBytes their difference
	// per connection held. Nil when the gateway does not report it, and
	// HeapPerConnBytes also when no collection ran after the connections
	// were open (the live heap would be that of an earlier moment).
	HeapLiveBeforeBytes *int64   `json:"heap_live_before_bytes,omitempty"`
	HeapLiveHeldBytes   *int64   `json:"heap_live_held_bytes,omitempty"`
	HeapPerConnBytes    *float64 `json:"heap_per_conn_bytes,omitempty"`
	// MemoryTrims counts the gateway's automatic memory trims after the
	// connections were opened, until the sample (nil: not reported);
	// MemoryTrimsOpening those while they were opened.
	MemoryTrims        *int64 `json:"memory_trims,omitempty"`
	MemoryTrimsOpening *int64 `json:"memory_trims_opening,omitempty"`
	// GatewayFDsBefore and GatewayFDsHeld count /proc/PID/fd at the two
	// samples: a check that the gateway really holds the connections.
	GatewayFDsBefore *int `json:"gateway_fds_before,omitempty"`
	GatewayFDsHeld   *int `json:"gateway_fds_held,omitempty"`
	// ConnsEstablished counts the established connections on the
	// proxy's listening port at the held sample (/proc/net/tcp): the
	// check for a proxy whose descriptors also come and go with backend
	// connections (a peer closes idle ones on its own schedule).
	ConnsEstablished *int `json:"conns_established,omitempty"`
	// GatewayCPUPerConnUS is the gateway's CPU time while the connections
	// were opened, per connection held: accept, handshake (with TLS) and
	// one request.
	GatewayCPUPerConnUS *float64 `json:"gateway_cpu_us_per_conn,omitempty"`
}

// LatencyUS holds latency statistics in microseconds.
type LatencyUS struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func usOf(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// suite is one invocation's state.
type suite struct {
	o              suiteOptions
	stdout, stderr io.Writer
	dir            string
	// mbx is the mailboxd every scenario's direct row and the anonymous
	// protocol use; auth.mbx, when auth scenarios are selected, the one
	// that verifies identity assertions.
	mbx  *backend
	auth *authFixture
	// krb is the Kerberos realm of the negotiate scenarios; nil when none
	// is selected or MIT Kerberos is not installed.
	krb    *krbFixture
	gw     *child
	gwAddr string
	// gwCacheTTL is the auth.cache_ttl the gateway was started with (0:
	// default).
	gwCacheTTL time.Duration
	// gwTLSAddr is the gateway's TLS listener; empty when the gateway runs
	// without one (no TLS scenario selected, or tlsErr).
	gwTLSAddr string
	// gwAdminAddr is the gateway's admin endpoint (/stats: memory, the
	// memory trim, the auth counters).
	gwAdminAddr string
	// tlsErr says why the gateway has no working TLS listener although a
	// TLS scenario was selected; those scenarios then get error rows.
	tlsErr string
	// peer is the peer running now (a peer runs only for its own rows);
	// peerInfo describes every selected peer.
	peer     *peerProc
	peerInfo map[string]*PeerInfo
	// ext holds the external load generators found (external.go).
	ext *externalState
	// mail is the Dovecot of the IMAP scenarios (imap.go); nil when none
	// is selected or Dovecot is not installed.
	mail   *mailFixture
	report Report
}

// backend is a mailboxd child.
type backend struct {
	*child
	port int
	addr string
	// probeOpen and probeAccepted calibrate the stats probe: whether
	// mailboxd counts the probe's own connection in connections_open and
	// connections_accepted (the reference mailboxd does not; a stand-in
	// might). Each is 0 or 1 and is subtracted from later readings.
	probeOpen, probeAccepted int64
}

func runSuite(ctx context.Context, o suiteOptions, stdout, stderr io.Writer) (code int) {
	o.rounds = max(o.rounds, 1)
	s := &suite{o: o, stdout: stdout, stderr: stderr}
	s.report = Report{
		Started: time.Now().UTC().Truncate(time.Second), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(),
		Binary: o.binary, DurationSeconds: o.duration.Seconds(), WarmupSeconds: o.warmup.Seconds(), Rounds: o.rounds,
		GatewayLoops: o.loops,
	}
	for i, g := range o.tlsGroups {
		if i > 0 {
			s.report.ClientTLSGroups += ","
		}
		s.report.ClientTLSGroups += g.String()
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "frontdoor bench: "+format+"\n", a...)
		return 1
	}

	dir, err := os.MkdirTemp("", "frontdoor-bench-")
	if err != nil {
		return fail("%v", err)
	}
	s.dir = dir
	defer os.RemoveAll(dir)
	if o.pin {
		restore, err := pinSelf(pinLoadCPU)
		if err != nil {
			return fail("--pin: %v", err)
		}
		defer restore()
		s.report.Pin = fmt.Sprintf("proxy on CPU %d, load generator and mailboxd on CPU %d", pinProxyCPU, pinLoadCPU)
	}

	wantTLS, wantAuth := false, false
	for _, sc := range o.scenarios {
		wantTLS = wantTLS || sc.TLS
		wantAuth = wantAuth || sc.Auth != AuthNone
	}

	// Children are stopped on every path out, the gateway first so it never
	// sees its backend vanish while it still has clients.
	defer func() {
		s.stopPeer()
		if s.gw != nil {
			s.gw.stop()
		}
		if s.mbx != nil {
			s.mbx.stop()
		}
		if s.auth != nil && s.auth.mbx != nil {
			s.auth.mbx.stop()
		}
		if s.mail != nil {
			s.mail.dovecot.stop()
		}
	}()

	if s.mbx, err = s.startMailboxd(ctx, "mailboxd"); err != nil {
		return fail("%v", err)
	}
	if wantAuth {
		if s.auth, err = newAuthFixture(dir, o.identityAlg); err != nil {
			return fail("preparing the auth scenarios: %v", err)
		}
		s.report.IdentityAlg, s.report.AuthUsers = string(o.identityAlg), authUsers
		if s.auth.mbx, err = s.startMailboxd(ctx, mailboxdIDLabel, "--identity-keys", s.auth.pubFile); err != nil {
			return fail("%v", err)
		}
	}

	if imapSelected(o.scenarios) {
		s.mail = s.startIMAPBackend(ctx)
	}
	if negotiateSelected(o.scenarios) {
		s.krb = s.startKerberos()
		if s.krb != nil {
			defer s.krb.stop()
		}
	}

	if len(o.peers) > 0 {
		// The peers serve the certificate the gateway would generate for
		// itself (tls_self_signed finds it there and keeps it).
		if err := s.writeCertificate(); err != nil {
			return fail("writing the TLS certificate: %v", err)
		}
		s.preparePeers()
	}

	gatewayOK := false
	if o.targets["gateway"] {
		if err := s.startGatewayTLSFallback(ctx, wantTLS); err != nil {
			s.report.GatewayError = err.Error()
			fmt.Fprintf(stderr, "frontdoor bench: gateway failed to start: %v\n", err)
			if s.gw != nil {
				s.gw.dumpOutput(stderr)
				s.gw.stop()
				s.gw = nil
			}
			code = 1
			if !o.targets["direct"] || ctx.Err() != nil {
				s.finish(stdout)
				return 1
			}
			fmt.Fprintf(stderr, "frontdoor bench: continuing with direct runs only\n")
		} else {
			gatewayOK = true
		}
		s.report.TLSError = s.tlsErr
	}

	for _, sc := range o.scenarios {
		if sc.Idle && !o.targets["gateway"] && len(o.peers) == 0 {
			fmt.Fprintf(stderr, "frontdoor bench: %s skipped: idle scenarios measure the proxies only\n", sc.Name)
		}
		if sc.Auth != AuthNone && len(o.peers) > 0 {
			note := fmt.Sprintf("%s: not run on %s: a peer has no Basic authentication against the directory and signs no identity assertions",
				sc.Name, strings.Join(o.peers, ", "))
			s.report.Skipped = append(s.report.Skipped, note)
			fmt.Fprintf(stderr, "frontdoor bench: %s\n", note)
		}
		if sc.IMAP != IMAPNone && s.mail == nil {
			continue // startIMAPBackend said why, once
		}
		if isNegotiate(sc.Auth) && s.krb == nil {
			continue // startKerberos said why, once
		}
		order := s.rows(sc)
		for i := 0; i < len(order)*o.rounds; i++ {
			rw, round := order[i%len(order)], 1+i/len(order)
			target := rw.target
			sc := sc // this row's copy, with its key exchange
			sc.kx = rw.kx
			if sc.IMAP != IMAPNone && isPeer(target) {
				continue // no IMAP proxy configured for the peers
			}
			if !o.targets[target] || (target == "gateway" && !gatewayOK) || (sc.Idle && target == "direct") {
				continue
			}
			peer := isPeer(target)
			if peer && (sc.Auth != AuthNone || s.peerInfo[target].Error != "") {
				continue
			}
			if ctx.Err() != nil {
				break
			}
			var (
				rr  *RunReport
				err error
			)
			switch {
			case sc.IMAP != IMAPNone && sc.Idle:
				s.gwCacheTTL = sc.AuthCacheTTL // measureIMAPIdle restarts the gateway
				rr, err = s.measureIMAPIdle(ctx, sc)
			case sc.IMAP != IMAPNone:
				if target == "gateway" {
					err = s.gatewayFor(ctx, sc)
				}
				if err == nil {
					rr, err = s.measureIMAP(ctx, sc, target)
				}
			case target == "gateway" && sc.TLS && s.gwTLSAddr == "":
				rr = &RunReport{Scenario: sc.Name, Target: target, KeyExchange: sc.kx, TLS: true, Error: "not measured: the gateway has no working TLS listener"}
				if sc.Idle {
					rr.Idle = &IdleReport{Requested: o.idleConns}
				}
				fmt.Fprintf(stderr, "frontdoor bench: %s %s: %s\n", sc.Name, target, rr.Error)
			case peer:
				rr, err = s.measurePeer(ctx, sc, target)
			case sc.Idle:
				s.gwCacheTTL = sc.AuthCacheTTL // measureIdle restarts the gateway
				rr, err = s.measureIdle(ctx, sc, target)
			case target == "gateway":
				if err = s.gatewayFor(ctx, sc); err == nil {
					rr, err = s.measure(ctx, sc, target)
				}
			default:
				rr, err = s.measure(ctx, sc, target)
			}
			if err != nil {
				fmt.Fprintf(stderr, "frontdoor bench: %s %s: %v\n", sc.Name, target, err)
				code = 1
			} else if ctx.Err() == nil { // an interrupted run's numbers are not comparable
				first := len(s.report.Results)
				s.report.Results = append(s.report.Results, *rr)
				if rr.Requests == 0 {
					code = 1
				}
				// The same load from wrk/h2load (--loadgen), rows of their own.
				if rr.Error == "" && !s.measureExternal(ctx, sc, target) {
					code = 1
				}
				if o.rounds > 1 {
					for j := first; j < len(s.report.Results); j++ {
						s.report.Results[j].Round = round
					}
				}
			}
			for _, b := range s.backends() {
				if b.exited() {
					b.dumpOutput(stderr)
					s.finish(stdout)
					return fail("%s exited during %s %s: %v", b.name, sc.Name, target, b.exitErr())
				}
			}
			if target == "gateway" && (s.gw == nil || s.gw.exited()) {
				var err error
				if s.gw == nil { // measureIdle could not restart it, and said why
					err = fmt.Errorf("gateway not running after %s", sc.Name)
				} else {
					s.gw.dumpOutput(stderr)
					err = fmt.Errorf("gateway exited during %s: %v", sc.Name, s.gw.exitErr())
				}
				s.report.GatewayError = err.Error()
				fmt.Fprintf(stderr, "frontdoor bench: %v\n", err)
				gatewayOK = false
				code = 1
			}
		}
	}
	s.report.TLSError = s.tlsErr
	if ctx.Err() != nil {
		s.report.Interrupted = true
		fmt.Fprintf(stderr, "frontdoor bench: interrupted\n")
		code = 1
	}
	if err := s.finish(stdout); err != nil {
		return fail("%v", err)
	}
	return code
}

// startMailboxd starts a mailboxd child named mailboxdName on a fresh port
// with extra arguments, waits for its health probe and calibrates its
// stats probe. label names it in messages.
func (s *suite) startMailboxd(ctx context.Context, label string, extra ...string) (*backend, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("picking a port for %s: %w", label, err)
	}
	b := &backend{port: port, addr: "127.0.0.1:" + strconv.Itoa(port)}
	argv := s.pinArgv(pinLoadCPU, append([]string{s.o.binary, "mailboxd", "--listen", b.addr, "--name", mailboxdName}, extra...))
	if b.child, err = startChild(label, argv, s.dir); err != nil {
		return nil, fmt.Errorf("starting %s: %w", label, err)
	}
	if err := waitReady(ctx, b.child, probeClient, "http://"+b.addr+"/healthcheck.htm", nil, s.o.startupTimeout); err != nil {
		b.dumpOutput(s.stderr)
		b.stop()
		return nil, fmt.Errorf("%s did not come up: %w", label, err)
	}
	fmt.Fprintf(s.stderr, "%s %s listening on %s (pid %d)\n", label, mailboxdName, b.addr, b.pid())
	if err := b.calibrateStats(); err != nil {
		fmt.Fprintf(s.stderr, "frontdoor bench: %s stats unavailable, backend connections not reported: %v\n", label, err)
	}
	return b, nil
}

// backends returns the mailboxd children.
func (s *suite) backends() []*backend {
	if s.auth != nil && s.auth.mbx != nil {
		return []*backend{s.mbx, s.auth.mbx}
	}
	return []*backend{s.mbx}
}

// gatewayPorts are the ports a gateway config names. TLS and Admin are 0
// when the gateway has no such listener, MbxID when no auth scenario is
// selected.
type gatewayPorts struct {
	HTTP, TLS, Admin int
	Mbx, MbxID       int
	// IMAP and IMAPS are the mail listeners' (0: no IMAP scenario).
	IMAP, IMAPS int
}

// writeConfig writes the gateway config and its directory file into s.dir.
// p.TLS > 0 adds a second listener, "https", that terminates TLS with a
// self-signed certificate the gateway writes into s.dir/tls on start. With
// s.auth set it adds the protocol that requires Basic (authConfig), served
// on p.MbxID, the admin endpoint on p.Admin (for the auth counters), and
// the bench users' password hashes; auth.cache_ttl is s.gwCacheTTL.
func (s *suite) writeConfig(p gatewayPorts) error {
	gwPort, tlsPort, mbxPort := p.HTTP, p.TLS, p.Mbx
	cfg := fmt.Sprintf(`# Written by frontdoor bench.
directory = "directory.toml"

[engine]
loops = %d            # 0 = one per CPU

[timeouts]
idle = "10m"          # idle-conns holds connections while it opens thousands more

[[listener]]
name = "http"
address = "127.0.0.1:%d"
`, s.o.loops, gwPort)

	if tlsPort > 0 {
		tlsDir := filepath.Join(s.dir, "tls")
		if err := os.MkdirAll(tlsDir, 0o700); err != nil {
			return err
		}
		cfg += fmt.Sprintf(`
[[listener]]
name = "https"
address = "127.0.0.1:%d"
tls = true
tls_self_signed = true   # the gateway writes the certificate if the files are missing
certificates = [{ cert = %q, key = %q }]
`, tlsPort, filepath.Join(tlsDir, "cert.pem"), filepath.Join(tlsDir, "key.pem"))
	}
	cfg += fmt.Sprintf(`
[[protocol]]
name = "owa"
path_prefix = "/owa"
backend_port = %d
`, mbxPort)
	hash := ""
	if s.auth != nil {
		keytab := ""
		if s.krb != nil {
			keytab = s.krb.keytab
		}
		cfg += authConfig(s.auth.keyFile, s.gwCacheTTL, p.MbxID, keytab)
		hash = s.auth.hash
	} else if s.gwCacheTTL > 0 { // imap-login-miss
		cfg += fmt.Sprintf("\n[auth]\ncache_ttl = %q\n", s.gwCacheTTL.String())
	}
	mailUsers := ""
	if s.mail != nil && p.IMAP > 0 {
		tlsDir := filepath.Join(s.dir, "tls")
		if err := os.MkdirAll(tlsDir, 0o700); err != nil {
			return err
		}
		cfg += s.mail.gatewayConfig(tlsDir)
		mailUsers = s.mail.directoryUsers()
	}
	if p.Admin > 0 {
		// The idle scenarios read the gateway's memory from /stats and ask
		// it for a trim before their baseline; the auth rows read its auth
		// counters.
		cfg += fmt.Sprintf("\n[admin]\naddress = \"127.0.0.1:%d\"\n", p.Admin)
	}
	// The server's address has no port: each protocol's backend_port
	// applies, so the authenticated protocol reaches the mailboxd that
	// verifies identity assertions.
	dir := fmt.Sprintf(`# Written by frontdoor bench.
[[site]]
name = "site-a"
external_url = "https://mail-a.example.test"

[[server]]
name = %q
address = "127.0.0.1"
site = "site-a"

[[database]]
name = "DB01"
active = %q
`, mailboxdName, mailboxdName) + directoryUsers(hash, s.krb.principal()) + mailUsers
	if err := os.WriteFile(filepath.Join(s.dir, "frontdoor.toml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.dir, "directory.toml"), []byte(dir), 0o644)
}

// calibrateStats sets probeOpen and probeAccepted from a few stats probes
// while nothing else is connected. The health probes' connections may still
// be counted open for a moment (mailboxd notices a peer's close on its next
// read), so it takes the minimum over up to 10 probes 20 ms apart.
func (b *backend) calibrateStats() error {
	prev, err := mailboxdStats(b.addr)
	if err != nil {
		return err
	}
	b.probeOpen, b.probeAccepted = max(prev.ConnectionsOpen, 0), 1
	for range 10 {
		time.Sleep(20 * time.Millisecond)
		st, err := mailboxdStats(b.addr)
		if err != nil {
			return err
		}
		b.probeOpen = min(b.probeOpen, max(st.ConnectionsOpen, 0))
		b.probeAccepted = min(b.probeAccepted, max(st.ConnectionsAccepted-prev.ConnectionsAccepted, 0))
		prev = st
		if b.probeOpen == 0 && b.probeAccepted == 0 {
			break
		}
	}
	b.probeOpen = min(b.probeOpen, 1)
	return nil
}

// startGateway picks fresh ports for the gateway, writes its config (with
// a TLS listener if withTLS), starts `frontdoor run` (under taskset with
// --cpu-pin) and waits for it to route a request to mailboxd. With TLS it
// then waits for the TLS listener to do the same; a gateway whose plaintext
// listener works but whose TLS listener does not answer is kept, with
// s.tlsErr saying why and s.gwTLSAddr empty. Fresh ports on every start
// mean a restart never waits for the old process's sockets.
func (s *suite) startGateway(ctx context.Context, withTLS bool) error {
	gwPort, err := freePort()
	if err != nil {
		return fmt.Errorf("picking a port: %w", err)
	}
	tlsPort := 0
	if withTLS {
		if tlsPort, err = freePort(); err != nil {
			return fmt.Errorf("picking a port: %w", err)
		}
	}
	adminPort, err := freePort()
	if err != nil {
		return fmt.Errorf("picking a port: %w", err)
	}
	s.gwAddr, s.gwTLSAddr = "127.0.0.1:"+strconv.Itoa(gwPort), ""
	s.gwAdminAddr = "127.0.0.1:" + strconv.Itoa(adminPort)
	ports := gatewayPorts{HTTP: gwPort, TLS: tlsPort, Mbx: s.mbx.port, Admin: adminPort}
	if s.auth != nil {
		ports.MbxID = s.auth.mbx.port
	}
	if s.mail != nil {
		if err := s.mail.pickPorts(&ports); err != nil {
			return err
		}
	}
	if err := s.writeConfig(ports); err != nil {
		return fmt.Errorf("writing config: %w", err)
	}
	argv := s.pinArgv(pinProxyCPU, []string{s.o.binary, "run", "--config", filepath.Join(s.dir, "frontdoor.toml")})
	if s.o.cpuPin {
		if ts, err := exec.LookPath("taskset"); err == nil {
			argv = append([]string{ts, "-c", "0"}, argv...)
			s.report.CPUPinned = true
		}
	}
	s.gw, err = startChild("gateway", argv, s.dir)
	if err != nil {
		return err
	}
	hdr := http.Header{"X-AnchorMailbox": {anchorMailbox}}
	if err := waitReady(ctx, s.gw, probeClient, "http://"+s.gwAddr+"/owa/", hdr, s.o.startupTimeout); err != nil {
		return err
	}
	if s.auth != nil {
		// alice through the authenticated protocol: the identity key, the
		// password hash and the verifying mailboxd all work.
		ah := http.Header{"X-AnchorMailbox": {anchorMailbox}, "Authorization": {basicAuth(authLogin)}}
		if err := waitReady(ctx, s.gw, probeClient, "http://"+s.gwAddr+authPrefix+"/", ah, s.o.startupTimeout); err != nil {
			return fmt.Errorf("the authenticated protocol %s: %w", authPrefix, err)
		}
	}
	if s.mail != nil {
		if err := s.mail.waitGateway(s.gw, s.o.startupTimeout); err != nil {
			return err
		}
	}
	tlsNote := ""
	if withTLS {
		addr := "127.0.0.1:" + strconv.Itoa(tlsPort)
		if err := waitReady(ctx, s.gw, tlsProbeClient, "https://"+addr+"/owa/", hdr, s.o.startupTimeout); err != nil {
			if ctx.Err() != nil || s.gw.exited() {
				return err
			}
			s.tlsErr = fmt.Sprintf("the gateway's TLS listener on %s did not answer: %v", addr, err)
			fmt.Fprintf(s.stderr, "frontdoor bench: %s; TLS scenarios will not be measured\n", s.tlsErr)
		} else {
			s.gwTLSAddr = addr
			tlsNote = ", TLS on " + addr
		}
	}
	pin := ""
	if s.report.CPUPinned {
		pin = ", pinned to CPU 0"
	}
	if s.o.pin {
		pin = fmt.Sprintf(", pinned to CPU %d", pinProxyCPU)
	}
	authNote := ""
	if s.auth != nil {
		authNote = fmt.Sprintf(", %s requires Basic (or Negotiate with a realm), admin on %s", authPrefix, s.gwAdminAddr)
		if s.gwCacheTTL > 0 {
			authNote += ", auth.cache_ttl " + s.gwCacheTTL.String()
		}
	}
	fmt.Fprintf(s.stderr, "gateway listening on %s%s%s (pid %d, loops=%d%s)\n", s.gwAddr, tlsNote, authNote, s.gw.pid(), s.o.loops, pin)
	return nil
}

// startGatewayTLSFallback starts the gateway, with a TLS listener if
// withTLS. If the gateway does not start with one (its config schema may
// not know TLS yet), the reason goes to s.tlsErr and the gateway is started
// again without it, so that the plaintext scenarios still run.
func (s *suite) startGatewayTLSFallback(ctx context.Context, withTLS bool) error {
	err := s.startGateway(ctx, withTLS)
	if err == nil || !withTLS || ctx.Err() != nil {
		return err
	}
	why := err.Error()
	if s.gw != nil {
		if line := s.gw.lastLine(); line != "" {
			why += " (" + line + ")"
		}
		s.gw.dumpOutput(s.stderr)
		s.gw.stop()
		s.gw = nil
	}
	s.tlsErr = "the gateway did not start with a TLS listener configured: " + why
	fmt.Fprintf(s.stderr, "frontdoor bench: %s; starting it without one\n", s.tlsErr)
	if err := s.startGateway(ctx, false); err != nil {
		s.tlsErr = "" // not a TLS problem after all
		return err
	}
	return nil
}

// restartGateway stops the gateway and starts a fresh one, with a TLS
// listener if the old one had a working one. On error s.gw may be a child
// that failed to come up (or nil).
func (s *suite) restartGateway(ctx context.Context) error {
	withTLS := s.gwTLSAddr != ""
	if s.gw != nil {
		s.gw.stop()
		s.gw = nil
	}
	return s.startGateway(ctx, withTLS)
}

// gatewayFor restarts the gateway if sc needs another auth.cache_ttl than
// the running one has. On error the gateway is stopped (s.gw nil).
func (s *suite) gatewayFor(ctx context.Context, sc Scenario) error {
	if sc.AuthCacheTTL == s.gwCacheTTL {
		return nil
	}
	s.gwCacheTTL = sc.AuthCacheTTL
	ttl := "the default"
	if s.gwCacheTTL > 0 {
		ttl = s.gwCacheTTL.String()
	}
	fmt.Fprintf(s.stderr, "running %s -> gateway: restarting the gateway with auth.cache_ttl %s\n", sc.Name, ttl)
	if err := s.restartGateway(ctx); err != nil {
		if s.gw != nil {
			s.gw.dumpOutput(s.stderr)
			s.gw.stop()
			s.gw = nil
		}
		return fmt.Errorf("restarting the gateway: %w", err)
	}
	return nil
}

// loadOptions is the load-generator configuration of one scenario against
// one target. Direct rows of TLS scenarios are plaintext: mailboxd has no
// TLS.
func (s *suite) loadOptions(sc Scenario, target string) Options {
	path := "/owa/"
	if sc.Auth != AuthNone {
		path = authPrefix + "/"
	}
	hdr := append([]Header{{"X-AnchorMailbox", anchorMailbox}}, authHeaders(sc)...)
	opts := Options{
		Addr: s.mbx.addr,
		Request: Request{
			Method: "GET",
			Path:   path,
			Header: append(hdr, sc.Header...),
		},
		Conns:           orDefault(sc.Conns, s.o.conns),
		Pipeline:        orDefault(sc.Pipeline, s.o.pipeline),
		RequestsPerConn: sc.RequestsPerConn,
		LocalAddrs:      s.o.sourceAddrs,
		LatencyFromDial: sc.LatencyFromDial,
	}
	if sc.SourceAddrs && len(opts.LocalAddrs) == 0 {
		opts.LocalAddrs = idleSourceAddrs
	}
	if sc.Auth == AuthLogin {
		opts.Variants = loginVariants(opts.Request)
	}
	if isNegotiate(sc.Auth) && s.krb != nil {
		s.krb.loadOptions(sc, &opts, s.o.warmup+s.o.duration)
	}
	if px := s.proxyFor(target); px != nil {
		opts.Addr = px.addr
		if sc.TLS {
			opts.Addr = px.tlsAddr
			opts.TLS = benchTLSConfig(sc.Resume)
			opts.TLS.CurvePreferences = s.o.tlsGroups
			if sc.kx == kxX25519 {
				opts.TLS.CurvePreferences = []tls.CurveID{tls.X25519}
			}
		}
	}
	return opts
}

// Key exchanges the suite offers rows of handshake-bound scenarios by
// itself (Scenario.kx, RunReport.KeyExchange), named as crypto/tls names
// them in TLSParams.
const (
	// kxX25519: the load generator offers only X25519, what a peer whose
	// OpenSSL has no ML-KEM negotiates.
	kxX25519 = "X25519"
	// kxHybrid: crypto/tls's default offer, which the gateway answers
	// with the post-quantum hybrid.
	kxHybrid = "X25519MLKEM768"
)

// row is one measurement in a round of a scenario: a target and the key
// exchange the load generator offers it ("" when the suite does not
// choose one).
type row struct{ target, kx string }

// rows lists the rows of one round of sc in the order they run: direct,
// gateway, then the peers.
//
// Compared with a peer that cannot do ML-KEM (Debian 12's OpenSSL 3.0), the
// gateway's default X25519MLKEM768 handshake is not the peer's X25519 one:
// ML-KEM-768 costs about 170 us more, so a handshake-bound scenario's
// ratio would measure the key exchange, not the proxy. Unless --tls-groups
// says otherwise, such a scenario measures the gateway twice: offered only
// X25519, as the peers without ML-KEM are (the same ClientHello and key
// exchange: the row the ratios use), and at crypto/tls's default (the
// post-quantum handshake a Go client gets, so that its cost stays
// visible). A peer with ML-KEM gets the default offer, and is compared
// with the second row.
func (s *suite) rows(sc Scenario) []row {
	out := []row{{target: "direct"}, {target: "gateway"}}
	split := false
	for _, p := range s.o.peers {
		r := row{target: p}
		if info := s.peerInfo[p]; sc.handshakeBound() && !s.o.tlsGroupsSet && info != nil && info.Error == "" {
			r.kx = kxHybrid
			if !info.PostQuantum {
				r.kx, split = kxX25519, true
			}
		}
		out = append(out, r)
	}
	if !split || !s.o.targets["gateway"] {
		for i := range out {
			out[i].kx = "" // every row gets the same offer: nothing to tell apart
		}
		return out
	}
	out[1].kx = kxX25519
	return slices.Insert(out, 2, row{target: "gateway", kx: kxHybrid})
}

// benchTLSConfig is the load generator's TLS client config. It does not
// verify the gateway's self-signed certificate: verification would only add
// load-generator CPU on a machine whose cores the gateway shares. Without
// resume there is no session cache, so every handshake is a full one; with
// it, one cache serves the warm-up and the measured run, so every measured
// handshake can resume.
func benchTLSConfig(resume bool) *tls.Config {
	c := &tls.Config{InsecureSkipVerify: true, ServerName: tlsServerName} // self-signed bench certificate
	if resume {
		c.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	return c
}

// measure runs one scenario against one target: warm-up, then the measured
// run bracketed by /proc samples of every process involved.
func (s *suite) measure(ctx context.Context, sc Scenario, target string) (*RunReport, error) {
	opts := s.loadOptions(sc, target)
	kind := ""
	switch {
	case opts.TLS != nil && sc.kx == kxX25519:
		kind = ", TLS, the client offering only X25519"
	case opts.TLS != nil:
		kind = ", TLS"
	case sc.TLS:
		kind = ", plaintext (mailboxd has no TLS)"
	}
	switch {
	case sc.Auth == AuthCached:
		kind += ", Basic as " + authLogin
	case sc.Auth == AuthLogin:
		kind += fmt.Sprintf(", Basic, each request another of %d users", authUsers)
	case sc.Auth == AuthNegotiateKeepalive:
		kind += ", Negotiate as " + authLogin + " once per connection"
	case sc.Auth == AuthNegotiateLogin:
		kind += ", a new connection and Negotiate token per request"
	}
	if sc.Auth != AuthNone && target == "direct" {
		kind += " (mailboxd without identity checks)"
	}
	fmt.Fprintf(s.stderr, "running %s -> %s: %d conns, pipeline %d%s, %v (+%v warm-up)\n",
		sc.Name, target, opts.Conns, opts.Pipeline, kind, s.o.duration, s.o.warmup)

	if s.o.warmup > 0 {
		opts.Duration = s.o.warmup
		if _, err := Run(ctx, opts); err != nil {
			return nil, err
		}
	}
	// Let the warm-up's churn settle (closing connections, TIME_WAIT) so
	// it is not billed to the measured run.
	sleepCtx(ctx, 100*time.Millisecond)
	if sc.Channels != nil {
		bg := startChannels(ctx, opts.Addr, opts.Request.Path, anchorMailbox, *sc.Channels, 30*time.Second)
		defer func() { fmt.Fprintf(s.stderr, "%s -> %s: background channels: %s\n", sc.Name, target, bg.stop()) }()
	}

	px, proxySample := s.proxySampler(target)
	mbx := s.mbx
	authStats := target == "gateway" && sc.Auth != AuthNone && s.gwAdminAddr != ""
	var authBefore map[string]int64
	if target == "gateway" {
		if sc.Auth != AuthNone {
			mbx = s.auth.mbx
		}
		if authStats {
			var err error
			if authBefore, err = gatewayAuthStats(s.gwAdminAddr); err != nil {
				fmt.Fprintf(s.stderr, "frontdoor bench: %s: gateway auth counters unavailable: %v\n", sc.Name, err)
				authStats = false
			}
		}
	}
	self := procSampler(os.Getpid())
	statsBefore, statsErr := mailboxdStats(mbx.addr)
	before := sampleAll(proxySample, procSampler(mbx.pid()), self)

	opts.Duration = s.o.duration
	res, err := Run(ctx, opts)
	if err != nil {
		return nil, err
	}

	after := sampleAll(proxySample, procSampler(mbx.pid()), self)
	var statsAfter mailboxdStatsJSON
	if statsErr == nil {
		statsAfter, statsErr = mailboxdStats(mbx.addr)
	}
	var authAfter map[string]int64
	if authStats {
		var err error
		if authAfter, err = gatewayAuthStats(s.gwAdminAddr); err != nil {
			fmt.Fprintf(s.stderr, "frontdoor bench: %s: gateway auth counters unavailable: %v\n", sc.Name, err)
			authStats = false
		}
	}

	rr := &RunReport{
		Scenario:          sc.Name,
		Target:            target,
		KeyExchange:       sc.kx,
		Conns:             opts.Conns,
		Pipeline:          opts.Pipeline,
		RequestsPerConn:   opts.RequestsPerConn,
		ElapsedSeconds:    res.Elapsed.Seconds(),
		Requests:          res.Requests,
		RequestsPerSecond: res.RequestsPerSecond(),
		Latency:           latencyOf(res.Latency),
		Errors:            res.Errors,
		ErrorsTotal:       res.Errors.Total(),
		StatusClasses:     map[string]int64{},
		Dials:             res.Dials,
		TLS:               opts.TLS != nil,
		PlaintextCeiling:  sc.TLS && opts.TLS == nil,
		Auth:              sc.Auth.String(),
		NoAuthCeiling:     sc.Auth != AuthNone && target == "direct",
	}
	if authStats {
		rr.GatewayAuth = authDelta(authBefore, authAfter)
	}
	for class, n := range res.StatusClasses {
		if n > 0 {
			rr.StatusClasses[strconv.Itoa(class)+"xx"] = n
		}
	}
	perN := func(i int, n int64) *float64 { return cpuPer(before, after, i, n) }
	rr.setProcFigures(before, after, px != nil, res.Requests)
	rr.LoadgenCPUPerRequestUS = perN(2, res.Requests)
	if statsErr == nil {
		rr.setBackendConns(statsBefore, statsAfter, mbx, px)
	}
	if opts.TLS != nil {
		rr.Handshakes, rr.HandshakesResumed = res.Handshakes, res.Resumed
		rr.HandshakesPerSecond = res.HandshakesPerSecond()
		hl := latencyOf(res.HandshakeLatency)
		rr.HandshakeLatency = &hl
		rr.TLSParams = res.TLSParams
		if opts.RequestsPerConn == 1 && px != nil && res.Handshakes > 0 {
			rr.GatewayCPUPerHandshakeUS = perN(0, res.Handshakes)
		}
	}
	return rr, nil
}

// proxySampler returns the proxy under test for target (nil for direct)
// and the sampler of its processes, which fails when there is none.
func (s *suite) proxySampler(target string) (*proxyUnder, func() (ProcSample, error)) {
	px := s.proxyFor(target)
	if px == nil {
		return nil, func() (ProcSample, error) { return ProcSample{}, errors.New("no proxy") }
	}
	return px, px.sample
}

// cpuPer is the CPU per event (request, handshake) of process sample i
// over a run, or nil when either sample failed.
func cpuPer(before, after []procSampleErr, i int, n int64) *float64 {
	if before[i].err != nil || after[i].err != nil {
		return nil
	}
	v := CPUPerRequest(before[i].ProcSample, after[i].ProcSample, n)
	return &v
}

// setProcFigures sets the proxy's (sample 0, when proxied) and mailboxd's
// (sample 1) CPU per request and the proxy's RSS from a run's samples.
func (rr *RunReport) setProcFigures(before, after []procSampleErr, proxied bool, requests int64) {
	if proxied {
		rr.GatewayCPUPerRequestUS = cpuPer(before, after, 0, requests)
		if after[0].err == nil {
			rss := after[0].RSS
			rr.GatewayRSSBytes = &rss
		}
	}
	rr.MailboxdCPUPerRequestUS = cpuPer(before, after, 1, requests)
}

// setBackendConns sets the connections to mailboxd the proxy held at the
// end of a run and opened during it, less the suite's own probes and, for
// a peer, the connections it held before.
func (rr *RunReport) setBackendConns(before, after mailboxdStatsJSON, mbx *backend, px *proxyUnder) {
	base := int64(0)
	if px != nil {
		base = px.baseOpen
	}
	open := max(after.ConnectionsOpen-mbx.probeOpen-base, 0)
	created := max(after.ConnectionsAccepted-before.ConnectionsAccepted-mbx.probeAccepted, 0)
	rr.BackendConnectionsOpen, rr.BackendConnectionsNew = &open, &created
}

func latencyOf(h *Histogram) LatencyUS {
	return LatencyUS{
		P50:  usOf(h.Quantile(0.50)),
		P99:  usOf(h.Quantile(0.99)),
		P999: usOf(h.Quantile(0.999)),
		Max:  usOf(h.Max()),
		Mean: usOf(h.Mean()),
	}
}

// measureIdle measures what idle keep-alive connections cost the gateway.
// It restarts the gateway first: memory an earlier scenario left in the
// gateway's heap (freed, but neither collected nor returned to the kernel
// while the gateway is idle) would otherwise absorb the new connections and
// hide their cost. It then warms the fresh gateway up (backend pool, TLS)
// with --warmup of keep-alive load, lets it settle, and runs runIdle with
// as many connections as the file-descriptor limits allow.
//
// For a peer (target nginx or haproxy) the caller has just started it, so
// it is fresh; its memory, descriptors and CPU are those of its whole
// process tree, and it has neither a trim on demand nor statistics.
func (s *suite) measureIdle(ctx context.Context, sc Scenario, target string) (*RunReport, error) {
	rr := &RunReport{Scenario: sc.Name, Target: target, KeyExchange: sc.kx, TLS: sc.TLS, StatusClasses: map[string]int64{},
		Idle: &IdleReport{Requested: s.o.idleConns}}
	if target == "gateway" {
		fmt.Fprintf(s.stderr, "running %s -> gateway: restarting the gateway for a clean memory baseline\n", sc.Name)
		if err := s.restartGateway(ctx); err != nil {
			if s.gw != nil {
				s.gw.dumpOutput(s.stderr)
				s.gw.stop()
				s.gw = nil
			}
			return nil, fmt.Errorf("restarting the gateway: %w", err)
		}
		if sc.TLS && s.gwTLSAddr == "" {
			rr.Error = "not measured: the gateway has no working TLS listener"
			return rr, nil
		}
	}
	px := s.proxyFor(target)
	if px == nil {
		return nil, fmt.Errorf("%s is not running", target)
	}
	opts := s.loadOptions(sc, target)
	if s.o.warmup > 0 {
		opts.Duration = s.o.warmup
		if _, err := Run(ctx, opts); err != nil {
			return nil, err
		}
		opts.Duration = 0
	}
	// Let the warm-up's connections close.
	sleepCtx(ctx, 500*time.Millisecond)

	pid := px.pid
	var gwLimit uint64
	if px.tree {
		// The peer holds its client connections within the connection
		// limit it was configured with (and raises its own descriptor
		// limit to match).
		gwLimit = uint64(min(s.peer.cfg.MaxConns, s.peer.cfg.NoFile))
	} else {
		var err error
		if gwLimit, err = ProcNoFile(pid); err != nil {
			fmt.Fprintf(s.stderr, "frontdoor bench: gateway fd limit unknown, assuming it is the runner's: %v\n", err)
		}
	}
	n := s.o.idleConns
	if room := fdRoom(nofileLimit(), gwLimit); room >= 0 {
		rr.Idle.Limit = room
		n = min(n, room)
	}
	if n <= 0 {
		rr.Error = fmt.Sprintf("not measured: the file-descriptor limit leaves no room for idle connections (%d kept for other descriptors)", idleFDHeadroom)
		return rr, nil
	}
	if len(opts.LocalAddrs) == 0 {
		opts.LocalAddrs = idleSourceAddrs
	}
	tlsNote := ""
	if opts.TLS != nil {
		tlsNote = " TLS"
	}
	fmt.Fprintf(s.stderr, "running %s -> %s: opening %d idle%s connections from %d source addresses, %d at a time, holding them %v\n",
		sc.Name, target, n, tlsNote, len(opts.LocalAddrs), opts.Conns, s.o.idleHold)
	admin := s.gwAdminAddr
	probe := idleProbe{
		RSS: func() (int64, error) { return ProcRSS(pid) },
		FDs: func() (int, error) { return ProcFDs(pid) },
		CPU: func() (time.Duration, error) { return ProcCPU(pid) },
	}
	if _, port, err := net.SplitHostPort(opts.Addr); err == nil {
		if p, err := strconv.Atoi(port); err == nil {
			probe.Conns = func() (int, error) { return EstablishedOn(p) }
		}
	}
	if px.tree {
		probe.RSS = func() (int64, error) { ps, err := SampleTree(pid); return ps.RSS, err }
		probe.FDs = func() (int, error) { return TreeFDs(pid) }
		probe.CPU = func() (time.Duration, error) { ps, err := SampleTree(pid); return ps.CPU, err }
	} else {
		probe.Runtime = func() (*gatewayRuntime, error) { return gatewayRuntimeStats(admin) }
		probe.Trim = func() error { return gatewayTrim(admin) }
	}
	ir, res, err := runIdle(ctx, opts, n, s.o.idleHold, s.o.idleSettle, probe)
	if err != nil {
		return nil, err
	}
	ir.Requested, ir.Limit = rr.Idle.Requested, rr.Idle.Limit
	rr.Idle = ir
	rr.Conns, rr.Pipeline = ir.Held, 1
	rr.ElapsedSeconds = res.Elapsed.Seconds()
	rr.Requests, rr.RequestsPerSecond = res.Requests, res.RequestsPerSecond()
	rr.Latency = latencyOf(res.Latency)
	rr.Errors, rr.ErrorsTotal = res.Errors, res.Errors.Total()
	rr.Dials = res.Dials
	for class, n := range res.StatusClasses {
		if n > 0 {
			rr.StatusClasses[strconv.Itoa(class)+"xx"] = n
		}
	}
	if ps, err := px.sample(); err == nil {
		rr.GatewayRSSBytes = &ps.RSS
	}
	if opts.TLS != nil {
		rr.Handshakes, rr.HandshakesResumed = res.Handshakes, res.Resumed
		rr.HandshakesPerSecond = res.HandshakesPerSecond()
		hl := latencyOf(res.HandshakeLatency)
		rr.HandshakeLatency = &hl
		rr.TLSParams = res.TLSParams
	}
	return rr, nil
}

// idleProbe samples the process whose idle-connection cost is measured.
// RSS is required; the others may be nil.
type idleProbe struct {
	RSS func() (int64, error)
	FDs func() (int, error)
	CPU func() (time.Duration, error)
	// Conns counts the connections the process holds on the listening
	// port the idle connections went to.
	Conns func() (int, error)
	// Runtime reads the gateway's /stats runtime section; Trim asks it for
	// a memory trim now.
	Runtime func() (*gatewayRuntime, error)
	Trim    func() error
	// Open opens the idle connections (nil: OpenIdle with the options).
	Open func(ctx context.Context, n int) (*IdleConns, error)
}

// runIdle samples p, opens n idle connections with opts (OpenIdle), holds
// them for hold, samples p again, and closes them. It computes the RSS per
// connection held and its extrapolation to a million connections
// (idleCost), and the live heap per connection. The returned Result
// describes the opening. The Requested and Limit fields of the report are
// left to the caller.
//
// The baseline is taken after a trim on demand (p.Trim), so that garbage
// the gateway held before does not make room for the connections. A
// gateway with its memory trimmer on gives memory back about a second
// after the last handshake; when it reports one, runIdle waits after the
// hold, at most settle longer, until it has trimmed once since the
// connections were opened or says it has nothing worth trimming, so that
// the sample shows the memory the idle connections keep rather than the
// garbage of opening them.
func runIdle(ctx context.Context, opts Options, n int, hold, settle time.Duration, p idleProbe) (*IdleReport, *Result, error) {
	ir := &IdleReport{Attempted: n, SourceAddrs: opts.LocalAddrs, HoldSeconds: hold.Seconds()}
	if p.Trim != nil && p.Trim() == nil {
		ir.BaselineTrimmed = true
	}
	rt0 := optRuntime(p.Runtime)
	before, err := p.RSS()
	if err != nil {
		return nil, nil, fmt.Errorf("sampling RSS: %w", err)
	}
	ir.RSSBeforeBytes = before
	ir.GatewayFDsBefore = optFDs(p.FDs)
	cpu0, cpuErr := optCPU(p.CPU)

	open := p.Open
	if open == nil {
		open = func(ctx context.Context, n int) (*IdleConns, error) { return OpenIdle(ctx, opts, n) }
	}
	ic, err := open(ctx, n)
	if err != nil {
		return nil, nil, err
	}
	defer ic.Close()
	cpu1, cpuErr1 := optCPU(p.CPU)
	rtOpen := optRuntime(p.Runtime)
	sleepCtx(ctx, hold)
	if rtOpen != nil && rtOpen.MemoryTrimIntervalSeconds > 0 && settle > 0 {
		start := time.Now()
		ir.SettleEnd = "gave up"
		for ctx.Err() == nil && time.Since(start) < settle {
			// Done once it trimmed, or when it has nothing to trim.
			rt := optRuntime(p.Runtime)
			if rt == nil {
				ir.SettleEnd = "no stats"
				break
			}
			if rt.MemoryTrims > rtOpen.MemoryTrims {
				ir.SettleEnd = "trimmed"
				break
			}
			if !rt.MemoryTrimWanted {
				ir.SettleEnd = "nothing to trim"
				break
			}
			sleepCtx(ctx, min(100*time.Millisecond, settle-time.Since(start)))
		}
		ir.SettleSeconds = time.Since(start).Round(time.Millisecond).Seconds()
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	held, err := p.RSS()
	if err != nil {
		return nil, nil, fmt.Errorf("sampling RSS: %w", err)
	}
	rt1 := optRuntime(p.Runtime)
	ir.RSSHeldBytes = held
	ir.GatewayFDsHeld = optFDs(p.FDs)
	ir.ConnsEstablished = optFDs(p.Conns)
	ir.Held = ic.Len()
	ir.RSSPerConnBytes, ir.Extrapolated1MGiB = idleCost(before, held, ir.Held)
	if cpuErr == nil && cpuErr1 == nil && ir.Held > 0 {
		v := float64((cpu1 - cpu0).Microseconds()) / float64(ir.Held)
		ir.GatewayCPUPerConnUS = &v
	}
	if rt0 != nil && rt1 != nil {
		ir.HeapLiveBeforeBytes, ir.HeapLiveHeldBytes = &rt0.HeapLiveBytes, &rt1.HeapLiveBytes
		if rtOpen != nil && rt1.GCCycles > rtOpen.GCCycles && ir.Held > 0 {
			v := float64(rt1.HeapLiveBytes-rt0.HeapLiveBytes) / float64(ir.Held)
			ir.HeapPerConnBytes = &v
		}
		if rtOpen != nil {
			opening, after := rtOpen.MemoryTrims-rt0.MemoryTrims, rt1.MemoryTrims-rtOpen.MemoryTrims
			ir.MemoryTrimsOpening, ir.MemoryTrims = &opening, &after
		}
	}
	return ir, ic.Result, nil
}

// gatewayRuntime is the part of the gateway's /stats runtime section the
// idle scenarios use.
type gatewayRuntime struct {
	HeapLiveBytes             int64   `json:"heap_live_bytes"`
	GCCycles                  int64   `json:"gc_cycles"`
	MemoryTrimIntervalSeconds float64 `json:"memory_trim_interval_s"`
	MemoryTrimWanted          bool    `json:"memory_trim_wanted"`
	MemoryTrims               int64   `json:"memory_trims"`
}

// gatewayRuntimeStats reads the runtime section of the gateway's /stats at
// admin (host:port); an error when there is none (an older gateway).
func gatewayRuntimeStats(admin string) (*gatewayRuntime, error) {
	resp, err := probeClient.Get("http://" + admin + "/stats")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /stats: %s", resp.Status)
	}
	var st struct {
		Runtime *gatewayRuntime `json:"runtime"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&st); err != nil {
		return nil, err
	}
	if st.Runtime == nil {
		return nil, errors.New("GET /stats: no runtime section")
	}
	return st.Runtime, nil
}

// gatewayTrim asks the gateway at admin for a memory trim and waits for it.
func gatewayTrim(admin string) error {
	resp, err := probeClient.Post("http://"+admin+"/debug/memory/trim", "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /debug/memory/trim: %s", resp.Status)
	}
	return nil
}

func optRuntime(f func() (*gatewayRuntime, error)) *gatewayRuntime {
	if f == nil {
		return nil
	}
	rt, err := f()
	if err != nil {
		return nil
	}
	return rt
}

func optFDs(f func() (int, error)) *int {
	if f == nil {
		return nil
	}
	n, err := f()
	if err != nil {
		return nil
	}
	return &n
}

func optCPU(f func() (time.Duration, error)) (time.Duration, error) {
	if f == nil {
		return 0, errors.New("no CPU probe")
	}
	return f()
}

// idleCost returns the resident memory one idle connection costs, from the
// RSS before the connections were opened and while conns of them were held,
// and that cost extrapolated to a million connections, in GiB (2^30 bytes).
// It is 0, 0 for no connections. A negative cost means the process returned
// more memory meanwhile than the connections took: the measurement is
// noise, which the caller shows as it is rather than hiding it.
func idleCost(before, held int64, conns int) (perConn, gib1M float64) {
	if conns <= 0 {
		return 0, 0
	}
	perConn = float64(held-before) / float64(conns)
	return perConn, perConn * 1e6 / (1 << 30)
}

// idleSampleNote says when an idle row's held sample was taken and what
// the baseline was.
func idleSampleNote(scenario, target string, ir *IdleReport) string {
	ms := func(s float64) time.Duration { return time.Duration(math.Round(s*1000)) * time.Millisecond }
	note := fmt.Sprintf("%s/%s: sampled %s after the last connection opened (--idle-hold %s", scenario, target,
		ms(ir.HoldSeconds+ir.SettleSeconds), ms(ir.HoldSeconds))
	switch ir.SettleEnd {
	case "":
	case "trimmed":
		note += fmt.Sprintf(" + %s until the gateway's memory trim", ms(ir.SettleSeconds))
	case "gave up":
		note += fmt.Sprintf(" + %s waiting in vain for the gateway's memory trim", ms(ir.SettleSeconds))
	default:
		note += fmt.Sprintf(" + %s: %s", ms(ir.SettleSeconds), ir.SettleEnd)
	}
	note += ")"
	if ir.MemoryTrims != nil {
		note += fmt.Sprintf("; gateway memory trims: %d while opening, %d after", *ir.MemoryTrimsOpening, *ir.MemoryTrims)
	}
	if ir.BaselineTrimmed {
		note += "; baseline sampled after a trim on demand"
	} else if isPeer(target) {
		note += "; baseline: freshly started and warmed up (no trim on demand, no garbage collector)"
	} else {
		note += "; baseline not trimmed (gateway without POST /debug/memory/trim)"
	}
	return note
}

// fdRoom returns how many idle connections the soft RLIMIT_NOFILE limits
// of the processes involved allow, each connection costing every one of
// them a descriptor (the runner its client end, the gateway its server end)
// and each keeping idleFDHeadroom for everything else. Zero limits are
// unknown or unlimited and ignored; with none known it returns -1.
func fdRoom(limits ...uint64) int {
	room := -1
	for _, l := range limits {
		if l == 0 {
			continue
		}
		r := math.MaxInt32
		if l < uint64(r) {
			r = max(int(l)-idleFDHeadroom, 0)
		}
		if room < 0 || r < room {
			room = r
		}
	}
	return room
}

func orDefault(v, dflt int) int {
	if v > 0 {
		return v
	}
	return dflt
}

type procSampleErr struct {
	ProcSample
	err error
}

// sampleAll calls each sampler in order.
func sampleAll(samplers ...func() (ProcSample, error)) []procSampleErr {
	out := make([]procSampleErr, len(samplers))
	for i, f := range samplers {
		out[i].ProcSample, out[i].err = f()
	}
	return out
}

// procSampler samples one process.
func procSampler(pid int) func() (ProcSample, error) {
	return func() (ProcSample, error) { return SampleProc(pid) }
}

// finish prints the table (and notes) to stdout and writes the JSON file.
func (s *suite) finish(stdout io.Writer) error {
	s.report.Peers = s.peerReport()
	s.report.Ratios = computeRatios(s.report.Results, s.o.peers)
	writeTable(stdout, &s.report)
	if s.o.jsonFile == "" {
		return nil
	}
	b, err := json.MarshalIndent(&s.report, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(s.o.jsonFile, append(b, '\n'), 0o644)
}

// writeTable prints the human-readable report: load rows, then (if any)
// idle-connection rows in a table of their own, then notes.
func writeTable(w io.Writer, r *Report) {
	pin := "no"
	if r.CPUPinned {
		pin = "gateway on CPU 0 (taskset)"
	}
	if r.Pin != "" {
		pin = r.Pin
	}
	fmt.Fprintf(w, "frontdoor bench: %s per run (+%s warm-up), gateway loops %d, cpu pin: %s, %d CPUs, %s\n",
		fmtSeconds(r.DurationSeconds), fmtSeconds(r.WarmupSeconds), r.GatewayLoops, pin, r.CPUs, r.GoVersion)
	if r.ClientTLSGroups != "" {
		fmt.Fprintf(w, "load generator offers only %s in TLS handshakes (--tls-groups)\n", r.ClientTLSGroups)
	}
	for _, p := range r.Peers {
		if p.Error != "" {
			fmt.Fprintf(w, "peer %s: NOT MEASURED: %s\n", p.Name, p.Error)
			continue
		}
		fmt.Fprintf(w, "peer %s: %s with %s, TLS groups %s\n", p.Name, p.Version, orDash(p.OpenSSL), p.TLSGroups)
	}
	fmt.Fprintln(w)
	// With peers the proxy columns hold each row's proxy: the gateway's
	// figures on gateway rows, the peer's (whole process tree) on peer rows.
	px := "GW"
	if len(r.Peers) > 0 {
		px = "PROXY"
	}
	rows := [][]string{{"SCENARIO", "TARGET", "CONNS", "PIPE", "REQ/S", "HS/S", "P50", "P99", "P99.9", "MAX", "ERRORS", px + " CPU/REQ", px + " RSS", "MBX CPU/REQ", "BACKEND OPEN/NEW"}}
	idleRows := [][]string{{"SCENARIO", "TARGET", "HELD", "OPENED IN", "HS/S", "ERRORS", "RSS BEFORE", "RSS HELD", "RSS/CONN", "HEAP/CONN", "AT 1M CONNS", px + " CPU/CONN"}}
	var notes []string
	plainCeiling, handshakeRows, authRows, loginRows := false, false, false, false
	negotiateRows := false
	// kxRows are the scenarios (one entry per row) measured with the
	// key exchanges the suite chose; unsplitTLS says a peer's TLS row was
	// measured with the same offer as the gateway's.
	var kxRows []string
	unsplitTLS := false
	for _, rr := range r.Results {
		target := rr.targetLabel()
		if rr.KeyExchange != "" {
			kxRows = append(kxRows, rr.Scenario)
			if rr.TLSParams != "" && !strings.HasSuffix(rr.TLSParams, " "+rr.KeyExchange) {
				notes = append(notes, fmt.Sprintf("%s: negotiated %s, not the key exchange its label names", rr.rowName(), rr.TLSParams))
			}
		} else if rr.TLS && isPeer(rr.Target) {
			unsplitTLS = true
		}
		if rr.PlaintextCeiling {
			target, plainCeiling = "direct (no TLS)", true
		}
		if rr.NoAuthCeiling {
			target = "direct (no auth)"
		}
		if rr.Loadgen != "" {
			target += " [" + rr.Loadgen + "]"
		}
		if rr.Round > 0 {
			target += fmt.Sprintf(" #%d", rr.Round)
		}
		authRows = authRows || rr.Auth != ""
		negotiateRows = negotiateRows || rr.Auth == AuthNegotiateLogin.String() || rr.Auth == AuthNegotiateKeepalive.String()
		loginRows = loginRows || rr.Auth == AuthLogin.String()
		if rr.Error != "" {
			row := []string{rr.Scenario, target, "NOT MEASURED (see notes)"}
			if rr.Idle != nil {
				idleRows = append(idleRows, row)
			} else {
				rows = append(rows, row)
			}
			notes = append(notes, fmt.Sprintf("%s: %s", rr.rowName(), rr.Error))
			continue
		}
		hs := "-"
		if rr.TLS && rr.Loadgen == "" {
			hs = fmt.Sprintf("%.0f", rr.HandshakesPerSecond)
		}
		if rr.Idle != nil {
			ir := rr.Idle
			idleRows = append(idleRows, []string{
				rr.Scenario, target, fmt.Sprintf("%d/%d", ir.Held, ir.Requested), fmtSeconds(math.Round(rr.ElapsedSeconds*1000) / 1000), hs,
				strconv.FormatInt(rr.ErrorsTotal, 10), fmtBytes(float64(ir.RSSBeforeBytes)), fmtBytes(float64(ir.RSSHeldBytes)),
				fmtBytes(ir.RSSPerConnBytes), fmtOptBytes(ir.HeapPerConnBytes), fmt.Sprintf("%.2fGiB", ir.Extrapolated1MGiB), fmtCPU(ir.GatewayCPUPerConnUS),
			})
		} else {
			backend := "-"
			if rr.Target != "direct" && rr.BackendConnectionsOpen != nil {
				backend = fmt.Sprintf("%d/%d", *rr.BackendConnectionsOpen, *rr.BackendConnectionsNew)
			}
			rss := "-"
			if rr.GatewayRSSBytes != nil {
				rss = fmt.Sprintf("%.1fMiB", float64(*rr.GatewayRSSBytes)/(1<<20))
			}
			rows = append(rows, []string{
				rr.Scenario, target, strconv.Itoa(rr.Conns), strconv.Itoa(rr.Pipeline), fmt.Sprintf("%.0f", rr.RequestsPerSecond), hs,
				fmtUS(rr.Latency.P50), fmtUS(rr.Latency.P99), fmtUS(rr.Latency.P999), fmtUS(rr.Latency.Max),
				strconv.FormatInt(rr.ErrorsTotal, 10), fmtCPU(rr.GatewayCPUPerRequestUS), rss, fmtCPU(rr.MailboxdCPUPerRequestUS), backend,
			})
		}
		if rr.RequestsPerConn == 1 {
			handshakeRows = true
		}

		if rr.ErrorsTotal > 0 {
			notes = append(notes, fmt.Sprintf("%s errors: %s", rr.rowName(), rr.Errors))
		}
		for class, n := range rr.StatusClasses {
			if class != "2xx" && class != "5xx" && n > 0 && rr.Loadgen == "" { // wrk, h2load count them as errors
				notes = append(notes, fmt.Sprintf("%s: %d %s responses (counted as successes; check routing)", rr.rowName(), n, class))
			}
		}
		if a := rr.GatewayAuth; a != nil {
			n := fmt.Sprintf("%s: gateway auth counters over the run: %d verifications, %d assertions signed, %d cache misses, %d hits, %d refused, %d overloaded",
				rr.rowName(), a["verifications"], a["signed"], a["cache_misses"], a["cache_hits"], a["refused_basic"], a["overloaded"])
			if rr.Requests > 0 {
				n += fmt.Sprintf(" for %d requests (%.3f verifications per request)", rr.Requests, float64(a["verifications"])/float64(rr.Requests))
				if rr.Auth == AuthLogin.String() && float64(a["verifications"]) < 0.99*float64(rr.Requests) {
					n += ": some logins were cache hits (a user repeated within auth.cache_ttl), so GW CPU/REQ understates a login"
				}
			}
			notes = append(notes, n)
		}
		if rr.TLS && rr.HandshakeLatency != nil {
			n := fmt.Sprintf("%s: %s, %d handshakes (%d resumed), connect+handshake p50 %s p99 %s",
				rr.rowName(), orDash(rr.TLSParams), rr.Handshakes, rr.HandshakesResumed,
				fmtUS(rr.HandshakeLatency.P50), fmtUS(rr.HandshakeLatency.P99))
			if rr.GatewayCPUPerHandshakeUS != nil {
				n += fmt.Sprintf(", %s CPU %.1fus per handshake", rr.Target, *rr.GatewayCPUPerHandshakeUS)
			}
			notes = append(notes, n)
		}
		notes = append(notes, imapNotes(&rr)...)
		if ir := rr.Idle; ir != nil {
			if ir.Limit > 0 && ir.Attempted < ir.Requested {
				notes = append(notes, fmt.Sprintf("%s: --idle-conns %d capped to %d by the file-descriptor limit (%d kept per process for other descriptors)",
					rr.rowName(), ir.Requested, ir.Attempted, idleFDHeadroom))
			}
			if ir.GatewayFDsBefore != nil && ir.GatewayFDsHeld != nil {
				grew := *ir.GatewayFDsHeld - *ir.GatewayFDsBefore
				note := fmt.Sprintf("%s: %s descriptors %d -> %d (+%d) for %d connections held",
					rr.rowName(), rr.Target, *ir.GatewayFDsBefore, *ir.GatewayFDsHeld, grew, ir.Held)
				if ir.ConnsEstablished != nil {
					note += fmt.Sprintf(", %d established on its listening port", *ir.ConnsEstablished)
					if float64(*ir.ConnsEstablished) < 0.99*float64(ir.Held) {
						note += ": it did NOT hold them all (timeouts, limits?), RSS/CONN is too low"
					} else if grew < ir.Held {
						note += " (fewer descriptors: it closed idle backend connections meanwhile)"
					}
				} else if float64(grew) < 0.99*float64(ir.Held) {
					note += ": it did NOT hold them all (timeouts, limits?), RSS/CONN is too low"
				}
				notes = append(notes, note)
			}
			notes = append(notes, idleSampleNote(rr.Scenario, rr.Target, ir))
		}
	}
	writeColumns(w, rows, 2)
	if len(idleRows) > 1 {
		fmt.Fprintln(w)
		writeColumns(w, idleRows, 2)
	}
	if len(r.Ratios) > 0 {
		fmt.Fprintln(w)
		writeRatios(w, r.Ratios)
		notes = append(notes, "ratios: frontdoor's figure / the peer's (in parentheses); CPU/REQ, P99 and RSS/CONN below 1 and REQ/S above 1 favour frontdoor. "+
			"Idle rows compare RSS per idle connection and CPU per connection opened")
	}
	if len(r.Peers) > 0 {
		notes = append(notes, "peers: PROXY CPU/REQ, PROXY RSS, RSS/CONN and PROXY CPU/CONN sum the peer's whole process tree (nginx: master and workers); "+
			"each peer is started afresh for each of its rows, and its BACKEND OPEN counts only its own connections to mailboxd")
		for _, p := range r.Peers {
			if p.Error == "" && !p.PostQuantum && r.ClientTLSGroups == "" && unsplitTLS {
				notes = append(notes, fmt.Sprintf("%s: %s has no X25519MLKEM768, so in the TLS rows without a key exchange in their names its handshakes use X25519, "+
					"cheaper than the gateway's X25519MLKEM768 (--tls-groups x25519 compares like for like)", p.Name, orDash(p.OpenSSL)))
			}
		}
		if len(kxRows) > 0 {
			notes = append(notes, fmt.Sprintf("%s: a peer has no X25519MLKEM768, so the gateway was measured twice: \"gateway (X25519)\" with the client offering only X25519, "+
				"as it did to that peer (the same ClientHello and key exchange; the row the ratios use), and \"gateway (X25519MLKEM768)\" with Go's default offer, "+
				"the post-quantum handshake a Go client gets (the difference between the two is its cost); --tls-groups turns this off", strings.Join(slices.Compact(kxRows), ", ")))
		}
	}
	notes = append(notes, r.Skipped...)
	notes = append(notes, externalNotes(r)...)

	if plainCeiling {
		notes = append(notes, "direct (no TLS): mailboxd has no TLS, so the ceiling of a tls-* scenario is the same load in plaintext straight to mailboxd")
	}
	if authRows {
		notes = append(notes, fmt.Sprintf("auth-*: the gateway row requires Basic on %s/ and forwards each request with a signed identity assertion (%s) "+
			"to a second mailboxd that verifies it (--identity-keys), so its MBX CPU/REQ includes the verification; "+
			"direct (no auth) sends the same requests to the mailboxd without identity checks: the ceiling", authPrefix, orDash(r.IdentityAlg)))
	}
	if loginRows {
		notes = append(notes, fmt.Sprintf("auth-login: every request is the login of another of %d users (round-robin, gateway auth.cache_ttl 1s), "+
			"so through the gateway REQ/S is logins/s and GW CPU/REQ is CPU per login (argon2id, signing, the request); "+
			"a login counts 1 cache miss and 2 hits (the request is routed again after verifying and after signing)", r.AuthUsers))
	}
	if negotiateRows {
		notes = append(notes, "negotiate-*: Kerberos tickets from a KDC the suite runs (MIT krb5kdc), verified by the gateway with its keytab; "+
			"negotiate-keepalive authenticates each connection once before its measured requests, negotiate-login opens a connection "+
			"per request with a fresh token, so its GW CPU/REQ is CPU per Negotiate authentication (accept, SPNEGO and AP-REQ "+
			"verification, replay check, AP-REP, the request, close)")
	}
	if handshakeRows {
		notes = append(notes, "tls-handshake-*: one request per connection, so REQ/S is connections/s, "+px+" CPU/REQ is CPU per connection (accept, handshake, request, close) and latency counts from the start of the dial")
	}
	if len(idleRows) > 1 {
		notes = append(notes, "idle: RSS/CONN = (gateway VmRSS with the connections held - VmRSS before opening them) / connections held, on a freshly started gateway; "+
			"HEAP/CONN the same for its live heap (/stats runtime.heap_live_bytes, after a collection that ran once they were open; - when none did); "+
			"AT 1M CONNS = RSS/CONN x 10^6, extrapolated (kernel socket memory is not in RSS); OPENED IN and HS/S cover opening them; no direct rows")
	}
	if r.TLSError != "" {
		notes = append(notes, "TLS scenarios not measured through the gateway: "+r.TLSError)
	}
	if r.GatewayError != "" {
		notes = append(notes, "gateway not measured: "+r.GatewayError)
	}
	if r.Interrupted {
		notes = append(notes, "interrupted: the run in progress was discarded")
	}
	notes = append(notes, "CPU/REQ: utime+stime delta from /proc/PID/stat (10 ms ticks) over the measured run / successful requests")
	fmt.Fprintln(w)
	for _, n := range notes {
		fmt.Fprintln(w, "  "+n)
	}
}

// writeColumns prints rows as aligned columns two spaces apart: the first
// textCols columns left-aligned, the (numeric) rest right-aligned. A row
// shorter than the first (the header) is a message row: its text columns
// are aligned, and the rest is printed as it is, without widening any
// column.
func writeColumns(w io.Writer, rows [][]string, textCols int) {
	var width []int
	for _, r := range rows {
		if len(rows) > 0 && len(r) < len(rows[0]) {
			for i := range min(len(r), textCols) {
				for i >= len(width) {
					width = append(width, 0)
				}
				width[i] = max(width[i], len(r[i]))
			}
			continue
		}
		for i, c := range r {
			if i >= len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], len(c))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		b.Reset()
		short := len(r) < len(rows[0])
		for i, c := range r {
			if i > 0 {
				b.WriteString("  ")
			}
			if short && i >= textCols {
				b.WriteString(c)
				continue
			}
			pad := strings.Repeat(" ", width[i]-len(c))
			if i < textCols {
				b.WriteString(c)
				if i < len(r)-1 {
					b.WriteString(pad)
				}
			} else {
				b.WriteString(pad + c)
			}
		}
		fmt.Fprintln(w, b.String())
	}
}

// fmtBytes formats a byte count compactly: 812B, 4.7KiB, 60.2MiB, 1.25GiB.
func fmtBytes(n float64) string {
	a := math.Abs(n)
	switch {
	case a < 1<<10:
		return fmt.Sprintf("%.0fB", n)
	case a < 1<<20:
		return fmt.Sprintf("%.1fKiB", n/(1<<10))
	case a < 1<<30:
		return fmt.Sprintf("%.1fMiB", n/(1<<20))
	default:
		return fmt.Sprintf("%.2fGiB", n/(1<<30))
	}
}

func fmtOptBytes(n *float64) string {
	if n == nil {
		return "-"
	}
	return fmtBytes(*n)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// fmtUS formats microseconds compactly: 87us, 1.25ms, 2.10s.
func fmtUS(us float64) string {
	switch {
	case us <= 0:
		return "-"
	case us < 1000:
		return fmt.Sprintf("%.0fus", us)
	case us < 1e6:
		return fmt.Sprintf("%.2fms", us/1e3)
	default:
		return fmt.Sprintf("%.2fs", us/1e6)
	}
}

func fmtCPU(us *float64) string {
	if us == nil {
		return "-"
	}
	return fmt.Sprintf("%.1fus", *us)
}

func fmtSeconds(s float64) string {
	return time.Duration(s * float64(time.Second)).String()
}

// freePort asks the kernel for a free loopback port. The port is released
// before the child binds it; another process could take it in between, in
// which case the child fails to start and says so.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// probeClient is used for readiness and stats: a fresh connection per
// request, so probes never hold a connection open on the servers.
var probeClient = &http.Client{
	Timeout:   2 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true}, // and no Proxy: never via $HTTP_PROXY
}

// tlsProbeClient is probeClient for the gateway's TLS listener, whose
// certificate is self-signed and not verified.
var tlsProbeClient = &http.Client{
	Timeout: 2 * time.Second,
	Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   benchTLSConfig(false),
	},
}

// waitReady polls url with client every 50 ms until it answers 200, the
// child exits, timeout passes or ctx is cancelled.
func waitReady(ctx context.Context, c *child, client *http.Client, url string, hdr http.Header, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := errors.New("no answer yet")
	for {
		if c.exited() {
			return fmt.Errorf("%s exited before it was ready: %v", c.name, c.exitErr())
		}
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			return err
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("GET %s: %s", url, resp.Status)
		} else {
			last = err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %v", timeout, last)
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}
}

// mailboxdStatsJSON is the part of GET /_mailboxd/stats the suite uses.
type mailboxdStatsJSON struct {
	ConnectionsAccepted int64 `json:"connections_accepted"`
	ConnectionsOpen     int64 `json:"connections_open"`
}

func mailboxdStats(addr string) (mailboxdStatsJSON, error) {
	var st mailboxdStatsJSON
	resp, err := probeClient.Get("http://" + addr + "/_mailboxd/stats")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /_mailboxd/stats: %s", resp.Status)
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st)
	return st, err
}

// child is a frontdoor subprocess whose combined output is kept (the last
// 64 KiB) for the error report.
type child struct {
	name string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{}
	err  error // Wait's result, valid once done is closed
}

func startChild(name string, argv []string, dir string) (*child, error) {
	c := &child{name: name, out: &tailBuffer{max: 64 << 10}, done: make(chan struct{})}
	c.cmd = exec.Command(argv[0], argv[1:]...)
	c.cmd.Dir = dir
	c.cmd.Stdout = c.out
	c.cmd.Stderr = c.out
	c.cmd.SysProcAttr = childSysProcAttr()
	// If the child leaves a grandchild holding its output pipe, Wait must
	// not hang on it forever.
	c.cmd.WaitDelay = 2 * time.Second
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *child) exitErr() error {
	<-c.done
	if c.err == nil {
		return errors.New("exit status 0")
	}
	return c.err
}

// stop asks the child to exit (SIGTERM), and kills it if it has not within
// 3 s. It returns once the child has been reaped.
func (c *child) stop() {
	if c.exited() {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(3 * time.Second)
	defer t.Stop()
	select {
	case <-c.done:
		return
	case <-t.C:
	}
	c.cmd.Process.Kill()
	<-c.done
}

// dumpOutput copies what the child printed to w, framed with its name.
func (c *child) dumpOutput(w io.Writer) {
	out := c.out.Bytes()
	if len(out) == 0 {
		fmt.Fprintf(w, "--- %s printed nothing ---\n", c.name)
		return
	}
	fmt.Fprintf(w, "--- %s output (last %d bytes) ---\n", c.name, len(out))
	w.Write(out)
	if out[len(out)-1] != '\n' {
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "--- end of %s output ---\n", c.name)
}

// lastLine returns the last non-empty line the child printed: usually why
// it exited.
func (c *child) lastLine() string {
	out := bytes.TrimSpace(c.out.Bytes())
	if i := bytes.LastIndexByte(out, '\n'); i >= 0 {
		out = out[i+1:]
	}
	return string(bytes.TrimSpace(out))
}

// tailBuffer is an io.Writer that keeps the last max bytes written: a child
// that logs every request must not grow the runner's memory without bound,
// and the end of the log is where a startup failure is explained.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.max { // trim in batches to keep appends amortised
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

// Bytes returns a copy of (at most) the last max bytes written.
func (t *tailBuffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if len(b) > t.max {
		b = b[len(b)-t.max:]
	}
	return bytes.Clone(b)
}

// rowName names a row in the notes under the table: "scenario/target",
// with the round when there are several.
func (rr *RunReport) rowName() string {
	name := rr.Scenario + "/" + rr.targetLabel()
	if rr.Round > 0 {
		name += fmt.Sprintf(" #%d", rr.Round)
	}
	return name
}

// targetLabel is the row's target with its key exchange, when the suite
// chose one: "gateway (X25519)".
func (rr *RunReport) targetLabel() string {
	if rr.KeyExchange != "" {
		return rr.Target + " (" + rr.KeyExchange + ")"
	}
	return rr.Target
}
