package bench

// External load generators (--loadgen): wrk and h2load, when installed,
// measure the keep-alive scenarios again, against every target, as a check
// on the built-in load generator. The built-in rows stay the reference:
// the same client drives every target and every scenario, and its own CPU
// is accounted for. An external row reports what the tool printed
// (requests/s, latency, errors) and the proxy's and mailboxd's CPU from
// /proc, bracketed around the tool's run exactly as for a built-in row.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Load generator names for --loadgen.
const (
	loadgenBuiltin = "builtin"
	loadgenWrk     = "wrk"
	loadgenH2load  = "h2load"
	loadgenAuto    = "auto"
)

// externalToolNames are the external load generators, in the order their rows
// come.
var externalToolNames = []string{loadgenWrk, loadgenH2load}

// LoadgenInfo describes an external load generator the suite used.
type LoadgenInfo struct {
	Name    string `json:"name"`
	Binary  string `json:"binary"`
	Version string `json:"version,omitempty"`
}

// parseLoadgen parses --loadgen: a comma-separated list of builtin, wrk,
// h2load and auto. It returns the external tools asked for by name (which
// must be installed, or a note says they are not) and whether auto was
// given (every external tool that is installed). The built-in load
// generator always runs: it is the reference every other row is compared
// with.
func parseLoadgen(s string) (named []string, auto bool, err error) {
	list := splitList(strings.ToLower(s))
	if len(list) == 0 {
		return nil, false, errors.New("empty list (want builtin, wrk, h2load or auto)")
	}
	for _, name := range list {
		switch name {
		case loadgenBuiltin:
		case loadgenAuto:
			auto = true
		case loadgenWrk, loadgenH2load:
			if !contains(named, name) {
				named = append(named, name)
			}
		default:
			return nil, false, fmt.Errorf("unknown load generator %q (want builtin, wrk, h2load or auto)", name)
		}
	}
	return named, auto, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// externalState is what the suite knows about the external tools: those
// found (resolved once, on first use).
type externalState struct {
	tools []LoadgenInfo
	// skipNoted are the scenarios whose "not measured with" note is out.
	skipNoted map[string]bool
}

// lookPath is exec.LookPath; tests replace it.
var lookPath = exec.LookPath

// externalTools resolves the tools --loadgen asked for, once. A tool asked
// for by name that is not on PATH gets one note; with auto, a missing tool
// is only mentioned on stderr.
func (s *suite) externalTools() []LoadgenInfo {
	if s.ext != nil {
		return s.ext.tools
	}
	s.ext = &externalState{skipNoted: map[string]bool{}}
	var missing []string
	for _, name := range externalToolNames {
		named := contains(s.o.loadgens, name)
		if !named && !s.o.loadgenAuto {
			continue
		}
		bin, err := lookPath(name)
		if err != nil {
			if named {
				note := fmt.Sprintf("--loadgen %s: %s is not installed (Debian: %s; make bench-peers installs it), so there are no [%s] rows",
					name, name, debianPackage(name), name)
				s.report.Skipped = append(s.report.Skipped, note)
				fmt.Fprintf(s.stderr, "frontdoor bench: %s\n", note)
			} else {
				missing = append(missing, name)
			}
			continue
		}
		info := LoadgenInfo{Name: name, Binary: bin, Version: toolVersion(name, bin)}
		s.ext.tools = append(s.ext.tools, info)
		fmt.Fprintf(s.stderr, "load generator %s: %s (%s)\n", name, orDash(info.Version), bin)
	}
	if len(missing) > 0 {
		fmt.Fprintf(s.stderr, "frontdoor bench: --loadgen auto: %s not installed, no rows from it\n", strings.Join(missing, ", "))
	}
	s.report.Loadgens = s.ext.tools
	return s.ext.tools
}

func debianPackage(tool string) string {
	if tool == loadgenH2load {
		return "nghttp2-client"
	}
	return tool
}

// toolVersion returns the first line of the tool's version output, e.g.
// "wrk debian/4.1.0-3+b2 [epoll]" or "h2load nghttp2/1.52.0"; "" if it
// says nothing. (wrk -v exits 1 after printing its version.)
func toolVersion(name, bin string) string {
	arg := "--version"
	if name == loadgenWrk {
		arg = "-v"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, arg).CombinedOutput()
	line := firstLine(string(out))
	if !strings.HasPrefix(line, name+" ") {
		return "" // not a version line
	}
	if i := strings.Index(line, " Copyright"); i > 0 {
		line = line[:i]
	}
	return strings.TrimSpace(line)
}

// externalFit says why scenario sc cannot be run with an external tool
// ("" if it can): the tools drive keep-alive connections with one request
// at a time each, and nothing else the suite measures.
func externalFit(sc Scenario, pipeline int) string {
	switch {
	case sc.IMAP != IMAPNone:
		return "IMAP, not HTTP"
	case sc.Idle:
		return "an idle-connection measurement"
	case sc.Auth != AuthNone:
		return "authenticated requests (per-user variants, gateway auth counters)"
	case sc.RequestsPerConn > 0:
		return "a new connection every few requests"
	case pipeline > 1:
		return "pipelined requests"
	case sc.Channels != nil:
		return "long-lived channels in the background (bench/channels.go)"
	}
	return ""
}

// measureExternal measures scenario sc against target with every external
// tool found, after its built-in row: the same connections, headers and
// duration. The rows (error rows for a tool that failed) are appended to
// the report; it returns false if any of them failed. A peer is started
// afresh for each of its rows, as for its built-in one.
func (s *suite) measureExternal(ctx context.Context, sc Scenario, target string) bool {
	if (!s.o.loadgenAuto && len(s.o.loadgens) == 0) || ctx.Err() != nil {
		return true
	}
	tools := s.externalTools()
	if len(tools) == 0 {
		return true
	}
	if why := externalFit(sc, orDefault(sc.Pipeline, s.o.pipeline)); why != "" {
		if !s.ext.skipNoted[sc.Name] {
			s.ext.skipNoted[sc.Name] = true
			var names []string
			for _, t := range tools {
				names = append(names, t.Name)
			}
			s.report.Skipped = append(s.report.Skipped, fmt.Sprintf("%s: not measured with %s: %s", sc.Name, strings.Join(names, ", "), why))
		}
		return true
	}
	if target == "gateway" && sc.TLS && s.gwTLSAddr == "" {
		return true // the built-in row says why
	}
	ok := true
	for _, tool := range tools {
		if ctx.Err() != nil {
			break
		}
		rr, err := s.measureExternalTool(ctx, sc, target, tool)
		if ctx.Err() != nil {
			break // an interrupted run's numbers are not comparable
		}
		if err != nil {
			fmt.Fprintf(s.stderr, "frontdoor bench: %s %s [%s]: %v\n", sc.Name, target, tool.Name, err)
			rr = &RunReport{Scenario: sc.Name, Target: target, Loadgen: tool.Name, TLS: sc.TLS && target != "direct",
				Error: fmt.Sprintf("[%s] %v", tool.Name, err)}
			ok = false
		} else if rr.Requests == 0 {
			ok = false
		}
		s.report.Results = append(s.report.Results, *rr)
	}
	return ok
}

// measureExternalTool runs one external row: warm-up with the tool, then
// the measured run bracketed by /proc samples of the proxy and mailboxd,
// as measure does for the built-in generator.
func (s *suite) measureExternalTool(ctx context.Context, sc Scenario, target string, tool LoadgenInfo) (*RunReport, error) {
	if isPeer(target) {
		defer s.stopPeer()
		if err := s.startPeer(ctx, target); err != nil {
			if s.peer != nil {
				s.peer.dumpOutput(s.stderr)
			}
			return nil, fmt.Errorf("starting %s: %w", target, err)
		}
	}
	opts := s.loadOptions(sc, target)
	if target != "direct" && s.proxyFor(target) == nil {
		return nil, fmt.Errorf("%s is not running", target)
	}
	scheme := "http"
	if opts.TLS != nil {
		scheme = "https"
	}
	run := externalRun{
		Tool: tool.Name, Bin: tool.Binary, URL: scheme + "://" + opts.Addr + opts.Request.Path,
		Conns: opts.Conns, Header: opts.Request.Header, Timeout: 10 * time.Second,
		NoFile: nofileHardLimit(),
	}
	warm := ""
	if s.o.warmup > 0 {
		warm = fmt.Sprintf(" (+%v warm-up)", run.measuredDuration(s.o.warmup))
	}
	fmt.Fprintf(s.stderr, "running %s -> %s [%s]: %d conns, %v%s: %s\n", sc.Name, target, tool.Name,
		run.Conns, run.measuredDuration(s.o.duration), warm, shellJoin(s.toolArgv(run, s.o.duration, "")))

	if s.o.warmup > 0 {
		if _, _, err := s.runTool(ctx, run, s.o.warmup, ""); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	sleepCtx(ctx, 100*time.Millisecond)

	px, proxySample := s.proxySampler(target)
	mbx := s.mbx
	logFile := ""
	if tool.Name == loadgenH2load {
		logFile = filepath.Join(s.dir, "h2load.log")
		defer os.Remove(logFile)
	}
	statsBefore, statsErr := mailboxdStats(mbx.addr)
	before := sampleAll(proxySample, procSampler(mbx.pid()))
	out, toolCPU, err := s.runTool(ctx, run, s.o.duration, logFile)
	after := sampleAll(proxySample, procSampler(mbx.pid()))
	if err != nil {
		return nil, err
	}
	var statsAfter mailboxdStatsJSON
	if statsErr == nil {
		statsAfter, statsErr = mailboxdStats(mbx.addr)
	}
	var res *externalResult
	if tool.Name == loadgenWrk {
		res, err = parseWrk(out)
	} else {
		res, err = parseH2load(out)
		if err == nil && logFile != "" {
			if f, ferr := os.Open(logFile); ferr == nil {
				if h, lerr := parseH2loadLog(f); lerr == nil && h.Count() > 0 {
					res.Latency, res.Percentiles = latencyOf(h), true
				} else if lerr != nil {
					fmt.Fprintf(s.stderr, "frontdoor bench: %s %s [h2load]: --log-file: %v (mean and max only)\n", sc.Name, target, lerr)
				}
				f.Close()
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%v; %s printed:\n%s", err, tool.Name, out)
	}

	rr := &RunReport{
		Scenario:          sc.Name,
		Target:            target,
		Loadgen:           tool.Name,
		LoadgenCommand:    shellJoin(s.toolArgv(run, s.o.duration, logFile)),
		Conns:             opts.Conns,
		Pipeline:          1,
		ElapsedSeconds:    res.Elapsed.Seconds(),
		Requests:          res.Requests,
		RequestsPerSecond: res.RequestsPerSecond(),
		Latency:           res.Latency,
		Errors:            res.Errors,
		ErrorsTotal:       res.Errors.Total(),
		StatusClasses:     res.StatusClasses,
		TLS:               opts.TLS != nil,
		PlaintextCeiling:  sc.TLS && opts.TLS == nil,
		TLSParams:         res.TLSParams,
	}
	if !res.Percentiles {
		rr.LatencyNote = "mean and max only"
	} else if tool.Name == loadgenWrk {
		rr.LatencyNote = "p50 and p99 from wrk --latency"
	}
	rr.setProcFigures(before, after, px != nil, res.Requests)
	if res.Requests > 0 {
		v := float64(toolCPU.Nanoseconds()) / 1e3 / float64(res.Requests)
		rr.LoadgenCPUPerRequestUS = &v
	}
	if statsErr == nil {
		rr.setBackendConns(statsBefore, statsAfter, mbx, px)
	}
	return rr, nil
}

// runTool runs the tool for d and returns its standard output and the CPU
// time it used (user + system, from its rusage).
func (s *suite) runTool(ctx context.Context, run externalRun, d time.Duration, logFile string) ([]byte, time.Duration, error) {
	argv := s.toolArgv(run, d, logFile)
	// The tool gets its whole duration, the time to open its connections
	// and to drain, and a margin.
	ctx, cancel := context.WithTimeout(ctx, run.measuredDuration(d)+run.Timeout+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = childSysProcAttr()
	cmd.WaitDelay = 2 * time.Second
	var stdout bytes.Buffer
	errOut := &tailBuffer{max: 8 << 10}
	cmd.Stdout, cmd.Stderr = &stdout, errOut
	err := cmd.Run()
	var cpu time.Duration
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, fmt.Errorf("%s did not finish in time: %w", run.Tool, err)
		}
		msg := strings.TrimSpace(string(errOut.Bytes()))
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		return nil, 0, fmt.Errorf("%s: %v: %s", run.Tool, err, msg)
	}
	return stdout.Bytes(), cpu, nil
}

// toolArgv is run's command line for d, on the load CPU with --pin.
func (s *suite) toolArgv(run externalRun, d time.Duration, logFile string) []string {
	return s.pinArgv(pinLoadCPU, run.argv(d, logFile))
}

// externalRun is one external tool's invocation, but for its duration.
type externalRun struct {
	Tool, Bin, URL string
	Conns          int
	Header         []Header
	// Timeout is how long the tool waits for a response (the built-in
	// generator's IOTimeout).
	Timeout time.Duration
	// NoFile is the hard RLIMIT_NOFILE: a tool with more connections than
	// a default soft limit allows raises its soft limit to it.
	NoFile uint64
}

// softNoFile is the soft RLIMIT_NOFILE a child is assumed to start with:
// the Go runtime raises its own to the hard limit but gives children back
// the original, which is usually 1024.
const softNoFile = 1024

// measuredDuration is d as the tool runs it: wrk counts whole seconds (at
// least one), h2load milliseconds.
func (r externalRun) measuredDuration(d time.Duration) time.Duration {
	if r.Tool == loadgenWrk {
		return max(time.Duration(math.Ceil(d.Seconds()))*time.Second, time.Second)
	}
	return max(d.Round(time.Millisecond), time.Millisecond)
}

// argv is the tool's command line for a run of d. One thread each, like
// the built-in generator's one process on the load CPU; logFile (h2load
// only) receives one line per request, for percentiles.
//
//	wrk -t1 -c50 -d10s --latency --timeout 10s -H 'X-AnchorMailbox: ...' URL
//	h2load --h1 -t1 -c50 -D 10000ms -N 10s -H 'X-AnchorMailbox: ...' --log-file F URL
func (r externalRun) argv(d time.Duration, logFile string) []string {
	md := r.measuredDuration(d)
	var argv []string
	switch r.Tool {
	case loadgenWrk:
		argv = []string{r.Bin, "-t1", "-c" + strconv.Itoa(r.Conns), "-d" + strconv.Itoa(int(md/time.Second)) + "s",
			"--latency", "--timeout", strconv.Itoa(int(math.Ceil(r.Timeout.Seconds()))) + "s"}
	case loadgenH2load:
		argv = []string{r.Bin, "--h1", "-t1", "-c" + strconv.Itoa(r.Conns), "-D", strconv.FormatInt(md.Milliseconds(), 10) + "ms",
			"-N", strconv.Itoa(int(math.Ceil(r.Timeout.Seconds()))) + "s"}
	}
	for _, h := range r.Header {
		argv = append(argv, "-H", h.Name+": "+h.Value)
	}
	if logFile != "" && r.Tool == loadgenH2load {
		argv = append(argv, "--log-file", logFile)
	}
	argv = append(argv, r.URL)
	if need := uint64(r.Conns) + 64; need > softNoFile && r.NoFile > softNoFile {
		// ulimit in a shell that then becomes the tool (same process, so
		// the pin and the rusage still apply to it).
		n := r.NoFile
		if n > 1<<20 {
			n = 1 << 20
		}
		argv = append([]string{"/bin/sh", "-c", `ulimit -Sn ` + strconv.FormatUint(n, 10) + ` && exec "$@"`, r.Tool}, argv...)
	}
	return argv
}

// externalResult is what a tool printed, in the suite's terms.
type externalResult struct {
	// Requests counts successful requests: complete 2xx and 3xx
	// responses (wrk does not tell the other statuses apart).
	Requests int64
	Elapsed  time.Duration
	Latency  LatencyUS
	// Percentiles is true when Latency has percentiles (wrk --latency:
	// p50 and p99; h2load: from its log), false for mean and max only.
	Percentiles   bool
	Errors        ErrorCounts
	StatusClasses map[string]int64
	TLSParams     string
}

// RequestsPerSecond is Requests divided by Elapsed.
func (r *externalResult) RequestsPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// parseToolDuration parses a duration as wrk and h2load print them:
// "118.00us", "3.94ms", "1.10s", "1.00m", "2.00h" (and "0us").
func parseToolDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		unit   float64
	}{{"us", 1e3}, {"ms", 1e6}, {"ns", 1}, {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				return 0, fmt.Errorf("bad duration %q", s)
			}
			return time.Duration(math.Round(v * u.unit)), nil
		}
	}
	return 0, fmt.Errorf("bad duration %q", s)
}

