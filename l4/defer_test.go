package l4

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// deferAcceptor's connections answer each line with "now" from the
// callback and, through Loop.Defer, "later" after it: a client must see
// a callback's "now" before the deferred answers of its lines (a task run
// inside the callback would answer first), and one "later" per line (each
// Defer runs its task once).
type deferAcceptor struct{ nameAcceptor }

type deferConn struct {
	ClientConn
	pending int // lines whose deferred answer is due
}

func (a *deferAcceptor) Accept(cc ClientConn) (ClientHandler, []byte, gnet.Action) {
	return &deferConn{ClientConn: cc}, nil, gnet.None
}

func (c *deferConn) OnTraffic(gc gnet.Conn) gnet.Action {
	buf, _ := gc.Peek(-1)
	n := strings.Count(string(buf), "\n")
	_, _ = gc.Discard(len(buf))
	for range n {
		if !c.Loop.Defer(c) {
			_, _ = gc.Write([]byte("later\n")) // not live yet: at once
			continue
		}
		c.pending++
	}
	_, _ = gc.Write([]byte("now\n"))
	return gnet.None
}

func (c *deferConn) RunDeferred() {
	if c.pending > 0 {
		c.pending--
		_, _ = c.Conn.Write([]byte("later\n"))
	}
}

func (c *deferConn) OnClose(gnet.Conn, error) {}
func (c *deferConn) Drain(bool)               {}

func TestDeferRunsAfterTheCallback(t *testing.T) {
	addr := freeAddr(t)
	s, err := NewServer(Options{Listeners: []ListenerSpec{{Name: "t", Address: addr}}, Loops: 1, Log: quietLog()}, &deferAcceptor{})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, s)
	c := dialLine(t, addr)
	// The loop's wakeup socket is set up when it sees its first
	// connection; until then Defer refuses and the work is done at once.
	if !waitUntil(5*time.Second, func() bool {
		sl := s.slotList()
		return len(sl) == 1 && sl[0].deferred != nil && deferLive(s, sl[0])
	}) {
		t.Fatal("the loop's defer queue did not come up within 5s")
	}
	for round := range 20 {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("a\nb\nc\n")); err != nil {
			t.Fatal(err)
		}
		// One callback may see the three lines at once or in parts; each
		// callback answers "now" before the deferred "later"s of its
		// lines, and three "later"s arrive in all.
		later, nows := 0, 0
		for later < 3 {
			line, err := c.r.ReadString('\n')
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			switch strings.TrimSpace(line) {
			case "now":
				nows++
			case "later":
				if nows == 0 {
					t.Fatalf("round %d: a deferred answer came before its callback's own", round)
				}
				later++
			}
		}
	}
}

// deferLive reads the queue's state on its loop.
func deferLive(s *Server, sl *loopSlot) bool {
	live := make(chan bool, 1)
	if err := sl.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		live <- sl.deferred.live
		return nil
	})); err != nil {
		return false
	}
	select {
	case v := <-live:
		return v
	case <-time.After(time.Second):
		return false
	}
}
