package auth

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

var (
	addr1 = netip.MustParseAddr("192.0.2.1")
	addr2 = netip.MustParseAddr("192.0.2.2")
)

const sec = int64(time.Second)

func TestThrottlePairLimit(t *testing.T) {
	th := NewThrottle(ThrottleConfig{MaxFailures: 3, MaxAddressFailures: 100, Window: time.Minute})
	alice, bob := []byte("alice"), []byte("bob")
	now := 1000 * sec
	for i := range 3 {
		if _, ok := th.Check(alice, addr1, now); !ok {
			t.Fatalf("refused after %d failures", i)
		}
		th.Failure(alice, addr1, now)
		now += sec
	}
	// Three failures, the first at 1000s: refused until 1060s.
	retry, ok := th.Check(alice, addr1, now)
	if ok || retry != 57*time.Second {
		t.Fatalf("after 3 failures at 1003s: %v, %v; want 57s, false", retry, ok)
	}
	if retry, ok := th.Check([]byte("ALICE"), addr1, now); ok || retry <= 0 || retry > time.Minute {
		t.Errorf("other case of the same name: %v, %v; want refused", retry, ok)
	}
	if _, ok := th.Check(alice, addr2, now); !ok {
		t.Error("the user is locked out from another address")
	}
	if _, ok := th.Check(bob, addr1, now); !ok {
		t.Error("another user is refused at the address")
	}
	if _, ok := th.Check(alice, addr1, 1060*sec-1); ok {
		t.Error("allowed before the window closed")
	}
	if _, ok := th.Check(alice, addr1, 1060*sec); !ok {
		t.Error("refused when the window closed")
	}
	// A failure after the window opens a new one with a count of one.
	th.Failure(alice, addr1, 1060*sec)
	if _, ok := th.Check(alice, addr1, 1060*sec); !ok {
		t.Error("refused after one failure in a new window")
	}
	st := th.Stats()
	if st.Throttled != 3 || st.Failures != 4 || st.Pairs != 1 || st.Addresses != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestThrottleAddressLimit(t *testing.T) {
	th := NewThrottle(ThrottleConfig{MaxFailures: 5, MaxAddressFailures: 10, Window: time.Minute})
	now := 50 * sec
	for i := range 10 {
		th.Failure(fmt.Appendf(nil, "user%d", i), addr1, now)
	}
	retry, ok := th.Check([]byte("someone-else"), addr1, now+10*sec)
	if ok || retry != 50*time.Second {
		t.Fatalf("spraying address: %v, %v; want 50s, false", retry, ok)
	}
	if _, ok := th.Check([]byte("someone-else"), addr2, now); !ok {
		t.Error("another address is refused")
	}
	// Success clears the pair, not the address: a valid account does not
	// buy more guesses at the others.
	th.Success([]byte("user0"), addr1)
	if _, ok := th.Check([]byte("user0"), addr1, now); ok {
		t.Error("Success reset the address count")
	}
	if _, ok := th.Check([]byte("x"), addr1, now+time.Minute.Nanoseconds()); !ok {
		t.Error("refused after the window")
	}
}

func TestThrottleSuccessClearsPair(t *testing.T) {
	th := NewThrottle(ThrottleConfig{MaxFailures: 2})
	th.Failure([]byte("alice"), addr1, 0)
	th.Success([]byte("Alice"), addr1)
	th.Failure([]byte("alice"), addr1, 0)
	if _, ok := th.Check([]byte("alice"), addr1, 0); !ok {
		t.Error("the failure before Success still counts")
	}
	if st := th.Stats(); st.Pairs != 1 {
		t.Errorf("%d pairs", st.Pairs)
	}
}

// IPv6 clients count per /64 by default; an IPv4-mapped address is the
// IPv4 address.
func TestThrottleAddressIdentity(t *testing.T) {
	th := NewThrottle(ThrottleConfig{MaxFailures: 1, MaxAddressFailures: 100})
	u := []byte("alice")
	th.Failure(u, netip.MustParseAddr("2001:db8:1:2::1"), 0)
	if _, ok := th.Check(u, netip.MustParseAddr("2001:db8:1:2:ffff::7"), 0); ok {
		t.Error("another address in the same /64 is a new client")
	}
	if _, ok := th.Check(u, netip.MustParseAddr("fe80::1%eth0"), 0); !ok {
		t.Error("unrelated link-local address refused")
	}
	if _, ok := th.Check(u, netip.MustParseAddr("2001:db8:1:3::1"), 0); !ok {
		t.Error("the next /64 is refused")
	}
	th.Failure(u, addr1, 0)
	if _, ok := th.Check(u, netip.MustParseAddr("::ffff:192.0.2.1"), 0); ok {
		t.Error("IPv4-mapped address counted apart from the IPv4 address")
	}

	exact := NewThrottle(ThrottleConfig{MaxFailures: 1, IPv6PrefixLen: 128})
	exact.Failure(u, netip.MustParseAddr("2001:db8::1"), 0)
	if _, ok := exact.Check(u, netip.MustParseAddr("2001:db8::2"), 0); !ok {
		t.Error("with /128, a neighbouring address is refused")
	}
}

func TestThrottleBound(t *testing.T) {
	minute := time.Minute.Nanoseconds()
	// One shard of 16: reuse of closed windows is deterministic.
	small := NewThrottle(ThrottleConfig{MaxEntries: 16, Window: time.Minute})
	for i := range 16 {
		small.Failure(fmt.Appendf(nil, "u%d", i), addr1, 0)
	}
	for i := range 16 {
		small.Failure(fmt.Appendf(nil, "v%d", i), addr1, 2*minute)
	}
	if st := small.Stats(); st.Evictions != 0 || st.Pairs != 16 {
		t.Fatalf("closed windows were not reused first: %+v", st)
	}
	for i := range 16 {
		small.Failure(fmt.Appendf(nil, "w%d", i), addr1, 2*minute+1)
	}
	if st := small.Stats(); st.Evictions != 16 || st.Pairs != 16 {
		t.Fatalf("live windows evicted: %+v, want 16", st)
	}

	// Many shards, many more clients than room.
	th := NewThrottle(ThrottleConfig{MaxEntries: 256, Window: time.Minute})
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}) }
	const n = 10000
	for i := range n {
		th.Failure(fmt.Appendf(nil, "w%d", i), addr(i), int64(i))
		if i%500 == 0 {
			if st := th.Stats(); st.Pairs > 256 || st.Addresses > 256 {
				t.Fatalf("table grew past its bound: %+v", st)
			}
		}
	}
	st := th.Stats()
	if st.Pairs > 256 || st.Addresses > 256 || st.Evictions < 2*(n-256) {
		t.Fatalf("stats %+v", st)
	}
	// The oldest windows go first: the newest are all still counted.
	for i := n - 50; i < n; i++ {
		if _, cnt := th.pairs.count(mustPair(th, fmt.Appendf(nil, "w%d", i), addr(i)), int64(n)); cnt != 1 {
			t.Fatalf("failure %d of the last 50 was evicted", i)
		}
	}
}

