//go:build !linux

package bench

import "syscall"

// childSysProcAttr: outside Linux there is no parent-death signal; the runner
// still stops its children on every exit path it controls.
func childSysProcAttr() *syscall.SysProcAttr { return nil }

// nofileLimit: the idle scenarios read the limit on Linux only; 0 is
// "unknown", which leaves --idle-conns uncapped.
func nofileLimit() uint64 { return 0 }
