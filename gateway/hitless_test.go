package gateway_test

// The acceptance test of reload and upgrade: steady traffic of three
// kinds against the real binary while it reloads its configuration four
// times and is upgraded once, and not one request may fail.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"frontdoor/internal/testbed"
	"frontdoor/mailboxd"
)

// hitlessRate is the target load, requests a second over all workers.
const hitlessRate = 500

// loadClass is one kind of client in the load: how it connects and what it
// sends.
type loadClass struct {
	name      string
	keepAlive bool
	post      bool

	ok, failed atomic.Int64
}

// loadFailure is one failed request, for the report.
type loadFailure struct {
	at    time.Duration
	class string
	what  string
}

type loadGen struct {
	url     string
	start   time.Time
	classes []*loadClass

	mu       sync.Mutex
	failures []loadFailure
}

func (lg *loadGen) fail(c *loadClass, what string) {
	c.failed.Add(1)
	lg.mu.Lock()
	lg.failures = append(lg.failures, loadFailure{time.Since(lg.start).Round(time.Millisecond), c.name, what})
	lg.mu.Unlock()
}

// worker sends requests of class c until ctx ends, each on the worker's
// own connection (keep-alive classes) or a new one. Keep-alive workers
// send two requests back to back every 2*interval, as a client with
// several to send does: the second is written the moment the first
// response has been read, which is when a gateway that closes the
// connection after a response that did not say so races it.
func (lg *loadGen) worker(ctx context.Context, c *loadClass, interval time.Duration, seed uint64) {
	burst := 1
	if c.keepAlive {
		burst, interval = 2, 2*interval
	}
	tr := &http.Transport{
		DisableKeepAlives: !c.keepAlive,
		MaxConnsPerHost:   1,
		// The default (90s) outlives every idle timeout the test sets:
		// a connection is only ever closed by the gateway.
		IdleConnTimeout: 5 * time.Minute,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	rng := rand.New(rand.NewPCG(seed, 1))
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for range burst {
			lg.once(client, c, rng)
		}
	}
}

// once sends one request and checks the answer: a 200 from the mailbox
// server with the echo of exactly what was sent.
func (lg *loadGen) once(client *http.Client, c *loadClass, rng *rand.Rand) {
	var body []byte
	method := http.MethodGet
	if c.post {
		method = http.MethodPost
		body = make([]byte, 1024+rng.IntN(15*1024))
		for i := range body {
			body[i] = byte(rng.Uint32())
		}
	}
	req, err := http.NewRequest(method, lg.url, bytes.NewReader(body))
	if err != nil {
		lg.fail(c, err.Error())
		return
	}
	req.Header.Set("X-AnchorMailbox", "alice@example.test")
	resp, err := client.Do(req)
	if err != nil {
		lg.fail(c, err.Error())
		return
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		lg.fail(c, fmt.Sprintf("%d, body: %v", resp.StatusCode, err))
		return
	case resp.StatusCode != http.StatusOK:
		lg.fail(c, fmt.Sprintf("%s: %.200s", resp.Status, data))
		return
	}
	var e mailboxd.Echo
	if err := json.Unmarshal(data, &e); err != nil {
		lg.fail(c, fmt.Sprintf("not an echo: %v", err))
		return
	}
	sum := sha256.Sum256(body)
	if e.Method != method || e.Target != "/owa/" || e.BodyBytes != int64(len(body)) ||
		(len(body) > 0 && e.BodySHA256 != hex.EncodeToString(sum[:])) {
		lg.fail(c, fmt.Sprintf("wrong echo: %s %s, %d body bytes", e.Method, e.Target, e.BodyBytes))
		return
	}
	c.ok.Add(1)
}

