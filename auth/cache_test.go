package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
)

// The Hasher is HMAC-SHA256 over the documented encoding: checked against
// crypto/hmac, an independent implementation.
func TestHasherIsHMAC(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	h := newHasher(secret)
	enc := func(parts ...[]byte) []byte {
		m := append([]byte(hasherDomain), byte(len(parts)))
		for _, p := range parts {
			m = binary.BigEndian.AppendUint64(m, uint64(len(p)))
			m = append(m, p...)
		}
		return m
	}
	mac := func(m []byte) (k Key) {
		x := hmac.New(sha256.New, secret)
		x.Write(m)
		copy(k[:], x.Sum(nil))
		return k
	}
	if got, want := h.Sum2([]byte("alice"), []byte("pw")), mac(enc([]byte("alice"), []byte("pw"))); got != want {
		t.Errorf("Sum2 = %x, want %x", got, want)
	}
	long := make([]byte, 5000) // several blocks
	if got, want := h.Sum1(long), mac(enc(long)); got != want {
		t.Errorf("Sum1 = %x, want %x", got, want)
	}
}

func TestHasherSeparatesParts(t *testing.T) {
	h := NewHasher()
	keys := map[Key]string{}
	for _, tc := range []struct {
		name string
		k    Key
	}{
		{`("ab","c")`, h.Sum2([]byte("ab"), []byte("c"))},
		{`("a","bc")`, h.Sum2([]byte("a"), []byte("bc"))},
		{`("abc","")`, h.Sum2([]byte("abc"), nil)},
		{`("","abc")`, h.Sum2(nil, []byte("abc"))},
		{`("abc")`, h.Sum1([]byte("abc"))},
		{`("")`, h.Sum1(nil)},
		{`("","")`, h.Sum2(nil, nil)},
	} {
		if prev, dup := keys[tc.k]; dup {
			t.Errorf("%s and %s have the same key", prev, tc.name)
		}
		keys[tc.k] = tc.name
	}
	if h.Sum2([]byte("a"), []byte("b")) != h.Sum2([]byte("a"), []byte("b")) {
		t.Error("not deterministic")
	}
	if NewHasher().Sum2([]byte("a"), []byte("b")) == h.Sum2([]byte("a"), []byte("b")) {
		t.Error("two Hashers agree: the secret is not random")
	}
}

type entry struct {
	User string
	N    int
}

// testKeys returns n distinct, uniformly spread keys.
func testKeys(n int) []Key {
	h := newHasher([]byte("test"))
	keys := make([]Key, n)
	for i := range keys {
		keys[i] = h.Sum1(fmt.Appendf(nil, "token-%d", i))
	}
	return keys
}

