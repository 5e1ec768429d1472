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