func mustPair(th *Throttle, user []byte, a netip.Addr) uint64 {
	p, _ := th.keys(user, a)
	return p
}

// Loops and workers share one Throttle; run with -race.
func TestThrottleConcurrent(t *testing.T) {
	th := NewThrottle(ThrottleConfig{MaxEntries: 1000})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 5000 {
				u := fmt.Appendf(nil, "u%d", i%300)
				a := netip.AddrFrom4([4]byte{198, 51, 100, byte(g*10 + i%7)})
				now := int64(i) * int64(time.Millisecond)
				if _, ok := th.Check(u, a, now); ok {
					th.Failure(u, a, now)
				}
				if i%50 == 0 {
					th.Success(u, a)
				}
			}
		})
	}
	wg.Wait()
	if st := th.Stats(); st.Pairs > 1000 || st.Addresses > 1000 || st.Failures == 0 || st.Throttled == 0 {
		t.Fatalf("stats %+v", st)
	}
}

func BenchmarkThrottleCheck(b *testing.B) {
	th := NewThrottle(ThrottleConfig{})
	user := []byte("alice@example.test")
	th.Failure(user, addr1, 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := th.Check(user, addr1, sec); !ok {
			b.Fatal("refused")
		}
	}
}

// A failure without a user name (a bad bearer token) counts against the
// address only, never as a (user, address) pair.
func TestThrottleWithoutUser(t *testing.T) {
	th := NewThrottle(ThrottleConfig{MaxFailures: 2, MaxAddressFailures: 5, Window: time.Minute, MaxEntries: 100})
	addr := netip.MustParseAddr("192.0.2.7")
	for i := 0; i < 4; i++ {
		th.Failure(nil, addr, int64(i))
	}
	if _, ok := th.Check(nil, addr, 10); !ok {
		t.Fatal("4 user-less failures throttled the address below MaxAddressFailures (5)")
	}
	th.Failure(nil, addr, 11)
	if _, ok := th.Check(nil, addr, 12); ok {
		t.Fatal("5 failures from one address did not throttle it")
	}
}
