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
//
// # TLS to a server
//
// A pool given SetTLS speaks TLS to its server; everything above (the
// FIFO, pipelining, detach, retries, backoff) is the same, because a Conn
// reads and writes through an l4.Transport: the gnet.Conn itself for a
// plaintext server, the plaintext view of a tlsterm.Conn for a TLS one.
// Both have gnet's Peek/Discard/Write/Writev semantics, so the plaintext
// path is unchanged (one interface call, as before, and no allocation).
//
// The client handshake runs in the dialling goroutine, over the dialled
// socket, blocking, bounded by ConnectTimeout; only then is the socket
// enrolled on the loop. That is possible with crypto/tls because the
// tls.Conn is bound to tlsterm's wire, not to the socket: the wire forwards
// to the net.Conn during the handshake and reads gnet's inbound buffer once
// OnOpen has attached the loop's gnet.Conn (tlsterm.Client). Whatever
// crypto/tls read past the handshake stays in its own buffer and what it
// did not read stays in the kernel's socket buffer, which gnet reads from
// its duplicate of the descriptor, so nothing is lost at the switch. This
// needs no handshake goroutine pool and no in-memory feeding on the loop
// (the server side needs both because a loop cannot block on a client's
// handshake; a dial goroutine can block on a server's).
//
// After the handshake the loop decrypts in OnTraffic (tlsterm.Conn's
// OnTraffic) and encrypts in Write/Writev; a dispatch batch becomes one
// TLS write of up to 16 KiB records. A failed handshake (untrusted
// certificate, wrong name, timeout) is a failed dial: counted in
// DialFailures, retried with backoff, and the pool is down (502) until a
// dial succeeds. Closing sends close_notify; the server's close_notify
// closes the connection like a FIN.
package poolmux