// parseWrk parses the output of wrk --latency:
//
//	Running 10s test @ http://127.0.0.1:8080/owa/
//	  1 threads and 50 connections
//	  Thread Stats   Avg      Stdev     Max   +/- Stdev
//	    Latency   317.00us  738.83us  11.74ms   92.90%
//	    Req/Sec    63.38k     6.86k   76.79k    72.73%
//	  Latency Distribution
//	     50%  118.00us
//	     75%  176.00us
//	     90%  473.00us
//	     99%    3.94ms
//	  69281 requests in 1.10s, 44.64MB read
//	  Socket errors: connect 0, read 12, write 0, timeout 3
//	  Non-2xx or 3xx responses: 5
//	Requests/sec:  63059.03
//	Transfer/sec:     40.63MB
//
// The socket errors and non-2xx lines appear only when there are any.
// Latency covers every response wrk counted; requests include the non-2xx
// ones, which are errors here.
func parseWrk(out []byte) (*externalResult, error) {
	r := &externalResult{StatusClasses: map[string]int64{}}
	var total, non2xx int64
	haveTotal := false
	pct := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case len(f) >= 4 && f[0] == "Latency" && !strings.HasSuffix(f[1], "%"):
			// Latency Avg Stdev Max +/-
			if d, err := parseToolDuration(f[1]); err == nil {
				r.Latency.Mean = usOf(d)
			}
			if d, err := parseToolDuration(f[3]); err == nil {
				r.Latency.Max = usOf(d)
			}
		case len(f) == 2 && strings.HasSuffix(f[0], "%"):
			if d, err := parseToolDuration(f[1]); err == nil {
				pct[f[0]] = usOf(d)
			}
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("wrk: bad request count in %q", line)
			}
			d, err := parseToolDuration(strings.TrimSuffix(f[3], ","))
			if err != nil {
				return nil, fmt.Errorf("wrk: bad elapsed time in %q", line)
			}
			total, r.Elapsed, haveTotal = n, d, true
		case strings.HasPrefix(line, "Socket errors:"):
			for _, part := range strings.Split(strings.TrimPrefix(line, "Socket errors:"), ",") {
				kv := strings.Fields(part)
				if len(kv) != 2 {
					return nil, fmt.Errorf("wrk: bad socket errors line %q", line)
				}
				n, err := strconv.ParseInt(kv[1], 10, 64)
				if err != nil {
					return nil, fmt.Errorf("wrk: bad socket errors line %q", line)
				}
				switch kv[0] {
				case "connect":
					r.Errors.Connect = n
				case "read":
					r.Errors.Read = n
				case "write":
					r.Errors.Write = n
				case "timeout":
					r.Errors.Timeout = n
				}
			}
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:"):
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, "Non-2xx or 3xx responses:")), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("wrk: bad line %q", line)
			}
			non2xx = n
		}
	}
	if !haveTotal {
		return nil, errors.New("wrk: no \"N requests in T\" line in its output")
	}
	if p50, ok := pct["50%"]; ok {
		r.Latency.P50, r.Percentiles = p50, true
	}
	if p99, ok := pct["99%"]; ok {
		r.Latency.P99 = p99
	} else {
		r.Percentiles = false
	}
	r.Errors.Status = non2xx
	r.Requests = max(total-non2xx, 0)
	if r.Requests > 0 {
		r.StatusClasses["2xx"] = r.Requests // wrk counts 2xx and 3xx together
	}
	return r, nil
}

