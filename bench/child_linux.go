package bench

import "syscall"

// childSysProcAttr puts a child in its own process group, so a Ctrl-C typed
// at the terminal reaches only the runner, which then stops the children in
// order (load first, then gateway, then mailbox server). Pdeathsig is the
// backstop for a runner that dies without cleaning up (SIGKILL, a crash):
// the kernel kills the children with it. (Pdeathsig fires when the forking
// OS thread exits; the Go runtime does not retire threads of unlocked
// goroutines, so in practice that is when the runner exits.)
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// nofileLimit returns this process's soft RLIMIT_NOFILE (which the Go
// runtime has raised to the hard limit at startup), or 0 if unknown.
func nofileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Cur
}
