package mailproxy_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestIdleMemory measures what an idle IMAP connection costs the proxy:
// N connections (FRONTDOOR_MAIL_MEM_CONNS, e.g. 10000) held by a Python
// process, before login (plaintext and implicit TLS) and logged in
// (plaintext and TLS; each then has a backend connection to a stub in the
// same Python process, so at most about 9,900 fit the 20,000-descriptor
// limit of this process). Skipped unless the variable is set; run with
//
//	FRONTDOOR_MAIL_MEM_CONNS=10000 go test -run TestIdleMemory -v ./mailproxy/
func TestIdleMemory(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("FRONTDOOR_MAIL_MEM_CONNS"))
	if n <= 0 {
		t.Skip("set FRONTDOOR_MAIL_MEM_CONNS=10000 to measure memory per idle IMAP connection")
	}
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		py = "python3"
	}
	for _, mode := range []string{"greeting", "tls", "login", "login-tls"} {
		t.Run(mode, func(t *testing.T) {
			conns := n
			if strings.HasPrefix(mode, "login") && conns > 9000 {
				conns = 9000 // two descriptors per session here
			}
			stubLn, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			stubPort := stubLn.Addr().(*net.TCPAddr).Port
			stubLn.Close()
			h := startHarness(t, false, nil)
			h.auth.setBackend(fmt.Sprintf("127.0.0.1:%d", stubPort), nil)
			h.auth.mu.Lock()
			h.auth.seen["alice\x00password"] = true // a cached verdict
			h.auth.mu.Unlock()
			listener := lIMAPPlain
			if strings.HasSuffix(mode, "tls") {
				listener = lIMAPS
			}
			host, port, _ := net.SplitHostPort(h.addrs[listener])
			before := measure()
			cmd := exec.Command(py, "testdata/idleclients.py", strconv.Itoa(conns), mode, host, port, strconv.Itoa(stubPort))
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { stdin.Close(); _ = cmd.Wait() }()
			done := make(chan string, 1)
			go func() {
				l, _ := bufio.NewReader(stdout).ReadString('\n')
				done <- l
			}()
			select {
			case l := <-done:
				if !strings.HasPrefix(l, "ready") {
					t.Fatalf("clients: %q", l)
				}
			case <-time.After(5 * time.Minute):
				t.Fatal("clients not ready in 5 minutes")
			}
			time.Sleep(500 * time.Millisecond) // the last handshakes' goroutines end
			after := measure()
			per := func(a, b uint64) float64 { return float64(int64(b)-int64(a)) / float64(conns) / 1024 }
			t.Logf("%s: %d connections: heap %.2f KiB/conn, stacks %.2f KiB/conn, RSS %.2f KiB/conn (Go runtime total %.2f KiB/conn)",
				mode, conns, per(before.heap, after.heap), per(before.stack, after.stack), per(before.rss, after.rss),
				per(before.sys, after.sys))
			if got := h.h.Stats().Open.Load(); got != int64(conns) {
				t.Errorf("open sessions %d, want %d", got, conns)
			}
		})
	}
}

type mem struct{ heap, stack, rss, sys uint64 }

func measure() mem {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := mem{heap: ms.HeapInuse, stack: ms.StackInuse, sys: ms.Sys - ms.HeapReleased}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseUint(f[1], 10, 64)
				m.rss = kb << 10
			}
		}
	}
	return m
}
