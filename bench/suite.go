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
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
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
}

const (
	anchorMailbox = "alice@example.test"
	mailboxdName  = "mbx1"
)

// suiteOptions are the parsed flags.
type suiteOptions struct {
	duration, warmup, startupTimeout time.Duration
	conns, pipeline, loops           int
	binary, jsonFile                 string
	scenarios                        []Scenario
	targets                          map[string]bool
	cpuPin                           bool
	sourceAddrs                      []string
}

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
		list                          bool
	)
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured duration of each run")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each run (fills pools, warms caches); 0 disables")
	fs.IntVar(&o.conns, "conns", 50, "client connections, for scenarios that do not fix their own")
	fs.IntVar(&o.pipeline, "pipeline", 1, "requests outstanding per connection, for scenarios that do not fix their own")
	fs.IntVar(&o.loops, "loops", 1, "gateway event loops (engine.loops). 1 leaves the second core of a\n2-core machine to the load generator and mailbox server; 0 = one per CPU")
	fs.StringVar(&o.binary, "binary", "", "frontdoor binary to run mailboxd and the gateway from (default: this executable)")
	fs.StringVar(&o.jsonFile, "json", "", "also write all results as JSON to `FILE`")
	fs.StringVar(&scenarioList, "scenario", "all", "comma-separated scenarios to run (see --list)")
	fs.StringVar(&targets, "targets", "direct,gateway", "comma-separated targets: direct (mailboxd), gateway")
	fs.BoolVar(&o.cpuPin, "cpu-pin", false, "run the gateway pinned to CPU 0 with taskset -c 0 (ignored if taskset is missing)")
	fs.StringVar(&source, "source-addrs", "", "comma-separated 127.0.0.x source IPs to spread client connections over")
	fs.DurationVar(&o.startupTimeout, "startup-timeout", 15*time.Second, "how long to wait for mailboxd and the gateway to answer")
	fs.BoolVar(&list, "list", false, "list the scenarios and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: frontdoor bench [flags]\n\n"+
			"Starts `frontdoor mailboxd` and `frontdoor run` as child processes on loopback and\n"+
			"runs each scenario directly against mailboxd and through the gateway.\n"+
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
	if o.duration <= 0 || o.warmup < 0 || o.conns <= 0 || o.pipeline <= 0 || o.loops < 0 || o.startupTimeout <= 0 {
		return usage("--duration, --conns, --pipeline and --startup-timeout must be positive, --warmup and --loops not negative")
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
	o.targets = map[string]bool{}
	for _, t := range splitList(targets) {
		if t != "direct" && t != "gateway" {
			return usage("unknown target %q (want direct, gateway)", t)
		}
		o.targets[t] = true
	}
	if len(o.targets) == 0 {
		return usage("no target selected")
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
	GatewayLoops    int     `json:"gateway_loops"`
	// CPUPinned is true when the gateway really ran under taskset -c 0.
	CPUPinned bool `json:"cpu_pinned"`
	// GatewayError says why gateway rows are missing, if they are.
	GatewayError string      `json:"gateway_error,omitempty"`
	Interrupted  bool        `json:"interrupted,omitempty"`
	Results      []RunReport `json:"results"`
}

// RunReport is one row of the table. Latencies are microseconds. Pointer
// fields are null when they do not apply (gateway figures on direct rows)
// or could not be measured.
type RunReport struct {
	Scenario          string      `json:"scenario"`
	Target            string      `json:"target"` // "direct" or "gateway"
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
	mbx, gw        *child
	mbxAddr        string
	gwAddr         string
	// probeOpen and probeAccepted calibrate the stats probe: whether
	// mailboxd counts the probe's own connection in connections_open and
	// connections_accepted (the reference mailboxd does not; a stand-in
	// might). Each is 0 or 1 and is subtracted from later readings.
	probeOpen, probeAccepted int64
	report                   Report
}

func runSuite(ctx context.Context, o suiteOptions, stdout, stderr io.Writer) (code int) {
	s := &suite{o: o, stdout: stdout, stderr: stderr}
	s.report = Report{
		Started: time.Now().UTC().Truncate(time.Second), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(),
		Binary: o.binary, DurationSeconds: o.duration.Seconds(), WarmupSeconds: o.warmup.Seconds(),
		GatewayLoops: o.loops,
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

	mbxPort, err1 := freePort()
	gwPort, err2 := freePort()
	if err := errors.Join(err1, err2); err != nil {
		return fail("picking ports: %v", err)
	}
	s.mbxAddr = "127.0.0.1:" + strconv.Itoa(mbxPort)
	s.gwAddr = "127.0.0.1:" + strconv.Itoa(gwPort)
	if err := s.writeConfig(gwPort, mbxPort); err != nil {
		return fail("writing config: %v", err)
	}

	// Children are stopped on every path out, the gateway first so it never
	// sees its backend vanish while it still has clients.
	defer func() {
		if s.gw != nil {
			s.gw.stop()
		}
		if s.mbx != nil {
			s.mbx.stop()
		}
	}()

	s.mbx, err = startChild("mailboxd", []string{o.binary, "mailboxd", "--listen", s.mbxAddr, "--name", mailboxdName}, dir)
	if err != nil {
		return fail("starting mailboxd: %v", err)
	}
	if err := waitReady(ctx, s.mbx, "http://"+s.mbxAddr+"/healthcheck.htm", nil, o.startupTimeout); err != nil {
		s.mbx.dumpOutput(stderr)
		return fail("mailboxd did not come up: %v", err)
	}
	fmt.Fprintf(stderr, "mailboxd %s listening on %s (pid %d)\n", mailboxdName, s.mbxAddr, s.mbx.pid())
	if err := s.calibrateStats(); err != nil {
		fmt.Fprintf(stderr, "frontdoor bench: mailboxd stats unavailable, backend connections not reported: %v\n", err)
	}

	gatewayOK := false
	if o.targets["gateway"] {
		if err := s.startGateway(ctx); err != nil {
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
	}

	for _, sc := range o.scenarios {
		for _, target := range []string{"direct", "gateway"} {
			if !o.targets[target] || (target == "gateway" && !gatewayOK) {
				continue
			}
			if ctx.Err() != nil {
				break
			}
			rr, err := s.measure(ctx, sc, target)
			if err != nil {
				fmt.Fprintf(stderr, "frontdoor bench: %s %s: %v\n", sc.Name, target, err)
				code = 1
				continue
			}
			if ctx.Err() == nil { // an interrupted run's numbers are not comparable
				s.report.Results = append(s.report.Results, *rr)
				if rr.Requests == 0 {
					code = 1
				}
			}
			if s.mbx.exited() {
				s.mbx.dumpOutput(stderr)
				s.finish(stdout)
				return fail("mailboxd exited during %s %s: %v", sc.Name, target, s.mbx.exitErr())
			}
			if target == "gateway" && s.gw.exited() {
				s.gw.dumpOutput(stderr)
				err := fmt.Errorf("gateway exited during %s: %v", sc.Name, s.gw.exitErr())
				s.report.GatewayError = err.Error()
				fmt.Fprintf(stderr, "frontdoor bench: %v\n", err)
				gatewayOK = false
				code = 1
			}
		}
	}
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

// writeConfig writes the gateway config and its directory file into s.dir.
func (s *suite) writeConfig(gwPort, mbxPort int) error {
	cfg := fmt.Sprintf(`# Written by frontdoor bench.
directory = "directory.toml"

[engine]
loops = %d            # 0 = one per CPU

[[listener]]
name = "http"
address = "127.0.0.1:%d"

[[protocol]]
name = "owa"
path_prefix = "/owa"
backend_port = %d
`, s.o.loops, gwPort, mbxPort)
	dir := fmt.Sprintf(`# Written by frontdoor bench.
[[site]]
name = "site-a"
external_url = "https://mail-a.example.test"

[[server]]
name = %q
address = "127.0.0.1:%d"
site = "site-a"

[[database]]
name = "DB01"
active = %q

[[mailbox]]
address = %q
database = "DB01"
`, mailboxdName, mbxPort, mailboxdName, anchorMailbox)
	if err := os.WriteFile(filepath.Join(s.dir, "frontdoor.toml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.dir, "directory.toml"), []byte(dir), 0o644)
}

// calibrateStats sets probeOpen and probeAccepted from a few stats probes
// while nothing else is connected. The health probes' connections may still
// be counted open for a moment (mailboxd notices a peer's close on its next
// read), so it takes the minimum over up to 10 probes 20 ms apart.
func (s *suite) calibrateStats() error {
	prev, err := mailboxdStats(s.mbxAddr)
	if err != nil {
		return err
	}
	s.probeOpen, s.probeAccepted = max(prev.ConnectionsOpen, 0), 1
	for range 10 {
		time.Sleep(20 * time.Millisecond)
		st, err := mailboxdStats(s.mbxAddr)
		if err != nil {
			return err
		}
		s.probeOpen = min(s.probeOpen, max(st.ConnectionsOpen, 0))
		s.probeAccepted = min(s.probeAccepted, max(st.ConnectionsAccepted-prev.ConnectionsAccepted, 0))
		prev = st
		if s.probeOpen == 0 && s.probeAccepted == 0 {
			break
		}
	}
	s.probeOpen = min(s.probeOpen, 1)
	return nil
}

// startGateway starts `frontdoor run` (under taskset with --cpu-pin) and
// waits for it to route a request to mailboxd.
func (s *suite) startGateway(ctx context.Context) error {
	argv := []string{s.o.binary, "run", "--config", filepath.Join(s.dir, "frontdoor.toml")}
	if s.o.cpuPin {
		if ts, err := exec.LookPath("taskset"); err == nil {
			argv = append([]string{ts, "-c", "0"}, argv...)
			s.report.CPUPinned = true
		}
	}
	var err error
	s.gw, err = startChild("gateway", argv, s.dir)
	if err != nil {
		return err
	}
	hdr := http.Header{"X-AnchorMailbox": {anchorMailbox}}
	if err := waitReady(ctx, s.gw, "http://"+s.gwAddr+"/owa/", hdr, s.o.startupTimeout); err != nil {
		return err
	}
	pin := ""
	if s.report.CPUPinned {
		pin = ", pinned to CPU 0"
	}
	fmt.Fprintf(s.stderr, "gateway listening on %s (pid %d, loops=%d%s)\n", s.gwAddr, s.gw.pid(), s.o.loops, pin)
	return nil
}

// measure runs one scenario against one target: warm-up, then the measured
// run bracketed by /proc samples of every process involved.
func (s *suite) measure(ctx context.Context, sc Scenario, target string) (*RunReport, error) {
	opts := Options{
		Addr: s.mbxAddr,
		Request: Request{
			Method: "GET",
			Path:   "/owa/",
			Header: append([]Header{{"X-AnchorMailbox", anchorMailbox}}, sc.Header...),
		},
		Conns:           orDefault(sc.Conns, s.o.conns),
		Pipeline:        orDefault(sc.Pipeline, s.o.pipeline),
		RequestsPerConn: sc.RequestsPerConn,
		LocalAddrs:      s.o.sourceAddrs,
	}
	if target == "gateway" {
		opts.Addr = s.gwAddr
	}
	fmt.Fprintf(s.stderr, "running %s -> %s: %d conns, pipeline %d, %v (+%v warm-up)\n",
		sc.Name, target, opts.Conns, opts.Pipeline, s.o.duration, s.o.warmup)

	if s.o.warmup > 0 {
		opts.Duration = s.o.warmup
		if _, err := Run(ctx, opts); err != nil {
			return nil, err
		}
	}
	// Let the warm-up's churn settle (closing connections, TIME_WAIT) so
	// it is not billed to the measured run.
	sleepCtx(ctx, 100*time.Millisecond)

	var gwPID int
	if target == "gateway" {
		gwPID = s.gw.pid()
	}
	self := os.Getpid()
	statsBefore, statsErr := mailboxdStats(s.mbxAddr)
	before := sampleAll(gwPID, s.mbx.pid(), self)

	opts.Duration = s.o.duration
	res, err := Run(ctx, opts)
	if err != nil {
		return nil, err
	}

	after := sampleAll(gwPID, s.mbx.pid(), self)
	var statsAfter mailboxdStatsJSON
	if statsErr == nil {
		statsAfter, statsErr = mailboxdStats(s.mbxAddr)
	}

	rr := &RunReport{
		Scenario:          sc.Name,
		Target:            target,
		Conns:             opts.Conns,
		Pipeline:          opts.Pipeline,
		RequestsPerConn:   opts.RequestsPerConn,
		ElapsedSeconds:    res.Elapsed.Seconds(),
		Requests:          res.Requests,
		RequestsPerSecond: res.RequestsPerSecond(),
		Latency: LatencyUS{
			P50:  usOf(res.Latency.Quantile(0.50)),
			P99:  usOf(res.Latency.Quantile(0.99)),
			P999: usOf(res.Latency.Quantile(0.999)),
			Max:  usOf(res.Latency.Max()),
			Mean: usOf(res.Latency.Mean()),
		},
		Errors:        res.Errors,
		ErrorsTotal:   res.Errors.Total(),
		StatusClasses: map[string]int64{},
		Dials:         res.Dials,
	}
	for class, n := range res.StatusClasses {
		if n > 0 {
			rr.StatusClasses[strconv.Itoa(class)+"xx"] = n
		}
	}
	perReq := func(i int) *float64 {
		if before[i].err != nil || after[i].err != nil {
			return nil
		}
		v := CPUPerRequest(before[i].ProcSample, after[i].ProcSample, res.Requests)
		return &v
	}
	if target == "gateway" {
		rr.GatewayCPUPerRequestUS = perReq(0)
		if after[0].err == nil {
			rss := after[0].RSS
			rr.GatewayRSSBytes = &rss
		}
	}
	rr.MailboxdCPUPerRequestUS = perReq(1)
	rr.LoadgenCPUPerRequestUS = perReq(2)
	if statsErr == nil {
		open := max(statsAfter.ConnectionsOpen-s.probeOpen, 0)
		created := max(statsAfter.ConnectionsAccepted-statsBefore.ConnectionsAccepted-s.probeAccepted, 0)
		rr.BackendConnectionsOpen, rr.BackendConnectionsNew = &open, &created
	}
	return rr, nil
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

// sampleAll samples each pid in order; pid 0 yields an error entry.
func sampleAll(pids ...int) []procSampleErr {
	out := make([]procSampleErr, len(pids))
	for i, pid := range pids {
		if pid == 0 {
			out[i].err = errors.New("no process")
			continue
		}
		out[i].ProcSample, out[i].err = SampleProc(pid)
	}
	return out
}

// finish prints the table (and notes) to stdout and writes the JSON file.
func (s *suite) finish(stdout io.Writer) error {
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

// writeTable prints the human-readable report.
func writeTable(w io.Writer, r *Report) {
	pin := "no"
	if r.CPUPinned {
		pin = "gateway on CPU 0 (taskset)"
	}
	fmt.Fprintf(w, "frontdoor bench: %s per run (+%s warm-up), gateway loops %d, cpu pin: %s, %d CPUs, %s\n\n",
		fmtSeconds(r.DurationSeconds), fmtSeconds(r.WarmupSeconds), r.GatewayLoops, pin, r.CPUs, r.GoVersion)
	rows := [][]string{{"SCENARIO", "TARGET", "CONNS", "PIPE", "REQ/S", "P50", "P99", "P99.9", "MAX", "ERRORS", "GW CPU/REQ", "GW RSS", "MBX CPU/REQ", "BACKEND OPEN/NEW"}}
	for _, rr := range r.Results {
		backend := "-"
		if rr.Target == "gateway" && rr.BackendConnectionsOpen != nil {
			backend = fmt.Sprintf("%d/%d", *rr.BackendConnectionsOpen, *rr.BackendConnectionsNew)
		}
		rss := "-"
		if rr.GatewayRSSBytes != nil {
			rss = fmt.Sprintf("%.1fMiB", float64(*rr.GatewayRSSBytes)/(1<<20))
		}
		rows = append(rows, []string{
			rr.Scenario, rr.Target, strconv.Itoa(rr.Conns), strconv.Itoa(rr.Pipeline), fmt.Sprintf("%.0f", rr.RequestsPerSecond),
			fmtUS(rr.Latency.P50), fmtUS(rr.Latency.P99), fmtUS(rr.Latency.P999), fmtUS(rr.Latency.Max),
			strconv.FormatInt(rr.ErrorsTotal, 10), fmtCPU(rr.GatewayCPUPerRequestUS), rss, fmtCPU(rr.MailboxdCPUPerRequestUS), backend,
		})
	}
	writeColumns(w, rows, 2)

	var notes []string
	for _, rr := range r.Results {
		if rr.ErrorsTotal > 0 {
			notes = append(notes, fmt.Sprintf("%s/%s errors: %s", rr.Scenario, rr.Target, rr.Errors))
		}
		for class, n := range rr.StatusClasses {
			if class != "2xx" && class != "5xx" && n > 0 {
				notes = append(notes, fmt.Sprintf("%s/%s: %d %s responses (counted as successes; check routing)", rr.Scenario, rr.Target, n, class))
			}
		}
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
// textCols columns left-aligned, the (numeric) rest right-aligned.
func writeColumns(w io.Writer, rows [][]string, textCols int) {
	var width []int
	for _, r := range rows {
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
		for i, c := range r {
			if i > 0 {
				b.WriteString("  ")
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

// waitReady polls url every 50 ms until it answers 200, the child exits,
// timeout passes or ctx is cancelled.
func waitReady(ctx context.Context, c *child, url string, hdr http.Header, timeout time.Duration) error {
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
		resp, err := probeClient.Do(req)
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
