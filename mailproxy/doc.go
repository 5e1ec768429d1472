// Package mailproxy is frontdoor's login-aware IMAP and POP3 proxy on the
// event loops.
//
// It owns the mail protocols up to login and the relay after it:
//
//   - Listeners (Listener): IMAP and POP3, plaintext with STARTTLS/STLS
//     (RFC 2595 sections 3.1 and 4; RFC 9051 section 6.2.1) or implicit
//     TLS (RFC 8314), both through tlsterm on the loop. A STARTTLS
//     upgrade wraps the open gnet connection with Terminator.AcceptFrom
//     after the plaintext "OK Begin TLS" and discards any plaintext the
//     client pipelined behind the command (RFC 2595 section 3.1, the
//     command-injection attack of CVE-2011-0411). Plaintext login before
//     TLS is refused unless the listener allows it (IMAP LOGINDISABLED,
//     RFC 9051 section 6.2.3; POP3 USER/AUTH not advertised, RFC 2449).
//   - The pre-login protocol, on the loop: IMAP greeting, CAPABILITY,
//     STARTTLS, LOGIN, AUTHENTICATE PLAIN (RFC 4616) with SASL-IR
//     (RFC 4959), ID (RFC 2971), NOOP, LOGOUT; synchronizing and
//     non-synchronizing literals (RFC 9051 section 4.3, RFC 7888 LITERAL-)
//     bounded in size; POP3 CAPA (RFC 2449), STLS (RFC 2595 section 4),
//     USER/PASS (RFC 1939 section 7), AUTH PLAIN (RFC 5034), QUIT. Every
//     other command before login gets the protocol's error. Lines, literals
//     and the time to log in are bounded; a failed login is answered after
//     a delay, counted per connection and throttled like HTTP (the
//     Authenticator shares the gateway's cache and throttle).
//   - Credential verification never runs on a loop: the Authenticator
//     answers from its cache or starts the work off the loop and wakes the
//     session (an EventLoop.Execute), exactly as l7 parks a request.
//   - Backend login: a connection to the user's database's active server is
//     dialled off the loop (with TLS when configured), enrolled on the
//     client's loop, and logged in with the master user (Dovecot's
//     "user*master" form, or SASL PLAIN with an authorization identity) or
//     the client's own credentials. The server's tagged OK, with the
//     capabilities it sends (RFC 9051 section 7.1, CAPABILITY response
//     code), is relayed to the client under the client's tag.
//   - The relay: bytes both ways on the loop. gnet cannot stop reading a
//     socket, so what waits for a slow reader is bounded
//     (MaxRelayBufferBytes) and the session is closed beyond it. An
//     idle timeout ends quiet sessions (IMAP's default 30 minutes covers
//     IDLE, RFC 9051 section 5.4; POP3's default 10 minutes, RFC 1939
//     section 3).
//   - Half-close, both ways (RFC 9293 section 3.6; over TLS close_notify,
//     RFC 8446 section 6.1): gnet closes a socket on a read EOF, but calls
//     OnClose before it closes the descriptor, so the side that sent its
//     FIN is duplicated there (gnet.Conn.Dup; tlsterm.Conn.Detach over
//     TLS) and written by one goroutine through a bounded queue, while
//     the other side stays on the loop and has its write side shut once
//     everything was relayed to it. A client that pipelines LOGOUT (or a
//     RETR and QUIT) and half-closes gets every answer; the server sees
//     the EOF where the client sent it. The duplicate and the goroutine
//     exist only while a side is half-closed (halfclose.go says what ends
//     them and what remains lossy: a half-close while gnet still held
//     bytes for that side, counted in halfclose_lost).
//   - Failover: CheckActive closes the sessions whose server no longer
//     holds their database's active copy, with "* BYE" (IMAP, RFC 9051
//     section 7.1.5) or "-ERR" (POP3), so the client reconnects and lands
//     on the new server.
//
// The gateway wires it (gateway/mail.go): a Handler is an l4.Acceptor for
// the mail listeners, and its Authenticator is the gateway's.
package mailproxy
