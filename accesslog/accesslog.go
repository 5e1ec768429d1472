// Package accesslog writes frontdoor's access log: one JSON object per line
// for every exchange (l7.AccessRecord), written to a file or standard output
// by one background goroutine, so an event loop never waits for a disk.
//
// Memory is bounded. The log owns a fixed set of chunks (Options.BufferBytes
// split into equal buffers). Each event loop formats its records into the
// chunk it holds, with append-style formatting that allocates nothing; a full
// chunk, and on every sweep of the loop a non-empty one, is handed to the
// writer, which writes it with one system call and returns it to the free
// list. When the writer falls behind and no chunk is free, records are
// dropped and counted (Stats.DroppedFull), never queued without bound, and
// never block the loop.
//
// SIGHUP reopens the file (Reopen), for log rotation by rename: records
// already in chunks go to whichever file is open when they are written.
package accesslog

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"frontdoor/l4"
	"frontdoor/l7"
)

// Stdout is the Options.Path that writes to standard output.
const Stdout = "-"

// Options configures a Log.
type Options struct {
	// Path is the file appended to (created with mode 0640), or Stdout.
	Path string
	// BufferBytes bounds the memory of records waiting to be written, all
	// loops together. It is raised to two minimum chunks per loop when
	// smaller, so every loop can fill one while the writer writes another.
	BufferBytes int
	// Loops is the number of event loops that will log (sizes the chunks).
	Loops int
	// Query keeps the query string in the path field; off, it is dropped
	// (query strings may carry tokens and mailbox names).
	Query bool
	// Output replaces standard output for Path == Stdout (tests).
	Output io.Writer
	// Log receives the access log's own problems (write errors).
	Log *slog.Logger
}

// Stats counts what the log did. The fields are atomics read at scrape time.
type Stats struct {
	// Records counts records written; Bytes the bytes written.
	Records, Bytes atomic.Int64
	// DroppedFull counts records dropped because no chunk was free (the
	// writer fell behind); DroppedError records lost to failed writes.
	DroppedFull, DroppedError atomic.Int64
	// WriteErrors counts failed writes (each loses one chunk).
	WriteErrors atomic.Int64
}

// Chunk sizes: a chunk holds at least two records of the longest kind
// (maxRecord) and at most 256 KiB, so one write stays short.
const (
	minChunk = 16 << 10
	maxChunk = 256 << 10
)

// reopenWait bounds how long Reopen and Close wait for the writer, which
// may be stuck in a write to a slow or blocked file.
const reopenWait = 5 * time.Second

// Log is an open access log. Its methods are safe for concurrent use; each
// loop's LoopAccessLog (ForLoop) is used only on its loop.
type Log struct {
	opts      Options
	chunkSize int
	free      chan *chunk // chunks ready for a loop
	full      chan *chunk // chunks waiting for the writer
	reopen    chan chan error
	done      chan struct{}
	closed    atomic.Bool
	stats     Stats
	log       *slog.Logger

	mu    sync.Mutex
	loops []*loopLog

	// Owned by the writer goroutine.
	out       io.Writer
	file      *os.File // nil for Stdout
	lastError time.Time
}

// chunk is a buffer of formatted records.
type chunk struct {
	b []byte
	n int64 // records in b
}

// Open opens (creating if needed) the log at opts.Path and starts its
// writer. Close flushes and stops it.
func Open(opts Options) (*Log, error) {
	if opts.Loops < 1 {
		opts.Loops = 1
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	size := min(max(opts.BufferBytes/(4*opts.Loops), minChunk), maxChunk)
	n := max(opts.BufferBytes/size, 2*opts.Loops)
	l := &Log{opts: opts, chunkSize: size, free: make(chan *chunk, n), full: make(chan *chunk, n),
		reopen: make(chan chan error), done: make(chan struct{}), log: opts.Log}
	if opts.Path == Stdout {
		l.out = opts.Output
		if l.out == nil {
			l.out = os.Stdout
		}
	} else {
		f, err := openFile(opts.Path)
		if err != nil {
			return nil, err
		}
		l.file, l.out = f, f
	}
	for range n {
		l.free <- &chunk{b: make([]byte, 0, size)}
	}
	go l.run()
	return l, nil
}

func openFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	return f, nil
}

// BufferBytes is the memory the log's chunks take: Options.BufferBytes,
// or more when it had to be raised for the number of loops.
func (l *Log) BufferBytes() int { return cap(l.free) * l.chunkSize }

