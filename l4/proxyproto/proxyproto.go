// Package proxyproto parses the PROXY protocol header, versions 1 and 2,
// that a load balancer puts in front of a connection's bytes to tell the
// server the address of the client it relays (HAProxy's specification,
// "The PROXY protocol, Versions 1 & 2", revision 2020/03/05:
// https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt; section
// numbers below are that document's).
//
// The parser works on a byte slice as an event loop sees a connection's
// inbound buffer: it never blocks, never allocates, never keeps the slice,
// and tells a complete header from one that has only partly arrived, so it
// can be called again on each read until it decides. Every decision it
// takes on a prefix of the bytes is final: more bytes never turn a rejected
// header into an accepted one, or change the length of an accepted one.
//
// It is strict where the specification is: anything that does not match the
// protocol exactly is refused (section 2.1: "Any sequence which does not
// exactly match the protocol must be discarded"), lengths are bounded
// (MaxV1Length, MaxV2Length), version 2 TLVs must tile the header exactly
// and a CRC32C TLV must match (section 2.2.3). Whether a header is expected,
// and from which peers, is the caller's decision (sections 2 and 5).
package proxyproto

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"
)

const (
	// MaxV1Length is the longest version 1 header, CRLF included: the
	// worst case of section 2.1, "PROXY UNKNOWN" with two full-length IPv6
	// addresses and ports. A line without its CRLF within this many bytes
	// is refused as too long.
	MaxV1Length = 107
	// MaxV2Length bounds the length field of a version 2 header: the
	// address block and the TLVs after the 16-byte fixed part. The
	// specification allows 65535; addresses take at most 216 bytes, and
	// the largest TLV senders emit in practice (a client certificate in
	// the SSL TLV, section 2.2.6) stays within 4 KiB. It is the limit
	// github.com/pires/go-proxyproto applies too.
	MaxV2Length = 4096
	// v2Fixed is the size of the fixed part of a version 2 header: the
	// signature, the version and command, the family and transport, and
	// the length (section 2.2).
	v2Fixed = 16
)

// The signatures of section 2.2: "PROXY" starts a version 1 header; the
// 12-byte binary block a version 2 header.
const (
	sigV1 = "PROXY"
	sigV2 = "\r\n\r\n\x00\r\nQUIT\n"
)

// Kind is what the first bytes of a connection are.
type Kind uint8

const (
	// NeedMore: the bytes so far are a strict prefix of a signature (or
	// there are none); more are needed to tell.
	NeedMore Kind = iota
	// None: the bytes do not start with a PROXY protocol signature.
	None
	// V1: the bytes start with the version 1 signature, "PROXY".
	V1
	// V2: the bytes start with the 12-byte version 2 signature.
	V2
)

// Sniff tells from the first bytes of a connection whether they start a
// PROXY protocol header, and of which version, without parsing it. A
// direct client's bytes are told apart at their first or second byte:
// neither signature starts an HTTP request or a TLS record (section 5).
func Sniff(b []byte) Kind {
	if k := prefixOf(b, sigV1); k != None {
		if k == NeedMore {
			return NeedMore
		}
		return V1
	}
	if k := prefixOf(b, sigV2); k != None {
		if k == NeedMore {
			return NeedMore
		}
		return V2
	}
	return None
}

// prefixOf reports whether b starts with sig (V1 standing for "yes"), is a
// strict prefix of it (NeedMore), or neither (None).
func prefixOf(b []byte, sig string) Kind {
	n := min(len(b), len(sig))
	if string(b[:n]) != sig[:n] {
		return None
	}
	if n < len(sig) {
		return NeedMore
	}
	return V1
}

// Command is a version 2 header's command (section 2.2). Version 1 headers
// are always Proxy.
type Command uint8

const (
	// Local: the load balancer opened the connection itself (a health
	// check); the receiver uses the connection's real endpoints.
	Local Command = 0x0
	// Proxy: the connection is relayed on behalf of a client.
	Proxy Command = 0x1
)

// Header is what a PROXY protocol header says.
type Header struct {
	// Version is 1 or 2.
	Version uint8
	// Command is Local or Proxy.
	Command Command
	// Source and Destination are the relayed connection's client and
	// server addresses. They are valid only when the header carries TCP
	// over IPv4 or IPv6 for a Proxy command; otherwise (version 1
	// UNKNOWN, version 2 LOCAL, AF_UNSPEC, AF_UNIX, UDP) they are the zero
	// AddrPort and the receiver uses the connection's own endpoints
	// (sections 2.1 and 2.2). IPv4 addresses are 4-byte addresses; an
	// IPv4-mapped IPv6 address is kept as the header wrote it.
	Source, Destination netip.AddrPort
}

