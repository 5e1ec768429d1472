package gateway

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// The memory trimmer gives memory back to the kernel after a burst, as
// Envoy's overload manager does with its shrink_heap action.
//
// A burst of TLS handshakes allocates far more than the connections keep:
// each full handshake with X25519MLKEM768 makes tens of kilobytes of
// garbage, and 256 handshake goroutines grow their stacks. With the default
// GOGC=100 the heap grows to about twice what is live before a collection,
// and Go's background scavenger only returns memory above that goal. An
// idle gateway allocates almost nothing afterwards (the request path does
// not allocate), so no collection comes to shrink the goal: after 10,000
// TLS connections the process kept about twice the connections' live heap
// resident for as long as they stayed idle.
//
// The trimmer checks once a second. It trims (runtime/debug.FreeOSMemory:
// a full collection, then every free page returned) when
//
//   - no TLS handshake is running or queued and none finished during the
//     last check period: the burst is over, a trim now is not undone by the
//     next handshake a moment later;
//   - the heap holds at least memory_trim_min_bytes, and at least a quarter
//     of the live heap, that is not live: garbage not yet collected plus
//     free memory not yet returned (see retained);
//   - memory_trim_interval has passed since the last trim, and 50 times as
//     long as the last trim took, so that with a very large heap trims cost
//     at most about 2% of a core.
//
// A trim is a forced collection: it marks the live heap once, as the next
// automatic collection would, and the pages it returns are faulted in
// again when the heap grows back. With a steady load the heap holds little
// that is not live between collections, so the trimmer stays out of the
// way; it acts after bursts.
type trimmer struct {
	interval time.Duration
	minBytes uint64
	period   time.Duration // how often the conditions are checked
	// activity returns the TLS handshakes running or queued and a counter
	// that grows with every handshake that finishes.
	activity func() (active, finished int64)
	// read samples the heap for the trim decision: readMemory, or a
	// stand-in in tests (the background scavenger makes real free memory
	// come and go on its own schedule).
	read func() memoryState
	log  *slog.Logger

	trims    atomic.Int64 // automatic trims
	manual   atomic.Int64 // trims asked for on the admin endpoint
	released atomic.Int64 // bytes returned to the kernel by trims
	lastNS   atomic.Int64 // duration of the last trim

	mu sync.Mutex // serializes trims
}

// trimCheckPeriod is how often the trimmer looks; it is also how long the
// handshake pool must have been quiet.
const trimCheckPeriod = time.Second

// trimCostFactor bounds the share of time spent trimming: the next
// automatic trim waits at least this many times as long as the last one
// took.
const trimCostFactor = 50

func newTrimmer(interval time.Duration, minBytes int64, activity func() (int64, int64), log *slog.Logger) *trimmer {
	return &trimmer{interval: interval, minBytes: uint64(max(minBytes, 0)), period: trimCheckPeriod, activity: activity,
		read: readMemory, log: log}
}

// run trims until ctx ends; nothing when the interval is 0.
func (t *trimmer) run(ctx context.Context) {
	if t.interval <= 0 {
		return
	}
	tick := time.NewTicker(t.period)
	defer tick.Stop()
	var (
		last         time.Time // of the last automatic trim
		prevFinished int64     = -1
	)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			active, finished := t.activity()
			quiet := active == 0 && finished == prevFinished
			prevFinished = finished
			if !quiet {
				continue
			}
			wait := max(t.interval, trimCostFactor*time.Duration(t.lastNS.Load()))
			if !last.IsZero() && now.Sub(last) < wait {
				continue
			}
			if !t.wanted(t.read()) {
				continue
			}
			t.trim("auto")
			t.trims.Add(1)
			last = time.Now()
		}
	}
}

// wanted reports whether the heap holds enough that is not live for a trim
// to be worth it.
func (t *trimmer) wanted(m memoryState) bool {
	r := m.retained()
	return r >= t.minBytes && r >= m.Live/4
}

// trim collects and returns free memory now; why is logged.
func (t *trimmer) trim(why string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	before := readMemory()
	start := time.Now()
	debug.FreeOSMemory()
	took := time.Since(start)
	after := readMemory()
	t.lastNS.Store(int64(took))
	released := int64(after.Released) - int64(before.Released)
	if released > 0 {
		t.released.Add(released)
	}
	t.log.Debug("memory trimmed", "trigger", why, "retained_before", before.retained(),
		"live", after.Live, "released", released, "took", took)
}

// memoryState is what the trimmer and /stats read from runtime/metrics.
type memoryState struct {
	// Live is the heap that survived the last collection.
	Live uint64
	// Objects is the memory of heap objects, live and dead not yet
	// collected; Unused the unused space in the heap's in-use spans;
	// Free the free spans not yet returned to the kernel; Released what
	// was returned.
	Objects, Unused, Free, Released uint64
	// Stacks is goroutine stack memory; Total all memory mapped by the
	// runtime.
	Stacks, Total uint64
	// GCs counts completed collections; Goal is the heap size at which
	// the next one starts.
	GCs, Goal uint64
}

