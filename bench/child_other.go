//go:build !linux

package bench

import "syscall"

// childSysProcAttr: outside Linux there is no parent-death signal; the runner
// still stops its children on every exit path it controls.
func childSysProcAttr() *syscall.SysProcAttr { return nil }
