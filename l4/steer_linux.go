package l4

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// A binary upgrade without a lost connection, on gnet's sockets.
//
// gnet binds one SO_REUSEPORT socket per loop and cannot serve a socket it
// did not bind, so a new process cannot take the old one's sockets over.
// It binds its own instead, which join the old ones' reuseport groups (same
// address, same user), and the kernel would then spread new connections
// over both processes: the old one cannot stop accepting without closing
// its sockets, and closing a listening socket resets the connections
// queued on it (unless net.ipv4.tcp_migrate_req is 1, Linux 5.14+).
//
// Steer closes that gap with a classic BPF program on each group
// (SO_ATTACH_REUSEPORT_CBPF): it picks, for every new connection, one of
// this process's sockets, which sit after the old process's in the
// group's array (sockets are appended as they start listening). From then
// on the old process only accepts what was already queued or half-open on
// its own sockets; it serves that and closes them when it exits, by which
// time they are empty. The kernel falls back to its hash when the program
// returns an index past the group's end, which is what happens once the
// old sockets are gone: Unsteer then removes the program.
//
// One gap is left, and only the kernel can close it. Each socket the old
// process closes is replaced in the array by the group's last one, so
// while it closes its sockets one after another (microseconds) the
// program can name a slot past the end; the kernel's fallback hash may
// then pick an old socket about to close, and that connection is reset.
// The l4 test measured one in about 75,000 connections arriving at 17,000
// a second during the close. With net.ipv4.tcp_migrate_req = 1 (Linux
// 5.14+) the kernel moves such a connection to another socket of the
// group instead, and none is lost (docs/deploy.md).

// Steer sends every new connection on the listeners whose bound address is
// a key of skip to this server's sockets, which must be the last
// EventLoops() sockets of each group, after the skip[address] sockets of
// the process being replaced. It needs ReusePort and a running engine.
func (s *Server) Steer(skip map[string]int) error {
	if !s.opts.ReusePort {
		return errors.New("l4: steering new connections needs engine.reuse_port")
	}
	s.steerLock.Lock()
	defer s.steerLock.Unlock()
	var errs []error
	for _, ln := range s.listeners {
		fd, addr, err := s.dupListener(ln)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if n, ok := skip[addr]; ok && n > 0 {
			if err := attachSteering(fd, n, s.loops); err != nil {
				errs = append(errs, fmt.Errorf("l4: listener %s (%s): %w", ln.Name, addr, err))
			}
		}
		unix.Close(fd)
	}
	return errors.Join(errs...)
}

// Unsteer removes the programs Steer attached, once the sockets of the
// replaced process are gone: the kernel's hash spreads connections again.
func (s *Server) Unsteer() error {
	s.steerLock.Lock()
	defer s.steerLock.Unlock()
	var errs []error
	for _, ln := range s.listeners {
		fd, _, err := s.dupListener(ln)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// ENOENT: nothing attached to this group.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DETACH_REUSEPORT_BPF, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("l4: listener %s: detach: %w", ln.Name, err))
		}
		unix.Close(fd)
	}
	return errors.Join(errs...)
}

// BoundAddrs returns the address each listener's sockets are bound to
// (resolved, "127.0.0.1:8080"), by listener index: what another process
// compares its own with, whatever host names either configuration used.
func (s *Server) BoundAddrs() ([]string, error) {
	out := make([]string, len(s.listeners))
	for i, ln := range s.listeners {
		fd, addr, err := s.dupListener(ln)
		if err != nil {
			return nil, err
		}
		unix.Close(fd)
		out[i] = addr
	}
	return out, nil
}

// dupListener returns a duplicate of one of ln's sockets (the first loop's;
// a setsockopt on the group applies to all) and its bound address.
func (s *Server) dupListener(ln *Listener) (int, string, error) {
	// Receiving from the closed channel orders this after the engine's
	// start (the race detector sees it too).
	select {
	case <-s.booted:
	default:
		return -1, "", errors.New("l4: not listening yet")
	}
	fd, err := s.engine.DupListener("tcp", ln.Address)
	if err != nil {
		return -1, "", fmt.Errorf("l4: listener %s: %w", ln.Name, err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return -1, "", fmt.Errorf("l4: listener %s: getsockname: %w", ln.Name, err)
	}
	var addr string
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		addr = net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port))
	case *unix.SockaddrInet6:
		addr = net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port))
	default:
		unix.Close(fd)
		return -1, "", fmt.Errorf("l4: listener %s: not a TCP socket", ln.Name)
	}
	return fd, addr, nil
}

// skfAdRandom is SKF_AD_OFF + SKF_AD_RANDOM (linux/filter.h): a load from
// it yields a pseudo-random 32-bit number.
const skfAdRandom = 0xfffff000 + 56

// attachSteering attaches to fd's reuseport group a program that returns
// skip + random % n: one of the n sockets after the first skip, uniformly.
// Random rather than the flow hash, which loopback leaves at zero; the
// choice only has to hold for the SYN (a handshake in progress is found by
// its request socket, not by choosing a listener again).
func attachSteering(fd, skip, n int) error {
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: skfAdRandom},
		{Code: unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K, K: uint32(n)},
		{Code: unix.BPF_ALU | unix.BPF_ADD | unix.BPF_K, K: uint32(skip)},
		{Code: unix.BPF_RET | unix.BPF_A},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog)
}

// MigrateRequests reports net.ipv4.tcp_migrate_req: whether the kernel
// moves the connections queued on a closing listening socket to another
// socket of its reuseport group (Linux 5.14+). known is false when the
// setting does not exist or cannot be read.
func MigrateRequests() (on, known bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_migrate_req")
	if err != nil {
		return false, false
	}
	return strings.TrimSpace(string(b)) == "1", true
}