// Stats returns the log's counters.
func (l *Log) Stats() *Stats { return &l.stats }

// ForLoop implements l7.AccessLog: the records of loop lp are formatted into
// its own chunk, handed to the writer when full and on each of lp's sweeps.
func (l *Log) ForLoop(lp *l4.Loop) l7.LoopAccessLog {
	ll := &loopLog{l: l, query: l.opts.Query}
	l.mu.Lock()
	l.loops = append(l.loops, ll)
	l.mu.Unlock()
	lp.OnSweep(func(int64) { ll.flush() })
	return ll
}

// run is the writer goroutine.
func (l *Log) run() {
	defer close(l.done)
	for {
		select {
		case c, ok := <-l.full:
			if !ok {
				if l.file != nil {
					_ = l.file.Close()
				}
				return
			}
			l.write(c)
		case reply := <-l.reopen:
			reply <- l.reopenFile()
		}
	}
}

// write writes one chunk and frees it.
func (l *Log) write(c *chunk) {
	if _, err := l.out.Write(c.b); err != nil {
		l.stats.WriteErrors.Add(1)
		l.stats.DroppedError.Add(c.n)
		// One line a minute: a full disk must not flood the log.
		if now := time.Now(); now.Sub(l.lastError) >= time.Minute {
			l.lastError = now
			l.log.Error("access log write failed: records dropped", "path", l.opts.Path, "records", c.n, "err", err)
		}
	} else {
		l.stats.Records.Add(c.n)
		l.stats.Bytes.Add(int64(len(c.b)))
	}
	c.b, c.n = c.b[:0], 0
	l.free <- c // never blocks: the channel holds every chunk
}

// reopenFile opens the path again; on failure the old file stays in use.
func (l *Log) reopenFile() error {
	if l.file == nil {
		return nil
	}
	f, err := openFile(l.opts.Path)
	if err != nil {
		return err
	}
	_ = l.file.Close()
	l.file, l.out = f, f
	return nil
}

// Reopen makes the writer close the file and open its path again (after a
// rotation renamed it). A path that cannot be opened leaves the old file in
// use and is returned as the error. It does nothing for Stdout.
func (l *Log) Reopen() error {
	if l.closed.Load() {
		return errors.New("access log: closed")
	}
	reply := make(chan error, 1)
	t := time.NewTimer(reopenWait)
	defer t.Stop()
	select {
	case l.reopen <- reply:
	case <-l.done:
		return errors.New("access log: closed")
	case <-t.C:
		return errors.New("access log: not reopened: the writer is blocked writing")
	}
	return <-reply
}

// Close writes what the loops have formatted and stops the writer, waiting
// at most a few seconds for a blocked write. It must be called after the
// event loops have stopped: their chunks are taken from here.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed.Swap(true) {
		l.mu.Unlock()
		return nil
	}
	for _, ll := range l.loops {
		if c := ll.cur; c != nil && c.n > 0 {
			ll.cur = nil
			l.full <- c
		}
	}
	close(l.full)
	l.mu.Unlock()
	select {
	case <-l.done:
		return nil
	case <-time.After(reopenWait):
		return errors.New("access log: writer still blocked at close: records lost")
	}
}

// loopLog is one loop's side of the log.
type loopLog struct {
	l     *Log
	cur   *chunk // nil until a free chunk is taken
	query bool
}

// Log implements l7.LoopAccessLog.
func (ll *loopLog) Log(r *l7.AccessRecord) {
	c := ll.cur
	if c == nil {
		select {
		case c = <-ll.l.free:
			ll.cur = c
		default:
			ll.l.stats.DroppedFull.Add(1)
			return
		}
	}
	c.b = appendRecord(c.b, r, time.Now(), ll.query)
	c.n++
	if cap(c.b)-len(c.b) < maxRecord {
		ll.handOver()
	}
}

// flush hands a non-empty chunk to the writer (on each sweep).
func (ll *loopLog) flush() {
	if ll.cur != nil && ll.cur.n > 0 {
		ll.handOver()
	}
}

func (ll *loopLog) handOver() {
	c := ll.cur
	ll.cur = nil
	if ll.l.closed.Load() {
		// A loop still running after Close (a caller bug): drop rather
		// than send on the closed channel.
		ll.l.stats.DroppedFull.Add(c.n)
		return
	}
	ll.l.full <- c // never blocks: the channel holds every chunk
}
