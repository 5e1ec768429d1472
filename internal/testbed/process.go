package testbed

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a frontdoor subcommand running as a child process, with its
// stdout and stderr captured together.
type Process struct {
	args []string
	cmd  *exec.Cmd
	out  *outputBuffer

	done chan struct{} // closed once the process has exited and been reaped
	// copied is closed once its output pipe reached its end (every
	// process holding it has exited).
	copied chan struct{}
	state  *os.ProcessState
	err    error // from Wait, when the process did not exit normally
}

// killWait bounds how long Kill waits for a killed process to be reaped.
const killWait = 10 * time.Second

// StartProcess runs the frontdoor binary (see Binary) with args, e.g.
// StartProcess(t, "run", "--config", file). The process is killed when t
// ends, and its output is logged if t failed.
func StartProcess(t testing.TB, args ...string) *Process {
	t.Helper()
	p, err := startProcess(Binary(t), args)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	p.killAtCleanup(t)
	return p
}

func startProcess(binary string, args []string) (*Process, error) {
	p := &Process{
		args: args,
		out:  &outputBuffer{},
		done: make(chan struct{}),
	}
	p.cmd = exec.Command(binary, args...)
	// The child writes to a pipe of ours, not to a writer exec copies
	// from: a process it starts (a gateway's upgrade) inherits the pipe
	// and outlives it, and its output must be captured too, for as long
	// as it runs. Wait does not wait for the pipe.
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", p, err)
	}
	p.cmd.Stdout = w
	p.cmd.Stderr = w
	p.cmd.SysProcAttr = sysProcAttr()
	err = p.cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("starting %s: %w", p, err)
	}
	p.copied = make(chan struct{})
	go func() {
		_, _ = io.Copy(p.out, r)
		r.Close()
		close(p.copied)
	}()
	go func() {
		err := p.cmd.Wait()
		p.state = p.cmd.ProcessState
		if p.state == nil || p.state.ExitCode() < 0 {
			p.err = err
		}
		close(p.done)
	}()
	return p, nil
}

// killAtCleanup makes t's cleanup kill p and, if t failed, log its output.
func (p *Process) killAtCleanup(t testing.TB) {
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("testbed: output of %s (pid %d):\n%s", p, p.Pid(), p.Output())
		}
	})
}

// String describes the process as its command line, without the binary's
// directory.
func (p *Process) String() string {
	return strings.Join(append([]string{"frontdoor"}, p.args...), " ")
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process. It returns os.ErrProcessDone if the
// process has already exited.
func (p *Process) Signal(sig os.Signal) error {
	select {
	case <-p.done:
		return os.ErrProcessDone
	default:
	}
	return p.cmd.Process.Signal(sig)
}

// Exited returns a channel closed once the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Wait waits up to timeout for the process to exit. It returns the exit
// status with a nil error when the process exited by itself, whatever the
// status; it returns -1 with an error when the process was ended by a
// signal or is still running after timeout (it is left running then).
func (p *Process) Wait(timeout time.Duration) (exitCode int, err error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		select {
		case <-p.done: // exited just now, or timeout was zero
		default:
			return -1, fmt.Errorf("%s (pid %d) still running after %v", p, p.Pid(), timeout)
		}
	}
	// What the process wrote just before exiting may still be in the
	// pipe: give the copy a moment to reach the end of it, so Output has
	// it. The end never comes while a process it started holds the pipe
	// (a gateway's upgrade): then the wait is bounded.
	select {
	case <-p.copied:
	case <-time.After(outputDrain):
	}
	if p.err != nil {
		return -1, fmt.Errorf("%s (pid %d): %w", p, p.Pid(), p.err)
	}
	return p.state.ExitCode(), nil
}

// outputDrain bounds how long Wait waits for a process's last output.
const outputDrain = time.Second

// Kill sends SIGKILL, unless the process has exited already, and waits
// (bounded) for it to be reaped. It is safe to call more than once.
func (p *Process) Kill() {
	_ = p.Signal(os.Kill) // os.ErrProcessDone if it is gone already: fine
	select {
	case <-p.done:
	case <-time.After(killWait): // SIGKILL cannot be caught; only a hung kernel call gets here
	}
}

// Output returns what the process, and any process it started that still
// holds its output, has written to stdout and stderr so far.
func (p *Process) Output() string { return p.out.String() }

// outputBuffer is a goroutine-safe capture of a child's output. It keeps
// the first headBytes (startup messages) and the last tailBytes (what led
// to a failure), replacing what lies between with a marker, so a chatty
// process cannot exhaust memory in a long test.
type outputBuffer struct {
	mu      sync.Mutex
	buf     []byte
	dropped int64
}

const (
	headBytes = 64 << 10
	tailBytes = 4 << 20
)

func (b *outputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	// Trimming only once the excess reaches tailBytes keeps the copying
	// amortised to O(1) per byte.
	if excess := len(b.buf) - headBytes - tailBytes; excess >= tailBytes {
		n := copy(b.buf[headBytes:], b.buf[headBytes+excess:])
		b.buf = b.buf[:headBytes+n]
		b.dropped += int64(excess)
	}
	return len(p), nil
}

func (b *outputBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped == 0 {
		return string(b.buf)
	}
	return fmt.Sprintf("%s\n[... %d bytes dropped ...]\n%s", b.buf[:headBytes], b.dropped, b.buf[headBytes:])
}

// Adopt makes t's cleanup kill process pid, which a child started (the
// new process of a gateway's upgrade) and which this test must not leave
// behind. It is not this process's child: the cleanup polls, within
// killWait, until it is gone.
func Adopt(t testing.TB, pid int) {
	t.Helper()
	t.Cleanup(func() {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return // gone already
		}
		deadline := time.Now().Add(killWait)
		for time.Now().Before(deadline) {
			if syscall.Kill(pid, 0) != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Errorf("testbed: adopted pid %d still there %v after SIGKILL", pid, killWait)
	})
}
