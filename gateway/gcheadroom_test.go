package gateway

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		live, base uint64
		want       int
	}{
		// A handshake load: 1.5 MiB live, 2.6 MiB scanned. The runtime's
		// minimum goal (4 MiB x GOGC/100) decides: 17.5 MiB = live + 16.
		{3 * mib / 2, 26 * mib / 10, 437},
		// Before the first collection: nothing live yet.
		{0, 0, 400},
		// Stacks and globals large enough that the proportional goal
		// decides: 1 + 8 x 2 = 17 MiB.
		{1 * mib, 8 * mib, 200},
		// Many idle connections: GOGC=100 leaves more room already.
		{70 * mib, 72 * mib, 100},
		{16 * mib, 16 * mib, 100},
	} {
		if got := gcPercentFor(tc.live, tc.base, 16*mib); got != tc.want {
			t.Errorf("gcPercentFor(%d, %d) = %d, want %d", tc.live, tc.base, got, tc.want)
		}
	}
}

// TestGCHeadroomTunes: the headroom sets GOGC at start and again after
// collections, as the live heap changes.
func TestGCHeadroomTunes(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	gogc := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	read := func() uint64 { metrics.Read(gogc); return gogc[0].Value.Uint64() }
	runtime.GC() // what an earlier test left is not live
	h := newGCHeadroom(16 << 20)
	defer h.stop.Store(true)
	h.start()
	if g := read(); g <= 100 {
		t.Errorf("GOGC %d at start, want above 100 for a small heap", g)
	}
	// 64 MiB live: Go's default leaves room enough.
	live := make([][]byte, 64)
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		g := read()
		if g == 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GOGC %d with 64 MiB live, want 100", g)
		}
		time.Sleep(10 * time.Millisecond)
	}
	runtime.KeepAlive(live)
}
