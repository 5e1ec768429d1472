// Package poolmux owns the gateway's connections to mailbox servers: per
// event loop and per server, a small fixed set of persistent connections
// registered on that loop (no goroutine per connection), requests pipelined
// onto them with a FIFO per connection, a bounded queue when every
// connection is busy, reconnects with exponential backoff, and what happens
// to requests when a connection dies.
//
// poolmux does not speak HTTP. A request/response pair is an Exchange: the
// protocol layer (l7) writes the request when the exchange is started on a
// connection and consumes response bytes while the exchange is at the head
// of the connection's FIFO. That keeps the pipelining discipline in one
// place and the HTTP framing in another.
//
// Rules that keep pipelining safe:
//   - Only replayable exchanges (idempotent and without a body) are written
//     behind others; any other exchange waits for an idle connection and
//     holds it exclusively until its request is fully written.
//   - When a connection dies, exchanges that got no response byte and are
//     replayable are retried once on another connection; the others fail
//     with 502.
//   - A connection whose head response goes to a slow client can be
//     detached: it leaves the pool (a replacement is dialled), the
//     exchanges behind it are moved back to the queue, and it is closed once
//     that one response is done. A slow client never stalls other clients.
package poolmux
