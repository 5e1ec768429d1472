package tlsterm

import (
	"crypto/tls"
	"sync/atomic"
)

// Failure reasons, as counted by Stats and named in Snapshot under
// "failure.<reason>".
const (
	// FailTimeout: the handshake did not finish within the handshake
	// timeout (counted from the connection's acceptance), including clients
	// that never sent a byte.
	FailTimeout = "timeout"
	// FailBadClientHello: the first bytes were not a TLS handshake (nor
	// plaintext HTTP: FailPlainHTTP), or the
	// ClientHello was malformed (decode_error, illegal_parameter,
	// unexpected_message, unsupported_extension alerts; RFC 8446 section 6.2).
	FailBadClientHello = "bad_client_hello"
	// FailProtocolVersion: the client offered only versions below the
	// configured minimum (protocol_version alert; RFC 8446 appendix D).
	FailProtocolVersion = "protocol_version"
	// FailUnsupported: no cipher suite, key-exchange group, signature
	// algorithm or ALPN protocol in common (handshake_failure,
	// insufficient_security, no_application_protocol alerts).
	FailUnsupported = "unsupported"
	// FailBadCertificate: the client certificate was missing when required,
	// unparsable or failed verification against the client CA bundle.
	FailBadCertificate = "bad_certificate"
	// FailPeerAlert: the client aborted the handshake with an alert (for
	// example because it does not trust the server certificate).
	FailPeerAlert = "peer_alert"
	// FailEOF: the client closed the connection during the handshake.
	FailEOF = "eof"
	// FailOther: anything else.
	FailOther = "other"
	// FailQueueFull: every handshake slot was busy and the wait queue was
	// full; the connection was closed at once.
	FailQueueFull = "queue_full"
	// FailQueueTimeout: the connection waited in the queue for longer than
	// the handshake timeout.
	FailQueueTimeout = "queue_timeout"
	// FailInputOverflow: the client sent more than the handshake input
	// bound before the handshake ended.
	FailInputOverflow = "input_overflow"
	// FailPlainHTTP: the client sent a plaintext HTTP request instead of a
	// ClientHello; it was answered 400 and closed.
	FailPlainHTTP = "plain_http"
)

var failureReasons = [...]string{
	FailTimeout, FailBadClientHello, FailProtocolVersion, FailUnsupported,
	FailBadCertificate, FailPeerAlert, FailEOF, FailOther, FailQueueFull,
	FailQueueTimeout, FailInputOverflow, FailPlainHTTP,
}

