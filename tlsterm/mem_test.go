package tlsterm

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const memHelperEnv = "TLSTERM_MEM_HELPER"

// TestMemServerHelper is the server process of TestIdleConnMemory; it does
// nothing in a normal run.
func TestMemServerHelper(t *testing.T) {
	if os.Getenv(memHelperEnv) != "1" {
		t.Skip("helper process of TestIdleConnMemory")
	}
	certs := newStandardCerts(t)
	term := newTerm(t, Settings{Certificates: certs.pairs})
	addr, srv := startServer(t, term)
	fmt.Printf("ADDR %s %s\n", addr, certs.pki.caFile)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "measure":
			runtime.GC()
			runtime.GC()
			debug.FreeOSMemory()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Printf("MEM %d %d %d %d %d\n", ms.HeapAlloc, ms.StackInuse, readRSS(), srv.opened.Load()-srv.closed.Load(), runtime.NumGoroutine())
			if path := os.Getenv("TLSTERM_MEM_PROFILE"); path != "" {
				if f, err := os.Create(path); err == nil {
					pprof.Lookup("heap").WriteTo(f, 0)
					f.Close()
				}
			}
		case "quit":
			return
		}
	}
}

// readRSS returns the resident set size in bytes from /proc (0 elsewhere).
func readRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

type memSample struct{ heap, stack, rss, open, goroutines int64 }

// TestIdleConnMemory measures what an idle TLS connection costs the server
// after a full TLS 1.3 handshake (X25519MLKEM768) and one small echo: heap,
// stacks and RSS of a server process, per connection. It logs the numbers
// and asserts nothing about them. TLSTERM_MEM_CONNS sets the count (2000);
// TLSTERM_MEM_PROFILE=file makes the server write its heap profile there.
func TestIdleConnMemory(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("slow, and meaningless under the race detector")
	}
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("TLSTERM_MEM_CONNS")); err == nil && v > 0 {
		n = v
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMemServerHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), memHelperEnv+"=1")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		io.WriteString(stdin, "quit\n")
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(prefix string) []string {
		t.Helper()
		timeout := time.After(60 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatal("helper exited")
				}
				if strings.HasPrefix(l, prefix+" ") {
					return strings.Fields(l)[1:]
				}
			case <-timeout:
				t.Fatalf("no %s line from the helper", prefix)
			}
		}
	}
	f := next("ADDR")
	addr, caFile := f[0], f[1]
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(mustRead(t, caFile))
	cfg := &tls.Config{RootCAs: roots, ServerName: "mail.example.test"}
	measure := func() memSample {
		io.WriteString(stdin, "measure\n")
		f := next("MEM")
		var v [5]int64
		for i := range v {
			v[i], _ = strconv.ParseInt(f[i], 10, 64)
		}
		return memSample{v[0], v[1], v[2], v[3], v[4]}
	}

	// Warm up pools and loops with a few connections, closed again.
	for i := 0; i < 8; i++ {
		c, err := dialTLS(addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := roundTrip(c, "warm"); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	time.Sleep(200 * time.Millisecond)
	base := measure()

	conns := make([]*tls.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	work := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				c, err := dialTLS(addr, cfg)
				if err != nil {
					errs <- err
					continue
				}
				c.SetDeadline(time.Time{})
				if err := roundTrip(c, "ping"); err != nil {
					errs <- err
				}
				conns[i] = c
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	m := measure()
	if m.open-base.open != int64(n) {
		t.Fatalf("server has %d open connections, want %d more than %d", m.open, n, base.open)
	}
	per := func(a, b int64) float64 { return float64(a-b) / float64(n) / 1024 }
	t.Logf("%d idle TLS 1.3 connections (handshake + 4-byte echo), %.0f handshakes/s with client and server on this machine", n, float64(n)/elapsed.Seconds())
	t.Logf("server per connection: heap %.2f KiB, stacks %.2f KiB, RSS %.2f KiB; goroutines %d -> %d",
		per(m.heap, base.heap), per(m.stack, base.stack), per(m.rss, base.rss), base.goroutines, m.goroutines)
	if m.goroutines > base.goroutines+8 {
		t.Errorf("goroutines grew from %d to %d: handshake goroutines outlive their handshakes", base.goroutines, m.goroutines)
	}
}

// TestCryptoTLSRetainsLittleAfterHandshake pins what gateway's memory
// trimmer and the idle-connection budget rely on: once Handshake has
// returned, a server tls.Conn keeps its connection state (about 7 KiB with
// X25519MLKEM768 and AES-GCM: the tls.Conn, two AEAD states, secrets, and
// its raw-input and handshake buffers sized by the ClientHello) and
// nothing of the handshake itself: no ML-KEM keys, no transcript, no
// ClientHello. If a Go release starts keeping more, this fails rather than
// the gateway's memory per idle connection quietly growing.
func TestCryptoTLSRetainsLittleAfterHandshake(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation sizes")
	}
	certs := newStandardCerts(t)
	term := newTerm(t, Settings{Certificates: certs.pairs})
	ccfg := certs.clientConfig("mail.example.test")
	const n = 200
	heap := func() int64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	// The pipes' own cost, measured alone.
	pipes := make([]net.Conn, 0, 2*n)
	h0 := heap()
	for range n {
		a, b := net.Pipe()
		pipes = append(pipes, a, b)
	}
	pipeCost := heap() - h0
	for _, p := range pipes {
		p.Close()
	}
	pipes = nil

	servers := make([]*tls.Conn, n)
	clients := make([]net.Conn, n) // the client ends of the pipes only
	h1 := heap()
	for i := range servers {
		sc, cc := net.Pipe()
		srv := tls.Server(sc, term.Config())
		cli := tls.Client(cc, ccfg)
		errc := make(chan error, 1)
		go func() { errc <- cli.Handshake() }()
		if err := srv.Handshake(); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if st := srv.ConnectionState(); st.CurveID != tls.X25519MLKEM768 || st.Version != tls.VersionTLS13 {
				t.Fatalf("negotiated %v %v, want TLS 1.3 with X25519MLKEM768", st.Version, st.CurveID)
			}
		}
		servers[i], clients[i] = srv, cc
	}
	// Client tls.Conns are dropped; their pipe ends stay, as measured.
	per := float64(heap()-h1-pipeCost) / n
	t.Logf("crypto/tls server state after a TLS 1.3 X25519MLKEM768 handshake: %.2f KiB per connection", per/1024)
	if per > 8<<10 {
		t.Errorf("crypto/tls keeps %.2f KiB per server connection after the handshake, want at most 8 KiB", per/1024)
	}
	runtime.KeepAlive(servers)
	runtime.KeepAlive(clients)
}
