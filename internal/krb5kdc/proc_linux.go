package krb5kdc

import "syscall"

// childAttr makes the KDC die with the test process, even when that is
// killed: a stray krb5kdc would hold its port and directory.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