func TestHitlessReloadsAndUpgrade(t *testing.T) {
	b := newBinBed(t)
	// Each reload changes something the requests go through.
	base := `[timeouts]
drain = "5s"
idle = "30s"
`
	configs := []string{
		base + "[limits]\nmax_body_bytes = 1048576\n",
		base + "[limits]\nmax_body_bytes = 1048576\n[backend]\nconns_per_loop = 3\n",
		base + "[limits]\nmax_body_bytes = 1048576\nmax_header_bytes = 8192\n[backend]\nconns_per_loop = 3\n",
		strings.Replace(base, `"30s"`, `"20s"`, 1) + "[limits]\nmax_body_bytes = 1048576\nmax_header_bytes = 8192\n" +
			"[[protocol]]\nname = \"ews\"\npath_prefix = \"/EWS\"\nbackend_port = 1\n",
	}
	b.write(t, b.config(base))
	b.start(t)
	oldPID := b.pid(t)

	lg := &loadGen{url: "http://" + b.addr + "/owa/", start: time.Now(), classes: []*loadClass{
		{name: "keep-alive GET", keepAlive: true},
		{name: "keep-alive POST", keepAlive: true, post: true},
		{name: "new-connection GET"},
	}}
	const workersPerClass = 8
	interval := time.Duration(len(lg.classes)*workersPerClass) * time.Second / hitlessRate
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for ci, c := range lg.classes {
		for w := range workersPerClass {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lg.worker(ctx, c, interval, uint64(ci*100+w))
			}()
		}
	}
	defer func() { stop(); wg.Wait() }()

	// The timeline: two reloads, the upgrade, two reloads of the new
	// process, each while the load runs.
	step := func(at time.Duration, what string, f func()) {
		time.Sleep(time.Until(lg.start.Add(at)))
		t.Logf("%5.1fs %s", time.Since(lg.start).Seconds(), what)
		f()
	}
	reload := func(i int) func() {
		return func() {
			b.write(t, b.config(configs[i]))
			b.hup(t, "configuration reloaded")
		}
	}
	step(1500*time.Millisecond, "SIGHUP 1: limits.max_body_bytes", reload(0))
	step(3*time.Second, "SIGHUP 2: backend.conns_per_loop", reload(1))
	step(4500*time.Millisecond, "upgrade", func() {
		up := testbed.StartProcess(t, "upgrade", "--pid-file", b.pidFile, "--timeout", "30s")
		if code, err := up.Wait(35 * time.Second); err != nil || code != 0 {
			t.Fatalf("frontdoor upgrade: exit %d, %v: %s", code, err, up.Output())
		}
		testbed.Adopt(t, b.pid(t))
	})
	step(6500*time.Millisecond, "SIGHUP 3 (new process): limits.max_header_bytes", reload(2))
	step(8*time.Second, "SIGHUP 4 (new process): timeouts.idle, a protocol", reload(3))
	step(10*time.Second, "load stops", func() { stop(); wg.Wait() })

	if b.pid(t) == oldPID {
		t.Fatal("the pid file still names the old process")
	}
	if code, err := b.proc.Wait(10 * time.Second); err != nil || code != 0 {
		t.Errorf("old process after the upgrade: exit %d, %v", code, err)
	}
	var total, failed int64
	for _, c := range lg.classes {
		ok, f := c.ok.Load(), c.failed.Load()
		total += ok + f
		failed += f
		t.Logf("%-20s %5d requests, %d failed", c.name, ok+f, f)
	}
	elapsed := 10 * time.Second
	t.Logf("%d requests in %v (%.0f/s), %d failed", total, elapsed, float64(total)/elapsed.Seconds(), failed)
	for i, f := range lg.failures {
		if i == 20 {
			t.Errorf("... %d more", len(lg.failures)-i)
			break
		}
		t.Errorf("failed at %v: %s: %s", f.at, f.class, f.what)
	}
	// The load must have been real for "no failure" to mean anything: at
	// least half the target rate (a quarter under the race detector,
	// whose binary is several times slower).
	floor := hitlessRate * int64(elapsed/time.Second) / int64(len(lg.classes)) / 2
	if raceEnabled {
		floor /= 2
	}
	for _, c := range lg.classes {
		if n := c.ok.Load() + c.failed.Load(); n < floor {
			t.Errorf("%s: only %d requests, want at least %d", c.name, n, floor)
		}
	}
	if n := strings.Count(b.proc.Output(), "configuration reloaded"); n != 4 {
		t.Errorf("%d reloads in the logs, want 4", n)
	}
}
