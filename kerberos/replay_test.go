package kerberos

import "testing"

func TestReplayCache(t *testing.T) {
	c := NewReplayCache(3)
	k := func(b byte) ReplayKey { return ReplayKey{b} }
	const sec = int64(1e9)
	if !c.Check(k(1), 10*sec, 0) || c.Check(k(1), 10*sec, 5*sec) {
		t.Fatal("a replay within its window was not caught")
	}
	// After its expiry the key is forgotten (the skew check refuses it).
	if !c.Check(k(1), 30*sec, 11*sec) {
		t.Fatal("an expired entry still counted")
	}
	c.Check(k(2), 30*sec, 11*sec)
	c.Check(k(3), 30*sec, 11*sec)
	if c.Len() != 3 {
		t.Fatalf("len %d", c.Len())
	}
	// Full of live entries: the oldest goes, counted.
	if !c.Check(k(4), 30*sec, 12*sec) || c.Len() != 3 || c.Evicted() != 1 {
		t.Fatalf("len %d evicted %d", c.Len(), c.Evicted())
	}
	if c.Check(k(4), 30*sec, 12*sec) || c.Check(k(3), 30*sec, 12*sec) {
		t.Fatal("a live entry was lost")
	}
	// Everything expires.
	if !c.Check(k(5), 60*sec, 40*sec) || c.Len() != 1 {
		t.Fatalf("len %d after expiry", c.Len())
	}
}
