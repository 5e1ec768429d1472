package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// userHZ is the unit of the utime and stime fields of /proc/PID/stat. The
// kernel exports them in USER_HZ clock ticks, which is part of the Linux
// user-space ABI and fixed at 100 on every architecture Go supports on Linux
// (it is what sysconf(_SC_CLK_TCK) and `getconf CLK_TCK` return), whatever
// CONFIG_HZ the kernel was built with. Hard-coding it avoids a cgo call or a
// subprocess. One tick is 10 ms, so CPU per request is only meaningful over
// runs that burn at least a few hundred ms of CPU; the suite's runs burn
// seconds.
const userHZ = 100

// ProcSample is a process's resource usage at one instant.
type ProcSample struct {
	PID int
	// CPU is user plus system time consumed so far by all the process's
	// threads, with 10 ms resolution (see userHZ).
	CPU time.Duration
	// RSS is the resident set size in bytes (VmRSS).
	RSS int64
}

// SampleProc reads /proc/PID/stat and /proc/PID/status.
func SampleProc(pid int) (ProcSample, error) {
	cpu, err := ProcCPU(pid)
	if err != nil {
		return ProcSample{}, err
	}
	rss, err := ProcRSS(pid)
	if err != nil {
		return ProcSample{}, err
	}
	return ProcSample{PID: pid, CPU: cpu, RSS: rss}, nil
}

// ProcCPU returns utime+stime of process pid from /proc/PID/stat.
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseProcStatCPU(b)
}

// parseProcStatCPU extracts utime (field 14) and stime (field 15) from the
// contents of a /proc/PID/stat file. Field 2, the command name, is in
// parentheses and may itself contain spaces and parentheses, so fields are
// counted from the last ')'.
func parseProcStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: malformed /proc stat: no ')'")
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3 (state)
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("bench: malformed /proc stat: %d fields", len(f)+2)
	}
	u, err1 := strconv.ParseUint(string(f[utime]), 10, 64)
	s, err2 := strconv.ParseUint(string(f[stime]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bench: malformed /proc stat: utime %q stime %q", f[utime], f[stime])
	}
	return time.Duration(u+s) * (time.Second / userHZ), nil
}

// ProcRSS returns the resident set size of process pid in bytes, from the
// VmRSS line of /proc/PID/status.
func ProcRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	return parseProcStatusRSS(b)
}

// parseProcStatusRSS finds "VmRSS:   1234 kB" in /proc/PID/status contents.
// A zombie has no VmRSS line; that is reported as an error.
func parseProcStatusRSS(b []byte) (int64, error) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("bench: malformed VmRSS line %q", line)
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: malformed VmRSS line %q", line)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("bench: no VmRSS in /proc status (process exited?)")
}

// CPUPerRequest returns the CPU time a process spent per request over a run,
// in microseconds: (after.CPU - before.CPU) / requests. It is 0 when there
// were no requests. The figure includes everything the process did in the
// interval (timers, logging, garbage collection), which is what a request
// costs in steady state.
func CPUPerRequest(before, after ProcSample, requests int64) float64 {
	if requests <= 0 {
		return 0
	}
	d := after.CPU - before.CPU
	return float64(d.Microseconds()) / float64(requests)
}

// ProcFDs returns the number of file descriptors process pid has open (the
// entries of /proc/PID/fd).
func ProcFDs(pid int) (int, error) {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return 0, err
	}
	return len(ents), nil
}

// ProcNoFile returns the soft limit on open files (RLIMIT_NOFILE) of
// process pid, from /proc/PID/limits; 0 means unlimited.
func ProcNoFile(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		return 0, err
	}
	return parseProcLimitsNoFile(b)
}

