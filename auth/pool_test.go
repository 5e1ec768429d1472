package auth

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond for up to five seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// With its workers busy and its queue full, Submit refuses at once; the
// accepted jobs all run.
func TestPoolBoundsAndRejects(t *testing.T) {
	p := NewPool(2, 3)
	release := make(chan struct{})
	var ran atomic.Int64
	block := func() { <-release; ran.Add(1) }
	for i := range 2 {
		if !p.Submit(block) {
			t.Fatalf("job %d refused with idle workers", i)
		}
	}
	waitFor(t, "two running jobs", func() bool { return p.Stats().Running == 2 })
	for i := range 3 {
		if !p.Submit(block) {
			t.Fatalf("job %d refused with room in the queue", i)
		}
	}
	start := time.Now()
	if p.Submit(block) {
		t.Fatal("accepted beyond workers + queue")
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("a refused Submit took %v", d)
	}
	st := p.Stats()
	if st.Running != 2 || st.Queued != 3 || st.Submitted != 5 || st.Rejected != 1 || st.Workers != 2 || st.QueueCap != 3 {
		t.Fatalf("stats %+v", st)
	}
	close(release)
	p.Close()
	if ran.Load() != 5 {
		t.Fatalf("%d of 5 accepted jobs ran", ran.Load())
	}
	if st := p.Stats(); st.Running != 0 || st.Queued != 0 {
		t.Fatalf("after Close: %+v", st)
	}
}

// Close waits for running and queued jobs, and Submit after Close refuses.
func TestPoolClose(t *testing.T) {
	p := NewPool(1, 10)
	var done atomic.Int64
	for range 5 {
		p.Submit(func() { time.Sleep(5 * time.Millisecond); done.Add(1) })
	}
	p.Close()
	if done.Load() != 5 {
		t.Fatalf("Close returned with %d of 5 jobs done", done.Load())
	}
	if p.Submit(func() {}) {
		t.Fatal("accepted after Close")
	}
	p.Close() // again: a no-op
	if st := p.Stats(); st.Rejected != 1 || st.Submitted != 5 {
		t.Fatalf("stats %+v", st)
	}
}

// With no queue, a job is accepted only by an idle worker.
func TestPoolZeroQueue(t *testing.T) {
	p := NewPool(1, 0)
	defer p.Close()
	release := make(chan struct{})
	waitFor(t, "the worker to take a job", func() bool { return p.Submit(func() { <-release }) })
	if p.Submit(func() {}) {
		t.Fatal("accepted with the only worker busy and no queue")
	}
	close(release)
}

// Loops submit while the pool is closing: no job is lost or run twice, no
// send hits a closed channel. Run with -race.
func TestPoolConcurrentSubmitAndClose(t *testing.T) {
	for range 20 {
		p := NewPool(4, 64)
		var accepted, ran atomic.Int64
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 500 {
					if p.Submit(func() { ran.Add(1) }) {
						accepted.Add(1)
					}
				}
			})
		}
		time.Sleep(time.Millisecond)
		p.Close()
		wg.Wait()
		if accepted.Load() != ran.Load() {
			t.Fatalf("%d accepted, %d ran", accepted.Load(), ran.Load())
		}
		st := p.Stats()
		if st.Submitted+st.Rejected != 2000 || int64(st.Submitted) != accepted.Load() {
			t.Fatalf("stats %+v, %d accepted", st, accepted.Load())
		}
	}
}
