package testbed

import "syscall"

// sysProcAttr makes the kernel SIGKILL a child when the test process dies,
// so a test binary ended by `go test -timeout` or a crash leaves no server
// behind holding a port. Strictly, Pdeathsig fires when the OS thread that
// forked the child exits; the Go runtime only retires a thread when a
// goroutine locked to it exits, which tests have no reason to do.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
