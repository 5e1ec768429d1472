package tlsterm

import (
	"sync"
	"time"
)

// Handshake phases, guarded by pool.mu.
const (
	phIdle    uint8 = iota // accepted, no byte yet
	phQueued               // waiting for a slot
	phRunning              // a goroutine runs the handshake
	phDone                 // finished, dropped, refused or expired
)

// pool bounds concurrent handshakes. A connection takes a slot when its
// first bytes arrive (a silent client costs no goroutine); without a free
// slot it waits in a FIFO queue of bounded length, and beyond that it is
// refused. Every connection that has not finished its handshake is on a
// deadline list ordered by acceptance time (all share one timeout, so
// appending keeps it sorted); one timer per Terminator expires its head.
//
// A goroutine that finishes a handshake takes the next queued one itself.
// With none queued it waits workerLinger for a new one before it exits:
// under a handshake load the next handshake starts on a goroutine whose
// stack has already grown to what crypto/tls needs, rather than on a new
// one that grows its stack (copying it) two or three times per handshake.
// At most max goroutines run handshakes; the waiting ones are few (those
// that finished within workerLinger and found no work) and gone a moment
// after the load.
type pool struct {
	stats    *Stats
	max      int
	maxQueue int
	timeout  int64 // nanoseconds

	mu      sync.Mutex
	running int
	dl      hlist // not finished, by deadline
	q       hlist // waiting for a slot
	timer   *time.Timer
	armed   bool

	// idle hands a handshake to a goroutine waiting for one (work).
	idle chan *handshake
}

// workerLinger is how long a handshake goroutine waits for the next
// handshake. Short: the goroutine holds its grown stack meanwhile, and the
// memory trimmer waits for the handshakes to be over (about a second).
const workerLinger = 100 * time.Millisecond

type hlink struct{ prev, next *handshake }

// hlist is an intrusive doubly linked list over handshake.links[k].
type hlist struct {
	head, tail *handshake
	n          int
	k          int
}

func (l *hlist) push(h *handshake) {
	lk := &h.links[l.k]
	lk.prev, lk.next = l.tail, nil
	if l.tail != nil {
		l.tail.links[l.k].next = h
	} else {
		l.head = h
	}
	l.tail = h
	l.n++
}

func (l *hlist) remove(h *handshake) {
	lk := &h.links[l.k]
	if lk.prev != nil {
		lk.prev.links[l.k].next = lk.next
	} else {
		l.head = lk.next
	}
	if lk.next != nil {
		lk.next.links[l.k].prev = lk.prev
	} else {
		l.tail = lk.prev
	}
	lk.prev, lk.next = nil, nil
	l.n--
}

var epoch = time.Now()

// mono is nanoseconds on the monotonic clock.
func mono() int64 { return int64(time.Since(epoch)) }

func (p *pool) init(st *Stats, max, maxQueue int, timeout time.Duration) {
	p.stats, p.max, p.maxQueue, p.timeout = st, max, maxQueue, int64(timeout)
	p.dl.k, p.q.k = 0, 1
	p.idle = make(chan *handshake)
}

// register puts a new connection on the deadline list (on its loop).
func (p *pool) register(h *handshake) {
	p.mu.Lock()
	h.deadline = mono() + p.timeout
	h.inDL = true
	p.dl.push(h)
	if !p.armed {
		p.arm(time.Duration(p.timeout))
	}
	p.mu.Unlock()
}

func (p *pool) arm(d time.Duration) {
	if p.timer == nil {
		p.timer = time.AfterFunc(d, p.expire)
	} else {
		p.timer.Reset(d)
	}
	p.armed = true
}

// start gives h a slot or queues it (on its loop, when the first bytes
// arrived). It fails when the queue is full.
func (p *pool) start(h *handshake) error {
	p.mu.Lock()
	if h.phase != phIdle {
		p.mu.Unlock()
		return nil
	}
	switch {
	case p.running < p.max:
		p.running++
		h.phase = phRunning
		p.mu.Unlock()
		p.stats.Running.Add(1)
		select {
		case p.idle <- h:
		default:
			go p.work(h)
		}
		return nil
	case p.q.n < p.maxQueue:
		h.phase = phQueued
		p.q.push(h)
		p.mu.Unlock()
		p.stats.Queued.Add(1)
		return nil
	}
	h.phase = phDone
	if h.inDL {
		h.inDL = false
		p.dl.remove(h)
	}
	p.mu.Unlock()
	p.stats.fail(FailQueueFull)
	return ErrHandshakeQueueFull
}

func (p *pool) work(h *handshake) {
	var linger *time.Timer
	for {
		for h != nil {
			h = h.c.runHandshake(h)
		}
		if linger == nil {
			linger = time.NewTimer(workerLinger)
		} else {
			linger.Reset(workerLinger)
		}
		select {
		case h = <-p.idle:
		case <-linger.C:
			return
		}
	}
}

// finish ends h's handshake on its goroutine and returns the next queued
// handshake, which the same goroutine runs.
func (p *pool) finish(h *handshake) *handshake {
	p.mu.Lock()
	defer p.mu.Unlock()
	if h.inDL {
		h.inDL = false
		p.dl.remove(h)
	}
	h.phase = phDone
	if next := p.q.head; next != nil {
		p.q.remove(next)
		next.phase = phRunning
		p.stats.Queued.Add(-1)
		return next
	}
	p.running--
	p.stats.Running.Add(-1)
	return nil
}

// drop takes a closed connection off the lists (on its loop). A running
// handshake is failed through its wire instead.
func (p *pool) drop(h *handshake) {
	p.mu.Lock()
	if h.inDL {
		h.inDL = false
		p.dl.remove(h)
	}
	switch h.phase {
	case phQueued:
		p.q.remove(h)
		p.stats.Queued.Add(-1)
		h.phase = phDone
	case phIdle:
		h.phase = phDone
	}
	p.mu.Unlock()
}

// expire runs on the timer's goroutine: it fails every handshake whose
// deadline passed and re-arms for the next one.
func (p *pool) expire() {
	now := mono()
	var victims []*handshake
	var phases []uint8
	p.mu.Lock()
	p.armed = false
	for h := p.dl.head; h != nil && h.deadline <= now; h = p.dl.head {
		h.inDL = false
		p.dl.remove(h)
		phases = append(phases, h.phase)
		if h.phase == phQueued {
			p.q.remove(h)
			p.stats.Queued.Add(-1)
		}
		if h.phase != phRunning {
			h.phase = phDone
		}
		victims = append(victims, h)
	}
	if h := p.dl.head; h != nil {
		p.arm(time.Duration(h.deadline - now))
	}
	p.mu.Unlock()
	for i, h := range victims {
		h.mu.Lock()
		h.expired = true
		h.cond.Broadcast()
		h.mu.Unlock()
		switch phases[i] {
		case phIdle:
			p.stats.fail(FailTimeout)
			_ = h.c.gc.Close()
		case phQueued:
			p.stats.fail(FailQueueTimeout)
			_ = h.c.gc.Close()
		}
		// A running handshake fails in its wire's Read and is counted and
		// closed by its goroutine.
	}
}
