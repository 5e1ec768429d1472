package directory

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Live is the current directory snapshot of a Source, kept current: Run
// watches the source and reloads it when it changes. A reload that fails
// (the source is unreachable, the new content invalid) is refused and
// logged, and the snapshot in service stays; one that succeeds replaces the
// snapshot atomically. Readers call Current once per request and use that
// snapshot throughout, so that a request never sees half of one directory
// and half of another. Create a Live with NewLive.
type Live struct {
	src Source
	log *slog.Logger
	cur atomic.Pointer[Directory]

	// mu serializes reloads, so that generations and OnSwap calls follow
	// the order of the swaps, and guards onSwap.
	mu     sync.Mutex
	onSwap []func(old, new *Directory)
}

// watchRetry is how long Run waits before watching again after a Source's
// Watch failed; a variable for tests.
var watchRetry = 5 * time.Second

// NewLive loads the first snapshot from src (generation 1) and returns a
// Live serving it; it fails if that load fails, so a gateway does not start
// with an invalid directory. log may be nil for slog.Default(). Call Run to
// follow changes.
func NewLive(ctx context.Context, src Source, log *slog.Logger) (*Live, error) {
	if log == nil {
		log = slog.Default()
	}
	d, err := src.Load(ctx)
	if err == nil && d == nil {
		err = errors.New("directory: source returned no directory")
	}
	if err != nil {
		return nil, err
	}
	d.Generation = 1
	l := &Live{src: src, log: log}
	l.cur.Store(d)
	return l, nil
}

// Current returns the snapshot in service. It does not allocate or block.
func (l *Live) Current() *Directory { return l.cur.Load() }

// OnSwap registers f to run after each successful reload with the snapshot
// replaced and its replacement, for work that follows a change: draining
// connections to servers that no longer hold an active copy, say
// (ActiveChanges tells which). Callbacks run in registration order, one
// swap at a time in the order of the swaps, on the goroutine that reloaded;
// Current already returns new when they run. A callback must not call
// Reload or OnSwap (they wait for it) and should hand long work to another
// goroutine: the next reload waits for it.
func (l *Live) OnSwap(f func(old, new *Directory)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onSwap = append(l.onSwap, f)
}

// Reload loads a snapshot from the source now. On failure it logs
// "directory reload refused" with the error, keeps the current snapshot and
// returns the error. On success it gives the new snapshot the next
// generation, swaps it in, logs "directory reloaded" with a summary and one
// line per database whose active server changed, and runs the OnSwap
// callbacks.
func (l *Live) Reload(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.cur.Load()
	d, err := l.src.Load(ctx)
	if err == nil && (d == nil || d == old) {
		// Setting Generation on a snapshot in service would race with
		// its readers.
		err = errors.New("directory: source returned no new directory")
	}
	if err != nil {
		if ctx.Err() == nil { // not merely shutting down
			l.log.Error("directory reload refused; keeping the directory in service",
				"generation", old.Generation, "err", err)
		}
		return err
	}
	d.Generation = old.Generation + 1
	l.cur.Store(d)

	changes := ActiveChanges(old, d)
	l.log.Info("directory reloaded", "generation", d.Generation, "users", len(d.Users),
		"databases", len(d.Databases), "servers", len(d.Servers), "sites", len(d.Sites),
		"active_changes", len(changes))
	for _, c := range changes {
		l.log.Info("directory: database active server changed", "generation", d.Generation,
			"database", c.Database, "from", c.From.name(), "to", c.To.name())
	}
	for _, f := range l.onSwap {
		f(old, d)
	}
	return nil
}

// Run watches the source and reloads on every change until ctx is done. If
// the source's Watch fails, Run logs it, waits a few seconds, reloads (a
// change may have been missed meanwhile) and watches again. SIGHUP handling
// is the caller's: it calls Reload.
func (l *Live) Run(ctx context.Context) {
	for {
		err := l.src.Watch(ctx, func() { _ = l.Reload(ctx) })
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("watch returned before it was stopped")
		}
		l.log.Error("directory watch failed; retrying", "err", err, "retry_in", watchRetry)
		if sleep(ctx, watchRetry) != nil {
			return
		}
		_ = l.Reload(ctx)
	}
}

// ActiveChange is a database whose active copy is on a different server in
// one snapshot than in an earlier one.
type ActiveChange struct {
	Database string
	// From is the server in the earlier snapshot (nil for a database that
	// is new); To is the server in the later one (nil for a database that
	// is gone). Each points into its own snapshot.
	From, To *Server
}

// ActiveChanges lists the databases whose active server differs between old
// and new, comparing database and server names: first those of new (moved
// or added) in new's order, then those only old has. A server that keeps
// its name but changes its address is not a change of active server.
func ActiveChanges(old, new *Directory) []ActiveChange {
	var out []ActiveChange
	for _, db := range new.Databases {
		prev := old.Database(db.Name)
		switch {
		case prev == nil:
			out = append(out, ActiveChange{Database: db.Name, To: db.Active})
		case prev.Active.Name != db.Active.Name:
			out = append(out, ActiveChange{Database: db.Name, From: prev.Active, To: db.Active})
		}
	}
	for _, db := range old.Databases {
		if new.Database(db.Name) == nil {
			out = append(out, ActiveChange{Database: db.Name, From: db.Active})
		}
	}
	return out
}

// name is the server's name, or "" for nil, for logs.
func (s *Server) name() string {
	if s == nil {
		return ""
	}
	return s.Name
}