// retained is the heap memory that is not live and still resident:
// garbage since the last collection, unused span space, free spans. A trim
// returns most of it (what is free in spans that still hold live objects
// stays).
func (m memoryState) retained() uint64 {
	held := m.Objects + m.Unused + m.Free
	if held < m.Live {
		return 0
	}
	return held - m.Live
}

var memorySamples = []metrics.Sample{
	{Name: "/gc/heap/live:bytes"},
	{Name: "/memory/classes/heap/objects:bytes"},
	{Name: "/memory/classes/heap/unused:bytes"},
	{Name: "/memory/classes/heap/free:bytes"},
	{Name: "/memory/classes/heap/released:bytes"},
	{Name: "/memory/classes/heap/stacks:bytes"},
	{Name: "/memory/classes/total:bytes"},
	{Name: "/gc/cycles/total:gc-cycles"},
	{Name: "/gc/heap/goal:bytes"},
}

var memoryMu sync.Mutex // guards memorySamples

func readMemory() memoryState {
	memoryMu.Lock()
	defer memoryMu.Unlock()
	metrics.Read(memorySamples)
	v := func(i int) uint64 {
		if memorySamples[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return memorySamples[i].Value.Uint64()
	}
	return memoryState{
		Live: v(0), Objects: v(1), Unused: v(2), Free: v(3), Released: v(4),
		Stacks: v(5), Total: v(6), GCs: v(7), Goal: v(8),
	}
}

// RuntimeSummary is the process's memory on /stats, from runtime/metrics,
// and the memory trimmer's counters.
type RuntimeSummary struct {
	// HeapLiveBytes is the heap that survived the last collection.
	HeapLiveBytes uint64 `json:"heap_live_bytes"`
	// HeapObjectsBytes counts live objects and garbage not yet collected;
	// HeapUnusedBytes unused space in in-use spans; HeapFreeBytes free
	// memory not yet returned to the kernel; HeapReleasedBytes memory
	// returned.
	HeapObjectsBytes  uint64 `json:"heap_objects_bytes"`
	HeapUnusedBytes   uint64 `json:"heap_unused_bytes"`
	HeapFreeBytes     uint64 `json:"heap_free_bytes"`
	HeapReleasedBytes uint64 `json:"heap_released_bytes"`
	// HeapRetainedBytes is what a trim could return: heap memory that is
	// neither live nor released.
	HeapRetainedBytes uint64 `json:"heap_retained_bytes"`
	HeapGoalBytes     uint64 `json:"heap_goal_bytes"`
	StackBytes        uint64 `json:"stack_bytes"`
	// RuntimeTotalBytes is all memory the Go runtime has mapped (an upper
	// bound of its share of RSS).
	RuntimeTotalBytes uint64 `json:"runtime_total_bytes"`
	GCCycles          uint64 `json:"gc_cycles"`
	Goroutines        int    `json:"goroutines"`
	// MemoryTrimIntervalSeconds is [runtime] memory_trim_interval (0: off).
	MemoryTrimIntervalSeconds float64 `json:"memory_trim_interval_s"`
	// MemoryTrimWanted says the heap retains enough for the trimmer to trim
	// once no handshake has run for a second and the interval allows
	// (whether or not the trimmer is on).
	MemoryTrimWanted bool `json:"memory_trim_wanted"`
	// MemoryTrims counts automatic trims, MemoryTrimsManual those asked
	// for on the admin endpoint; MemoryTrimmedBytes is what all of them
	// returned to the kernel.
	MemoryTrims        int64 `json:"memory_trims"`
	MemoryTrimsManual  int64 `json:"memory_trims_manual"`
	MemoryTrimmedBytes int64 `json:"memory_trimmed_bytes"`
}

func (t *trimmer) summary() RuntimeSummary {
	m := readMemory()
	return RuntimeSummary{
		HeapLiveBytes: m.Live, HeapObjectsBytes: m.Objects, HeapUnusedBytes: m.Unused,
		HeapFreeBytes: m.Free, HeapReleasedBytes: m.Released, HeapRetainedBytes: m.retained(),
		HeapGoalBytes: m.Goal, StackBytes: m.Stacks, RuntimeTotalBytes: m.Total, GCCycles: m.GCs,
		Goroutines:                runtime.NumGoroutine(),
		MemoryTrimIntervalSeconds: t.interval.Seconds(),
		MemoryTrimWanted:          t.wanted(m),
		MemoryTrims:               t.trims.Load(),
		MemoryTrimsManual:         t.manual.Load(),
		MemoryTrimmedBytes:        t.released.Load(),
	}
}
