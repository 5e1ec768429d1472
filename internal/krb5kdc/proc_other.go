//go:build !linux

package krb5kdc

import "syscall"

// childAttr: without Pdeathsig the KDC is stopped by Stop only.
func childAttr() *syscall.SysProcAttr { return nil }
