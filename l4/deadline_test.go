package l4

import "testing"

type rearmer struct {
	d     Deadline
	l     *DeadlineList
	calls int
}

func (r *rearmer) Expire(now int64) {
	r.calls++
	r.l.Arm(&r.d, r, now) // a poll: due again at once
}

// A deadline re-armed on a zero-length list from its own Expire must wait
// for the next sweep, or the sweep never ends (it froze a loop once).
func TestExpireDoesNotRevisitRearmed(t *testing.T) {
	l := NewDeadlineList("poll", 0)
	a, b := &rearmer{l: l}, &rearmer{l: l}
	l.Arm(&a.d, a, 100)
	l.Arm(&b.d, b, 100)
	if n := l.expire(100); n != 2 || a.calls != 1 || b.calls != 1 {
		t.Fatalf("first sweep: n=%d calls=%d,%d", n, a.calls, b.calls)
	}
	if n := l.expire(100); n != 2 || a.calls != 2 {
		t.Fatalf("second sweep: n=%d calls=%d", n, a.calls)
	}
}

type counter struct{ n int }

func (c *counter) Expire(int64) { c.n++ }

func TestDeadlineOrderAndDisarm(t *testing.T) {
	l := NewDeadlineList("idle", 10)
	var ds [3]Deadline
	var c counter
	for i := range ds {
		l.Arm(&ds[i], &c, int64(i))
	}
	ds[1].Disarm()
	if l.Len() != 2 || ds[1].Armed() {
		t.Fatalf("len %d", l.Len())
	}
	if n := l.expire(10); n != 1 || c.n != 1 { // only ds[0] (at 10) is due
		t.Fatalf("expired %d", n)
	}
	l.Arm(&ds[2], &c, 100) // re-arm moves it to the tail with a new deadline
	if n := l.expire(50); n != 0 {
		t.Fatalf("expired %d before due", n)
	}
	if n := l.expire(110); n != 1 || l.Len() != 0 {
		t.Fatalf("expired %d, left %d", n, l.Len())
	}
}
