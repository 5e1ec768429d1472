package l4

// Transport is the byte stream of a connection on a loop, as the protocol
// layers use it: gnet.Conn's reading and writing methods with gnet's
// semantics. Peek(n <= 0) returns everything buffered; bytes returned by
// Peek are valid until Discard or the end of the callback; Discard(n <= 0)
// drops everything, so callers only discard what they consumed. A plaintext
// connection is its own Transport (every gnet.Conn is one); over TLS it is
// tlsterm's plaintext view. Client sessions (l7) and backend connections
// (poolmux) both read and write through it.
type Transport interface {
	Peek(n int) ([]byte, error)
	Discard(n int) (int, error)
	InboundBuffered() int
	Write(p []byte) (int, error)
	Writev(bs [][]byte) (int, error)
	OutboundBuffered() int
	Close() error
}
