package l7

import (
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{
		-time.Second,           // clamped to 0: first bucket
		500 * time.Microsecond, // on a bound: that bucket (le is inclusive)
		501 * time.Microsecond, // just above: the next
		time.Second,            // le=1
		2 * time.Minute,        // past the last bound: +Inf only
	} {
		h.Observe(int64(d))
	}
	s := h.Read()
	want := map[float64]uint64{0.0005: 2, 0.001: 3, 0.5: 3, 1: 4, 60: 4}
	for i, le := range LatencyBuckets {
		if w, ok := want[le]; ok && s.Cumulative[i] != w {
			t.Errorf("le=%v: %d, want %d", le, s.Cumulative[i], w)
		}
	}
	if s.Count != 5 {
		t.Errorf("count %d, want 5", s.Count)
	}
	wantSum := (500 + 501 + 1e6 + 120e6) / 1e6
	if d := s.Sum - wantSum; d > 1e-6 || d < -1e-6 {
		t.Errorf("sum %v, want %v", s.Sum, wantSum)
	}
}

func TestHistogramObserveAllocatesNothing(t *testing.T) {
	var h Histogram
	if n := testing.AllocsPerRun(1000, func() { h.Observe(12345) }); n != 0 {
		t.Fatalf("%v allocations per Observe", n)
	}
}