// parseH2load parses h2load's summary:
//
//	finished in 10.00s, 44301.00 req/s, 30.29MB/s
//	requests: 443010 total, 443010 started, 443010 done, 443010 succeeded, 0 failed, 0 errored, 0 timeout
//	status codes: 443010 2xx, 0 3xx, 0 4xx, 0 5xx
//	traffic: ...
//	                     min         max         mean         sd        +/- sd
//	time for request:       18us     85.25ms       224us      1.36ms    98.96%
//
// and, over TLS, "TLS Protocol: TLSv1.3", "Cipher: ..." and "Server Temp
// Key: X25519 253 bits" before it. Successes are h2load's "succeeded":
// complete 2xx and 3xx responses (as for wrk; the built-in generator also
// counts 4xx). Complete responses of other status are status errors,
// errored requests (connection failures) read errors, of which timeouts
// are counted apart. StatusClasses are h2load's status codes line, which
// counts status lines received, complete responses or not. Latency is
// mean and max here; parseH2loadLog gives percentiles.
func parseH2load(out []byte) (*externalResult, error) {
	r := &externalResult{StatusClasses: map[string]int64{}}
	var proto, cipher, key string
	haveReq, haveStatus, haveFinished := false, false, false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "finished in "):
			f := strings.Fields(strings.TrimPrefix(line, "finished in "))
			if len(f) == 0 {
				return nil, fmt.Errorf("h2load: bad line %q", line)
			}
			d, err := parseToolDuration(strings.TrimSuffix(f[0], ","))
			if err != nil {
				return nil, fmt.Errorf("h2load: bad line %q", line)
			}
			r.Elapsed, haveFinished = d, true
		case strings.HasPrefix(line, "requests:"):
			counts, err := h2loadCounts(strings.TrimPrefix(line, "requests:"))
			if err != nil {
				return nil, fmt.Errorf("h2load: %v in %q", err, line)
			}
			// succeeded: complete 2xx and 3xx responses; failed: the
			// other complete ones plus errored, which includes timeout.
			r.Requests = counts["succeeded"]
			r.Errors.Timeout = counts["timeout"]
			r.Errors.Read = max(counts["errored"]-counts["timeout"], 0)
			r.Errors.Status = max(counts["failed"]-counts["errored"], 0)
			haveReq = true
		case strings.HasPrefix(line, "status codes:"):
			counts, err := h2loadCounts(strings.TrimPrefix(line, "status codes:"))
			if err != nil {
				return nil, fmt.Errorf("h2load: %v in %q", err, line)
			}
			for class, n := range counts {
				if n > 0 {
					r.StatusClasses[class] = n
				}
			}
			haveStatus = true
		case strings.HasPrefix(line, "time for request:"):
			f := strings.Fields(strings.TrimPrefix(line, "time for request:"))
			if len(f) >= 3 {
				if d, err := parseToolDuration(f[1]); err == nil {
					r.Latency.Max = usOf(d)
				}
				if d, err := parseToolDuration(f[2]); err == nil {
					r.Latency.Mean = usOf(d)
				}
			}
		case strings.HasPrefix(line, "TLS Protocol:"):
			proto = strings.TrimSpace(strings.TrimPrefix(line, "TLS Protocol:"))
		case strings.HasPrefix(line, "Cipher:"):
			cipher = strings.TrimSpace(strings.TrimPrefix(line, "Cipher:"))
		case strings.HasPrefix(line, "Server Temp Key:"):
			if f := strings.Fields(strings.TrimPrefix(line, "Server Temp Key:")); len(f) > 0 {
				key = f[0]
			}
		}
	}
	if !haveReq || !haveStatus || !haveFinished {
		return nil, errors.New("h2load: no \"finished in\", \"requests:\" and \"status codes:\" lines in its output")
	}
	if proto != "" {
		r.TLSParams = strings.TrimSpace(strings.Replace(proto, "TLSv", "TLS ", 1) + " " + cipher + " " + key)
	}
	return r, nil
}

