package mailproxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIMAPLogin measures complete logins through the proxy: connect,
// greeting, LOGIN (a cached verdict), backend dial and master login on the
// stub, the relayed OK, close. cpu-us/login is the whole process's CPU
// (clients, proxy and stub share it), so it bounds the proxy's from above.
func BenchmarkIMAPLogin(b *testing.B) {
	h := startHarness(b, false, nil)
	login := func() error {
		c, err := net.DialTimeout("tcp", h.addrs[lIMAPPlain], 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
			return fmt.Errorf("greeting %q: %v", l, err)
		}
		if _, err := io.WriteString(c, "a LOGIN alice password\r\n"); err != nil {
			return err
		}
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if strings.HasPrefix(l, "a ") {
				if !strings.HasPrefix(l, "a OK") {
					return fmt.Errorf("login: %q", l)
				}
				return nil
			}
		}
	}
	if err := login(); err != nil { // the first verification is off the loop
		b.Fatal(err)
	}
	b.ResetTimer()
	cpu0, t0 := cpuTime(), time.Now()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := login(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	el, cpu := time.Since(t0), cpuTime()-cpu0
	b.ReportMetric(float64(b.N)/el.Seconds(), "logins/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/login")
}

// BenchmarkIMAPFetch10MiB relays a 10 MiB FETCH response from the stub to
// a client over an established session (plaintext and TLS to the client).
func BenchmarkIMAPFetch10MiB(b *testing.B) {
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"plain", false}, {"tls", true}} {
		b.Run(tc.name, func(b *testing.B) {
			h := startHarness(b, false, nil)
			var c *conn
			if tc.tls {
				c = h.dialTLS(b, lIMAPS)
			} else {
				c = h.dial(b, lIMAPPlain)
			}
			c.expect("* OK")
			c.send("a LOGIN alice password\r\n")
			c.until("a OK")
			buf := make([]byte, 256<<10)
			b.SetBytes(int64(len(bigMessage)))
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				c.send("f FETCH10M\r\n")
				_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
				head, err := c.r.ReadString('\n')
				if err != nil || !strings.HasPrefix(head, "* 1 FETCH") {
					b.Fatalf("fetch head %q: %v", head, err)
				}
				if _, err := io.CopyBuffer(io.Discard, io.LimitReader(c.r, int64(len(bigMessage))), buf); err != nil {
					b.Fatal(err)
				}
				c.until("f OK")
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-us/fetch")
		})
	}
}

// BenchmarkIMAPLogout measures whole sessions that end: connect, LOGIN,
// LOGOUT, the server's close, the client's. "logout" reads to EOF and
// then closes (the server's FIN is relayed as a half-close); "halfclose"
// half-closes right behind its LOGOUT, then reads to EOF (the client's
// FIN goes through a duplicate and a writer goroutine).
func BenchmarkIMAPLogout(b *testing.B) {
	for _, half := range []bool{false, true} {
		name := "logout"
		if half {
			name = "halfclose"
		}
		b.Run(name, func(b *testing.B) {
			h := startHarness(b, false, nil)
			session := func() error {
				c, err := net.DialTimeout("tcp", h.addrs[lIMAPPlain], 5*time.Second)
				if err != nil {
					return err
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				r := bufio.NewReader(c)
				if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
					return fmt.Errorf("greeting %q: %v", l, err)
				}
				if _, err := io.WriteString(c, "a LOGIN alice password\r\nb LOGOUT\r\n"); err != nil {
					return err
				}
				if half {
					if err := c.(*net.TCPConn).CloseWrite(); err != nil {
						return err
					}
				}
				out, err := io.ReadAll(r)
				if err != nil {
					return err
				}
				if !strings.HasSuffix(string(out), "b OK Logout completed.\r\n") {
					return fmt.Errorf("logout: %q", out)
				}
				return nil
			}
			if err := session(); err != nil { // the first verification is off the loop
				b.Fatal(err)
			}
			b.ResetTimer()
			cpu0, t0 := cpuTime(), time.Now()
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := session(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			el, cpu := time.Since(t0), cpuTime()-cpu0
			b.ReportMetric(float64(b.N)/el.Seconds(), "sessions/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/session")
		})
	}
}
