//go:build !race

// The race detector instruments memory accesses and may allocate, so the
// allocation gates run without it.

package auth

import (
	"encoding/base64"
	"net/netip"
	"testing"
)

// ParseBasic, ParseBearer and Scheme run on the event loop for every
// request that carries credentials: accepted or refused, they must not
// allocate.
func TestCredentialParsingDoesNotAllocate(t *testing.T) {
	scratch := make([]byte, BasicScratchSize)
	for _, v := range []string{
		"Basic " + base64.StdEncoding.EncodeToString([]byte("alice@example.test:correct horse battery staple")),
		"Basic " + base64.StdEncoding.EncodeToString([]byte("alice:")),
		"Basic !!!!",
		"Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2ln",
		"Negotiate YIIabc",
	} {
		b := []byte(v)
		if n := testing.AllocsPerRun(1000, func() { ParseBasic(b, scratch) }); n != 0 {
			t.Errorf("ParseBasic(%.30q): %v allocations per call, want 0", v, n)
		}
		if n := testing.AllocsPerRun(1000, func() { ParseBearer(b) }); n != 0 {
			t.Errorf("ParseBearer(%.30q): %v allocations per call, want 0", v, n)
		}
		if n := testing.AllocsPerRun(1000, func() { Scheme(b) }); n != 0 {
			t.Errorf("Scheme(%.30q): %v allocations per call, want 0", v, n)
		}
	}
}

// Every request with credentials hashes them and looks them up: neither
// may allocate, hit or miss.
func TestCacheKeyAndLookupDoNotAllocate(t *testing.T) {
	h := NewHasher()
	user, pass, long := []byte("alice@example.test"), []byte("pw"), make([]byte, 4096)
	if n := testing.AllocsPerRun(1000, func() { h.Sum2(user, pass) }); n != 0 {
		t.Errorf("Sum2: %v allocations per call, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { h.Sum1(long) }); n != 0 {
		t.Errorf("Sum1 (4 KiB): %v allocations per call, want 0", n)
	}
	c := NewCache[entry](1000)
	hit, miss := h.Sum2(user, pass), h.Sum2(user, []byte("wrong"))
	c.Put(hit, entry{User: "alice"}, 1<<62)
	if n := testing.AllocsPerRun(1000, func() { c.Get(hit, 1) }); n != 0 {
		t.Errorf("Get (hit): %v allocations per call, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { c.Get(miss, 1) }); n != 0 {
		t.Errorf("Get (miss): %v allocations per call, want 0", n)
	}
}

// Throttle.Check runs before any verification, on the loop.
func TestThrottleCheckDoesNotAllocate(t *testing.T) {
	th := NewThrottle(ThrottleConfig{MaxFailures: 1})
	user, long := []byte("Alice@Example.test"), make([]byte, 300)
	v6 := netip.MustParseAddr("2001:db8::1")
	th.Failure(user, v6, 0)
	for _, u := range [][]byte{user, long} {
		for _, a := range []netip.Addr{addr1, v6} {
			if n := testing.AllocsPerRun(1000, func() { th.Check(u, a, 1) }); n != 0 {
				t.Errorf("Check(%.20q, %v): %v allocations per call, want 0", u, a, n)
			}
		}
	}
}

// Submit runs on the loop for every cache miss.
func TestPoolSubmitDoesNotAllocate(t *testing.T) {
	p := NewPool(2, 1024)
	defer p.Close()
	job := func() {}
	if n := testing.AllocsPerRun(500, func() { p.Submit(job) }); n != 0 {
		t.Errorf("Submit: %v allocations per call, want 0", n)
	}
}
