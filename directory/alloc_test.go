//go:build !race

// The race detector instruments memory accesses and may allocate, so the
// allocation gate runs without it.

package directory

import (
	"context"
	"strings"
	"testing"

	"frontdoor/examples"
)

// Live.Current, LookupMailbox, LookupLogin, MayOpen and Server run for every routed or
// authenticated request: they must not allocate, whatever the case of the
// name or whether it is known.
func TestLookupsDoNotAllocate(t *testing.T) {
	d, err := Parse("directory.toml", examples.Directory)
	if err != nil {
		t.Fatal(err)
	}
	// Include addresses longer than 32 bytes: a non-escaping string(b)
	// conversion up to that size is stack-allocated even when it copies,
	// so short ones alone would not catch a copying lookup.
	long := strings.Repeat("x", 60) + "@Example.test"
	for _, addr := range []string{"alice@example.test", "A.Smith@Example.TEST", "nobody@example.test", long, strings.Repeat("y", 320), strings.Repeat("y", 321)} {
		b := []byte(addr)
		if n := testing.AllocsPerRun(1000, func() { d.LookupMailbox(b) }); n != 0 {
			t.Errorf("LookupMailbox(%.30q): %v allocations per call, want 0", addr, n)
		}
	}
	for _, name := range []string{"alice", "ALICE", `EXAMPLE\Bob`, "A.Smith@Example.TEST", "nobody", `EXAMPLE
obody`, strings.Repeat("z", 64), strings.Repeat("z", 65), long} {
		b := []byte(name)
		if n := testing.AllocsPerRun(1000, func() { d.LookupLogin(b) }); n != 0 {
			t.Errorf("LookupLogin(%.30q): %v allocations per call, want 0", name, n)
		}
	}
	alice, carol := d.Users[0], d.Users[2]
	if n := testing.AllocsPerRun(1000, func() { carol.MayOpen(alice) }); n != 0 {
		t.Errorf("MayOpen: %v allocations per call, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { d.Server("mbx2") }); n != 0 {
		t.Errorf("Server: %v allocations per call, want 0", n)
	}
	l, err := NewLive(context.Background(), &fakeSource{data: examples.Directory}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() { l.Current() }); n != 0 {
		t.Errorf("Live.Current: %v allocations per call, want 0", n)
	}
}

func BenchmarkLookupLogin(b *testing.B) {
	d, err := Parse("directory.toml", examples.Directory)
	if err != nil {
		b.Fatal(err)
	}
	name := []byte(`EXAMPLE\Alice`)
	b.ReportAllocs()
	for b.Loop() {
		if d.LookupLogin(name) == nil {
			b.Fatal("not found")
		}
	}
}

func BenchmarkLookupMailbox(b *testing.B) {
	d, err := Parse("directory.toml", examples.Directory)
	if err != nil {
		b.Fatal(err)
	}
	addr := []byte("A.Smith@Example.TEST")
	b.ReportAllocs()
	for b.Loop() {
		if d.LookupMailbox(addr) == nil {
			b.Fatal("not found")
		}
	}
}
