// Package upgrade is the protocol by which a running frontdoor hands over
// to a new process started from the same executable path (a new binary,
// the configuration read afresh), as cloudflare/tableflip does, adapted to
// event loops that bind their own sockets:
//
//  1. The old process starts the new one with its own arguments and
//     environment, plus FRONTDOOR_UPGRADE_FD naming one end of a Unix
//     socket pair (the old process keeps the other) and, when the admin
//     endpoint is on, its listening socket as a further file.
//  2. It writes a Hello on the pair: its pid, the addresses it listens on
//     with the number of its SO_REUSEPORT sockets at each (the new process
//     steers new connections past them, see l4.Server.Steer), and the
//     admin address.
//  3. The new process starts serving (its own sockets join the old ones'
//     reuseport groups), steers, and answers ready. The old process then
//     drains and exits. Should the new one exit, fail, or not be ready in
//     time, the old one kills it and keeps serving.
//  4. The old process never closes its end of the pair: the kernel does
//     when it exits, and the new process reads end-of-file. Until then the
//     new process refuses to be upgraded itself, since the count of
//     sockets ahead of its own would be wrong.
//
// The package also writes PID files and notifies systemd (sd_notify).
package upgrade

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// EnvFD names the environment variable that tells a new process which of
// its file descriptors is its link to the process it replaces.
const EnvFD = "FRONTDOOR_UPGRADE_FD"

// ReadyTimeout is how long an old process waits for the new one to be
// ready before it kills it and keeps serving.
const ReadyTimeout = 60 * time.Second

// killGrace is how long a failed new process has to exit after SIGTERM
// before it is killed.
const killGrace = 5 * time.Second

// Hello is what the old process tells the new one.
type Hello struct {
	PID int `json:"pid"`
	// Sockets maps each address the old process listens on, as bound
	// ("127.0.0.1:8080"), to its number of SO_REUSEPORT sockets there.
	Sockets map[string]int `json:"sockets"`
	// Admin is the admin endpoint's bound address when its listening
	// socket is passed along (the new process serves on it if its
	// configuration names the same address); "" when none is.
	Admin string `json:"admin,omitempty"`
	// AdminFD is the admin socket's descriptor in the new process.
	AdminFD int `json:"admin_fd,omitempty"`
}

// readyMsg is the new process's answer.
type readyMsg struct {
	PID int `json:"pid"`
}

// Predecessor is, in a new process, its link to the process it replaces.
type Predecessor struct {
	Hello Hello

	conn    net.Conn
	admin   *os.File
	exited  chan struct{}
	readyMu sync.Mutex
	ready   bool
}

// FromEnv returns the link to the process this one replaces, or nil when
// it was started otherwise. It reads the Hello, waiting at most timeout,
// and removes EnvFD from the environment so that nothing this process
// starts mistakes itself for an upgrade.
func FromEnv(timeout time.Duration) (*Predecessor, error) {
	v, ok := os.LookupEnv(EnvFD)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(EnvFD)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("upgrade: %s=%q: not a file descriptor", EnvFD, v)
	}
	f := os.NewFile(uintptr(fd), "upgrade")
	conn, err := net.FileConn(f)
	f.Close() // FileConn made its own descriptor
	if err != nil {
		return nil, fmt.Errorf("upgrade: %s=%d: %w", EnvFD, fd, err)
	}
	p := &Predecessor{conn: conn, exited: make(chan struct{})}
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	br := bufio.NewReader(conn)
	line, err := br.ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &p.Hello)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("upgrade: reading the old process's hello: %w", err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	if p.Hello.AdminFD >= 3 {
		p.admin = os.NewFile(uintptr(p.Hello.AdminFD), "admin")
	}
	go func() {
		// Nothing more is sent: a read returns when the old process
		// has exited and the kernel closed its end.
		_, _ = br.ReadByte()
		close(p.exited)
	}()
	return p, nil
}

// AdminListener returns the old process's admin listening socket when it
// is bound to addr (the configured address, compared as written and as
// bound), and otherwise closes it and returns nil.
func (p *Predecessor) AdminListener(addr string) net.Listener {
	f := p.admin
	p.admin = nil
	if f == nil {
		return nil
	}
	defer f.Close()
	if addr == "" || (addr != p.Hello.Admin && !sameAddr(addr, p.Hello.Admin)) {
		return nil
	}
	ln, err := net.FileListener(f)
	if err != nil {
		return nil
	}
	return ln
}

// sameAddr reports whether a configured host:port resolves to bound.
func sameAddr(configured, bound string) bool {
	a, err1 := net.ResolveTCPAddr("tcp", configured)
	b, err2 := net.ResolveTCPAddr("tcp", bound)
	return err1 == nil && err2 == nil && a.Port == b.Port && a.IP.Equal(b.IP)
}

