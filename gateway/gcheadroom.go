package gateway

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// The collector's headroom: a floor under the heap growth between
// collections.
//
// A full TLS handshake allocates about 40 KiB that dies with it (crypto/tls's
// key schedule, the certificate's signature, the handshake messages), while
// what the gateway keeps live under a handshake load is small: 1-2 MiB with
// 50 clients connecting again and again. Go starts a collection when the heap
// has grown by GOGC = 100% of what it scales by (the live heap, goroutine
// stacks and globals), and at least 4 MiB: at 2,500 handshakes a second that
// was 40 collections a second, each with costs that do not shrink with the
// heap (waking the background mark workers, scanning every goroutine's stack,
// the sweep), about a tenth of the gateway's CPU per handshake
// (docs/tuning.md, step 9).
//
// gcHeadroom lets the heap grow by at least gcHeadroomBytes between
// collections: after each collection it sets GOGC so that the next goal is at
// least that far above what the collector scales by, and never below 100, so
// a gateway with a large live heap (many idle connections) collects exactly as
// with the default. It costs at most gcHeadroomBytes of garbage more, which
// the memory trimmer returns after a burst as it returns any other. An
// operator's GOGC in the environment (docs/tls.md, "Memory") turns it off.
type gcHeadroom struct {
	bytes   uint64
	gogc    int // the value set last
	samples []metrics.Sample
	stop    atomic.Bool // tests: no more tuning
}

// gcHeadroomBytes is the least heap growth between collections. 16 MiB is
// what the memory trimmer leaves alone by default (memory_trim_min_bytes):
// garbage it would not return anyway.
const gcHeadroomBytes = 16 << 20

// gcMinimumHeap is the runtime's least heap goal at GOGC=100; it scales
// with GOGC (runtime/mgcpacer.go, defaultHeapMinimum).
const gcMinimumHeap = 4 << 20

var gcHeadroomOnce sync.Once

// startGCHeadroom starts the headroom for the process, once, unless GOGC is
// set in the environment. It lasts as long as the process: GOGC is the
// process's, not one gateway's.
func startGCHeadroom() {
	gcHeadroomOnce.Do(func() {
		if os.Getenv("GOGC") != "" {
			return
		}
		newGCHeadroom(gcHeadroomBytes).start()
	})
}

func newGCHeadroom(bytes uint64) *gcHeadroom {
	return &gcHeadroom{bytes: bytes, gogc: 100, samples: []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/scan/stack:bytes"},
		{Name: "/gc/scan/globals:bytes"},
	}}
}

// start tunes now and after every collection.
func (h *gcHeadroom) start() {
	h.tune()
	h.arm()
}

// gcSentinel is an object that only a cleanup refers to: it becomes garbage
// at once, so its cleanup runs after the next collection. The pointer keeps
// it out of the tiny allocator, whose blocks are shared and may outlive it.
type gcSentinel struct{ _ *byte }

// arm asks for tune to run after the next collection, and arm again.
func (h *gcHeadroom) arm() {
	runtime.AddCleanup(&gcSentinel{}, func(h *gcHeadroom) {
		if !h.stop.Load() {
			h.tune()
			h.arm()
		}
	}, h)
}

// tune sets GOGC for the next collection from what the last one left live.
// Cleanups run one at a time on one goroutine, so h needs no lock.
func (h *gcHeadroom) tune() {
	metrics.Read(h.samples)
	var v [3]uint64
	for i, s := range h.samples {
		if s.Value.Kind() == metrics.KindUint64 {
			v[i] = s.Value.Uint64()
		}
	}
	gogc := gcPercentFor(v[0], v[0]+v[1]+v[2], h.bytes)
	// A change of less than a tenth is not worth the heap lock.
	if d := gogc - h.gogc; d*10 > h.gogc || -d*10 > h.gogc {
		debug.SetGCPercent(gogc)
		h.gogc = gogc
	}
}

// gcPercentFor is the GOGC that puts the next heap goal about headroom
// above live, when GOGC=100 would put it lower: the runtime's goal is the
// larger of live + base*GOGC/100 (base: the live heap, stacks and globals)
// and gcMinimumHeap*GOGC/100, so the GOGC is the smaller of the two that
// reach live + headroom. Not below 100, Go's default.
func gcPercentFor(live, base, headroom uint64) int {
	g := (live + headroom) * 100 / gcMinimumHeap
	if base > 0 {
		g = min(g, headroom*100/base)
	}
	return int(max(g, 100))
}
