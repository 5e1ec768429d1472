package cli

import (
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"frontdoor/upgrade"
)

// upgradePoll is how often `frontdoor upgrade` looks at the PID file or
// the old process.
const upgradePoll = 100 * time.Millisecond

func cmdUpgrade(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("upgrade", "--pid-file FILE | --pid PID [--timeout DURATION]",
		"Hand a running gateway over to a new process started from the same executable\n"+
			"path (install the new binary there first), which reads the configuration\n"+
			"afresh: the way to apply what a SIGHUP reload refuses (listeners, [engine]...).\n"+
			"It sends SIGUSR2 to the running process, which starts the new one, waits until\n"+
			"it serves, then drains and exits 0; should the new process fail, the old one\n"+
			"logs why and keeps serving. Requests in flight complete, and no connection is\n"+
			"closed under a request (docs/deploy.md, \"Reload and upgrade\").\n"+
			"\n"+
			"With --pid-file (the file `frontdoor run --pid-file` writes), this command\n"+
			"returns as soon as the file names the new process (0), or is written again\n"+
			"with the old pid: the upgrade was refused or failed (1; the log says why).\n"+
			"With --pid alone it returns 0 once the old process has exited, 1 after\n"+
			"--timeout (the upgrade failed, or the drain goes on).")
	pidFile := fs.String("pid-file", "", "the running gateway's pid `FILE`")
	pid := fs.Int("pid", 0, "the running gateway's `PID` (when there is no pid file)")
	timeout := fs.Duration("timeout", 90*time.Second, "give up after `DURATION`")
	if code, done := parse(fs, args, stdout, stderr); done {
		return code
	}
	switch {
	case fs.NArg() > 0:
		return usageError(fs, stderr, "unexpected argument %q", fs.Arg(0))
	case (*pidFile == "") == (*pid == 0):
		return usageError(fs, stderr, "want exactly one of --pid-file and --pid")
	case *pid < 0:
		return usageError(fs, stderr, "--pid %d: not a process id", *pid)
	case *timeout <= 0:
		return usageError(fs, stderr, "--timeout must be positive")
	}
	old := *pid
	var before os.FileInfo
	if *pidFile != "" {
		var err error
		if old, err = upgrade.ReadPIDFile(*pidFile); err != nil {
			fmt.Fprintf(stderr, "frontdoor upgrade: %v\n", err)
			return exitFailure
		}
		// A failed upgrade replaces the file with one naming the old
		// process again: a file other than this one is an answer.
		if before, err = os.Stat(*pidFile); err != nil {
			fmt.Fprintf(stderr, "frontdoor upgrade: %v\n", err)
			return exitFailure
		}
	}
	if err := syscall.Kill(old, syscall.SIGUSR2); err != nil {
		fmt.Fprintf(stderr, "frontdoor upgrade: signalling pid %d: %v\n", old, err)
		return exitFailure
	}
	deadline := time.Now().Add(*timeout)
	for time.Now().Before(deadline) {
		time.Sleep(upgradePoll)
		if *pidFile != "" {
			cur, err := upgrade.ReadPIDFile(*pidFile)
			if err == nil && cur != old && upgrade.Alive(cur) {
				fmt.Fprintf(stdout, "frontdoor upgrade: pid %d serves; pid %d drains\n", cur, old)
				return exitOK
			}
			if fi, serr := os.Stat(*pidFile); err == nil && cur == old && serr == nil && !os.SameFile(before, fi) {
				fmt.Fprintf(stderr, "frontdoor upgrade: pid %d refused or failed the upgrade and keeps serving; its log says why\n", old)
				return exitFailure
			}
		}
		if !upgrade.Alive(old) {
			if *pidFile == "" {
				fmt.Fprintf(stdout, "frontdoor upgrade: pid %d handed over and exited\n", old)
				return exitOK
			}
			fmt.Fprintf(stderr, "frontdoor upgrade: pid %d exited and %s names no new process\n", old, *pidFile)
			return exitFailure
		}
	}
	fmt.Fprintf(stderr, "frontdoor upgrade: no handover within %v: the upgrade failed (see the gateway's log) or pid %d still drains\n", *timeout, old)
	return exitFailure
}