// Reason classifies why a header was refused.
type Reason uint8

const (
	// Missing: the bytes do not start with a PROXY protocol signature.
	Missing Reason = iota + 1
	// Malformed: a signature is present but what follows breaks the
	// syntax of section 2.1 or 2.2 (addresses, ports, lengths, TLVs, the
	// CRC32C checksum).
	Malformed
	// TooLong: a version 1 line without its CRLF within MaxV1Length bytes,
	// or a version 2 length field above MaxV2Length.
	TooLong
	// Unsupported: a version 2 header with a version, command, address
	// family or transport protocol value section 2.2 does not assign.
	Unsupported
)

var reasonNames = [...]string{"", "missing", "malformed", "too_long", "unsupported"}

// String is the reason's name, as counters use it: "missing", "malformed",
// "too_long" or "unsupported".
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// Error is a refused header. Parse returns only the package's own *Error
// values, so refusing costs no allocation.
type Error struct {
	reason Reason
	msg    string
}

// Error returns the refusal's description.
func (e *Error) Error() string { return e.msg }

// Reason classifies the refusal.
func (e *Error) Reason() Reason { return e.reason }

func newError(r Reason, msg string) *Error { return &Error{reason: r, msg: "proxyproto: " + msg} }

// The refusals. ErrMissing is the only one a direct client's bytes cause.
var (
	ErrMissing = newError(Missing, "no PROXY protocol signature")

	errV1TooLong   = newError(TooLong, "v1: no CRLF within 107 bytes")
	errV1BareLF    = newError(Malformed, "v1: LF without CR")
	errV1BareCR    = newError(Malformed, "v1: CR without LF")
	errV1Space     = newError(Malformed, `v1: "PROXY" not followed by exactly one space`)
	errV1Protocol  = newError(Malformed, "v1: protocol is not TCP4, TCP6 or UNKNOWN")
	errV1Fields    = newError(Malformed, "v1: want exactly one space between protocol, two addresses and two ports")
	errV1Address4  = newError(Malformed, "v1: not an IPv4 address in canonical form (TCP4)")
	errV1Address6  = newError(Malformed, "v1: not an IPv6 address in canonical form (TCP6)")
	errV1Port      = newError(Malformed, "v1: port is not a decimal number 0-65535 without leading zeroes")
	errV2Version   = newError(Unsupported, "v2: version is not 2")
	errV2Command   = newError(Unsupported, "v2: command is not LOCAL or PROXY")
	errV2Family    = newError(Unsupported, "v2: unassigned address family and transport protocol")
	errV2TooLong   = newError(TooLong, "v2: length above 4096")
	errV2Addresses = newError(Malformed, "v2: length shorter than the address block of its family")
	errV2TLV       = newError(Malformed, "v2: TLV runs past the end of the header")
	errV2CRCLength = newError(Malformed, "v2: CRC32C TLV is not 4 bytes")
	errV2CRC       = newError(Malformed, "v2: CRC32C checksum mismatch")
)

// Parse parses the PROXY protocol header at the start of b into h:
//
//   - n > 0, err == nil: a complete, valid header of n bytes; the bytes
//     after it are the relayed connection's.
//   - n == 0, err == nil: b is the beginning of a header (or is empty);
//     call again when more bytes have arrived.
//   - err != nil: an *Error; with ErrMissing b does not start with a
//     signature at all, otherwise the header is refused (Error.Reason).
//
// h is written only when a header is accepted. Parse does not allocate and
// does not keep b.
func Parse(b []byte, h *Header) (n int, err error) {
	switch Sniff(b) {
	case NeedMore:
		return 0, nil
	case V1:
		return parseV1(b, h)
	case V2:
		return parseV2(b, h)
	}
	return 0, ErrMissing
}

