//go:build !linux

package bench

import (
	"errors"
	"syscall"
)

// childSysProcAttr: outside Linux there is no parent-death signal; the runner
// still stops its children on every exit path it controls.
func childSysProcAttr() *syscall.SysProcAttr { return nil }

// nofileLimit: the idle scenarios read the limit on Linux only; 0 is
// "unknown", which leaves --idle-conns uncapped.
func nofileLimit() uint64 { return 0 }

// pinSelf: CPU pinning (--pin) is Linux-only.
func pinSelf(cpu int) (restore func(), err error) {
	return nil, errors.New("CPU pinning is supported on Linux only")
}

func selfAffinity() ([]int, error) { return nil, errors.New("CPU affinity is read on Linux only") }

// killStragglers: no process groups of the runner's making outside Linux.
func killStragglers(pids []int, pgid int) {}

func nofileHardLimit() uint64 { return 0 }
