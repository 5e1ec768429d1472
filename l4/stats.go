package l4

import (
	"sort"
	"sync"
	"sync/atomic"
)

// Stats counts what the core decided on its own: refusals and timeouts.
// Counters are keyed by a short reason; adding to one is an atomic add on a
// counter found in a map that is only written at start-up or the first
// time a reason is seen.
type Stats struct {
	mu       sync.RWMutex
	counters map[string]*atomic.Int64
}

func (st *Stats) init() { st.counters = make(map[string]*atomic.Int64) }

// Counter returns the counter for name, creating it if needed. Callers on a
// hot path keep the returned pointer.
func (st *Stats) Counter(name string) *atomic.Int64 {
	st.mu.RLock()
	c := st.counters[name]
	st.mu.RUnlock()
	if c != nil {
		return c
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if c = st.counters[name]; c == nil {
		c = new(atomic.Int64)
		st.counters[name] = c
	}
	return c
}

func (st *Stats) refused(reason string) { st.Counter("refused_" + reason).Add(1) }

func (st *Stats) timeouts(class string, n int) { st.Counter("timeout_" + class).Add(int64(n)) }

// Snapshot returns every counter's value, sorted by name.
func (st *Stats) Snapshot() []NamedValue {
	st.mu.RLock()
	defer st.mu.RUnlock()
	out := make([]NamedValue, 0, len(st.counters))
	for k, v := range st.counters {
		out = append(out, NamedValue{k, v.Load()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// NamedValue is one counter's name and value.
type NamedValue struct {
	Name  string
	Value int64
}