// parseV1 parses a version 1 line (section 2.1); b starts with "PROXY".
func parseV1(b []byte, h *Header) (int, error) {
	// The line ends at the first CR or LF, which must be a CRLF: "The
	// receiver must not tolerate a single CR or LF character to end the
	// line".
	end := -1
	for i := len(sigV1); i < len(b) && i < MaxV1Length; i++ {
		if b[i] == '\r' || b[i] == '\n' {
			end = i
			break
		}
	}
	switch {
	case end < 0 && len(b) >= MaxV1Length:
		return 0, errV1TooLong
	case end < 0:
		return 0, nil
	case b[end] == '\n':
		return 0, errV1BareLF
	case end+2 > MaxV1Length:
		return 0, errV1TooLong
	case end+1 == len(b):
		return 0, nil
	case b[end+1] != '\n':
		return 0, errV1BareCR
	}
	line := b[len(sigV1):end]
	if len(line) < 2 || line[0] != ' ' || line[1] == ' ' {
		return 0, errV1Space
	}
	line = line[1:]
	proto, rest, more := cut(line)
	var v6 bool
	switch string(proto) {
	case "UNKNOWN":
		// "the receiver must ignore anything presented before the CRLF"
		// and use the connection's own endpoints.
		*h = Header{Version: 1, Command: Proxy}
		return end + 2, nil
	case "TCP4":
	case "TCP6":
		v6 = true
	default:
		return 0, errV1Protocol
	}
	var f [4][]byte
	for i := range f {
		if !more {
			return 0, errV1Fields
		}
		f[i], rest, more = cut(rest)
		if len(f[i]) == 0 {
			return 0, errV1Fields
		}
	}
	if more {
		return 0, errV1Fields
	}
	var src, dst netip.Addr
	var ok1, ok2 bool
	if v6 {
		src, ok1 = parseIPv6(f[0])
		dst, ok2 = parseIPv6(f[1])
		if !ok1 || !ok2 {
			return 0, errV1Address6
		}
	} else {
		src, ok1 = parseIPv4(f[0])
		dst, ok2 = parseIPv4(f[1])
		if !ok1 || !ok2 {
			return 0, errV1Address4
		}
	}
	sport, ok1 := parsePort(f[2])
	dport, ok2 := parsePort(f[3])
	if !ok1 || !ok2 {
		return 0, errV1Port
	}
	*h = Header{Version: 1, Command: Proxy,
		Source: netip.AddrPortFrom(src, sport), Destination: netip.AddrPortFrom(dst, dport)}
	return end + 2, nil
}

// cut splits b at its first space: the token before it, what follows it,
// and whether there was a space.
func cut(b []byte) (tok, rest []byte, found bool) {
	for i, c := range b {
		if c == ' ' {
			return b[:i], b[i+1:], true
		}
	}
	return b, nil, false
}

// parseIPv4 parses exactly four decimal numbers 0-255 without leading
// zeroes, separated by dots (section 2.1).
func parseIPv4(s []byte) (netip.Addr, bool) {
	var ip [4]byte
	i := 0
	for k := range ip {
		if k > 0 {
			if i >= len(s) || s[i] != '.' {
				return netip.Addr{}, false
			}
			i++
		}
		start, v := i, 0
		for i < len(s) && i-start < 3 && '0' <= s[i] && s[i] <= '9' {
			v = v*10 + int(s[i]-'0')
			i++
		}
		if i == start || v > 255 || i-start > 1 && s[start] == '0' {
			return netip.Addr{}, false
		}
		ip[k] = byte(v)
	}
	if i != len(s) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(ip), true
}

