package bench

import (
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

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

// cpuMask is a sched_setaffinity(2) CPU set for up to 1024 CPUs.
type cpuMask [16]uint64

func schedAffinity(trap uintptr, tid int, m *cpuMask) error {
	_, _, e := syscall.RawSyscall(trap, uintptr(tid), unsafe.Sizeof(*m), uintptr(unsafe.Pointer(m)))
	if e != 0 {
		return e
	}
	return nil
}

// selfThreads lists the thread ids of this process (/proc/self/task).
func selfThreads() ([]int, error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, err
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

// setSelfAffinity gives every thread of this process the mask m. Threads
// the runtime starts later inherit the mask of the thread that starts
// them; a second and third pass catch those started meanwhile.
func setSelfAffinity(m *cpuMask) error {
	for range 3 {
		tids, err := selfThreads()
		if err != nil {
			return err
		}
		for _, tid := range tids {
			if err := schedAffinity(syscall.SYS_SCHED_SETAFFINITY, tid, m); err != nil && err != syscall.ESRCH {
				return err
			}
		}
	}
	return nil
}

// pinSelf pins the whole process (the load generator) to CPU cpu and
// returns a function that gives it back the mask it had.
func pinSelf(cpu int) (restore func(), err error) {
	if cpu < 0 || cpu >= 1024 {
		return nil, syscall.EINVAL
	}
	var old cpuMask
	if err := schedAffinity(syscall.SYS_SCHED_GETAFFINITY, os.Getpid(), &old); err != nil {
		return nil, err
	}
	var one cpuMask
	one[cpu/64] = 1 << (cpu % 64)
	if err := setSelfAffinity(&one); err != nil {
		setSelfAffinity(&old)
		return nil, err
	}
	return func() { setSelfAffinity(&old) }, nil
}

// selfAffinity returns the CPUs the calling thread may run on.
func selfAffinity() ([]int, error) {
	var m cpuMask
	if err := schedAffinity(syscall.SYS_SCHED_GETAFFINITY, 0, &m); err != nil {
		return nil, err
	}
	var cpus []int
	for i := range len(m) * 64 {
		if m[i/64]&(1<<(i%64)) != 0 {
			cpus = append(cpus, i)
		}
	}
	return cpus, nil
}

// killStragglers kills those of pids that still exist and are still in
// process group pgid (a child started with childSysProcAttr leads its
// own): workers a server's master did not stop before it exited. pids is
// the server's process tree listed before it was stopped, so nothing but
// its own processes is ever signalled.
func killStragglers(pids []int, pgid int) {
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		if g, err := parseProcStatPgrp(b); err == nil && g == pgid {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// nofileHardLimit returns this process's hard RLIMIT_NOFILE, the most a
// child may raise its own limit to without privileges, or 0 if unknown.
func nofileHardLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Max
}
