package bench

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Captured from wrk 4.1.0 (Debian) against mailboxd.
const wrkSample = `Running 1s test @ http://127.0.0.1:18080/owa/
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   317.00us  738.83us  11.74ms   92.90%
    Req/Sec    63.38k     6.86k   76.79k    72.73%
  Latency Distribution
     50%  118.00us
     75%  176.00us
     90%  473.00us
     99%    3.94ms
  69281 requests in 1.10s, 44.64MB read
Requests/sec:  63059.03
Transfer/sec:     40.63MB
`

// wrk's format with every optional line: socket errors and non-2xx
// responses (src/wrk.c prints them only when non-zero), and minutes.
const wrkErrorsSample = `Running 10s test @ https://127.0.0.1:8443/owa/
  1 threads and 10000 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   253.11ms  401.87ms   1.97s    86.52%
    Req/Sec    31.02k     4.11k   39.87k    70.00%
  Latency Distribution
     50%   98.34ms
     75%  301.55ms
     90%  824.70ms
     99%    1.90s
  309950 requests in 1.00m, 199.70MB read
  Socket errors: connect 1019, read 17, write 2, timeout 413
  Non-2xx or 3xx responses: 950
Requests/sec:  31001.13
Transfer/sec:     19.97MB
`

// Captured from h2load (nghttp2 1.52.0) against mailboxd, --h1 -c 10 -D 1
// --warm-up-time=1.
const h2loadSample = `starting benchmark...
spawning thread #0: 10 total client(s). Timing-based test with 1s of warm-up time and 1s of main duration for measurements.
Warm-up started for thread #0.
progress: 10% of clients started
progress: 20% of clients started
progress: 30% of clients started
progress: 40% of clients started
progress: 50% of clients started
progress: 60% of clients started
progress: 70% of clients started
progress: 80% of clients started
progress: 90% of clients started
progress: 100% of clients started
Application protocol: http/1.1
Warm-up phase is over for thread #0.
Main benchmark duration is started for thread #0.
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 2.00s, 44301.00 req/s, 30.29MB/s
requests: 44301 total, 44301 started, 44301 done, 44301 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 44301 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 30.29MB (31763817) total, 44.73MB (46907098) headers (space savings 0.00%), 8.03MB (8417300) data
                     min         max         mean         sd        +/- sd
time for request:       18us     85.25ms       224us      1.36ms    98.96%
time for connect:        0us         0us         0us         0us     0.00%
time to 1st byte:        0us         0us         0us         0us     0.00%
req/s           :    4223.66     4618.79     4429.58      131.71    50.00%
`

// Captured from h2load over TLS against openssl s_server -www, whose
// HTTP/1.0 answers without a length never complete: status lines
// arrive, no request is done.
const h2loadTLSSample = `starting benchmark...
spawning thread #0: 2 total client(s). Timing-based test with 0s of warm-up time and 1s of main duration for measurements.
Warm-up started for thread #0.
Warm-up phase is over for thread #0.
Main benchmark duration is started for thread #0.
TLS Protocol: TLSv1.3
Cipher: TLS_AES_128_GCM_SHA256
Server Temp Key: X25519 253 bits
No protocol negotiated. Fallback behaviour may be activated
Server does not support NPN/ALPN. Falling back to HTTP/1.1.
Application protocol: http/1.1
No protocol negotiated. Fallback behaviour may be activated
Server does not support NPN/ALPN. Falling back to HTTP/1.1.
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 1.00s, 0.00 req/s, 8.84KB/s
requests: 0 total, 2 started, 0 done, 0 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 2 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 8.84KB (9056) total, 42B (42) headers (space savings 0.00%), 8.76KB (8968) data
                     min         max         mean         sd        +/- sd
time for request:        0us         0us         0us         0us     0.00%
time for connect:     6.16ms      8.00ms      7.08ms      1.30ms   100.00%
time to 1st byte:     6.63ms      8.18ms      7.41ms      1.09ms   100.00%
req/s           :       0.00        0.00        0.00        0.00   100.00%
`

