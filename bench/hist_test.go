package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	// Every value must land in a bucket whose range contains it, and the
	// bucket's width must be within 1/128 of the value.
	for _, v := range []uint64{0, 1, 127, 128, 129, 255, 256, 257, 1000, 12345, 1 << 20, 60e9, 1<<36 - 1} {
		i := histIndex(v)
		lo, w := histBucketRange(i)
		if v < lo || v >= lo+w {
			t.Errorf("value %d in bucket %d = [%d,%d)", v, i, lo, lo+w)
		}
		if v >= histSubCount && float64(w)/float64(v) > 1.0/histSubCount {
			t.Errorf("value %d: bucket width %d too coarse", v, w)
		}
	}
	if histIndex(1<<40) != histBuckets-1 {
		t.Error("values beyond the range are not clamped into the last bucket")
	}
	// Buckets are contiguous: bucket i+1 starts where bucket i ends.
	for i := 0; i < histBuckets-1; i++ {
		lo, w := histBucketRange(i)
		next, _ := histBucketRange(i + 1)
		if lo+w != next {
			t.Fatalf("bucket %d ends at %d, bucket %d starts at %d", i, lo+w, i+1, next)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 100000
	vals := make([]time.Duration, n)
	a, b := NewHistogram(), NewHistogram()
	for i := range vals {
		// Log-uniform between 1 us and 1 s: exercises many buckets.
		v := time.Duration(1e3 * math.Pow(10, rng.Float64()*6))
		vals[i] = v
		if i%2 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	h := NewHistogram()
	h.Merge(a)
	h.Merge(b)
	slices.Sort(vals)
	if h.Count() != n {
		t.Fatalf("count %d", h.Count())
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := vals[int(q*n)-1]
		got := h.Quantile(q)
		if rel := float64(got-exact) / float64(exact); rel > 0.01 || rel < -0.01 {
			t.Errorf("q%.3f = %v, exact %v (%.2f%% off)", q, got, exact, rel*100)
		}
	}
	if h.Max() != vals[n-1] || h.Quantile(1) != vals[n-1] {
		t.Errorf("max %v / q1 %v, want %v", h.Max(), h.Quantile(1), vals[n-1])
	}
	if h.Min() != vals[0] {
		t.Errorf("min %v, want %v", h.Min(), vals[0])
	}
}

func TestHistogramSingleValue(t *testing.T) {
	h := NewHistogram()
	for range 10 {
		h.Record(123456 * time.Nanosecond)
	}
	if q := h.Quantile(0.5); q != 123456 {
		t.Errorf("p50 of a constant = %v", q)
	}
	if NewHistogram().Quantile(0.5) != 0 {
		t.Error("empty histogram quantile not 0")
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	h := NewHistogram()
	b.ReportAllocs()
	d := time.Duration(0)
	for b.Loop() {
		d += 997
		h.Record(d % (10 * time.Millisecond))
	}
}
