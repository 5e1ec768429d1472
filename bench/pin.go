package bench

import (
	"errors"
	"os/exec"
	"slices"
	"strconv"
)

// CPU pinning (--pin): the proxy under test, the gateway or a peer, runs on
// pinProxyCPU; the load generator (this process) and mailboxd run on
// pinLoadCPU. On a 2-core machine that gives the proxy a core of its own
// (as far as the rest of the machine lets it), so its latency does not
// depend on how the scheduler interleaves it with the load generator, and
// leaves the other core to everything that produces and absorbs the load,
// which then bounds requests/s. CPU per request does not depend on it.
const (
	pinLoadCPU  = 0
	pinProxyCPU = 1
)

// canPin says why --pin cannot work here, if it cannot: it needs taskset
// (util-linux) for the children and CPUs 0 and 1 available to this process.
func canPin() error {
	if _, err := exec.LookPath("taskset"); err != nil {
		return errors.New("taskset not found (Debian: util-linux)")
	}
	cpus, err := selfAffinity()
	if err != nil {
		return err
	}
	if !slices.Contains(cpus, pinLoadCPU) || !slices.Contains(cpus, pinProxyCPU) {
		return errors.New("needs CPUs 0 and 1, this process may use " + fmtCPUs(cpus))
	}
	return nil
}

func fmtCPUs(cpus []int) string {
	s := ""
	for i, c := range cpus {
		if i > 0 {
			s += ","
		}
		s += strconv.Itoa(c)
	}
	return s
}

// pinArgv prefixes argv with taskset -c cpu when --pin is on.
func (s *suite) pinArgv(cpu int, argv []string) []string {
	if !s.o.pin {
		return argv
	}
	ts, err := exec.LookPath("taskset")
	if err != nil { // checked by canPin; run unpinned rather than not at all
		return argv
	}
	return append([]string{ts, "-c", strconv.Itoa(cpu)}, argv...)
}
