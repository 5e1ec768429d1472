package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"frontdoor/gateway/config"
	"frontdoor/internal/atomicfile"
)

// Component states, like Exchange's server component states: the
// server-wide ServerWideOffline and one component per protocol (named like
// it), each active or inactive. An inactive component's health pages
// answer 503 at once, so the load balancer takes the protocol (or, for
// ServerWideOffline, the whole gateway) out of its pool; after the drain
// grace its keep-alive connections are told to close. New requests are
// served throughout: the gateway never fails a request for being
// inactive.

// The two states of a component, as the admin endpoint and the state file
// spell them.
const (
	StateActive   = "active"
	StateInactive = "inactive"
)

// ComponentState is one component's state, as GET and POST /state on the
// admin endpoint answer it.
type ComponentState struct {
	// Component is ServerWideOffline or a protocol's name.
	Component string `json:"component"`
	// State is "active" or "inactive".
	State string `json:"state"`
	// Since is when the component last changed state (zero: never).
	Since time.Time `json:"since,omitzero"`
	// KeepAliveEnded: inactive for longer than the drain grace, so the
	// keep-alive connections it concerns are being closed.
	KeepAliveEnded bool `json:"keepalive_ended,omitempty"`
}

// stateFile is the JSON of [state] file.
type stateFile struct {
	Components []stateEntry `json:"components"`
}

type stateEntry struct {
	Component string    `json:"component"`
	State     string    `json:"state"`
	Since     time.Time `json:"since,omitzero"`
}

// Errors of a state change that the caller got wrong (an admin endpoint
// answers them 400).
var (
	// ErrUnknownComponent: the change names no component.
	ErrUnknownComponent = errors.New("unknown component")
	// ErrBadState: the state is neither active nor inactive.
	ErrBadState = errors.New("bad state")
)

// components holds the component states. Index 0 is ServerWideOffline,
// index 1+i protocol i.
type components struct {
	names []string
	// inactive is read by the health pages; written under mu.
	inactive []atomic.Bool

	file  string // "" keeps the states in memory
	grace time.Duration
	log   *slog.Logger

	// changed recomputes the health pages; endKeepAlive is
	// l7.Handler.EndKeepAlive. Both are set before start.
	changed      func()
	endKeepAlive func(protocols []bool)

	mu     sync.Mutex
	since  []time.Time
	ended  []bool        // inactive for longer than the grace
	gen    []uint64      // per component, so a stale grace timer does nothing
	timers []*time.Timer // pending grace timers
	closed bool
}

// newComponents loads the component states of cfg's protocols from the
// state file, if one is configured. A missing file is created with every
// component active, which also proves at start that it can be written; an
// unreadable or malformed one fails the start, since guessing could put an
// offline server back into its load balancer's pool.
func newComponents(cfg *config.Config, log *slog.Logger) (*components, error) {
	n := 1 + len(cfg.Protocols)
	c := &components{
		names: make([]string, n), inactive: make([]atomic.Bool, n),
		file: cfg.Resolve(cfg.State.File), grace: cfg.State.DrainGrace.D(), log: log,
		since: make([]time.Time, n), ended: make([]bool, n), gen: make([]uint64, n), timers: make([]*time.Timer, n),
		changed: func() {}, endKeepAlive: func([]bool) {},
	}
	c.names[0] = config.ServerWideOffline
	for i, p := range cfg.Protocols {
		c.names[1+i] = p.Name
	}
	if c.file == "" {
		return c, nil
	}
	where := fmt.Sprintf("%s:%d: state.file", cfg.Path, cfg.Line("state.file"))
	data, err := os.ReadFile(c.file)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(c.file), 0o755); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if err := c.write(c.entries(-1, false, time.Time{})); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		log.Info("component state file created, every component active", "file", c.file)
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if err := c.load(data); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", where, c.file, err)
	}
	return c, nil
}

// load applies the state file's contents.
func (c *components) load(data []byte) error {
	var f stateFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("not a component state file: %w", err)
	}
	seen := make(map[int]bool)
	for _, e := range f.Components {
		i := c.index(e.Component)
		if i < 0 {
			c.log.Warn("component state file names a component this configuration does not have; it is dropped at the next change",
				"file", c.file, "component", e.Component)
			continue
		}
		if seen[i] {
			return fmt.Errorf("component %q listed twice", c.names[i])
		}
		seen[i] = true
		switch e.State {
		case StateActive:
		case StateInactive:
			c.inactive[i].Store(true)
		default:
			return fmt.Errorf("component %q: state %q: want %q or %q", c.names[i], e.State, StateActive, StateInactive)
		}
		c.since[i] = e.Since
	}
	return nil
}

