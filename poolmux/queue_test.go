package poolmux

import "testing"

type fakeExchange struct{ id int }

func (*fakeExchange) Replayable() bool                         { return true }
func (*fakeExchange) Start(*Conn) bool                         { return true }
func (*fakeExchange) Receive(*Conn, []byte) (int, bool, error) { return 0, false, nil }
func (*fakeExchange) Fail(int, string)                         {}
func (*fakeExchange) Received() bool                           { return false }

func TestQueueOrderAndBounds(t *testing.T) {
	var q queue
	q.init(3)
	xs := []*fakeExchange{{1}, {2}, {3}, {4}}
	for i := 0; i < 3; i++ {
		if !q.push(xs[i], int64(i)) {
			t.Fatalf("push %d refused", i)
		}
	}
	if q.push(xs[3], 3) || q.pushFront(xs[3], 3) {
		t.Fatal("a full queue took more")
	}
	if got := q.pop().(*fakeExchange).id; got != 1 {
		t.Fatalf("pop %d, want 1", got)
	}
	// pushFront puts a retried exchange ahead of newer ones, wrapping
	// around the ring.
	q.pushFront(xs[0], 9)
	q.pop()
	q.pushFront(xs[3], 10)
	want := []int{4, 2, 3}
	if q.peekTime() != 10 {
		t.Fatalf("peekTime %d", q.peekTime())
	}
	for _, w := range want {
		if got := q.pop().(*fakeExchange).id; got != w {
			t.Fatalf("pop %d, want %d", got, w)
		}
	}
	if q.len() != 0 {
		t.Fatalf("len %d", q.len())
	}
}

// max_queue = 0: nothing ever waits.
func TestQueueZeroCapacity(t *testing.T) {
	var q queue
	q.init(0)
	if q.push(&fakeExchange{}, 0) || q.pushFront(&fakeExchange{}, 0) || q.len() != 0 {
		t.Fatal("a zero-capacity queue took an exchange")
	}
}

// The ring grows as a burst needs it, keeps FIFO order across the growth
// (also when the ring has wrapped), and stops at its bound.
func TestQueueGrowsToItsBound(t *testing.T) {
	var q queue
	const limit = 100
	q.init(limit)
	if len(q.items) > 16 {
		t.Fatalf("a fresh queue holds %d slots, want at most 16", len(q.items))
	}
	next, want := 0, 0
	// Wrap the small ring first: push 10, pop 8.
	for range 10 {
		q.push(&fakeExchange{next}, int64(next))
		next++
	}
	for range 8 {
		if got := q.pop().(*fakeExchange).id; got != want {
			t.Fatalf("pop %d, want %d", got, want)
		}
		want++
	}
	for q.len() < limit {
		if !q.push(&fakeExchange{next}, int64(next)) {
			t.Fatalf("push refused at %d of %d", q.len(), limit)
		}
		next++
	}
	if q.push(&fakeExchange{next}, 0) || len(q.items) != limit {
		t.Fatalf("grew past its bound: %d slots", len(q.items))
	}
	for q.len() > 0 {
		if got := q.pop().(*fakeExchange).id; got != want {
			t.Fatalf("pop %d, want %d", got, want)
		}
		want++
	}
}
