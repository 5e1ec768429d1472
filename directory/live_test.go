package directory

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"frontdoor/examples"
)

// logBuffer collects log output written from other goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// writeDirectory writes data to dir/directory.toml and returns the path.
func writeDirectory(t *testing.T, dir string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, "directory.toml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitFor polls cond until it holds or timeout passes, and reports how long
// it took.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// runLive runs l.Run until the test ends.
func runLive(t *testing.T, l *Live) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// swaps records OnSwap calls.
type swaps struct {
	mu  sync.Mutex
	got [][2]*Directory
}

func (s *swaps) record(old, new *Directory) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, [2]*Directory{old, new})
}

func (s *swaps) list() [][2]*Directory {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][2]*Directory(nil), s.got...)
}

// moved is the example with DB01's active copy on mbx2, and one more user.
var moved = []byte(strings.Replace(string(examples.Directory), `active = "mbx1"
copies = ["mbx2"]`, `active = "mbx2"
copies = ["mbx1"]`, 1) + "\n[[user]]\nlogin = \"erin\"\naddress = \"erin@example.test\"\ndatabase = \"DB01\"\n")

// With the default one-second poll, a change to the file is in service
// within about two seconds, and OnSwap sees the old and new snapshots.
func TestLiveFollowsFile(t *testing.T) {
	if bytes.Equal(moved, examples.Directory) {
		t.Fatal("the edit did not apply to the example")
	}
	path := writeDirectory(t, t.TempDir(), examples.Directory)
	var logs logBuffer
	l, err := NewLive(context.Background(), &FileSource{Path: path}, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	first := l.Current()
	if first.Generation != 1 || first.Database("DB01").Active.Name != "mbx1" {
		t.Fatalf("first snapshot: generation %d, DB01 on %s", first.Generation, first.Database("DB01").Active.Name)
	}
	var s swaps
	l.OnSwap(s.record)
	runLive(t, l)

	if err := os.WriteFile(path, moved, 0o644); err != nil {
		t.Fatal(err)
	}
	// The snapshot is stored before the OnSwap functions run: wait for both.
	took := waitFor(t, 2500*time.Millisecond, "reload after the file changed", func() bool { return l.Current().Generation == 2 && len(s.list()) > 0 })
	t.Logf("reloaded %s after the write", took.Round(time.Millisecond))

	cur := l.Current()
	if cur.Database("DB01").Active.Name != "mbx2" || cur.LookupLogin([]byte("erin")) == nil {
		t.Errorf("new snapshot: DB01 on %s, erin %v", cur.Database("DB01").Active.Name, cur.LookupLogin([]byte("erin")))
	}
	if first.Database("DB01").Active.Name != "mbx1" || first.LookupLogin([]byte("erin")) != nil {
		t.Error("the old snapshot changed")
	}
	if got := s.list(); len(got) != 1 || got[0][0] != first || got[0][1] != cur {
		t.Errorf("OnSwap calls %v, want one with (generation 1, generation 2)", got)
	}
	log := logs.String()
	for _, want := range []string{
		`msg="directory reloaded" generation=2 users=5 databases=2 servers=2 sites=2 active_changes=1`,
		`msg="directory: database active server changed" generation=2 database=DB01 from=mbx1 to=mbx2`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
}

// A file that does not validate is refused, the snapshot in service stays,
// and a later good file is picked up.
func TestLiveRefusesBadFile(t *testing.T) {
	path := writeDirectory(t, t.TempDir(), examples.Directory)
	var logs logBuffer
	l, err := NewLive(context.Background(), &FileSource{Path: path, Interval: 10 * time.Millisecond}, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	first := l.Current()
	var s swaps
	l.OnSwap(s.record)

	// Reload by hand: the error names file, line and key.
	bad := strings.Replace(string(examples.Directory), `active = "mbx2"`, `active = "mbx9"`, 1)
	writeDirectory(t, filepath.Dir(path), []byte(bad))
	err = l.Reload(context.Background())
	var e *Error
	if !errors.As(err, &e) || e.File != path || e.Key != "database[1].active" || !strings.Contains(e.Message, `unknown server "mbx9"`) {
		t.Fatalf("Reload of a bad file: %v", err)
	}
	if l.Current() != first || first.Generation != 1 {
		t.Fatal("a refused reload replaced the snapshot")
	}
	if log := logs.String(); !strings.Contains(log, `msg="directory reload refused; keeping the directory in service" generation=1 err=`) ||
		!strings.Contains(log, `database[1].active: unknown server \"mbx9\"`) {
		t.Errorf("log:\n%s", log)
	}

	// The watcher: a broken file, then a missing one, then a good one.
	runLive(t, l)
	writeDirectory(t, filepath.Dir(path), []byte("[[user]]\nlogin = 1\n"))
	waitFor(t, 2*time.Second, "refusal of the second bad file", func() bool { return strings.Count(logs.String(), "reload refused") >= 2 })
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "refusal of the missing file", func() bool { return strings.Contains(logs.String(), "no such file") })
	if l.Current() != first || len(s.list()) != 0 {
		t.Fatal("a refused reload replaced the snapshot or ran OnSwap")
	}
	writeDirectory(t, filepath.Dir(path), moved)
	// The snapshot is stored before the OnSwap functions run: wait for both.
	waitFor(t, 2*time.Second, "reload of the good file", func() bool { return l.Current().Generation == 2 && len(s.list()) > 0 })
	if got := s.list(); len(got) != 1 || got[0][0] != first {
		t.Errorf("OnSwap calls %v", got)
	}
}

func TestNewLiveRefusesInvalid(t *testing.T) {
	path := writeDirectory(t, t.TempDir(), []byte("[[server]]\nname = 1\n"))
	if _, err := NewLive(context.Background(), &FileSource{Path: path}, nil); err == nil || !strings.Contains(err.Error(), "directory.toml:2: server[0].name: expected a string") {
		t.Errorf("NewLive of a bad file: %v", err)
	}
	if _, err := NewLive(context.Background(), &FileSource{Path: path + ".missing"}, nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("NewLive of a missing file: %v", err)
	}
}

// Readers see whole snapshots while reloads swap them under their feet;
// run with -race.
func TestLiveConcurrentReaders(t *testing.T) {
	path := writeDirectory(t, t.TempDir(), examples.Directory)
	l, err := NewLive(context.Background(), &FileSource{Path: path, Interval: time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var swapped atomic.Int64
	l.OnSwap(func(old, new *Directory) {
		if new.Generation != old.Generation+1 {
			t.Errorf("swap from generation %d to %d", old.Generation, new.Generation)
		}
		swapped.Add(1)
	})
	runLive(t, l)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last uint64
			for {
				select {
				case <-stop:
					return
				default:
				}
				d := l.Current()
				if d.Generation < last {
					t.Errorf("generation went back from %d to %d", last, d.Generation)
					return
				}
				last = d.Generation
				u := d.LookupLogin([]byte("alice"))
				// Everything reached from one snapshot belongs to it.
				if u == nil || d.Database(u.Database.Name) != u.Database || d.Server(u.Database.Active.Name) != u.Database.Active {
					t.Error("a snapshot mixes two directories")
					return
				}
			}
		}()
	}
	// Replace the file and reload by hand at the same time as the watcher.
	// By rename: a file written in place may be read half-written, and
	// half of a directory can be a valid, smaller one.
	versions := [][]byte{moved, examples.Directory}
	tmp := filepath.Join(filepath.Dir(path), "next.toml")
	for i := range 40 {
		if err := os.WriteFile(tmp, versions[i%2], 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			_ = l.Reload(context.Background())
		}
		time.Sleep(3 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if swapped.Load() == 0 || uint64(swapped.Load())+1 != l.Current().Generation {
		t.Errorf("%d swaps, generation %d", swapped.Load(), l.Current().Generation)
	}
}

// fakeSource serves snapshots from memory; its Watch fails the first time.
type fakeSource struct {
	mu      sync.Mutex
	data    []byte
	watches int
	same    *Directory // returned by Load when set
}

func (f *fakeSource) Load(context.Context) (*Directory, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.same != nil {
		return f.same, nil
	}
	return Parse("fake", f.data)
}

func (f *fakeSource) Watch(ctx context.Context, changed func()) error {
	f.mu.Lock()
	f.watches++
	n := f.watches
	f.mu.Unlock()
	if n == 1 {
		return errors.New("connection reset")
	}
	changed()
	<-ctx.Done()
	return ctx.Err()
}

// A Watch that fails is retried after a pause, with a reload first: a
// change may have been missed while nobody watched.
func TestLiveRetriesFailedWatch(t *testing.T) {
	old := watchRetry
	watchRetry = 10 * time.Millisecond
	t.Cleanup(func() { watchRetry = old })

	src := &fakeSource{data: examples.Directory}
	var logs logBuffer
	l, err := NewLive(context.Background(), src, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	runLive(t, l)
	// One reload after the failure, one for the change the second Watch
	// reports.
	waitFor(t, 2*time.Second, "reloads", func() bool { return l.Current().Generation == 3 })
	if log := logs.String(); !strings.Contains(log, `msg="directory watch failed; retrying" err="connection reset" retry_in=10ms`) {
		t.Errorf("log:\n%s", log)
	}
}

// A Source that returns the snapshot in service (or none) is refused:
// setting the generation on it would race with its readers.
func TestReloadRefusesSameSnapshot(t *testing.T) {
	src := &fakeSource{data: examples.Directory}
	l, err := NewLive(context.Background(), src, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	cur := l.Current()
	src.same = cur
	if err := l.Reload(context.Background()); err == nil || cur.Generation != 1 || l.Current() != cur {
		t.Errorf("Reload with the same snapshot: err %v, generation %d", err, cur.Generation)
	}
}

func TestActiveChanges(t *testing.T) {
	base := string(withBase(`[[server]]`, `name = "m2"`, `address = "10.0.0.2"`, `site = "a"`,
		`[[database]]`, `name = "D2"`, `active = "m1"`))
	old, err := Parse("old", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	// D1 moves to m2, D2 goes, D3 comes; m1 changing address is no move.
	edited := strings.Replace(base, `name = "D2"`, `name = "D3"`, 1)
	edited = strings.Replace(edited, `address = "10.0.0.1"`, `address = "10.0.0.9"`, 1)
	edited = strings.Replace(edited, "name = \"D1\"\nactive = \"m1\"", "name = \"D1\"\nactive = \"m2\"", 1)
	new, err := Parse("new", []byte(edited))
	if err != nil {
		t.Fatal(err)
	}
	got := ActiveChanges(old, new)
	want := []struct{ db, from, to string }{{"D1", "m1", "m2"}, {"D3", "", "m1"}, {"D2", "m1", ""}}
	if len(got) != len(want) {
		t.Fatalf("ActiveChanges = %+v", got)
	}
	for i, w := range want {
		if got[i].Database != w.db || got[i].From.name() != w.from || got[i].To.name() != w.to {
			t.Errorf("change %d = %s %s->%s, want %s %s->%s", i, got[i].Database, got[i].From.name(), got[i].To.name(), w.db, w.from, w.to)
		}
	}
	if got[0].From != old.Database("D1").Active || got[0].To != new.Server("m2") {
		t.Error("From and To must point into their own snapshots")
	}
	if len(ActiveChanges(old, old)) != 0 {
		t.Error("changes between a snapshot and itself")
	}
}

// A file replaced by rename with the same size and modification time is
// still a change: its inode differs.
func TestFileSourceSeesReplacement(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("no inode numbers")
	}
	dir := t.TempDir()
	path := writeDirectory(t, dir, examples.Directory)
	src := &FileSource{Path: path, Interval: 5 * time.Millisecond}
	if _, err := src.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	same := bytes.Replace(examples.Directory, []byte(`active = "mbx1"`), []byte(`active = "mbx2"`), 1)
	same = bytes.Replace(same, []byte(`copies = ["mbx2"]`), []byte(`copies = ["mbx1"]`), 1)
	tmp := filepath.Join(dir, "new.toml")
	if err := os.WriteFile(tmp, same, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(path); after.Size() != fi.Size() || !after.ModTime().Equal(fi.ModTime()) {
		t.Fatal("the replacement differs in size or time: the test proves nothing")
	}
	// Changed before Watch started, after the Load: still reported.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	calls := 0
	err = src.Watch(ctx, func() {
		calls++
		cancel()
	})
	if calls != 1 || !errors.Is(err, context.Canceled) {
		t.Errorf("Watch: %d calls, err %v; want 1 call and context.Canceled", calls, err)
	}
}

// An unchanged file is not reported, however long Watch runs.
func TestFileSourceQuietWhenUnchanged(t *testing.T) {
	path := writeDirectory(t, t.TempDir(), examples.Directory)
	src := &FileSource{Path: path, Interval: time.Millisecond}
	if _, err := src.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	calls := 0
	if err := src.Watch(ctx, func() { calls++ }); !errors.Is(err, context.DeadlineExceeded) || calls != 0 {
		t.Errorf("Watch of an unchanged file: %d calls, err %v", calls, err)
	}
}
