package gateway_test

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"frontdoor/internal/gwtest"
	"frontdoor/internal/testbed"
)

// Many pipelined 16 KiB responses on a shared backend connection arrive in
// 64 KiB reads that end mid-head; the partial head must be kept for the
// next read. (gnet's Discard(0) discards everything: this caught it.)
func TestResponsesSpanningReads(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := gwtest.Start(t, gwtest.Options{Loops: 1}, m1)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := g.Dial(t)
			for j := 0; j < 200; j++ {
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprintf(c, "GET /owa/ HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\nX-Mailboxd-Size: 16384\r\n\r\n")
				resp, err := http.ReadResponse(c.R, nil)
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				mu.Lock()
				codes[resp.StatusCode]++
				if resp.StatusCode != 200 {
					t.Logf("%d %s", resp.StatusCode, b)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	snap := g.Snapshot()
	if codes[200] != 50*200 || len(snap.Rejects) != 0 {
		t.Fatalf("statuses %v, rejects %v", codes, snap.Rejects)
	}
}
