package l4

import "time"

// Expirer is told when a deadline it armed has passed.
type Expirer interface {
	// Expire runs on the owning loop when the deadline has passed. The
	// deadline is already disarmed; Expire may arm it again.
	Expire(now int64)
}

// Deadline is an intrusive list node that puts one connection on one of its
// loop's deadline lists. Embed it in per-connection state; the zero value is
// disarmed. A connection has at most one deadline at a time because it is in
// exactly one state (reading a header, reading a body, idle, writing).
type Deadline struct {
	prev, next *Deadline
	at         int64 // monotonic nanoseconds, see Loop.Now
	list       *DeadlineList
	owner      Expirer
	gen        uint32 // the list's sweep generation when armed
}

// Armed reports whether the deadline is on a list.
func (d *Deadline) Armed() bool { return d.list != nil }

// List returns the list the deadline is armed on, or nil.
func (d *Deadline) List() *DeadlineList { return d.list }

// Disarm takes the deadline off its list. It is a no-op when disarmed.
func (d *Deadline) Disarm() {
	if d.list == nil {
		return
	}
	d.prev.next = d.next
	d.next.prev = d.prev
	d.prev, d.next, d.list = nil, nil, nil
}

// DeadlineList holds deadlines of one fixed duration, so appending at the
// tail keeps it sorted by expiry: arming, re-arming and disarming are O(1)
// and a sweep only touches what has expired. This is cheaper than a heap for
// a few timeout classes and millions of connections, which is why each
// timeout class (header read, body read, idle, write) has its own list.
type DeadlineList struct {
	head     Deadline // sentinel; head.next is the earliest
	duration int64
	name     string
	gen      uint32 // bumped by every sweep, see expire
}

// NewDeadlineList returns an empty list whose deadlines expire d after arming.
func NewDeadlineList(name string, d time.Duration) *DeadlineList {
	l := &DeadlineList{duration: int64(d), name: name}
	l.head.next, l.head.prev = &l.head, &l.head
	return l
}

// Name is the timeout class, for logs and counters.
func (l *DeadlineList) Name() string { return l.name }

// Duration is the list's timeout.
func (l *DeadlineList) Duration() time.Duration { return time.Duration(l.duration) }

// Arm (re)places d at the tail of l, expiring at now+duration, with owner to
// be told. Re-arming on the same list moves it to the tail.
func (l *DeadlineList) Arm(d *Deadline, owner Expirer, now int64) {
	d.Disarm()
	d.owner = owner
	d.at = now + l.duration
	d.list = l
	d.gen = l.gen
	tail := l.head.prev
	d.prev, d.next = tail, &l.head
	tail.next = d
	l.head.prev = d
}

// expire disarms and reports every deadline due at now, oldest first, and
// returns how many expired. It stops at the first deadline not due, and at
// the first one armed during this sweep: an Expire that re-arms on a
// zero-length list (a poll) is due again at once and would otherwise keep
// the loop here forever.
func (l *DeadlineList) expire(now int64) int {
	l.gen++
	n := 0
	for {
		d := l.head.next
		if d == &l.head || d.at > now || d.gen == l.gen {
			return n
		}
		d.Disarm()
		n++
		d.owner.Expire(now)
	}
}

// Len counts armed deadlines (O(n); for tests and stats).
func (l *DeadlineList) Len() int {
	n := 0
	for d := l.head.next; d != &l.head; d = d.next {
		n++
	}
	return n
}