// parseProcLimitsNoFile finds the soft limit in the line
// "Max open files            20000                20000                files".
func parseProcLimitsNoFile(b []byte) (uint64, error) {
	for _, line := range bytes.Split(b, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte("Max open files"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) < 2 {
			break
		}
		if string(f[0]) == "unlimited" {
			return 0, nil
		}
		n, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil {
			break
		}
		return n, nil
	}
	return 0, fmt.Errorf("bench: no \"Max open files\" limit in /proc limits")
}

// ProcTree returns root and every process descended from it, root first:
// the processes of a server that forks workers (nginx's master and its
// workers). Processes are found through the parent field of every
// /proc/PID/stat; one that exits meanwhile is left out.
func ProcTree(root int) ([]int, error) {
	if _, err := os.Stat("/proc/" + strconv.Itoa(root)); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == root {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited
		}
		if ppid, err := parseProcStatPPID(b); err == nil {
			children[ppid] = append(children[ppid], pid)
		}
	}
	tree := []int{root}
	for i := 0; i < len(tree) && i < 1<<16; i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree, nil
}

// parseProcStatPPID extracts the parent's pid (field 4) from the contents
// of a /proc/PID/stat file.
func parseProcStatPPID(b []byte) (int, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: malformed /proc stat: no ')'")
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3 (state)
	if len(f) < 2 {
		return 0, fmt.Errorf("bench: malformed /proc stat: %d fields", len(f)+2)
	}
	return strconv.Atoi(string(f[1]))
}

// parseProcStatPgrp extracts the process group (field 5) from the contents
// of a /proc/PID/stat file.
func parseProcStatPgrp(b []byte) (int, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: malformed /proc stat: no ')'")
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3 (state)
	if len(f) < 3 {
		return 0, fmt.Errorf("bench: malformed /proc stat: %d fields", len(f)+2)
	}
	return strconv.Atoi(string(f[2]))
}

// SampleTree samples root and its descendants (ProcTree) and returns the
// sums of their CPU time and RSS, with PID root. A process that exits
// between the listing and its sample is left out; root itself must be
// there. RSS summed over processes counts pages they share (code, nginx's
// shared memory zones) once per process: a fixed amount that cancels out
// of a difference between two samples of the same tree.
func SampleTree(root int) (ProcSample, error) {
	pids, err := ProcTree(root)
	if err != nil {
		return ProcSample{}, err
	}
	sum := ProcSample{PID: root}
	for i, pid := range pids {
		s, err := SampleProc(pid)
		if err != nil {
			if i == 0 {
				return ProcSample{}, err
			}
			continue
		}
		sum.CPU += s.CPU
		sum.RSS += s.RSS
	}
	return sum, nil
}

// TreeFDs returns the number of file descriptors open in root and its
// descendants together.
func TreeFDs(root int) (int, error) {
	pids, err := ProcTree(root)
	if err != nil {
		return 0, err
	}
	n := 0
	for i, pid := range pids {
		k, err := ProcFDs(pid)
		if err != nil {
			if i == 0 {
				return 0, err
			}
			continue
		}
		n += k
	}
	return n, nil
}

// EstablishedOn counts the established IPv4 TCP connections whose local
// port is port (/proc/net/tcp): the connections a server listening on that
// port holds, whichever of its processes holds them, and not its
// connections to backends.
func EstablishedOn(port int) (int, error) {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return 0, err
	}
	return countEstablished(b, port)
}

// countEstablished counts the lines of a /proc/net/tcp table in state 01
// (ESTABLISHED) with local port port ("0100007F:1F90" is 127.0.0.1:8080).
func countEstablished(b []byte, port int) (int, error) {
	want := fmt.Sprintf(":%04X", port)
	n, lines := 0, 0
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if lines++; lines == 1 {
			continue // header
		}
		f := bytes.Fields(line)
		if len(f) < 4 {
			continue
		}
		if string(f[3]) == "01" && bytes.HasSuffix(f[1], []byte(want)) {
			n++
		}
	}
	if lines == 0 {
		return 0, fmt.Errorf("bench: empty /proc/net/tcp")
	}
	return n, nil
}
