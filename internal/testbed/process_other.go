//go:build !linux

package testbed

import "syscall"

// sysProcAttr has nothing to add outside Linux, which alone offers
// Pdeathsig: children of a test binary that dies abruptly are orphaned.
func sysProcAttr() *syscall.SysProcAttr { return nil }
