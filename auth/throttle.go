package auth

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// ThrottleConfig configures a Throttle. Zero fields take the defaults.
type ThrottleConfig struct {
	// MaxFailures is how many failed logins one user name may have from
	// one address in a window before that pair is refused. Default 5.
	MaxFailures int
	// MaxAddressFailures is how many failed logins one address may have in
	// a window, whatever the user names, before it is refused: the limit on
	// one client trying many accounts (password spraying). Set it with
	// shared egress in mind: an office behind one NAT address fails as
	// one. Default 20.
	MaxAddressFailures int
	// Window is how long failures count: a window opens at the first
	// failure of a pair (or address) and its count resets when it has
	// passed. Default 5 minutes.
	Window time.Duration
	// MaxEntries bounds each of the two tables (pairs and addresses).
	// Default 100000; each entry costs about 60 bytes with its index.
	MaxEntries int
	// IPv6PrefixLen is how many leading bits of an IPv6 address identify
	// one client: a single host is commonly given a whole /64 (RFC 6177),
	// so counting per /128 would let it pick a fresh address per guess.
	// Default 64; 128 counts single addresses.
	IPv6PrefixLen int
}

func (c *ThrottleConfig) setDefaults() {
	if c.MaxFailures <= 0 {
		c.MaxFailures = 5
	}
	if c.MaxAddressFailures <= 0 {
		c.MaxAddressFailures = 20
	}
	if c.Window <= 0 {
		c.Window = 5 * time.Minute
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = 100000
	}
	if c.IPv6PrefixLen <= 0 || c.IPv6PrefixLen > 128 {
		c.IPv6PrefixLen = 64
	}
}

// Throttle limits password guessing. It counts failed logins per (user
// name, client address) and per client address, in fixed windows, and
// refuses further attempts from a pair or an address that has reached its
// limit until its window closes. It is safe for concurrent use; Check does
// not allocate.
//
// There is deliberately no limit per user name alone: one would let anyone
// lock any user out (the CEO, the helpdesk) from everywhere by failing on
// purpose. A user throttled from one address can still log in from any
// other. Slow guessing at one account from many addresses is therefore not
// stopped here; that is the directory's account-lockout policy's job.
//
// User names are compared with ASCII case folded, so "Alice" and "alice"
// share a count (the directory matches them alike, and a guesser would
// otherwise get a fresh budget per spelling). Other spellings of one
// account (DOMAIN\user, user@domain) are the caller's to canonicalize.
//
// Memory is bounded by MaxEntries per table, allocated up front. When a
// shard is full, a new entry takes the slot of an expired window if one is
// near the replacement hand, and otherwise the oldest of a few windows
// there (counted as an eviction): an attacker who floods the table with
// fresh pairs to evict its own counts also fills the address table, whose
// count it cannot escape.
//
// Times are int64 nanoseconds on the caller's monotonic clock.
type Throttle struct {
	cfg       ThrottleConfig
	window    int64
	seed      maphash.Seed
	pairs     throttleTable
	addrs     throttleTable
	throttled atomic.Uint64
	failures  atomic.Uint64
}

// ThrottleStats are a Throttle's counters.
type ThrottleStats struct {
	Throttled uint64 // Checks refused
	Failures  uint64 // failures recorded
	Evictions uint64 // live windows dropped for room, both tables
	Pairs     int    // (user, address) entries
	Addresses int    // address entries
}

// NewThrottle returns a Throttle for cfg (defaults filled in).
func NewThrottle(cfg ThrottleConfig) *Throttle {
	cfg.setDefaults()
	t := &Throttle{cfg: cfg, window: int64(cfg.Window), seed: maphash.MakeSeed()}
	t.pairs.init(cfg.MaxEntries, t.window)
	t.addrs.init(cfg.MaxEntries, t.window)
	return t
}

// Config returns the configuration in force, defaults filled in.
func (t *Throttle) Config() ThrottleConfig { return t.cfg }

// Check reports whether user may attempt a login from addr at now. When it
// may not, retryAfter is how long until the window that refuses it closes
// (more than 0, at most Window): the caller answers 429 with Retry-After
// rounded up to whole seconds (RFC 6585 section 4, RFC 9110 section
// 10.2.3), before any verification work. An empty user (a bearer token,
// whose user is unknown until it is verified) is counted by address only.
func (t *Throttle) Check(user []byte, addr netip.Addr, now int64) (retryAfter time.Duration, ok bool) {
	pair, address := t.keys(user, addr)
	var wait int64
	if start, n := t.pairs.count(pair, now); len(user) > 0 && n >= uint32(t.cfg.MaxFailures) {
		wait = start + t.window - now
	}
	if start, n := t.addrs.count(address, now); n >= uint32(t.cfg.MaxAddressFailures) {
		wait = max(wait, start+t.window-now)
	}
	if wait > 0 {
		t.throttled.Add(1)
		return time.Duration(wait), false
	}
	return 0, true
}

// Failure records a failed login of user from addr at now.
func (t *Throttle) Failure(user []byte, addr netip.Addr, now int64) {
	pair, address := t.keys(user, addr)
	if len(user) > 0 {
		t.pairs.add(pair, now)
	}
	t.addrs.add(address, now)
	t.failures.Add(1)
}