// h2loadCounts parses "443010 total, 0 failed, ..." into name -> count.
func h2loadCounts(s string) (map[string]int64, error) {
	out := map[string]int64{}
	for _, part := range strings.Split(s, ",") {
		f := strings.Fields(part)
		if len(f) != 2 {
			return nil, fmt.Errorf("bad count %q", strings.TrimSpace(part))
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad count %q", strings.TrimSpace(part))
		}
		out[f[1]] = n
	}
	return out, nil
}

// parseH2loadLog reads h2load's --log-file, one line per request:
// "start time (us since the epoch) TAB status TAB duration (us)", and
// returns a histogram of the durations of the requests that succeeded
// (2xx and 3xx, as h2load's "succeeded"; a failed request is logged with
// status -1). Later
// columns, which h2load says it may add, are ignored.
func parseH2loadLog(r io.Reader) (*Histogram, error) {
	h := NewHistogram()
	sc := bufio.NewScanner(bufio.NewReaderSize(r, 64<<10))
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		f := bytes.Split(line, []byte{'\t'})
		if len(f) < 3 { // "More columns may be added later"
			return nil, fmt.Errorf("line %d: %q: want 3 tab-separated fields", n, line)
		}
		status, err1 := strconv.Atoi(string(f[1]))
		us, err2 := strconv.ParseInt(string(bytes.TrimSpace(f[2])), 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("line %d: %q: not numbers", n, line)
		}
		if status >= 200 && status < 400 && us >= 0 {
			h.Record(time.Duration(us) * time.Microsecond)
		}
	}
	return h, sc.Err()
}

