package l4

import (
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
)

var deferPairs atomic.Int64

// wakePair returns the connected read end of a Unix stream socket pair and
// the non-blocking descriptor of its write end. The pair is made through an
// abstract-namespace listener (Linux) because gnet only registers
// connections whose peer has an address.
func wakePair() (*net.UnixConn, int, error) {
	name := fmt.Sprintf("@frontdoor-wake-%d-%d", os.Getpid(), deferPairs.Add(1))
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		return nil, -1, err
	}
	defer ln.Close()
	r, err := net.DialUnix("unix", nil, ln.Addr().(*net.UnixAddr))
	if err != nil {
		return nil, -1, err
	}
	w, err := ln.AcceptUnix()
	if err != nil {
		r.Close()
		return nil, -1, err
	}
	defer w.Close()
	wfd := -1
	rc, err := w.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) { wfd, err = syscall.Dup(int(fd)) })
		if err == nil {
			err = cerr
		}
	}
	if err == nil {
		syscall.CloseOnExec(wfd)
		err = syscall.SetNonblock(wfd, true)
	}
	if err != nil {
		r.Close()
		if wfd >= 0 {
			syscall.Close(wfd)
		}
		return nil, -1, err
	}
	return r, wfd, nil
}
