package directory

import (
	"context"
	"os"
	"sync"
	"time"
)

// Source is where directory snapshots come from, and the extension point
// for directories that do not live in a file (LDAP, etcd, an HTTP API):
// implement Load and Watch, hand the Source to NewLive, and validation,
// refusing bad snapshots, atomic swaps, generations and OnSwap callbacks
// come with Live. FileSource is the file implementation.
type Source interface {
	// Load reads a complete snapshot and validates it (build it with
	// Parse, or with the same rules). It returns an error and no
	// Directory when the source is unreachable or its content invalid;
	// Live then keeps the snapshot it has. Each call must return a new
	// Directory: Live sets its Generation.
	Load(ctx context.Context) (*Directory, error)

	// Watch blocks until ctx is done, calling changed whenever the source
	// may differ from what the last Load returned, changes made before
	// Watch was called included. Calls come from Watch's goroutine, one
	// at a time; a spurious call costs one Load, a missed change leaves
	// gateways on an old snapshot, so when in doubt, call. Watch returns
	// when ctx is done, or with an error when it can no longer watch (a
	// lost connection, say); Live.Run then reloads and watches again
	// after a pause.
	Watch(ctx context.Context, changed func()) error
}

// FileSource is a directory file. Watch polls it: cheap, and it works for
// every way a file gets replaced (an editor, set-active's rename, a
// configuration-management run, a Kubernetes ConfigMap update) and on
// network file systems where change notification does not reach.
//
// Use a FileSource through a pointer and do not copy it after first use.
type FileSource struct {
	Path string
	// Interval is how often Watch looks at the file; 0 means every second.
	Interval time.Duration

	mu   sync.Mutex
	seen fileStamp // the file as last loaded or reported changed
}

// Load reads and validates the file, like Load(s.Path).
func (s *FileSource) Load(ctx context.Context) (*Directory, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Stamp before reading: if the file changes in between, the stamp is
	// the old one, Watch sees a change, and the new content is loaded
	// again rather than missed.
	st := stampOf(s.Path)
	s.mu.Lock()
	s.seen = st
	s.mu.Unlock()
	return Load(s.Path)
}

// Watch checks the file's size, modification time and identity (device
// and inode, where the platform has them) every Interval, and calls changed
// when they differ from what the last Load or call saw and have then held
// still for a moment (a tenth of Interval, at most 100 ms), so that a file
// caught while being written in place is not loaded half-written. The
// identity catches a file replaced by rename with the same size within the
// file system's timestamp granularity, as set-active's edits can be. A file
// that disappears is a change too (the reload that follows fails and is
// refused), and so is its coming back. Watch returns ctx.Err() when ctx is
// done.
func (s *FileSource) Watch(ctx context.Context, changed func()) error {
	interval := s.Interval
	if interval <= 0 {
		interval = time.Second
	}
	settle := min(interval/10, 100*time.Millisecond)
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tk.C:
		}
		st := stampOf(s.Path)
		s.mu.Lock()
		differs := st != s.seen
		s.mu.Unlock()
		if !differs {
			continue
		}
		for {
			if err := sleep(ctx, settle); err != nil {
				return err
			}
			again := stampOf(s.Path)
			if again == st {
				break
			}
			st = again
		}
		s.mu.Lock()
		s.seen = st
		s.mu.Unlock()
		changed()
	}
}

// sleep waits for d or until ctx is done, and returns ctx.Err().
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return ctx.Err()
}

// fileStamp identifies a version of a file. The zero value stands for a
// file that could not be examined.
type fileStamp struct {
	size     int64
	mtime    int64
	dev, ino uint64
	ok       bool
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	dev, ino := fileID(fi)
	return fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano(), dev: dev, ino: ino, ok: true}
}