// start arms the drain grace of the components loaded inactive, counted
// from now: a load balancer that had the gateway in its pool before the
// restart needs it to notice.
func (c *components) start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.names {
		if c.inactive[i].Load() {
			c.log.Warn("component inactive since before the start: its health pages answer 503", "component", c.names[i])
			c.armGrace(i)
		}
	}
	c.applyLocked()
}

// close stops the grace timers.
func (c *components) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for i, t := range c.timers {
		if t != nil {
			t.Stop()
			c.timers[i] = nil
		}
	}
}

// index resolves a component name: exactly, else case-insensitively when
// that matches one component only. -1 when nothing matches.
func (c *components) index(name string) int {
	found := -1
	for i, n := range c.names {
		if n == name {
			return i
		}
		if strings.EqualFold(n, name) {
			if found >= 0 {
				return -1
			}
			found = i
		}
	}
	return found
}

// list returns every component's state.
func (c *components) list() []ComponentState {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]ComponentState, len(c.names))
	for i, n := range c.names {
		out[i] = ComponentState{Component: n, State: stateName(c.inactive[i].Load()), Since: c.since[i], KeepAliveEnded: c.ended[i]}
	}
	return out
}

func stateName(inactive bool) string {
	if inactive {
		return StateInactive
	}
	return StateActive
}

// set changes a component's state and persists it before it takes effect:
// if the state file cannot be written, nothing changes. Setting the state
// a component already has changes nothing (its grace is not restarted).
// by names who asked, for the log.
func (c *components) set(name, state, by string) (ComponentState, error) {
	var inactive bool
	switch state {
	case StateActive:
	case StateInactive:
		inactive = true
	default:
		return ComponentState{}, fmt.Errorf("%w %q: want %q or %q", ErrBadState, state, StateActive, StateInactive)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	i := c.index(name)
	if i < 0 {
		return ComponentState{}, fmt.Errorf("%w %q (components: %s)", ErrUnknownComponent, name, strings.Join(c.names, ", "))
	}
	if c.inactive[i].Load() == inactive {
		return ComponentState{Component: c.names[i], State: state, Since: c.since[i], KeepAliveEnded: c.ended[i]}, nil
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	if c.file != "" {
		if err := c.write(c.entries(i, inactive, now)); err != nil {
			return ComponentState{}, fmt.Errorf("component state not changed: %w", err)
		}
	}
	c.inactive[i].Store(inactive)
	c.since[i] = now
	c.gen[i]++
	if t := c.timers[i]; t != nil {
		t.Stop()
		c.timers[i] = nil
	}
	c.ended[i] = false
	if inactive {
		c.log.Warn("component inactive: its health pages answer 503; keep-alive connections close after the drain grace",
			"component", c.names[i], "drain_grace", c.grace, "by", by)
		c.armGrace(i)
	} else {
		c.log.Info("component active: health pages answer 200 again when it can serve, connections are kept alive",
			"component", c.names[i], "by", by)
	}
	c.changed()
	c.applyLocked()
	return ComponentState{Component: c.names[i], State: state, Since: now, KeepAliveEnded: c.ended[i]}, nil
}

// armGrace ends component i's keep-alive after the drain grace. Called
// with mu held.
func (c *components) armGrace(i int) {
	if c.grace <= 0 {
		c.ended[i] = true
		return
	}
	gen := c.gen[i]
	c.timers[i] = time.AfterFunc(c.grace, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed || c.gen[i] != gen || !c.inactive[i].Load() {
			return
		}
		c.timers[i] = nil
		c.ended[i] = true
		c.log.Info("drain grace over: keep-alive connections of the component are closing", "component", c.names[i])
		c.applyLocked()
	})
}

// applyLocked hands the ended components to l7: ServerWideOffline ends
// keep-alive for every protocol. Called with mu held.
func (c *components) applyLocked() {
	all := c.ended[0]
	protocols := make([]bool, len(c.names)-1)
	for i := range protocols {
		protocols[i] = all || c.ended[1+i]
	}
	c.endKeepAlive(protocols)
}

// entries is the state file's list, with component changed (when >= 0)
// set to inactive as of since. Called with mu held, or before sharing.
func (c *components) entries(changed int, inactive bool, since time.Time) []stateEntry {
	out := make([]stateEntry, len(c.names))
	for i, n := range c.names {
		e := stateEntry{Component: n, State: stateName(c.inactive[i].Load()), Since: c.since[i]}
		if i == changed {
			e.State, e.Since = stateName(inactive), since
		}
		out[i] = e
	}
	return out
}

// write replaces the state file atomically: a temporary file beside it,
// synced, renamed over it, and the directory synced, so a crash leaves
// the old states or the new ones, never a torn file.
func (c *components) write(entries []stateEntry) (err error) {
	data, err := json.MarshalIndent(stateFile{Components: entries}, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	return atomicfile.Write(c.file, data, 0o644)
}
