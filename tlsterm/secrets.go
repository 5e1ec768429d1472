package tlsterm

import (
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"sync"
)

// secretLog receives crypto/tls's key log (tls.Config.KeyLogWriter, the
// NSS key log format) and keeps each TLS 1.3 handshake's application
// traffic secrets until the handshake's goroutine takes them for the
// record layer (record13.go).
//
// The key log is the one interface through which crypto/tls gives the
// secrets out. Its lines name a handshake by the client's random, which
// tlsterm reads from the ClientHello (handshake.hello). Two handshakes in
// flight with the same client random (a replayed ClientHello) cannot be
// told apart: the entry is marked and both connections keep crypto/tls's
// record layer. Every handshake removes its entry when it ends, so a
// failed one leaves nothing behind; one whose ClientHello tlsterm could not
// read the random from (split into tiny records) cannot, and its entry is
// swept once older than the handshake timeout, when the log holds more
// entries than handshakes can run at once.
type secretLog struct {
	mu sync.Mutex
	m  map[[32]byte]*trafficSecrets
	// max and ttl bound the log: at most max entries before a sweep of
	// those older than ttl nanoseconds (mono); max 0: no bound.
	max int
	ttl int64
}

type trafficSecrets struct {
	client, server []byte
	ambiguous      bool
	logged         int64 // mono() of the first line
}

// Labels of the lines kept (crypto/tls common.go, keyLogLabel*).
var (
	labelClientTraffic = []byte("CLIENT_TRAFFIC_SECRET_0 ")
	labelServerTraffic = []byte("SERVER_TRAFFIC_SECRET_0 ")
)

// Write takes one key log line: "LABEL <client random> <secret>\n", both
// in hex. It never fails: a line it does not need is ignored, and an
// error would fail the handshake.
func (l *secretLog) Write(line []byte) (int, error) {
	n := len(line)
	var client bool
	switch {
	case bytes.HasPrefix(line, labelClientTraffic):
		client, line = true, line[len(labelClientTraffic):]
	case bytes.HasPrefix(line, labelServerTraffic):
		line = line[len(labelServerTraffic):]
	default:
		return n, nil
	}
	rnd, sec, ok := bytes.Cut(bytes.TrimSpace(line), []byte{' '})
	var random [32]byte
	if !ok || hex.DecodedLen(len(rnd)) != len(random) {
		return n, nil
	}
	if _, err := hex.Decode(random[:], rnd); err != nil {
		return n, nil
	}
	secret := make([]byte, hex.DecodedLen(len(sec)))
	if _, err := hex.Decode(secret, sec); err != nil {
		return n, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = make(map[[32]byte]*trafficSecrets)
	}
	e := l.m[random]
	if e == nil {
		if l.max > 0 && len(l.m) >= l.max {
			l.sweep()
		}
		e = &trafficSecrets{logged: mono()}
		l.m[random] = e
	}
	p := &e.server
	if client {
		p = &e.client
	}
	if *p != nil {
		e.ambiguous = true // another handshake with the same random
	}
	*p = secret
	return n, nil
}

// sweep drops the entries older than ttl: no handshake is left to take
// them. l.mu is held.
func (l *secretLog) sweep() {
	old := mono() - l.ttl
	for r, e := range l.m {
		if e.logged < old {
			delete(l.m, r)
		}
	}
}

// take removes the entry of random and returns its secrets, if both were
// logged by exactly one handshake.
func (l *secretLog) take(random [32]byte) (client, server []byte, ok bool) {
	l.mu.Lock()
	e := l.m[random]
	delete(l.m, random)
	l.mu.Unlock()
	if e == nil || e.ambiguous || e.client == nil || e.server == nil {
		return nil, nil, false
	}
	return e.client, e.server, true
}

// pending returns how many handshakes' secrets wait to be taken.
func (l *secretLog) pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// clientHelloRandomEnd is where the client random ends in the first
// bytes of a TLS connection: record header (5), handshake type and
// length (4), legacy_version (2), random (32) (RFC 8446 sections 5.1 and
// 4.1.2).
const clientHelloRandomEnd = recordHeaderLen + 4 + 2 + 32

// clientRandom returns the client random from the first bytes a client
// sent, if they are a ClientHello whose first record holds it.
func clientRandom(first []byte) (r [32]byte, ok bool) {
	if len(first) < clientHelloRandomEnd || first[0] != recordTypeHandshake || first[5] != 1 {
		return r, false
	}
	if recLen := int(first[3])<<8 | int(first[4]); recLen < clientHelloRandomEnd-recordHeaderLen {
		return r, false // the ClientHello is split into smaller records
	}
	copy(r[:], first[clientHelloRandomEnd-32:clientHelloRandomEnd])
	return r, true
}

// takeOver runs on the handshake goroutine after a successful handshake:
// it returns the record layer for a TLS 1.3 server connection, or nil to
// keep crypto/tls's (TLS 1.2, secrets not found, an unknown suite).
func (h *handshake) takeOver(t *Terminator, st *tls.ConnectionState) *records13 {
	random, ok := clientRandom(h.hello[:h.nhello])
	if !ok {
		return nil
	}
	client, server, ok := t.secrets.take(random)
	if !ok || st.Version != tls.VersionTLS13 || h.lastBad {
		return nil
	}
	r, err := newRecords13(st.CipherSuite, client, server, 0)
	if err != nil {
		return nil
	}
	// crypto/tls wrote its session tickets (RFC 8446 section 4.6.1) with
	// the server's application key, each in a record of its own, as the
	// last records of the handshake. How many it wrote is its choice
	// (one in Go 1.26, none when disabled or not wanted): find the
	// sequence number with which the last record decrypts, if any.
	if last := h.last; len(last) > recordHeaderLen {
		for seq := range uint64(4) {
			probe := r.out
			probe.seq = seq
			nonce, _ := probe.nextNonce()
			body := last[recordHeaderLen:]
			plain, err := probe.aead.Open(nil, nonce, body, last[:recordHeaderLen])
			if err != nil {
				continue
			}
			// A NewSessionTicket (type 4) in a handshake record, padding
			// aside; anything else: do not guess.
			plain = bytes.TrimRight(plain, "\x00")
			if len(plain) < 2 || plain[len(plain)-1] != recordTypeHandshake || plain[0] != 4 {
				return nil
			}
			r.out.seq = seq + 1
			break
		}
	}
	return r
}

// noteHello keeps the first bytes of the client's stream until they hold
// the client random; it runs on the handshake goroutine.
func (h *handshake) noteHello(p []byte) {
	if int(h.nhello) < len(h.hello) {
		h.nhello += uint8(copy(h.hello[h.nhello:], p))
	}
}

// noteWrite keeps the last protected record crypto/tls wrote during the
// handshake (see takeOver). crypto/tls writes whole records in each
// Write; if a write does not parse as such, lastBad keeps the connection
// on crypto/tls's record layer.
func (h *handshake) noteWrite(b []byte) {
	for len(b) > 0 {
		if len(b) < recordHeaderLen {
			h.lastBad = true
			return
		}
		n := recordHeaderLen + (int(b[3])<<8 | int(b[4]))
		if n > len(b) {
			h.lastBad = true
			return
		}
		if b[0] == recordTypeApplicationData {
			h.last = b[:n]
		} else {
			h.last = nil
		}
		b = b[n:]
	}
}