// h2load's summary with failures (src/h2load.cc's format).
const h2loadErrorsSample = `finished in 10.00s, 1210.30 req/s, 1.02MB/s
requests: 12203 total, 12303 started, 12103 done, 12000 succeeded, 203 failed, 100 errored, 40 timeout
status codes: 12000 2xx, 0 3xx, 3 4xx, 100 5xx
traffic: 10.21MB (10703000) total, 1.50MB (1572864) headers (space savings 0.00%), 8.03MB (8417300) data
                     min         max         mean         sd        +/- sd
time for request:      210us       2.01s      8.12ms     40.10ms    99.01%
time for connect:      110us     12.31ms      1.20ms      2.00ms    90.00%
time to 1st byte:      400us     20.01ms      2.31ms      3.01ms    88.00%
req/s           :      20.01       30.99       24.20        2.31    70.00%
`

func TestParseToolDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"118.00us": 118 * time.Microsecond, "3.94ms": 3940 * time.Microsecond, "1.10s": 1100 * time.Millisecond,
		"1.00m": time.Minute, "2.00h": 2 * time.Hour, "0us": 0, " 85.25ms ": 85250 * time.Microsecond,
	} {
		got, err := parseToolDuration(in)
		if err != nil || got != want {
			t.Errorf("%q: %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "us", "-nanus", "1.0x", "12", "-1ms", "infs"} {
		if _, err := parseToolDuration(in); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func TestParseWrk(t *testing.T) {
	r, err := parseWrk([]byte(wrkSample))
	if err != nil {
		t.Fatal(err)
	}
	want := &externalResult{
		Requests: 69281, Elapsed: 1100 * time.Millisecond, Percentiles: true,
		Latency:       LatencyUS{P50: 118, P99: 3940, Mean: 317, Max: 11740},
		StatusClasses: map[string]int64{"2xx": 69281},
	}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("got %+v\nwant %+v", r, want)
	}
	if rps := r.RequestsPerSecond(); rps < 62981 || rps > 62983 {
		t.Errorf("req/s %v", rps)
	}

	r, err = parseWrk([]byte(wrkErrorsSample))
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 309950-950 || r.Elapsed != time.Minute || r.Latency.P50 != 98340 || r.Latency.P99 != 1.9e6 || r.Latency.Max != 1.97e6 {
		t.Errorf("got %+v", r)
	}
	if want := (ErrorCounts{Connect: 1019, Read: 17, Write: 2, Timeout: 413, Status: 950}); r.Errors != want {
		t.Errorf("errors %+v, want %+v", r.Errors, want)
	}

	// Without --latency there are no percentiles, only mean and max.
	var noDist []string
	skip := false
	for _, l := range strings.Split(wrkSample, "\n") {
		if strings.Contains(l, "Latency Distribution") {
			skip = true
			continue
		}
		if skip && strings.HasSuffix(strings.Fields(l + " x")[0], "%") {
			continue
		}
		skip = false
		noDist = append(noDist, l)
	}
	if r, err := parseWrk([]byte(strings.Join(noDist, "\n"))); err != nil || r.Percentiles || r.Latency.P50 != 0 || r.Latency.Max != 11740 {
		t.Errorf("without --latency: %+v, %v", r, err)
	}

	for _, bad := range []string{
		"",
		"unable to connect to 127.0.0.1:1 Connection refused\n",
		strings.Replace(wrkSample, "69281 requests", "lots requests", 1),
		strings.Replace(wrkErrorsSample, "read 17,", "read many,", 1),
		strings.Replace(wrkErrorsSample, "responses: 950", "responses: x", 1),
	} {
		if r, err := parseWrk([]byte(bad)); err == nil {
			t.Errorf("no error for %q: %+v", bad, r)
		}
	}
}

func TestParseH2load(t *testing.T) {
	r, err := parseH2load([]byte(h2loadSample))
	if err != nil {
		t.Fatal(err)
	}
	want := &externalResult{
		Requests: 44301, Elapsed: 2 * time.Second,
		Latency:       LatencyUS{Mean: 224, Max: 85250},
		StatusClasses: map[string]int64{"2xx": 44301},
	}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("got %+v\nwant %+v", r, want)
	}

	r, err = parseH2load([]byte(h2loadTLSSample))
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 0 || r.TLSParams != "TLS 1.3 TLS_AES_128_GCM_SHA256 X25519" || r.StatusClasses["2xx"] != 2 {
		t.Errorf("TLS: %+v", r)
	}

	r, err = parseH2load([]byte(h2loadErrorsSample))
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 12000 || r.Elapsed != 10*time.Second || r.Latency.Mean != 8120 || r.Latency.Max != 2.01e6 {
		t.Errorf("got %+v", r)
	}
	if want := (ErrorCounts{Read: 60, Timeout: 40, Status: 103}); r.Errors != want {
		t.Errorf("errors %+v, want %+v", r.Errors, want)
	}
	if want := map[string]int64{"2xx": 12000, "4xx": 3, "5xx": 100}; !reflect.DeepEqual(r.StatusClasses, want) {
		t.Errorf("classes %v, want %v", r.StatusClasses, want)
	}

	for _, bad := range []string{
		"",
		strings.Replace(h2loadSample, "finished in", "done in", 1),
		strings.Replace(h2loadSample, "44301 succeeded", "all succeeded", 1),
		strings.Replace(h2loadSample, "status codes:", "codes:", 1),
		strings.Replace(h2loadSample, "0 5xx", "0", 1),
	} {
		if r, err := parseH2load([]byte(bad)); err == nil {
			t.Errorf("no error for %q: %+v", bad, r)
		}
	}
}

func TestParseH2loadLog(t *testing.T) {
	// start (us since the epoch), status, duration (us); -1 for a failed
	// request; a later column, which h2load may add, is ignored.
	log := "1795664755444460\t200\t373\n" +
		"1795664755444463\t200\t408\textra\n" +
		"1795664755444466\t-1\t9000000\n" +
		"1795664755444470\t503\t50000\n" +
		"1795664755444480\t302\t1000\n\n"
	h, err := parseH2loadLog(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if h.Count() != 3 || h.Max() < 990*time.Microsecond || h.Max() > 1010*time.Microsecond {
		t.Errorf("count %d max %v", h.Count(), h.Max())
	}
	for _, bad := range []string{"1\t200\n", "1\tok\t3\n", "1\t200\t3us\n"} {
		if _, err := parseH2loadLog(strings.NewReader(bad)); err == nil {
			t.Errorf("no error for %q", bad)
		}
	}
}

func TestExternalArgv(t *testing.T) {
	hdr := []Header{{"X-AnchorMailbox", "alice@example.test"}, {"X-Mailboxd-Size", "100"}}
	wrk := externalRun{Tool: "wrk", Bin: "/usr/bin/wrk", URL: "http://127.0.0.1:8080/owa/", Conns: 50, Header: hdr,
		Timeout: 10 * time.Second, NoFile: 1 << 20}
	if got, want := shellJoin(wrk.argv(10*time.Second, "ignored.log")),
		"/usr/bin/wrk -t1 -c50 -d10s --latency --timeout 10s -H 'X-AnchorMailbox: alice@example.test' -H 'X-Mailboxd-Size: 100' http://127.0.0.1:8080/owa/"; got != want {
		t.Errorf("wrk:\n got %s\nwant %s", got, want)
	}
	// wrk counts whole seconds, at least one.
	for d, want := range map[time.Duration]string{300 * time.Millisecond: "-d1s", 1500 * time.Millisecond: "-d2s", 2 * time.Second: "-d2s"} {
		if got := wrk.argv(d, "")[3]; got != want {
			t.Errorf("wrk %v: %s, want %s", d, got, want)
		}
	}
	h2 := externalRun{Tool: "h2load", Bin: "h2load", URL: "https://127.0.0.1:8443/owa/", Conns: 50, Header: hdr[1:],
		Timeout: 10 * time.Second, NoFile: 1 << 20}
	if got, want := shellJoin(h2.argv(1500*time.Millisecond, "/tmp/x/h2load.log")),
		"h2load --h1 -t1 -c50 -D 1500ms -N 10s -H 'X-Mailboxd-Size: 100' --log-file /tmp/x/h2load.log https://127.0.0.1:8443/owa/"; got != want {
		t.Errorf("h2load:\n got %s\nwant %s", got, want)
	}
	// More connections than a default descriptor limit: the soft limit is
	// raised to the hard one in a shell that execs the tool.
	wrk.Conns, wrk.NoFile = 10000, 20000
	argv := wrk.argv(time.Second, "")
	if got, want := shellJoin(argv[:5]), `/bin/sh -c 'ulimit -Sn 20000 && exec "$@"' wrk /usr/bin/wrk`; got != want {
		t.Errorf("10k conns:\n got %s\nwant %s", got, want)
	}
	if _, err := os.Stat("/bin/sh"); err == nil {
		// The wrapper really passes the arguments on.
		argv := append([]string{argv[0], argv[1], argv[2], argv[3]}, "echo", "a b", "c")
		out, err := exec.Command(argv[0], argv[1:]...).Output()
		if err != nil || string(out) != "a b c\n" {
			t.Errorf("wrapper: %q, %v", out, err)
		}
	}
	wrk.NoFile = 0 // unknown: no wrapper
	if argv := wrk.argv(time.Second, ""); argv[0] != "/usr/bin/wrk" {
		t.Errorf("no hard limit known: %v", argv)
	}
}

func TestParseLoadgen(t *testing.T) {
	for in, want := range map[string]struct {
		named []string
		auto  bool
	}{
		"builtin": {nil, false}, "auto": {nil, true}, "wrk": {[]string{"wrk"}, false},
		"builtin,h2load,wrk,wrk": {[]string{"h2load", "wrk"}, false}, " WRK , auto": {[]string{"wrk"}, true},
	} {
		named, auto, err := parseLoadgen(in)
		if err != nil || !reflect.DeepEqual(named, want.named) || auto != want.auto {
			t.Errorf("%q: %v %v %v", in, named, auto, err)
		}
	}
	for _, bad := range []string{"", ",", "ab", "wrk,ab"} {
		if _, _, err := parseLoadgen(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"--loadgen", "jmeter"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--loadgen") {
		t.Errorf("--loadgen jmeter: exit %d, %s", code, stderr.String())
	}
}

func TestExternalFit(t *testing.T) {
	fit := map[string]bool{}
	for _, sc := range Scenarios {
		if externalFit(sc, orDefault(sc.Pipeline, 1)) == "" {
			fit[sc.Name] = true
		}
	}
	for _, name := range []string{"keepalive-get", "keepalive-get-16k", "tls-keepalive-get", "many-clients-10k"} {
		if !fit[name] {
			t.Errorf("%s: not run with external tools", name)
		}
		delete(fit, name)
	}
	for name := range fit {
		if name != "" {
			t.Errorf("%s: run with external tools, which cannot express it", name)
		}
	}
	if why := externalFit(Scenario{Name: "keepalive-get"}, 4); why == "" {
		t.Error("--pipeline 4 fits")
	}
}

func TestRatiosPairLoadgens(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	rows := []RunReport{
		{Scenario: "k", Target: "gateway", RequestsPerSecond: 100, GatewayCPUPerRequestUS: f(10)},
		{Scenario: "k", Target: "gateway", Loadgen: "wrk", RequestsPerSecond: 200, GatewayCPUPerRequestUS: f(12)},
		{Scenario: "k", Target: "nginx", RequestsPerSecond: 50, GatewayCPUPerRequestUS: f(20)},
		{Scenario: "k", Target: "nginx", Loadgen: "wrk", RequestsPerSecond: 40, GatewayCPUPerRequestUS: f(24)},
		{Scenario: "k", Target: "nginx", Loadgen: "h2load", RequestsPerSecond: 40, GatewayCPUPerRequestUS: f(24)},
	}
	got := computeRatios(rows, []string{"nginx"})
	if len(got) != 2 || got[0].Loadgen != "" || *got[0].RequestsPerSecond != 2 || got[1].Loadgen != "wrk" || *got[1].RequestsPerSecond != 5 {
		t.Fatalf("ratios %+v", got)
	}
	var b bytes.Buffer
	writeRatios(&b, got)
	if !strings.Contains(b.String(), "/ nginx [wrk]") {
		t.Errorf("ratio table:\n%s", b.String())
	}
}

// TestSuiteWithWrk runs the smallest suite with --loadgen wrk against the
// stand-in frontdoor: wrk's rows come after each built-in row, with the
// proxy's CPU measured as for the built-in ones.
func TestSuiteWithWrk(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip("wrk not installed (make bench-peers installs it)")
	}
	t.Setenv(fakeEnv, "1")
	o := testSuiteOptions(t, "keepalive-get", "pipelined-get")
	o.warmup = 0 // wrk runs whole seconds
	o.loadgens = []string{"wrk"}
	var stdout, stderr bytes.Buffer
	code := runSuite(context.Background(), o, &stdout, &stderr)
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	if code != 0 {
		t.Fatalf("exit code %d", code)
	}
	rep := readReport(t, o.jsonFile)
	var got []string
	for _, r := range rep.Results {
		got = append(got, r.Scenario+"/"+r.Target+"/"+r.Loadgen)
		if r.Loadgen == "" {
			continue
		}
		if r.Requests == 0 || r.ErrorsTotal != 0 || r.Latency.P50 <= 0 || r.Latency.P99 < r.Latency.P50 || r.ElapsedSeconds < 0.9 ||
			!strings.Contains(r.LoadgenCommand, "-H 'X-Mailboxd-Size: 100'") {
			t.Errorf("%s/%s [wrk]: %+v", r.Scenario, r.Target, r)
		}
		if r.MailboxdCPUPerRequestUS == nil || r.LoadgenCPUPerRequestUS == nil || r.BackendConnectionsOpen == nil {
			t.Errorf("%s/%s [wrk]: missing CPU or backend figures", r.Scenario, r.Target)
		}
		if gw := r.Target == "gateway"; gw != (r.GatewayCPUPerRequestUS != nil) || gw != (r.GatewayRSSBytes != nil) {
			t.Errorf("%s/%s [wrk]: gateway figures present = %v", r.Scenario, r.Target, r.GatewayCPUPerRequestUS != nil)
		}
	}
	want := []string{"keepalive-get/direct/", "keepalive-get/direct/wrk", "keepalive-get/gateway/", "keepalive-get/gateway/wrk",
		"pipelined-get/direct/", "pipelined-get/gateway/"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
	if len(rep.Loadgens) != 1 || rep.Loadgens[0].Name != "wrk" {
		t.Errorf("loadgens %+v", rep.Loadgens)
	}
	for _, s := range []string{"gateway [wrk]", "direct [wrk]", "pipelined-get: not measured with wrk: pipelined requests", "[wrk]: P50 and P99"} {
		if !strings.Contains(stdout.String(), s) {
			t.Errorf("table lacks %q", s)
		}
	}
}

// TestSuiteLoadgenMissing: a tool asked for by name that is not installed
// gets one note, and the suite goes on.
func TestSuiteLoadgenMissing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	defer func(f func(string) (string, error)) { lookPath = f }(lookPath)
	lookPath = func(string) (string, error) { return "", errors.New("not found") }
	t.Setenv(fakeEnv, "1")
	o := testSuiteOptions(t, "keepalive-get", "keepalive-get-16k")
	o.loadgens, o.loadgenAuto = []string{"h2load"}, true
	var stdout, stderr bytes.Buffer
	if code := runSuite(context.Background(), o, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d\n%s", code, stderr.String())
	}
	if n := strings.Count(stderr.String(), "h2load is not installed"); n != 1 {
		t.Errorf("%d notes on h2load in stderr:\n%s", n, stderr.String())
	}
	if !strings.Contains(stdout.String(), "--loadgen h2load: h2load is not installed") || strings.Contains(stdout.String(), "gateway [h2load]") {
		t.Errorf("table:\n%s", stdout.String())
	}
	if !strings.Contains(stderr.String(), "--loadgen auto: wrk not installed") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}

// TestSuiteLoadgenFails: a tool that fails gives a NOT MEASURED row with
// its message, and exit status 1; the other rows are still measured.
func TestSuiteLoadgenFails(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	dir := t.TempDir()
	fake := dir + "/wrk"
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho 'unable to connect to 127.0.0.1:1 Connection refused'\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	defer func(f func(string) (string, error)) { lookPath = f }(lookPath)
	lookPath = func(name string) (string, error) {
		if name == "wrk" {
			return fake, nil
		}
		return "", errors.New("not found")
	}
	t.Setenv(fakeEnv, "1")
	o := testSuiteOptions(t, "keepalive-get")
	o.loadgens = []string{"wrk"}
	var stdout, stderr bytes.Buffer
	if code := runSuite(context.Background(), o, &stdout, &stderr); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	out := stdout.String()
	for _, s := range []string{"direct [wrk]   NOT MEASURED", "gateway [wrk]  NOT MEASURED", "keepalive-get/gateway: [wrk] warm-up: wrk: exit status 1: unable to connect", "external load generators: -;"} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
	if !strings.Contains(out, "keepalive-get  gateway  ") {
		t.Errorf("built-in gateway row missing:\n%s", out)
	}
}
