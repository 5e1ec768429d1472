package gateway

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTrimmerAfterHandshakeBurst: no trim while handshakes run or while
// they keep finishing; one once the pool has been quiet for a check
// period; none sooner than the interval after the last; none without
// memory worth returning. The heap the trimmer sees is a stand-in: real
// free memory comes and goes with the background scavenger, which made
// this test flaky when it allocated real garbage.
func TestTrimmerAfterHandshakeBurst(t *testing.T) {
	var active, finished atomic.Int64
	var retained atomic.Uint64 // what the stand-in heap holds that is not live
	active.Store(3)
	const interval = 150 * time.Millisecond
	tr := newTrimmer(interval, 8<<20, func() (int64, int64) { return active.Load(), finished.Load() },
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	tr.period = 10 * time.Millisecond
	tr.read = func() memoryState {
		const live = 4 << 20
		return memoryState{Live: live, Objects: live + retained.Load()}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	retained.Store(32 << 20)
	time.Sleep(100 * time.Millisecond)
	if n := tr.trims.Load(); n != 0 {
		t.Fatalf("%d trims while handshakes were running", n)
	}
	// Handshakes still finishing, none running at the moment of a check.
	active.Store(0)
	for range 10 {
		finished.Add(1)
		time.Sleep(3 * time.Millisecond)
	}
	finished.Add(1)
	waitFor(t, "a trim after the burst", func() bool { return tr.trims.Load() == 1 })
	first := time.Now()
	retained.Store(1 << 20) // returned by the trim; below the threshold
	time.Sleep(2 * interval)
	if n := tr.trims.Load(); n != 1 {
		t.Fatalf("%d trims with 1 MiB retained (threshold 8 MiB)", n)
	}
	retained.Store(32 << 20) // a second burst's garbage
	waitFor(t, "a second trim", func() bool { return tr.trims.Load() == 2 })
	if d := time.Since(first); d < interval-tr.period {
		t.Errorf("second trim %v after the first, interval %v", d, interval)
	}
}

// TestTrimmerOff: interval 0 never trims, and run returns at once.
func TestTrimmerOff(t *testing.T) {
	tr := newTrimmer(0, 1<<20, func() (int64, int64) { return 0, 0 }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	done := make(chan struct{})
	go func() { tr.run(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("run with interval 0 did not return")
	}
	if s := tr.summary(); s.MemoryTrimIntervalSeconds != 0 || s.MemoryTrims != 0 || s.HeapObjectsBytes == 0 || s.Goroutines == 0 {
		t.Errorf("summary %+v", s)
	}
}
