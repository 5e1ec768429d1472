package poolmux

import "sync/atomic"

// Health is one server endpoint's health, shared by the pools of every
// loop (like Stats). The loops read it without locks: routing asks Healthy
// for every request, and the pools and the protocol layer report what
// they see of the server with Success and Failure (passive outlier
// detection). Who decides the server is healthy again is the owner's
// business (the gateway's active checks): SetHealthy.
//
// A nil *Health is a server that is always healthy and is not watched.
type Health struct {
	down atomic.Bool
	// run counts consecutive failures seen by the loops since the last
	// success or the last SetHealthy(true).
	run       atomic.Int32
	threshold int32
	outlier   func(reason string)
}

// NewHealth returns the health of a server that starts healthy. After
// threshold consecutive failures with no success between them, outlier is
// called once with the last failure's reason, on the loop that saw it (it
// must not block); threshold 0 turns passive detection off.
func NewHealth(threshold int, outlier func(reason string)) *Health {
	return &Health{threshold: int32(threshold), outlier: outlier}
}

// Healthy reports whether new requests may be sent to the server.
func (h *Health) Healthy() bool { return h == nil || !h.down.Load() }

// SetHealthy marks the server healthy or not. Marking it healthy forgets
// the failures counted so far.
func (h *Health) SetHealthy(ok bool) {
	if ok {
		h.run.Store(0)
	}
	h.down.Store(!ok)
}

// Success reports a response that says the server works (any status
// below 500). It ends a run of failures. The common case, no failure
// pending, is one atomic load and no write, so loops do not contend for
// the cache line.
func (h *Health) Success() {
	if h != nil && h.run.Load() != 0 {
		h.run.Store(0)
	}
}

// Failure reports a failed attempt: a dial or TLS handshake that failed,
// a connection lost with requests in flight, a response timeout or a 5xx
// response. reason says which, for the log; it should be a constant.
func (h *Health) Failure(reason string) {
	if h == nil || h.threshold == 0 {
		return
	}
	if h.run.Add(1) == h.threshold && !h.down.Load() && h.outlier != nil {
		h.outlier(reason)
	}
}