// Success clears the (user, addr) pair's failures after a successful
// login. The address's count stays: otherwise a guesser holding one valid
// account could reset its address's budget between guesses at others.
func (t *Throttle) Success(user []byte, addr netip.Addr) {
	pair, _ := t.keys(user, addr)
	t.pairs.remove(pair)
}

// Stats returns the counters.
func (t *Throttle) Stats() ThrottleStats {
	return ThrottleStats{
		Throttled: t.throttled.Load(),
		Failures:  t.failures.Load(),
		Evictions: t.pairs.evictions() + t.addrs.evictions(),
		Pairs:     t.pairs.len(),
		Addresses: t.addrs.len(),
	}
}

// keys hashes the client (its address, or its IPv6 prefix) and the pair
// with maphash, whose seeded 64-bit hash is documented as collision
// resistant against chosen inputs; a collision would only make two pairs
// share a count. The user name is folded to lower case in a stack buffer.
func (t *Throttle) keys(user []byte, addr netip.Addr) (pair, address uint64) {
	addr = addr.Unmap()
	if addr.Is6() && t.cfg.IPv6PrefixLen < 128 {
		p, _ := addr.WithZone("").Prefix(t.cfg.IPv6PrefixLen)
		addr = p.Addr()
	}
	a16 := addr.As16()
	var h maphash.Hash
	h.SetSeed(t.seed)
	h.Write(a16[:])
	address = h.Sum64()
	var buf [64]byte
	binary.BigEndian.PutUint64(buf[:8], uint64(len(user)))
	h.Write(buf[:8])
	for len(user) > 0 {
		n := copy(buf[:], user)
		for i, c := range buf[:n] {
			if 'A' <= c && c <= 'Z' {
				buf[i] = c + 'a' - 'A'
			}
		}
		h.Write(buf[:n])
		user = user[n:]
	}
	return h.Sum64(), address
}

// throttleTable is a bounded map from a 64-bit key to a failure window,
// sharded like Cache.
type throttleTable struct {
	shards []throttleShard
	mask   uint64
	window int64
}

type throttleShard struct {
	mu      sync.Mutex
	index   map[uint64]int32
	slots   []throttleSlot
	hand    int32
	evicted atomic.Uint64
	_       [64]byte // keeps neighbouring shards' locks apart
}

type throttleSlot struct {
	key   uint64
	start int64 // when the window opened
	count uint32
	used  bool
}

// evictionSample is how many slots from the hand a full shard looks at for
// an expired or the oldest window: enough to find an expired one when a
// fair share has expired, few enough to keep Failure cheap.
const evictionSample = 8

func (tt *throttleTable) init(maxEntries int, window int64) {
	n := 1
	for n*2 <= maxCacheShards && n*2*minShardEntries <= maxEntries {
		n *= 2
	}
	per := maxEntries / n
	tt.shards = make([]throttleShard, n)
	tt.mask = uint64(n - 1)
	tt.window = window
	for i := range tt.shards {
		tt.shards[i].index = make(map[uint64]int32, per)
		tt.shards[i].slots = make([]throttleSlot, per)
	}
}

func (tt *throttleTable) shard(key uint64) *throttleShard {
	return &tt.shards[key&tt.mask]
}

// count returns key's window start and failure count at now; a window that
// has closed counts nothing.
func (tt *throttleTable) count(key uint64, now int64) (start int64, n uint32) {
	s := tt.shard(key)
	s.mu.Lock()
	if i, ok := s.index[key]; ok {
		sl := &s.slots[i]
		if now-sl.start < tt.window {
			start, n = sl.start, sl.count
		}
	}
	s.mu.Unlock()
	return start, n
}

func (tt *throttleTable) add(key uint64, now int64) {
	s := tt.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.index[key]; ok {
		sl := &s.slots[i]
		if now-sl.start >= tt.window {
			sl.start, sl.count = now, 1
		} else if sl.count < ^uint32(0) {
			sl.count++
		}
		return
	}
	i := s.victim(now, tt.window)
	sl := &s.slots[i]
	if sl.used {
		delete(s.index, sl.key)
		if now-sl.start < tt.window {
			s.evicted.Add(1)
		}
	}
	*sl = throttleSlot{key: key, start: now, count: 1, used: true}
	s.index[key] = i
}

// victim returns the slot for a new entry: the first free or expired one
// among the next evictionSample from the hand, else the oldest of them.
func (s *throttleShard) victim(now, window int64) int32 {
	best := int32(-1)
	for range min(evictionSample, len(s.slots)) {
		i := s.hand
		if s.hand++; int(s.hand) == len(s.slots) {
			s.hand = 0
		}
		sl := &s.slots[i]
		if !sl.used || now-sl.start >= window {
			return i
		}
		if best < 0 || sl.start < s.slots[best].start {
			best = i
		}
	}
	return best
}

func (tt *throttleTable) remove(key uint64) {
	s := tt.shard(key)
	s.mu.Lock()
	if i, ok := s.index[key]; ok {
		delete(s.index, key)
		s.slots[i] = throttleSlot{}
	}
	s.mu.Unlock()
}

func (tt *throttleTable) len() int {
	n := 0
	for i := range tt.shards {
		s := &tt.shards[i]
		s.mu.Lock()
		n += len(s.index)
		s.mu.Unlock()
	}
	return n
}

func (tt *throttleTable) evictions() uint64 {
	var n uint64
	for i := range tt.shards {
		n += tt.shards[i].evicted.Load()
	}
	return n
}
