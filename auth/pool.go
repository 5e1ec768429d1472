package auth

import (
	"sync"
	"sync/atomic"
)

// Pool runs verification jobs (password hashes, signature checks) on a
// fixed number of goroutines, off the event loops, behind a bounded queue.
//
// Submit never blocks: when the queue is full the job is refused and the
// caller answers 503 at once. That is the point of the bound: under a flood
// of logins, memory and latency stay fixed and the excess is shed at the
// door, instead of queueing work whose clients will have given up by the
// time it runs. Size workers to the cores the verification may use
// (argon2id is CPU- and memory-bound) and the queue to how much waiting is
// still useful.
//
// A job is a func(); Submit does not allocate, but building a closure per
// request does, so callers on the loop keep one prepared job per connection
// (a method value made once). A job must not panic: it would end the
// process, as a panic on a loop would.
type Pool struct {
	jobs    chan func()
	workers int
	wg      sync.WaitGroup

	// mu orders Submit's send against Close's close(jobs): Submit holds it
	// shared, Close exclusively, so no send can reach a closed channel.
	mu     sync.RWMutex
	closed bool

	submitted atomic.Uint64
	rejected  atomic.Uint64
	running   atomic.Int64
}

// PoolStats are a Pool's counters.
type PoolStats struct {
	Workers   int
	QueueCap  int
	Queued    int    // jobs waiting now
	Running   int    // jobs running now
	Submitted uint64 // jobs accepted
	Rejected  uint64 // jobs refused: queue full or pool closed
}

// NewPool starts workers goroutines (at least one) behind a queue that
// holds up to queue waiting jobs. With a queue of zero, a job is accepted
// only when a worker is idle to take it at once.
func NewPool(workers, queue int) *Pool {
	workers = max(workers, 1)
	queue = max(queue, 0)
	p := &Pool{jobs: make(chan func(), queue), workers: workers}
	p.wg.Add(workers)
	for range workers {
		go p.work()
	}
	return p
}

func (p *Pool) work() {
	defer p.wg.Done()
	for job := range p.jobs {
		p.running.Add(1)
		job()
		p.running.Add(-1)
	}
}

// Submit queues job and reports true, or reports false at once if the
// queue is full or the pool is closed. It never blocks and does not
// allocate.
func (p *Pool) Submit(job func()) bool {
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		p.rejected.Add(1)
		return false
	}
	select {
	case p.jobs <- job:
		p.mu.RUnlock()
		p.submitted.Add(1)
		return true
	default:
		p.mu.RUnlock()
		p.rejected.Add(1)
		return false
	}
}

// Close refuses new jobs, lets the workers finish the running and queued
// ones (each queued job is a client waiting for an answer, which its job
// delivers) and returns when they have. It may be called more than once.
func (p *Pool) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.jobs)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// Stats returns the counters.
func (p *Pool) Stats() PoolStats {
	return PoolStats{
		Workers:   p.workers,
		QueueCap:  cap(p.jobs),
		Queued:    len(p.jobs),
		Running:   int(p.running.Load()),
		Submitted: p.submitted.Load(),
		Rejected:  p.rejected.Load(),
	}
}
