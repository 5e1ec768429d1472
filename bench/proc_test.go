package bench

import (
	"os"
	"testing"
	"time"
)

func TestSampleProcSelf(t *testing.T) {
	pid := os.Getpid()
	before, err := SampleProc(pid)
	if err != nil {
		t.Fatal(err)
	}
	if before.RSS <= 0 {
		t.Errorf("RSS %d", before.RSS)
	}
	// Burn at least 100 ms of CPU (10 ticks), bounded in wall time.
	deadline := time.Now().Add(5 * time.Second)
	var after ProcSample
	x := 1.0
	for time.Now().Before(deadline) {
		for i := 0; i < 1e6; i++ {
			x = x*1.0000001 + 1e-9
		}
		if after, err = SampleProc(pid); err != nil {
			t.Fatal(err)
		}
		if after.CPU-before.CPU >= 100*time.Millisecond {
			break
		}
	}
	if d := after.CPU - before.CPU; d < 100*time.Millisecond {
		t.Fatalf("CPU went from %v to %v after burning (x=%v)", before.CPU, after.CPU, x)
	}
	perReq := CPUPerRequest(before, after, 1000)
	if want := float64((after.CPU - before.CPU).Microseconds()) / 1000; perReq != want || perReq < 100 {
		t.Errorf("CPUPerRequest = %v, want %v", perReq, want)
	}
	if CPUPerRequest(before, after, 0) != 0 {
		t.Error("CPUPerRequest with no requests is not 0")
	}
}

func TestParseProcStat(t *testing.T) {
	// A command name with spaces and parentheses must not shift the fields.
	stat := []byte("4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 8 0 12345 1000000 500 18446744073709551615\n")
	cpu, err := parseProcStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if cpu != 3250*time.Millisecond { // (250+75) ticks of 10 ms
		t.Errorf("cpu %v, want 3.25s", cpu)
	}
	if _, err := parseProcStatCPU([]byte("4242 (x) S 1 2")); err == nil {
		t.Error("short stat accepted")
	}

	status := []byte("Name:\tfrontdoor\nVmPeak:\t  20000 kB\nVmRSS:\t   12345 kB\nThreads:\t5\n")
	rss, err := parseProcStatusRSS(status)
	if err != nil || rss != 12345*1024 {
		t.Errorf("rss %d err %v", rss, err)
	}
	if _, err := parseProcStatusRSS([]byte("Name:\tzombie\nState:\tZ\n")); err == nil {
		t.Error("missing VmRSS accepted")
	}
}

func TestSampleProcMissing(t *testing.T) {
	if _, err := SampleProc(1 << 30); err == nil {
		t.Error("sampling a nonexistent pid succeeded")
	}
}