func TestCacheGetPut(t *testing.T) {
	c := NewCache[entry](1000)
	k := testKeys(2)
	if _, ok := c.Get(k[0], 0); ok {
		t.Fatal("hit in an empty cache")
	}
	c.Put(k[0], entry{"alice", 1}, 100)
	if v, ok := c.Get(k[0], 99); !ok || v.User != "alice" {
		t.Fatalf("Get before expiry = %v, %v", v, ok)
	}
	if _, ok := c.Get(k[1], 99); ok {
		t.Fatal("hit for another key")
	}
	c.Put(k[0], entry{"alice", 2}, 200) // replaces in place
	if v, _ := c.Get(k[0], 150); v.N != 2 || c.Len() != 1 {
		t.Fatalf("after replacing: %v, Len %d", v, c.Len())
	}
	if _, ok := c.Get(k[0], 200); ok {
		t.Fatal("hit at the expiry time")
	}
	if c.Len() != 0 {
		t.Fatalf("expired entry kept: Len %d", c.Len())
	}
	c.Put(k[1], entry{"bob", 1}, 1000)
	c.Delete(k[1])
	if _, ok := c.Get(k[1], 0); ok {
		t.Fatal("hit after Delete")
	}
	st := c.Stats()
	if st.Hits != 2 || st.Misses != 4 || st.Expirations != 1 || st.Evictions != 0 || st.Entries != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCacheBound(t *testing.T) {
	for _, max := range []int{1, 5, 100, 1000, 100000} {
		c := NewCache[entry](max)
		if c.Cap() > max || c.Cap() < max-63 || c.Cap() < 1 {
			t.Errorf("NewCache(%d).Cap() = %d", max, c.Cap())
		}
		keys := testKeys(3*max + 10)
		for i, k := range keys {
			c.Put(k, entry{N: i}, 1<<62)
			if i%97 == 0 && c.Len() > c.Cap() {
				t.Fatalf("max %d: Len %d > Cap %d", max, c.Len(), c.Cap())
			}
		}
		st := c.Stats()
		if st.Entries != c.Cap() {
			// Every shard fills before it evicts, so a full cache is full.
			t.Errorf("max %d: %d entries after %d puts, want Cap %d", max, st.Entries, len(keys), c.Cap())
		}
		if want := uint64(len(keys) - c.Cap()); st.Evictions != want {
			t.Errorf("max %d: %d evictions, want %d", max, st.Evictions, want)
		}
	}
}

// The CLOCK gives an entry that was read a second chance over one that
// was not, and takes expired entries before live ones.
func TestCacheReplacement(t *testing.T) {
	c := NewCache[entry](4) // one shard of four
	if len(c.shards) != 1 || c.Cap() != 4 {
		t.Fatalf("%d shards, Cap %d", len(c.shards), c.Cap())
	}
	k := testKeys(8)
	for i := range 4 {
		c.Put(k[i], entry{N: i}, 1000)
	}
	c.Get(k[0], 1) // read: survives the next replacement
	c.Put(k[4], entry{N: 4}, 1000)
	if _, ok := c.Get(k[0], 1); !ok {
		t.Error("the entry just read was evicted")
	}
	if _, ok := c.Get(k[1], 1); ok {
		t.Error("the oldest unread entry survived")
	}
	if st := c.Stats(); st.Evictions != 1 {
		t.Errorf("%d evictions, want 1", st.Evictions)
	}

	// k[2] expires at 10 and was read before; once a Get has shown the
	// shard time 10, the hand takes it, with no second chance, before the
	// live k[4] that was not read, and counts an expiration.
	c.Put(k[2], entry{N: 2}, 10)
	c.Get(k[2], 5)
	c.Get(k[3], 10)
	c.Get(k[0], 10)
	c.Put(k[5], entry{N: 5}, 1000)
	for _, i := range []int{0, 3, 4, 5} {
		if _, ok := c.Get(k[i], 10); !ok {
			t.Errorf("k[%d] missing", i)
		}
	}
	if st := c.Stats(); st.Evictions != 1 || st.Expirations != 1 {
		t.Errorf("stats %+v, want 1 eviction and 1 expiration", st)
	}
}

// Loops and workers use one Cache at once; run with -race.
func TestCacheConcurrent(t *testing.T) {
	c := NewCache[entry](512)
	keys := testKeys(2000)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20000 {
				k := keys[(i*7+g*131)%len(keys)]
				now := int64(i)
				if v, ok := c.Get(k, now); ok && v.User != "u" {
					t.Errorf("got %+v", v)
					return
				}
				c.Put(k, entry{User: "u", N: i}, now+int64(g*50))
				if i%1000 == 0 {
					c.Delete(k)
				}
			}
		})
	}
	wg.Wait()
	if c.Len() > c.Cap() {
		t.Fatalf("Len %d > Cap %d", c.Len(), c.Cap())
	}
	st := c.Stats()
	if st.Hits+st.Misses != 8*20000 {
		t.Fatalf("hits+misses = %d, want %d", st.Hits+st.Misses, 8*20000)
	}
}

func BenchmarkHasherSum2(b *testing.B) {
	h := NewHasher()
	user, pass := []byte("alice@example.test"), []byte("correct horse battery staple")
	b.ReportAllocs()
	for b.Loop() {
		h.Sum2(user, pass)
	}
}

func BenchmarkCacheGetHit(b *testing.B) {
	c := NewCache[entry](100000)
	keys := testKeys(1024)
	for _, k := range keys {
		c.Put(k, entry{User: "alice"}, 1<<62)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := c.Get(keys[i&1023], 1); !ok {
			b.Fatal("miss")
		}
		i++
	}
}

func BenchmarkCacheGetHitParallel(b *testing.B) {
	c := NewCache[entry](100000)
	keys := testKeys(1024)
	for _, k := range keys {
		c.Put(k, entry{User: "alice"}, 1<<62)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.Get(keys[i&1023], 1)
			i++
		}
	})
}
