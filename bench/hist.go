package bench

import (
	"math"
	"math/bits"
	"time"
)

// Histogram layout. Values are nanoseconds. Below 2^subBits every value has
// its own bucket; above, each power-of-two range [2^k, 2^(k+1)) is split into
// 2^subBits equal sub-buckets, so a bucket is never wider than 1/128 of its
// lower bound: the relative error of any reported value is below 0.8%. This is
// HdrHistogram's log-linear scheme with two significant digits, written out
// because recording must be one shift, one mask and one increment.
const (
	histSubBits  = 7
	histSubCount = 1 << histSubBits
	// histMaxExp is the largest power-of-two exponent tracked: values up to
	// 2^36-1 ns (about 68.7 s, comfortably above the 60 s the suite needs).
	// Larger values are clamped into the last bucket; Max stays exact.
	histMaxExp  = 35
	histBuckets = (histMaxExp - histSubBits + 2) * histSubCount
)

// Histogram records latencies with bounded relative error and constant
// memory (about 15 KiB). It is not safe for concurrent use: the load
// generator gives every connection its own Histogram, records without any
// synchronisation, and merges them once the run is over.
type Histogram struct {
	// counts uses 32-bit cells to halve the footprint of per-connection
	// histograms (1000 connections = 15 MiB, not 30): no run of this suite
	// gets near 2^32 responses in one bucket, and Merge saturates rather
	// than wraps if one ever did.
	counts [histBuckets]uint32
	total  uint64
	sum    uint64 // ns; overflows only after ~584 years of latency
	min    uint64
	max    uint64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{min: math.MaxUint64}
}

// histIndex maps a value in nanoseconds to its bucket.
func histIndex(v uint64) int {
	if v < histSubCount {
		return int(v)
	}
	k := bits.Len64(v) - 1 // v in [2^k, 2^(k+1)), k >= histSubBits
	if k > histMaxExp {
		return histBuckets - 1
	}
	sub := (v >> uint(k-histSubBits)) & (histSubCount - 1)
	return (k-histSubBits+1)*histSubCount + int(sub)
}

// histBucketRange returns the lowest value of bucket i and its width.
func histBucketRange(i int) (lo, width uint64) {
	if i < histSubCount {
		return uint64(i), 1
	}
	k := i/histSubCount + histSubBits - 1
	sub := uint64(i % histSubCount)
	width = 1 << uint(k-histSubBits)
	return (1<<uint(k) + sub*width), width
}

// Record adds one observation. Negative durations (a clock step would be the
// only cause; time.Since is monotonic) are recorded as zero.
func (h *Histogram) Record(d time.Duration) {
	var v uint64
	if d > 0 {
		v = uint64(d)
	}
	h.counts[histIndex(v)]++
	h.total++
	h.sum += v
	if v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
}

// Merge adds all observations of o into h. A cell that would overflow its 32
// bits saturates; that needs more than four billion requests in one latency
// bucket of one run and is not a case the suite can reach.
func (h *Histogram) Merge(o *Histogram) {
	if o.total == 0 {
		return
	}
	for i, c := range o.counts {
		if c == 0 {
			continue
		}
		s := uint64(h.counts[i]) + uint64(c)
		if s > math.MaxUint32 {
			s = math.MaxUint32
		}
		h.counts[i] = uint32(s)
	}
	h.total += o.total
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Count returns the number of recorded observations.
func (h *Histogram) Count() uint64 { return h.total }

// Max returns the largest observation exactly (not bucketed).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Min returns the smallest observation exactly, or 0 if there is none.
func (h *Histogram) Min() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.min)
}

// Mean returns the arithmetic mean, or 0 if there are no observations.
func (h *Histogram) Mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.sum / h.total)
}

// Quantile returns the value below or at which a fraction q (0..1) of the
// observations fall: the midpoint of the bucket holding the ceil(q*n)-th
// smallest observation, clamped to the exact Min and Max so that p100 is the
// true maximum and a single-valued histogram reports that value.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := uint64(math.Ceil(q * float64(h.total)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			lo, w := histBucketRange(i)
			v := lo + w/2
			v = min(max(v, h.min), h.max)
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}
