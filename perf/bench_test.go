package perf

import (
	"testing"

	"frontdoor/internal/gwtest"
	"frontdoor/internal/testbed"
)

// BenchmarkProxyKeepAlive measures one keep-alive request through an
// in-process gateway to a mailboxd process. ns/op includes the loopback
// round trips and the mailbox server's time; the bench suite (make bench)
// measures the gateway's own CPU per request from /proc.
func BenchmarkProxyKeepAlive(b *testing.B) {
	m1 := testbed.StartMailboxd(b, "mbx1")
	g := gwtest.Start(b, gwtest.Options{Loops: 1}, m1)
	for _, depth := range []int{1, 8} {
		b.Run(map[int]string{1: "one-at-a-time", 8: "pipelined-8"}[depth], func(b *testing.B) {
			c := NewKeepAliveClient(b, g.Addr, owaRequest, depth)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := c.Do(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