// Ready tells the old process that this one serves: it starts draining.
func (p *Predecessor) Ready() error {
	p.readyMu.Lock()
	defer p.readyMu.Unlock()
	if p.ready {
		return nil
	}
	b, _ := json.Marshal(readyMsg{PID: os.Getpid()})
	_ = p.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := p.conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("upgrade: telling the old process (pid %d) we are ready: %w", p.Hello.PID, err)
	}
	p.ready = true
	return nil
}

// Exited is closed once the old process has exited.
func (p *Predecessor) Exited() <-chan struct{} { return p.exited }

// Successor is, in an old process, the new process that has taken over.
type Successor struct {
	PID int
	// conn is never closed by this process: the kernel closes it at exit,
	// which is how the new process learns that this one is gone.
	conn *os.File
}

// keep holds every Successor's end of the pair so that no finalizer
// closes it before the process exits.
var (
	keepMu sync.Mutex
	keep   []*os.File
)

// Options configures Start.
type Options struct {
	Hello Hello
	// Admin, when set, is the admin listening socket to pass along.
	Admin *os.File
	// Timeout bounds the wait for the new process (default ReadyTimeout).
	Timeout time.Duration
	// Stdout and Stderr of the new process (default: this process's).
	Stdout, Stderr *os.File
	Log            *slog.Logger
}

// Start starts a new process from this one's executable path with the same
// arguments and environment and waits until it is ready. On failure (it
// exits, cannot be started, is not ready within the timeout, or ctx ends)
// it is stopped and the error says why; the caller keeps serving.
func Start(ctx context.Context, o Options) (*Successor, error) {
	if o.Timeout <= 0 {
		o.Timeout = ReadyTimeout
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("upgrade: finding the executable: %w", err)
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("upgrade: socketpair: %w", err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "upgrade"), os.NewFile(uintptr(fds[1]), "upgrade-child")
	defer theirs.Close()

	cmd := exec.Command(exe, os.Args[1:]...)
	// Files, not writers: the new process writes to them directly and
	// outlives this one (a writer would be copied through a pipe that
	// ends with this process).
	stdout, stderr := o.Stdout, o.Stderr
	if stdout == nil {
		stdout = os.Stdout
	}
	if stderr == nil {
		stderr = os.Stderr
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// ExtraFiles[i] is descriptor 3+i in the new process.
	cmd.ExtraFiles = []*os.File{theirs}
	hello := o.Hello
	hello.AdminFD = 0
	if o.Admin != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, o.Admin)
		hello.AdminFD = 4
	} else {
		hello.Admin = ""
	}
	cmd.Env = append(os.Environ(), EnvFD+"=3")
	if err := cmd.Start(); err != nil {
		mine.Close()
		return nil, fmt.Errorf("upgrade: starting %s: %w", exe, err)
	}
	o.Log.Info("upgrade: new process started", "pid", cmd.Process.Pid, "executable", exe)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fail := func(err error) (*Successor, error) {
		mine.Close()
		stop(cmd, exited)
		return nil, err
	}

	b, _ := json.Marshal(hello)
	if _, err := mine.Write(append(b, '\n')); err != nil {
		return fail(fmt.Errorf("upgrade: sending the hello to pid %d: %w", cmd.Process.Pid, err))
	}
	answer := make(chan error, 1)
	var ready readyMsg
	go func() {
		line, err := bufio.NewReader(mine).ReadBytes('\n')
		if err == nil {
			err = json.Unmarshal(line, &ready)
		}
		answer <- err
	}()
	timer := time.NewTimer(o.Timeout)
	defer timer.Stop()
	select {
	case err := <-answer:
		if err != nil {
			// The pair closed before an answer: the process failed.
			select {
			case werr := <-exited:
				exited <- werr
				return fail(fmt.Errorf("upgrade: new process (pid %d) exited before it was ready: %v", cmd.Process.Pid, werr))
			case <-time.After(time.Second):
			}
			return fail(fmt.Errorf("upgrade: new process (pid %d) did not say it was ready: %w", cmd.Process.Pid, err))
		}
	case err := <-exited:
		exited <- err
		return fail(fmt.Errorf("upgrade: new process (pid %d) exited before it was ready: %v", cmd.Process.Pid, err))
	case <-timer.C:
		return fail(fmt.Errorf("upgrade: new process (pid %d) not ready within %v", cmd.Process.Pid, o.Timeout))
	case <-ctx.Done():
		return fail(fmt.Errorf("upgrade: abandoned: %w", ctx.Err()))
	}
	keepMu.Lock()
	keep = append(keep, mine)
	keepMu.Unlock()
	return &Successor{PID: cmd.Process.Pid, conn: mine}, nil
}

// stop ends a new process that failed: SIGTERM (it drains what it may have
// accepted), then SIGKILL after killGrace.
func stop(cmd *exec.Cmd, exited chan error) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		exited <- err
	case <-time.After(killGrace):
		_ = cmd.Process.Kill()
		<-exited
	}
}
