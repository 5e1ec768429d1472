package l7

import (
	"sync/atomic"
	"time"
)

// LatencyBuckets are the upper bounds, in seconds, of every latency
// histogram's buckets (a last, unbounded bucket follows them). They span a
// local answer (well under a millisecond) to a long-polling request held by a
// mailbox server for a minute.
var LatencyBuckets = [...]float64{
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
}

// latencyBoundsNs are LatencyBuckets in nanoseconds, for Observe.
var latencyBoundsNs = func() (b [len(LatencyBuckets)]int64) {
	for i, s := range LatencyBuckets {
		b[i] = int64(s * float64(time.Second))
	}
	return b
}()

// Histogram counts durations into the fixed LatencyBuckets. Observe is a
// bucket search over 16 bounds and two atomic adds: it allocates nothing and
// takes no lock, so it can run on an event loop for every request; Read
// runs at scrape time on any goroutine.
type Histogram struct {
	counts [len(LatencyBuckets) + 1]atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	// sumMicros is the sum of the observations in microseconds, rounded:
	// nanoseconds in an int64 would wrap after 292 years of summed
	// latency, which a busy gateway (1,000 s of latency per second)
	// reaches in months.
	sumMicros atomic.Int64
}

// Observe records a duration of ns nanoseconds (a negative one counts as 0).
func (h *Histogram) Observe(ns int64) {
	if ns < 0 {
		ns = 0
	}
	i := 0
	for i < len(latencyBoundsNs) && ns > latencyBoundsNs[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumMicros.Add((ns + 500) / 1000)
}

// HistogramSnapshot is a Histogram read at one moment.
type HistogramSnapshot struct {
	// Cumulative[i] counts the observations <= LatencyBuckets[i].
	Cumulative [len(LatencyBuckets)]uint64
	// Count is every observation, the +Inf bucket included.
	Count uint64
	// Sum is the observations' total in seconds.
	Sum float64
}

// Read returns the histogram's counts. Buckets are read one by one while
// loops may be observing, so the snapshot is not a cut at one instant, but it
// is consistent with itself: Count is the sum of the buckets read.
func (h *Histogram) Read() HistogramSnapshot {
	var s HistogramSnapshot
	var run uint64
	for i := range h.counts {
		run += h.counts[i].Load()
		if i < len(s.Cumulative) {
			s.Cumulative[i] = run
		}
	}
	s.Count = run
	s.Sum = float64(h.sumMicros.Load()) / 1e6
	return s
}
