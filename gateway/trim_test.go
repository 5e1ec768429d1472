package gateway

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

var garbageSink [][]byte

// makeGarbage allocates n bytes, drops them and collects: the memory is
// then free but retained, as after a burst once a collection has run.
// (Garbage that was live at the last collection does not count as
// retained until the next one: the trimmer errs towards not trimming.)
func makeGarbage(n int) {
	for i := 0; i < n>>20; i++ {
		garbageSink = append(garbageSink, make([]byte, 1<<20))
	}
	garbageSink = nil
	runtime.GC()
}

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
// period; none sooner than the interval after the last.
func TestTrimmerAfterHandshakeBurst(t *testing.T) {
	var active, finished atomic.Int64
	active.Store(3)
	const interval = 150 * time.Millisecond
	// The threshold is well below the 32 MiB bursts and well above what
	// the runtime and the test's own goroutines leave between checks (a
	// 1 MiB threshold saw a third trim in 1 run of 4).
	tr := newTrimmer(interval, 8<<20, func() (int64, int64) { return active.Load(), finished.Load() },
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	tr.period = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	makeGarbage(32 << 20)
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
	if tr.released.Load() <= 0 {
		t.Errorf("trim released %d bytes after 32 MiB of garbage", tr.released.Load())
	}
	makeGarbage(32 << 20)
	waitFor(t, "a second trim", func() bool { return tr.trims.Load() == 2 })
	if d := time.Since(first); d < interval-tr.period {
		t.Errorf("second trim %v after the first, interval %v", d, interval)
	}
	// Nothing left to trim: no third one.
	time.Sleep(2 * interval)
	if n := tr.trims.Load(); n != 2 {
		t.Errorf("%d trims without new garbage", n)
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