// knownSuites are the cipher suites counted individually: the TLS 1.3
// suites (RFC 8446 appendix B.4) and the TLS 1.2 ECDHE AEAD suites
// (RFC 5289, RFC 7905) that NewTerminator enables.
var knownSuites = [...]uint16{
	tls.TLS_AES_128_GCM_SHA256,
	tls.TLS_AES_256_GCM_SHA384,
	tls.TLS_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// knownGroups are the key-exchange groups counted individually. The
// *MLKEM* hybrids are the post-quantum share (draft-ietf-tls-ecdhe-mlkem).
// Group 0 is what ConnectionState.CurveID reports for a TLS 1.2 resumption,
// which has no key exchange.
var knownGroups = [...]tls.CurveID{
	tls.X25519MLKEM768,
	tls.SecP256r1MLKEM768,
	tls.SecP384r1MLKEM1024,
	tls.X25519,
	tls.CurveP256,
	tls.CurveP384,
	tls.CurveP521,
	0,
}

// Stats counts handshakes. All counters are atomics; Snapshot reads them
// without stopping the world, so a snapshot taken during traffic is not a
// consistent cut (a handshake may be in Handshakes but not yet in its
// version counter).
type Stats struct {
	// Handshakes counts completed handshakes, full and resumed.
	Handshakes atomic.Int64
	// Resumed counts handshakes that resumed a session from a ticket.
	Resumed atomic.Int64
	// PostQuantum counts handshakes whose key exchange was a hybrid with
	// ML-KEM (FIPS 203); X25519MLKEM768 is Go's default first choice.
	PostQuantum atomic.Int64
	// ClientCertificates counts handshakes with a verified client
	// certificate.
	ClientCertificates atomic.Int64
	// Running and Queued are gauges: handshakes holding a pool slot and
	// connections waiting for one.
	Running, Queued atomic.Int64
	// OwnRecords counts handshakes whose connection went on tlsterm's own
	// TLS 1.3 record layer (record13.go); the others kept crypto/tls's.
	OwnRecords atomic.Int64
	// KeyUpdates counts KeyUpdate messages received on the own record
	// layer (RFC 8446 section 4.6.3).
	KeyUpdates atomic.Int64
	// RecordAlerts counts connections the own record layer ended with a
	// fatal alert after the handshake: a record that failed to decrypt,
	// was malformed or unexpected, or the peer's own fatal alert.
	RecordAlerts atomic.Int64

	tls12, tls13, otherVersion atomic.Int64
	suites                     [len(knownSuites) + 1]atomic.Int64 // last: other
	groups                     [len(knownGroups) + 1]atomic.Int64 // last: other
	failures                   [len(failureReasons)]atomic.Int64
}

func (s *Stats) success(st *tls.ConnectionState) {
	s.Handshakes.Add(1)
	if st.DidResume {
		s.Resumed.Add(1)
	}
	switch st.Version {
	case tls.VersionTLS13:
		s.tls13.Add(1)
	case tls.VersionTLS12:
		s.tls12.Add(1)
	default:
		s.otherVersion.Add(1)
	}
	i := 0
	for i < len(knownSuites) && knownSuites[i] != st.CipherSuite {
		i++
	}
	s.suites[i].Add(1)
	j := 0
	for j < len(knownGroups) && knownGroups[j] != st.CurveID {
		j++
	}
	s.groups[j].Add(1)
	switch st.CurveID {
	case tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024:
		s.PostQuantum.Add(1)
	}
	if len(st.VerifiedChains) > 0 {
		s.ClientCertificates.Add(1)
	}
}

func (s *Stats) fail(reason string) {
	other := 0
	for i, r := range failureReasons {
		if r == reason {
			s.failures[i].Add(1)
			return
		}
		if r == FailOther {
			other = i
		}
	}
	s.failures[other].Add(1)
}

// Finished returns the number of handshakes that have ended, completed or
// failed for any reason; with Running and Queued it tells whether the
// handshake pool has been busy.
func (s *Stats) Finished() int64 {
	n := s.Handshakes.Load()
	for i := range s.failures {
		n += s.failures[i].Load()
	}
	return n
}

// Failures returns the count for one failure reason (one of the Fail*
// constants); 0 for an unknown reason.
func (s *Stats) Failures(reason string) int64 {
	for i, r := range failureReasons {
		if r == reason {
			return s.failures[i].Load()
		}
	}
	return 0
}

// Group returns the number of completed handshakes that used group id.
func (s *Stats) Group(id tls.CurveID) int64 {
	for i, g := range knownGroups {
		if g == id {
			return s.groups[i].Load()
		}
	}
	return 0
}

// Snapshot returns every counter by name, for the admin endpoint:
//
//	handshakes, resumed, post_quantum, client_certificates, running, queued,
//	own_records, key_updates, record_alerts,
//	version.tls1.2, version.tls1.3, version.other,
//	cipher.<Go suite name> and cipher.other,
//	group.<Go CurveID name> (group.none: TLS 1.2 resumption) and group.other,
//	failure.<reason> for each Fail* reason.
func (s *Stats) Snapshot() map[string]int64 {
	m := make(map[string]int64, 11+len(knownSuites)+len(knownGroups)+len(failureReasons))
	m["handshakes"] = s.Handshakes.Load()
	m["resumed"] = s.Resumed.Load()
	m["post_quantum"] = s.PostQuantum.Load()
	m["client_certificates"] = s.ClientCertificates.Load()
	m["running"] = s.Running.Load()
	m["queued"] = s.Queued.Load()
	m["own_records"] = s.OwnRecords.Load()
	m["key_updates"] = s.KeyUpdates.Load()
	m["record_alerts"] = s.RecordAlerts.Load()
	m["version.tls1.2"] = s.tls12.Load()
	m["version.tls1.3"] = s.tls13.Load()
	m["version.other"] = s.otherVersion.Load()
	for i, id := range knownSuites {
		m["cipher."+tls.CipherSuiteName(id)] = s.suites[i].Load()
	}
	m["cipher.other"] = s.suites[len(knownSuites)].Load()
	for i, id := range knownGroups {
		name := "none"
		if id != 0 {
			name = id.String()
		}
		m["group."+name] = s.groups[i].Load()
	}
	m["group.other"] = s.groups[len(knownGroups)].Load()
	for i, r := range failureReasons {
		m["failure."+r] = s.failures[i].Load()
	}
	return m
}