// parseIPv6 parses an IPv6 address as section 2.1 writes it: eight groups
// of one to four hexadecimal digits separated by colons, of which one run
// of zero groups may be written "::" (RFC 4291 section 2.2, forms 1 and 2).
// The mixed form with a dotted IPv4 tail and zones are not part of the
// grammar and are refused.
func parseIPv6(s []byte) (netip.Addr, bool) {
	var ip [16]byte
	ellipsis := -1 // where "::" stands, as an index into ip
	i, n := 0, 0
	if len(s) >= 2 && s[0] == ':' && s[1] == ':' {
		ellipsis, i = 0, 2
		if i == len(s) {
			return netip.AddrFrom16(ip), true
		}
	}
	for n < 16 {
		start, v := i, 0
		for i < len(s) && i-start < 4 {
			d := unhex(s[i])
			if d < 0 {
				break
			}
			v = v<<4 | d
			i++
		}
		if i == start || i < len(s) && unhex(s[i]) >= 0 {
			return netip.Addr{}, false // empty group, or more than 4 digits
		}
		ip[n], ip[n+1] = byte(v>>8), byte(v)
		n += 2
		if i == len(s) {
			break
		}
		if s[i] != ':' {
			return netip.Addr{}, false
		}
		i++
		if i < len(s) && s[i] == ':' {
			if ellipsis >= 0 {
				return netip.Addr{}, false // a second "::"
			}
			ellipsis = n
			i++
			if i == len(s) {
				break
			}
		} else if i == len(s) {
			return netip.Addr{}, false // a trailing single colon
		}
	}
	if i != len(s) {
		return netip.Addr{}, false
	}
	switch {
	case ellipsis < 0 && n < 16:
		return netip.Addr{}, false
	case ellipsis >= 0 && n == 16:
		return netip.Addr{}, false // "::" must stand for at least one group
	case ellipsis >= 0:
		k := 16 - n
		copy(ip[ellipsis+k:], ip[ellipsis:n])
		clear(ip[ellipsis : ellipsis+k])
	}
	return netip.AddrFrom16(ip), true
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// parsePort parses a decimal port 0-65535 without leading zeroes.
func parsePort(s []byte) (uint16, bool) {
	if len(s) == 0 || len(s) > 5 || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	v := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	if v > 65535 {
		return 0, false
	}
	return uint16(v), true
}

// Version 2 address families and transport protocols (section 2.2): the
// 14th byte, family in the high nibble, transport in the low one.
const (
	famUnspec = 0x00
	famTCP4   = 0x11
	famUDP4   = 0x12
	famTCP6   = 0x21
	famUDP6   = 0x22
	famUnixS  = 0x31
	famUnixD  = 0x32
)

// TLV types this parser interprets (section 2.2).
const tlvCRC32C = 0x03

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// zeroCRC stands for the checksum's bytes while it is computed. A local
// array would escape to the heap through crc32's indirect call.
var zeroCRC [4]byte

// parseV2 parses a binary header (section 2.2); b starts with its
// signature. Values are checked as soon as their byte has arrived, so a
// refused header is refused without waiting for the rest.
func parseV2(b []byte, h *Header) (int, error) {
	if len(b) > 12 {
		// "The highest four bits contains the version ... the receiver
		// must only accept this value"; commands other than LOCAL and
		// PROXY: "Receivers must drop connections presenting unexpected
		// values here."
		if b[12]>>4 != 2 {
			return 0, errV2Version
		}
		if cmd := Command(b[12] & 0xf); cmd != Local && cmd != Proxy {
			return 0, errV2Command
		}
	}
	var addrLen int
	if len(b) > 13 {
		// Only the seven combinations the specification lists are
		// assigned; "other values ... must be rejected as invalid by
		// receivers", whatever the command.
		switch b[13] {
		case famUnspec:
		case famTCP4, famUDP4:
			addrLen = 12
		case famTCP6, famUDP6:
			addrLen = 36
		case famUnixS, famUnixD:
			addrLen = 216
		default:
			return 0, errV2Family
		}
	}
	if len(b) < v2Fixed {
		return 0, nil
	}
	length := int(binary.BigEndian.Uint16(b[14:16]))
	if length > MaxV2Length {
		return 0, errV2TooLong
	}
	total := v2Fixed + length
	cmd := Command(b[12] & 0xf)
	if cmd == Proxy && length < addrLen {
		return 0, errV2Addresses
	}
	if len(b) < total {
		return 0, nil
	}
	hdr := b[:total]
	if cmd == Local || b[13] == famUnspec {
		// LOCAL: "the receiver must accept this connection as valid and
		// must use the real connection endpoints and discard the
		// protocol block including the family which is ignored".
		// AF_UNSPEC: "The receiver should ignore address information."
		// Without a known address block, TLVs cannot be located either.
		*h = Header{Version: 2, Command: cmd}
		return total, nil
	}
	if err := checkTLVs(hdr, v2Fixed+addrLen); err != nil {
		return 0, err
	}
	*h = Header{Version: 2, Command: Proxy}
	a := hdr[v2Fixed:]
	switch b[13] {
	case famTCP4:
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:10]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:12]))
	case famTCP6:
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])), binary.BigEndian.Uint16(a[32:34]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])), binary.BigEndian.Uint16(a[34:36]))
	}
	// UDP and AF_UNIX: "A receiver is not required to implement other ones,
	// provided that it automatically falls back to the UNSPEC mode for the
	// valid combinations above that it does not support": no address.
	return total, nil
}

// checkTLVs checks that the TLVs after the address block, from off to the
// end of hdr, tile it exactly (section 2.2: type, a 2-byte length, the
// value), and verifies every CRC32C TLV (section 2.2.3: the checksum of the
// whole header with the checksum's own 4 bytes zeroed).
func checkTLVs(hdr []byte, off int) error {
	for off < len(hdr) {
		if len(hdr)-off < 3 {
			return errV2TLV
		}
		typ := hdr[off]
		n := int(binary.BigEndian.Uint16(hdr[off+1 : off+3]))
		val := off + 3
		if n > len(hdr)-val {
			return errV2TLV
		}
		if typ == tlvCRC32C {
			if n != 4 {
				return errV2CRCLength
			}
			sum := crc32.Update(0, castagnoli, hdr[:val])
			sum = crc32.Update(sum, castagnoli, zeroCRC[:])
			sum = crc32.Update(sum, castagnoli, hdr[val+4:])
			if sum != binary.BigEndian.Uint32(hdr[val:val+4]) {
				return errV2CRC
			}
		}
		off = val + n
	}
	return nil
}
