package auth

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
)

// Cache remembers verification results for a while, so that the event loop
// pays for verifying a credential once per lifetime of the entry and every
// other request with it is a lookup. It is safe for concurrent use by all
// loops and workers.
//
// Memory is bounded: the entry count never exceeds Cap, and every slot and
// the index are allocated up front by NewCache, about 130 bytes per entry
// plus the size of V (a string and a time.Time take 40). The cache is split
// into up to 64 shards, each with its own lock, so loops rarely wait on one
// another; a lock is held only for a map lookup and a copy of V. Within a
// shard, an entry is replaced by the CLOCK algorithm (second chance): the
// hand passes over entries read since it last came by, and takes the first
// one that was not, or that has expired. An entry that is put and never
// read again is the first to go, so a stream of one-off credentials cannot
// flush the ones in use.
//
// Times are int64 nanoseconds on a clock of the caller's choosing (the
// loops' monotonic clock); Get's now and Put's expires must use the same one.
//
// Cache stores only what it is given: see the package documentation on
// caching rejections.
type Cache[V any] struct {
	shards   []cacheShard[V]
	mask     uint64
	perShard int
}

type cacheShard[V any] struct {
	mu    sync.Mutex
	index map[Key]int32
	slots []cacheSlot[V]
	hand  int32
	// now is the latest time a Get passed in: Put has no clock, and uses it
	// only to tell, when it replaces an entry, whether that entry had
	// expired (counted as an expiration) or not (an eviction).
	now int64

	hits, misses, evictions, expirations atomic.Uint64

	// Keeps the next shard's lock and counters off this shard's cache line.
	_ [64]byte
}

type cacheSlot[V any] struct {
	key     Key
	val     V
	expires int64
	used    bool
	ref     bool // read since the CLOCK hand last passed
}

// CacheStats are a Cache's counters. Hits and misses count Gets; an expired
// entry found by Get counts as a miss and an expiration.
type CacheStats struct {
	Entries     int
	Hits        uint64
	Misses      uint64
	Evictions   uint64 // live entries replaced to make room
	Expirations uint64 // entries dropped because their time had passed
}

const (
	maxCacheShards = 64
	// minShardEntries keeps small caches in few shards, where the CLOCK
	// has room to choose.
	minShardEntries = 16
)

// NewCache returns a Cache of at most maxEntries entries (at least one).
// Cap reports the exact capacity, which rounding to equal shards may make
// up to 63 entries smaller than maxEntries.
func NewCache[V any](maxEntries int) *Cache[V] {
	if maxEntries < 1 {
		maxEntries = 1
	}
	n := 1
	for n*2 <= maxCacheShards && n*2*minShardEntries <= maxEntries {
		n *= 2
	}
	c := &Cache[V]{shards: make([]cacheShard[V], n), mask: uint64(n - 1), perShard: maxEntries / n}
	for i := range c.shards {
		s := &c.shards[i]
		s.index = make(map[Key]int32, c.perShard)
		s.slots = make([]cacheSlot[V], c.perShard)
	}
	return c
}

// shard picks a key's shard from its first bytes: Keys are HMAC outputs,
// uniformly distributed, so no further mixing is needed.
func (c *Cache[V]) shard(key *Key) *cacheShard[V] {
	return &c.shards[binary.LittleEndian.Uint64(key[:8])&c.mask]
}

// Get returns the value stored under key if it has not expired at now. It
// does not allocate.
func (c *Cache[V]) Get(key Key, now int64) (v V, ok bool) {
	s := c.shard(&key)
	s.mu.Lock()
	if now > s.now {
		s.now = now
	}
	i, found := s.index[key]
	if !found {
		s.mu.Unlock()
		s.misses.Add(1)
		return v, false
	}
	sl := &s.slots[i]
	if now >= sl.expires {
		s.drop(i)
		s.mu.Unlock()
		s.expirations.Add(1)
		s.misses.Add(1)
		return v, false
	}
	sl.ref = true
	v = sl.val
	s.mu.Unlock()
	s.hits.Add(1)
	return v, true
}

// Put stores v under key until expires, replacing any value key had. When
// the shard is full it makes room as described on Cache.
func (c *Cache[V]) Put(key Key, v V, expires int64) {
	s := c.shard(&key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, found := s.index[key]; found {
		sl := &s.slots[i]
		sl.val, sl.expires = v, expires
		return
	}
	i := s.victim()
	sl := &s.slots[i]
	if sl.used {
		delete(s.index, sl.key)
		if sl.expires <= s.now {
			s.expirations.Add(1)
		} else {
			s.evictions.Add(1)
		}
	}
	*sl = cacheSlot[V]{key: key, val: v, expires: expires, used: true}
	s.index[key] = i
}

// Delete removes key's entry, if any: for a credential known to be revoked.
func (c *Cache[V]) Delete(key Key) {
	s := c.shard(&key)
	s.mu.Lock()
	if i, found := s.index[key]; found {
		s.drop(i)
	}
	s.mu.Unlock()
}

// victim advances the CLOCK hand to the slot to fill: a free or expired
// one, or else the first not read since the hand last passed. It clears
// read marks as it goes, so it stops within two turns.
func (s *cacheShard[V]) victim() int32 {
	for {
		i := s.hand
		if s.hand++; int(s.hand) == len(s.slots) {
			s.hand = 0
		}
		sl := &s.slots[i]
		if !sl.used || sl.expires <= s.now {
			return i
		}
		if !sl.ref {
			return i
		}
		sl.ref = false
	}
}

// drop frees slot i, zeroing it so that V's references are released.
func (s *cacheShard[V]) drop(i int32) {
	delete(s.index, s.slots[i].key)
	s.slots[i] = cacheSlot[V]{}
}

// Len returns the number of entries, expired ones not yet dropped included.
func (c *Cache[V]) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.index)
		s.mu.Unlock()
	}
	return n
}

// Cap returns the most entries the Cache holds.
func (c *Cache[V]) Cap() int { return len(c.shards) * c.perShard }

// Stats returns the counters, summed over shards.
func (c *Cache[V]) Stats() CacheStats {
	st := CacheStats{Entries: c.Len()}
	for i := range c.shards {
		s := &c.shards[i]
		st.Hits += s.hits.Load()
		st.Misses += s.misses.Load()
		st.Evictions += s.evictions.Load()
		st.Expirations += s.expirations.Load()
	}
	return st
}
