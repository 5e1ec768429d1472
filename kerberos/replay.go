package kerberos

import (
	"sync"
	"sync/atomic"
)

// ReplayKey identifies one authenticator: a hash of its ciphertext. Two
// AP-REQs with the same encrypted authenticator are the same message sent
// twice (RFC 4120 3.2.3: "the server MUST utilize a replay cache to
// remember any authenticator presented within the allowable clock skew").
// The ciphertext covers the client name, ctime and cusec, so this is the
// (client, time) key of RFC 4120 and more.
type ReplayKey [16]byte

// ReplayCache remembers the authenticators seen within the clock skew,
// per gateway instance and bounded in memory. An entry is needed only
// while its authenticator could pass the skew check (its ctime plus the
// skew): after that the skew check refuses it anyway. When the cache is
// full of live entries the oldest is dropped and counted (Evicted): a
// replay of that one would no longer be caught, which is why the bound
// should exceed the authentications of one skew window (the default,
// 262144, is 870 per second for 5 minutes).
//
// gokrb5's own cache (service.GetReplayCache) is process-wide, unbounded
// and cleaned by a goroutine that never stops; this one is none of those.
type ReplayCache struct {
	mu   sync.Mutex
	seen map[ReplayKey]int64 // key -> expiry, unix ns
	// ring holds the keys in insertion order, which is expiry order but
	// for clock-skewed clients: expired entries are dropped from its head.
	ring       []ReplayKey
	head, size int
	evicted    atomic.Int64
}

// NewReplayCache returns a cache of at most max entries.
func NewReplayCache(max int) *ReplayCache {
	if max < 1 {
		max = 1
	}
	return &ReplayCache{seen: make(map[ReplayKey]int64), ring: make([]ReplayKey, max)}
}

// Check records key, valid until expires (unix ns), and reports whether it
// was new; false means a replay. now is the current unix ns time.
func (c *ReplayCache) Check(key ReplayKey, expires, now int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if exp, ok := c.seen[key]; ok && exp > now {
		return false
	}
	// Drop what has expired at the head, then the oldest if still full.
	for c.size > 0 {
		old := c.ring[c.head]
		exp, ok := c.seen[old]
		if ok && exp > now && c.size < len(c.ring) {
			break
		}
		if ok && exp > now {
			c.evicted.Add(1)
		}
		delete(c.seen, old)
		c.ring[c.head] = ReplayKey{}
		c.head = (c.head + 1) % len(c.ring)
		c.size--
	}
	c.seen[key] = expires
	c.ring[(c.head+c.size)%len(c.ring)] = key
	c.size++
	return true
}

// Cap is the bound on entries the cache was made with.
func (c *ReplayCache) Cap() int { return len(c.ring) }

// Len is the number of entries held.
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// Evicted counts live entries dropped because the cache was full.
func (c *ReplayCache) Evicted() int64 { return c.evicted.Load() }
