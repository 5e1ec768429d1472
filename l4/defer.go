package l4

import (
	"context"
	"syscall"

	"github.com/panjf2000/gnet/v2"
)

// Deferred is work a loop runs after it has handled the events of one wait
// for readiness, before it waits again (see Loop.Defer).
type Deferred interface {
	RunDeferred()
}

// Defer asks the loop to call d.RunDeferred once the events it is handling
// now have all been handled. Writes that many callbacks of one wakeup make
// to one socket can so go out as one system call: poolmux gathers the
// requests of many clients bound for one backend connection this way, as
// HAProxy and nginx flush their buffers at the end of a loop iteration.
//
// Defer runs on the loop and never blocks or allocates (beyond growing
// its queue once). It returns false when the loop cannot defer yet (its
// wakeup socket is still being set up, or is gone): the caller then does
// the work at once. d runs once per successful Defer; calling Defer twice
// runs it twice.
//
// gnet has no hook for the end of an event batch, and its Execute
// allocates a closure per call, so a loop wakes itself with one byte on a
// Unix socket pair whose read end it watches: the byte makes the read end
// readable at the loop's next wait (which gnet does without blocking right
// after a batch), and its handler runs the queue. That costs a write and a
// read on a Unix socket per batch, far less than the TCP writes it saves.
func (lp *Loop) Defer(d Deferred) bool {
	q := lp.slot.deferred
	if q == nil || !q.live {
		return false
	}
	if !q.armed {
		if _, err := syscall.Write(q.wakeFD, wakeByte[:]); err != nil && err != syscall.EAGAIN {
			return false
		}
		// EAGAIN: bytes not yet read fill the socket; the loop wakes
		// for them anyway.
		q.armed = true
	}
	q.tasks = append(q.tasks, d)
	return true
}

var wakeByte = [1]byte{'d'}

// deferQueue is one event loop's queue of Deferred work and the socket
// pair that wakes the loop for it. Everything but setup runs on the loop.
type deferQueue struct {
	wakeFD int  // the write end: a byte wakes the loop
	live   bool // the read end is registered on the loop
	armed  bool // a wakeup byte is on its way
	tasks  []Deferred
	spare  []Deferred // the other buffer: tasks deferred while running
}

// startDeferQueue sets up the wakeup socket pair of sl's loop. It runs in
// its own goroutine: Enroll and the dial block. Until the read end is live
// on the loop, Defer returns false.
func (sl *loopSlot) startDeferQueue() {
	q := &deferQueue{wakeFD: -1}
	sl.deferred = q
	go func() {
		r, wfd, err := wakePair()
		if err == nil {
			q.wakeFD = wfd // published to the loop by Enroll's hand-off
			var ch <-chan gnet.RegisteredResult
			ch, err = sl.el.Enroll(gnet.NewContext(context.Background(), q), r)
			if err == nil {
				err = (<-ch).Err
			}
			_ = r.Close() // Enroll registered a duplicate of its descriptor
			if err != nil {
				_ = syscall.Close(wfd)
			}
		}
		if err != nil {
			sl.server.log.Warn("loop runs without deferred writes", "loop", sl.index, "err", err)
		}
	}()
}

// OnOpen implements Opener: the read end is live on the loop.
func (q *deferQueue) OnOpen(gnet.Conn) gnet.Action {
	q.live = true
	return gnet.None
}

// OnTraffic implements Handler: the wakeup byte arrived, run the queue.
func (q *deferQueue) OnTraffic(c gnet.Conn) gnet.Action {
	// Discard(-1) drops everything buffered (gnet reads n <= 0 as "all").
	_, _ = c.Discard(-1)
	q.run()
	return gnet.None
}

// OnClose implements Handler: the engine is stopping. Work still queued
// runs now; later Defers return false and the caller does the work.
func (q *deferQueue) OnClose(gnet.Conn, error) {
	q.live = false
	q.run()
	if q.wakeFD >= 0 {
		_ = syscall.Close(q.wakeFD)
		q.wakeFD = -1
	}
}

// run runs the queued tasks. Tasks may Defer again: those go to a fresh
// buffer and a new wakeup, so they run after the next batch, not now.
func (q *deferQueue) run() {
	q.armed = false
	tasks := q.tasks
	q.tasks = q.spare[:0]
	for i, d := range tasks {
		tasks[i] = nil
		d.RunDeferred()
	}
	q.spare = tasks[:0]
}