// externalNotes are the table's notes on the external rows: which tools,
// what their figures are, and what they cannot report.
func externalNotes(r *Report) []string {
	var notes []string
	used := map[string]bool{}
	for _, rr := range r.Results {
		if rr.Loadgen == "" {
			continue
		}
		used[rr.Loadgen] = true
		if rr.Error == "" && rr.LatencyNote != "" && rr.Loadgen == loadgenH2load && rr.LatencyNote == "mean and max only" {
			notes = append(notes, fmt.Sprintf("%s [%s]: no per-request log, so P50/P99 are missing; mean %s, max %s",
				rr.rowName(), rr.Loadgen, fmtUS(rr.Latency.Mean), fmtUS(rr.Latency.Max)))
		}
		if rr.Error == "" && rr.TLSParams != "" {
			notes = append(notes, fmt.Sprintf("%s [%s]: %s", rr.rowName(), rr.Loadgen, rr.TLSParams))
		}
	}
	if len(used) == 0 {
		return nil
	}
	var tools, labels []string
	for _, t := range r.Loadgens {
		if used[t.Name] {
			tools = append(tools, orDash(t.Version))
			labels = append(labels, "["+t.Name+"]")
		}
	}
	notes = append([]string{"external load generators: " + strings.Join(tools, ", ") + "; " + strings.Join(labels, " and ") +
		" rows: the same scenario, target, connections and duration driven by that tool (one thread, after a warm-up of its own, " +
		"on the load CPU with --pin), CPU/REQ from /proc around its run as for the built-in rows; the built-in rows stay the reference " +
		"(the same client for every target and every scenario)"}, notes...)
	if used[loadgenWrk] {
		notes = append(notes, "[wrk]: P50 and P99 from its --latency distribution (no P99.9); durations are whole seconds; "+
			"non-2xx/3xx responses and socket errors are ERRORS")
	}
	if used[loadgenH2load] {
		notes = append(notes, "[h2load]: percentiles from its per-request --log-file; non-2xx/3xx responses and failed requests are ERRORS")
	}
	return notes
}

// shellJoin joins argv for display, quoting the words a shell would split.
func shellJoin(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t'\"$&|;<>()*?[]{}~`\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}
