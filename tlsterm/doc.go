// Package tlsterm terminates TLS on frontdoor's gnet event loops.
//
// # Why an adapter
//
// gnet has no TLS (gnet issue #749) and a forked crypto/tls would freeze at
// one Go release, losing the post-quantum key exchanges that crypto/tls
// keeps adding (Go 1.24 enabled the X25519MLKEM768 hybrid by default, 1.26
// added SecP256r1MLKEM768 and SecP384r1MLKEM1024). tlsterm therefore runs the
// standard crypto/tls over an in-memory net.Conn (the "wire") that the event
// loop feeds:
//
//   - The handshake runs on a goroutine from a bounded pool. The loop's
//     OnTraffic moves ciphertext into the wire under a mutex and signals the
//     goroutine, whose Read blocks on a condition variable; the goroutine's
//     writes are copied and handed to the loop with gnet's AsyncWrite. When
//     the handshake ends the goroutine records statistics and calls
//     gnet.Conn.Wake, so the loop's OnTraffic runs again and picks up any
//     application data that came with the client's Finished.
//   - After the handshake no goroutine is left, and a TLS 1.3 connection
//     leaves crypto/tls too: tlsterm takes the application traffic secrets
//     from crypto/tls's key log (secrets.go) and runs its own record
//     layer on the loop (record13.go, conn13.go): records are read from
//     gnet's buffer into the plaintext buffer and decrypted there in
//     place, and sealed in place in the buffer handed to gnet.Conn.Write,
//     which copies what the socket does not take at once. It handles
//     application data, alerts and KeyUpdate (RFC 8446 sections 5, 6 and
//     4.6.3) and allocates nothing; the tls.Conn is dropped.
//   - TLS 1.2 connections (and all of them with Settings.CryptoTLSRecords)
//     keep crypto/tls's Read and Write on the loop: the wire's Read copies
//     ciphertext straight out of gnet's inbound buffer and, when that is
//     empty, returns a net.Error whose Timeout and Temporary methods report
//     true. crypto/tls does not make such an error sticky (crypto/tls
//     conn.go, readRecordOrCCS): a partial record stays in its buffer and
//     decryption resumes when more bytes arrive.
//     TestTemporaryErrorIsNotSticky pins this, because that path depends
//     on it. The wire's Write hands records to gnet.Conn.Write.
//
// # What the application sees
//
// A *Conn offers the subset of gnet.Conn that frontdoor's l7 uses, with the
// same semantics but on plaintext. l7 is expected to declare
//
//	type Transport interface {
//		Peek(n int) ([]byte, error)
//		Discard(n int) (int, error)
//		InboundBuffered() int
//		Write(p []byte) (int, error)
//		Writev(bs [][]byte) (int, error)
//		OutboundBuffered() int
//		Close() error
//	}
//
// which both gnet.Conn and *Conn satisfy. The loop's callbacks drive a Conn:
//
//	OnOpen:    tc := term.Accept(c)           // store tc with the connection
//	OnTraffic: ready, err := tc.OnTraffic()   // err != nil: return gnet.Close
//	           if ready { process(tc) }       // Peek / Discard / Write ...
//	OnClose:   tc.OnClose()
//
// Decryption is bounded: OnTraffic stops once Settings.MaxPlaintextBuffer
// bytes of plaintext are waiting, and leaves the rest as ciphertext in gnet's
// buffer. Peek decrypts more whenever the application has consumed some, so
// a caller that Discards and Peeks again sees the rest without waiting for
// the socket to become readable. InboundBuffered counts plaintext plus the
// ciphertext tlsterm can see, so the caller's own bounds keep working.
//
// # Memory
//
// An idle TLS 1.3 connection after its handshake holds the Conn (about 150
// bytes), gnet's connection (about 0.4 KiB with its buffers returned), the
// record layer (two AEAD states and the traffic secrets, for KeyUpdate) and
// a copy of the connection state (tls.ConnectionState: version, suite,
// ALPN, peer certificates). tlsterm's plaintext buffer comes from a
// per-size pool and goes back when drained; the handshake state (mutex,
// condition variable, wire buffer) and the goroutine end with the
// handshake, and so does crypto/tls's Conn.
//
// Measured by TestIdleConnMemory (2000 connections, one small echo, server
// in its own process, after a collection that returns free memory): about
// 2.6 KiB of heap and 3.9 KiB of RSS per connection, no goroutine.
//
// A TLS 1.2 connection (or any with Settings.CryptoTLSRecords) keeps
// crypto/tls's Conn as well, beyond tlsterm's control: the tls.Conn struct
// (872 bytes in Go 1.26), two AEAD states, the exporter closure and any
// peer certificates, and the capacity of two bytes.Buffers it never
// shrinks: the raw-input buffer, sized by the largest record received, and
// the handshake-message buffer. The wire hands crypto/tls at most one
// record at a time during the handshake, so queued bytes do not inflate
// the raw-input buffer. TestCryptoTLSRetainsLittleAfterHandshake pins
// crypto/tls's share: about 6.5 KiB per server connection after a TLS 1.3
// X25519MLKEM768 handshake, and nothing of the handshake itself.
//
// A handshake makes far more garbage than that (tens of KiB, and the
// handshake goroutine's stack), so right after a burst of handshakes a
// process holds about twice the connections' live heap until a collection
// and the return of the free pages; the gateway's memory trimmer does both
// once the pool has gone quiet (Stats.Running, Stats.Queued and
// Stats.Finished tell it when).
//
// # Client connections
//
// Client (client.go) is the other direction, for the gateway's TLS
// connections to its backends (poolmux). The handshake needs no pool: it
// runs on the dialling goroutine, which may block, with the wire
// forwarding to the dialled net.Conn. The socket is then enrolled on a
// loop and Attach gives the Conn its gnet.Conn; from there on the Conn is
// driven exactly like a server Conn after its handshake.
//
// # Other parts
//
// Store selects certificates by SNI (RFC 6066 section 3) from a reloadable
// set of PEM files; TicketKeys shares session-ticket keys across an array
// of gateways (RFC 8446 section 4.6.1, RFC 5077); NewTerminator turns
// Settings into a tls.Config; Stats counts handshakes by version, cipher
// suite and key-exchange group (the post-quantum share among them) and
// failures by reason; WriteSelfSigned writes a development certificate.
//
// # Session-ticket key files
//
// Session tickets (RFC 8446 section 4.6.1, RFC 5077 for TLS 1.2) are
// encrypted by the server with a key only servers know; a client resumes
// at any server that has the key. An array of gateways behind one name
// therefore shares its keys through a file, distributed like the
// certificates:
//
//	# frontdoor session-ticket keys: newest first, one per line ...
//	1767225600 <base64 of 32 random bytes: 44 characters>
//	1767182400 <base64 of 32 random bytes: 44 characters>
//
// Each line is the key's creation time in Unix seconds and 32 random bytes
// in standard base64. Blank lines and lines starting with '#' are ignored.
// Keys are listed newest first; the first one encrypts new tickets, all of
// them decrypt. The file holds secrets that let anyone who has them decrypt
// resumed sessions, so it must not be readable by group or others: tlsterm
// refuses a file with any of the mode bits 0077.
//
// Rotation: `frontdoor tls ticket-keys --out FILE` (CreateOrRotateKeyFile)
// adds a new key in front and drops keys older than the retention, run on
// a schedule on one host and copied to the others. Until every host has
// reloaded, tickets issued with the new key by one host fall back to a
// full handshake on another; nothing fails.
//
// Go's crypto/tls derives separate AES and HMAC keys from each 32-byte key
// (tls.Config.SetSessionTicketKeys) and bounds a ticket's age itself (7
// days); dropping a key ends its tickets earlier.
//
// # Concurrency
//
// Conn methods, except State, must be called on the connection's event
// loop, like gnet.Conn's Reader and Writer methods. Terminator, Store,
// TicketKeys and Stats are safe for concurrent use.
package tlsterm
