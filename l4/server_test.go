package l4

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// nameAcceptor answers every line a client sends with its name, so a test
// sees which acceptor serves a connection. A drained connection answers
// "<name> last" once and closes, like an HTTP response with Connection:
// close.
type nameAcceptor struct {
	name     string
	released atomic.Int32 // Release calls
	newLoops atomic.Int32
}

type nameConn struct {
	ClientConn
	a       *nameAcceptor
	last    bool
	drained atomic.Bool
}

func (a *nameAcceptor) NewLoop(*Loop) { a.newLoops.Add(1) }
func (a *nameAcceptor) Release(*Loop) { a.released.Add(1) }
func (a *nameAcceptor) Accept(cc ClientConn) (ClientHandler, []byte, gnet.Action) {
	return &nameConn{ClientConn: cc, a: a}, nil, gnet.None
}
func (a *nameAcceptor) Refusal(*Listener, string) []byte { return []byte("refused\n") }

func (c *nameConn) OnTraffic(gc gnet.Conn) gnet.Action {
	buf, _ := gc.Peek(-1)
	n := strings.Count(string(buf), "\n")
	gc.Discard(-1)
	for range n {
		if c.last {
			_, _ = gc.Write([]byte(c.a.name + " last\n"))
			return gnet.Close
		}
		_, _ = gc.Write([]byte(c.a.name + "\n"))
	}
	return gnet.None
}

func (c *nameConn) OnClose(gnet.Conn, error) {}

func (c *nameConn) Drain(closeIdle bool) {
	c.last = true
	c.drained.Store(true)
	if closeIdle {
		_ = c.Conn.Close()
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serve runs s until the test ends (or stop is called) and returns once it
// listens.
func serve(t *testing.T, s *Server) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Serve(ctx, func() DrainOptions { return DrainOptions{Timeout: time.Second} }, func() { close(ready) })
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not listening within 10s")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Error("server did not stop within 10s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

type lineConn struct {
	net.Conn
	r *bufio.Reader
}

func dialLine(t *testing.T, addr string) *lineConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &lineConn{c, bufio.NewReader(c)}
}

// ask sends a line and returns the answer.
func (c *lineConn) ask(t *testing.T) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("?\n")); err != nil {
		t.Fatalf("write: %v", err)
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return strings.TrimSuffix(line, "\n")
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func waitUntil(d time.Duration, f func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if f() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return f()
}

// A reload: connections accepted before SetAcceptor stay with the old
// acceptor, are drained without being closed while idle (they answer one
// more request, as the last), and the old acceptor is released on every
// loop it served once they are gone; new connections get the new one.
func TestSetAcceptorDrainsTheOldGeneration(t *testing.T) {
	a, b := &nameAcceptor{name: "A"}, &nameAcceptor{name: "B"}
	var releasedMu sync.Mutex
	var released []Acceptor
	addr := freeAddr(t)
	s, err := NewServer(Options{
		Listeners: []ListenerSpec{{Name: "t", Address: addr}}, Loops: 2, ReusePort: true,
		SweepInterval: 20 * time.Millisecond, Log: quietLog(),
		Released: func(x Acceptor) {
			releasedMu.Lock()
			released = append(released, x)
			releasedMu.Unlock()
		},
	}, a)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, s)

	// Enough connections that both loops have some (the kernel hashes
	// them over the two sockets).
	var old []*lineConn
	for range 8 {
		c := dialLine(t, addr)
		if got := c.ask(t); got != "A" {
			t.Fatalf("before the swap: answered by %q", got)
		}
		old = append(old, c)
	}
	s.SetAcceptor(b)
	if s.Acceptor() != Acceptor(b) {
		t.Fatal("Acceptor() is not the new acceptor")
	}
	fresh := dialLine(t, addr)
	if got := fresh.ask(t); got != "B" {
		t.Errorf("new connection answered by %q, want B", got)
	}
	// Drained but idle: still open, and the next request is the last.
	for i, c := range old {
		if got := c.ask(t); got != "A last" {
			t.Errorf("old connection %d answered %q, want %q", i, got, "A last")
		}
	}
	if !waitUntil(5*time.Second, func() bool {
		releasedMu.Lock()
		defer releasedMu.Unlock()
		return len(released) == 1
	}) {
		t.Fatalf("old acceptor not released after its connections closed (Release calls: %d)", a.released.Load())
	}
	if released[0] != Acceptor(a) {
		t.Errorf("released %v, want the old acceptor", released[0])
	}
	if n, m := a.released.Load(), a.newLoops.Load(); n != m {
		t.Errorf("old acceptor: %d loops made, %d released", m, n)
	}
	if b.released.Load() != 0 {
		t.Error("the current acceptor was released")
	}
	if got := fresh.ask(t); got != "B" {
		t.Errorf("new connection after the release answered %q", got)
	}
}

// A stop drain closes idle connections at once; a handoff drain serves
// what it still accepts, once, and leaves idle connections alone.
func TestDrainModes(t *testing.T) {
	for _, handoff := range []bool{false, true} {
		t.Run(fmt.Sprintf("handoff=%v", handoff), func(t *testing.T) {
			a := &nameAcceptor{name: "A"}
			addr := freeAddr(t)
			s, err := NewServer(Options{Listeners: []ListenerSpec{{Name: "t", Address: addr}}, Loops: 1, Log: quietLog()}, a)
			if err != nil {
				t.Fatal(err)
			}
			serve(t, s)
			idle := dialLine(t, addr)
			idle.ask(t)
			drained := make(chan struct{})
			go func() {
				defer close(drained)
				s.Drain(DrainOptions{Timeout: 2 * time.Second, Handoff: handoff})
			}()
			if !waitUntil(5*time.Second, func() bool { return s.handoff.Load() || s.draining.Load() }) {
				t.Fatal("drain did not start")
			}
			late := dialLine(t, addr)
			if handoff {
				if got := late.ask(t); got != "A last" {
					t.Errorf("connection accepted during a handoff answered %q, want %q", got, "A last")
				}
				if got := idle.ask(t); got != "A last" {
					t.Errorf("idle connection answered %q, want %q", got, "A last")
				}
			} else {
				_ = late.SetDeadline(time.Now().Add(5 * time.Second))
				if got, _ := late.r.ReadString('\n'); got != "refused\n" {
					t.Errorf("connection accepted during a stop got %q, want the refusal", got)
				}
				_ = idle.SetDeadline(time.Now().Add(5 * time.Second))
				if n, err := idle.Read(make([]byte, 1)); err != io.EOF {
					t.Errorf("idle connection during a stop: read %d, %v; want EOF", n, err)
				}
			}
			<-drained
		})
	}
}
