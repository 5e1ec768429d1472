package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net/netip"
	"strings"
	"testing"
)

// v2 builds a version 2 header: the signature, ver_cmd, fam, the length
// of body, body.
func v2(verCmd, fam byte, body ...[]byte) []byte {
	b := []byte(sigV2)
	b = append(b, verCmd, fam, 0, 0)
	for _, p := range body {
		b = append(b, p...)
	}
	binary.BigEndian.PutUint16(b[14:16], uint16(len(b)-v2Fixed))
	return b
}

// tlv encodes one TLV.
func tlv(typ byte, val []byte) []byte {
	return append([]byte{typ, byte(len(val) >> 8), byte(len(val))}, val...)
}

// withCRC appends a CRC32C TLV to header h (built by v2) and fills in its
// checksum as section 2.2.3 says a sender does.
func withCRC(h []byte) []byte {
	h = append(h, tlvCRC32C, 0, 4, 0, 0, 0, 0)
	binary.BigEndian.PutUint16(h[14:16], uint16(len(h)-v2Fixed))
	sum := crc32.Checksum(h, castagnoli)
	binary.BigEndian.PutUint32(h[len(h)-4:], sum)
	return h
}

var (
	addr4 = []byte{192, 0, 2, 1, 198, 51, 100, 7, 0xdc, 0x04, 0x01, 0xbb} // 192.0.2.1:56324 -> 198.51.100.7:443
	addr6 = append(append(netip.MustParseAddr("2001:db8::1").AsSlice(), netip.MustParseAddr("2001:db8::2").AsSlice()...),
		0x30, 0x39, 0x01, 0xbb) // [2001:db8::1]:12345 -> [2001:db8::2]:443
)

// awsNLB is a version 2 header from an AWS Network Load Balancer behind a
// VPC endpoint: TCP over IPv4, a CRC32C TLV, AWS's VPC endpoint TLV (0xEA)
// and NOOP padding. It is the "VPCE example" of AWS's PROXY protocol test
// suite (aws/elastic-load-balancing-tools, proprot), and pins the checksum's
// algorithm and byte order against a real sender's.
var awsNLB = append([]byte{
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
	0x21, 0x11, 0x00, 0x54,
	0xac, 0x1f, 0x07, 0x71, 0xac, 0x1f, 0x0a, 0x1f, 0xc8, 0xf2, 0x00, 0x50,
	0x03, 0x00, 0x04, 0xe8, 0xd6, 0x89, 0x2d,
	0xea, 0x00, 0x17, 0x01, 'v', 'p', 'c', 'e', '-', '0', '8', 'd', '2', 'b', 'f', '1', '5', 'f', 'a', 'c', '5', '0', '0', '1', 'c', '9',
	0x04, 0x00, 0x24,
}, make([]byte, 36)...)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// The accepted headers: the examples of sections 2.1 and 2.2 and the
// cases around them.
var valid = []struct {
	name string
	in   []byte
	want Header
}{
	{"v1 TCP4, section 2.1's example", []byte("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"),
		Header{1, Proxy, ap("192.168.0.1:56324"), ap("192.168.0.11:443")}},
	{"v1 TCP4 longest (56 bytes)", []byte("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"),
		Header{1, Proxy, ap("255.255.255.255:65535"), ap("255.255.255.255:65535")}},
	{"v1 TCP4 zero port and address", []byte("PROXY TCP4 0.0.0.0 10.0.0.1 0 80\r\n"),
		Header{1, Proxy, ap("0.0.0.0:0"), ap("10.0.0.1:80")}},
	{"v1 TCP6 longest (104 bytes)", []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF 65535 65535\r\n"),
		Header{1, Proxy, ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")}},
	{"v1 TCP6 compressed", []byte("PROXY TCP6 2001:db8::1 ::1 12345 443\r\n"),
		Header{1, Proxy, ap("[2001:db8::1]:12345"), ap("[::1]:443")}},
	{"v1 TCP6 IPv4-mapped in hex", []byte("PROXY TCP6 ::ffff:c000:201 :: 1 2\r\n"),
		Header{1, Proxy, ap("[::ffff:192.0.2.1]:1"), ap("[::]:2")}},
	{"v1 UNKNOWN short form", []byte("PROXY UNKNOWN\r\n"), Header{Version: 1, Command: Proxy}},
	{"v1 UNKNOWN worst case (107 bytes)", []byte("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
		Header{Version: 1, Command: Proxy}},
	{"v1 UNKNOWN with anything before CRLF", []byte("PROXY UNKNOWN \x00garbage  with spaces\r\n"), Header{Version: 1, Command: Proxy}},
	{"v2 TCP4", v2(0x21, famTCP4, addr4), Header{2, Proxy, ap("192.0.2.1:56324"), ap("198.51.100.7:443")}},
	{"v2 TCP6", v2(0x21, famTCP6, addr6), Header{2, Proxy, ap("[2001:db8::1]:12345"), ap("[2001:db8::2]:443")}},
	{"v2 TCP4 with TLVs", v2(0x21, famTCP4, addr4, tlv(0x02, []byte("mail.example.test")), tlv(0x04, nil), tlv(0xe0, make([]byte, 300))),
		Header{2, Proxy, ap("192.0.2.1:56324"), ap("198.51.100.7:443")}},
	{"v2 TCP6 with a CRC32C", withCRC(v2(0x21, famTCP6, addr6, tlv(0x05, []byte("id-1")))),
		Header{2, Proxy, ap("[2001:db8::1]:12345"), ap("[2001:db8::2]:443")}},
	{"v2 AWS NLB with CRC32C and VPC endpoint", awsNLB, Header{2, Proxy, ap("172.31.7.113:51442"), ap("172.31.10.31:80")}},
	{"v2 LOCAL, no addresses", v2(0x20, famUnspec), Header{Version: 2, Command: Local}},
	{"v2 LOCAL with addresses, ignored", v2(0x20, famTCP4, addr4), Header{Version: 2, Command: Local}},
	{"v2 LOCAL with a length shorter than its family's", v2(0x20, famTCP6, addr4), Header{Version: 2, Command: Local}},
	{"v2 PROXY AF_UNSPEC", v2(0x21, famUnspec, []byte{1, 2, 3}), Header{Version: 2, Command: Proxy}},
	{"v2 UDP4 falls back to UNSPEC", v2(0x21, famUDP4, addr4), Header{Version: 2, Command: Proxy}},
	{"v2 UDP6 falls back to UNSPEC", v2(0x21, famUDP6, addr6), Header{Version: 2, Command: Proxy}},
	{"v2 unix stream falls back to UNSPEC", v2(0x21, famUnixS, make([]byte, 216)), Header{Version: 2, Command: Proxy}},
	{"v2 unix datagram with a TLV", v2(0x21, famUnixD, make([]byte, 216), tlv(0x04, []byte{0})), Header{Version: 2, Command: Proxy}},
	{"v2 longest", v2(0x21, famTCP4, addr4, tlv(0x04, make([]byte, MaxV2Length-12-3))),
		Header{2, Proxy, ap("192.0.2.1:56324"), ap("198.51.100.7:443")}},
}

// The refused headers, by the error they get.
var invalid = []struct {
	name string
	in   []byte
	want *Error
}{
	{"HTTP request", []byte("GET / HTTP/1.1\r\n\r\n"), ErrMissing},
	{"POST starts like PROXY", []byte("POST / HTTP/1.1\r\n"), ErrMissing},
	{"PROPFIND starts like PROXY", []byte("PROPFIND / HTTP/1.1\r\n"), ErrMissing},
	{"TLS ClientHello", []byte{0x16, 0x03, 0x01, 0x02, 0x00}, ErrMissing},
	{"lower-case proxy", []byte("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), ErrMissing},
	{"CRLF CRLF then not the v2 signature", []byte("\r\n\r\nGET"), ErrMissing},

	{"v1 no CRLF within 107 bytes", []byte("PROXY UNKNOWN " + strings.Repeat("f", 93)), errV1TooLong},
	{"v1 108 bytes with CRLF", []byte("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 655350\r\n"), errV1TooLong},
	{"v1 LF alone", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), errV1BareLF},
	{"v1 CR alone", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rGET"), errV1BareCR},
	{"v1 CR inside UNKNOWN", []byte("PROXY UNKNOWN a\rb\r\n"), errV1BareCR},
	{"v1 PROXY then CRLF", []byte("PROXY\r\n"), errV1Space},
	{"v1 no space", []byte("PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n"), errV1Space},
	{"v1 two spaces", []byte("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), errV1Space},
	{"v1 tab", []byte("PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n"), errV1Space},
	{"v1 UDP4", []byte("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), errV1Protocol},
	{"v1 lower-case tcp4", []byte("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n"), errV1Protocol},
	{"v1 UNKNOWNX", []byte("PROXY UNKNOWNX\r\n"), errV1Protocol},
	{"v1 TCP4 alone", []byte("PROXY TCP4\r\n"), errV1Fields},
	{"v1 missing port", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), errV1Fields},
	{"v1 extra field", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), errV1Fields},
	{"v1 trailing space", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), errV1Fields},
	{"v1 double space between fields", []byte("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n"), errV1Fields},
	{"v1 leading zero in IPv4", []byte("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"), errV1Address4},
	{"v1 IPv4 octet above 255", []byte("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"), errV1Address4},
	{"v1 IPv4 with three parts", []byte("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"), errV1Address4},
	{"v1 IPv4 with five parts", []byte("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n"), errV1Address4},
	{"v1 IPv6 in TCP4", []byte("PROXY TCP4 ::1 5.6.7.8 1 2\r\n"), errV1Address4},
	{"v1 IPv4 in TCP6", []byte("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"), errV1Address6},
	{"v1 dotted IPv6 tail", []byte("PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n"), errV1Address6},
	{"v1 IPv6 zone", []byte("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), errV1Address6},
	{"v1 IPv6 five hex digits", []byte("PROXY TCP6 2001:0db80::1 ::1 1 2\r\n"), errV1Address6},
	{"v1 IPv6 two ellipses", []byte("PROXY TCP6 1::2::3 ::1 1 2\r\n"), errV1Address6},
	{"v1 IPv6 nine groups", []byte("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n"), errV1Address6},
	{"v1 IPv6 ellipsis for no group", []byte("PROXY TCP6 1:2:3:4::5:6:7:8 ::1 1 2\r\n"), errV1Address6},
	{"v1 port with leading zero", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"), errV1Port},
	{"v1 port above 65535", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n"), errV1Port},
	{"v1 port with a sign", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"), errV1Port},

	{"v2 version 1", v2(0x11, famTCP4, addr4), errV2Version},
	{"v2 version 3", v2(0x31, famTCP4, addr4), errV2Version},
	{"v2 command 2", v2(0x22, famTCP4, addr4), errV2Command},
	{"v2 AF_UNSPEC with STREAM", v2(0x21, 0x01, addr4), errV2Family},
	{"v2 family 4", v2(0x21, 0x41, addr4), errV2Family},
	{"v2 transport 3", v2(0x21, 0x13, addr4), errV2Family},
	{"v2 LOCAL with an unassigned family", v2(0x20, 0x13), errV2Family},
	{"v2 length above 4096", func() []byte { b := v2(0x21, famTCP4, addr4); b[14], b[15] = 0x10, 0x01; return b }(), errV2TooLong},
	{"v2 TCP4 length 11", v2(0x21, famTCP4, addr4[:11]), errV2Addresses},
	{"v2 TCP6 length 12", v2(0x21, famTCP6, addr4), errV2Addresses},
	{"v2 unix length 215", v2(0x21, famUnixS, make([]byte, 215)), errV2Addresses},
	{"v2 TLV past the end", v2(0x21, famTCP4, addr4, []byte{0x04, 0x00, 0x05, 1, 2}), errV2TLV},
	{"v2 two bytes after the addresses", v2(0x21, famTCP4, addr4, []byte{0x04, 0x00}), errV2TLV},
	{"v2 CRC32C of 3 bytes", v2(0x21, famTCP4, addr4, tlv(tlvCRC32C, []byte{1, 2, 3})), errV2CRCLength},
	{"v2 CRC32C mismatch", func() []byte { b := withCRC(v2(0x21, famTCP4, addr4)); b[17] ^= 1; return b }(), errV2CRC},
	{"v2 AWS NLB with a flipped address bit", func() []byte {
		b := bytes.Clone(awsNLB)
		b[16] ^= 0x80
		return b
	}(), errV2CRC},
}

func TestParseValid(t *testing.T) {
	tail := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, tc := range valid {
		t.Run(tc.name, func(t *testing.T) {
			in := append(bytes.Clone(tc.in), tail...)
			var h Header
			n, err := Parse(in, &h)
			if err != nil || n != len(tc.in) {
				t.Fatalf("Parse = %d, %v; want %d, nil", n, err, len(tc.in))
			}
			if h != tc.want {
				t.Errorf("header %+v, want %+v", h, tc.want)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	for _, tc := range invalid {
		t.Run(tc.name, func(t *testing.T) {
			h := Header{Version: 9}
			n, err := Parse(tc.in, &h)
			if n != 0 || err != tc.want {
				t.Fatalf("Parse = %d, %v; want 0, %v", n, err, tc.want)
			}
			if h.Version != 9 {
				t.Errorf("header written on refusal: %+v", h)
			}
			var e *Error
			if !errors.As(err, &e) || e.Reason() == 0 || e.Reason().String() == "unknown" {
				t.Errorf("error %v has no reason", err)
			}
		})
	}
}

// Bytes arrive in pieces: until the header is complete, Parse asks for
// more; a refusal or an acceptance, once given, does not change as more
// bytes arrive.
func TestParseSplit(t *testing.T) {
	for _, tc := range valid {
		in := append(bytes.Clone(tc.in), "GET /"...)
		for k := 0; k < len(tc.in); k++ {
			var h Header
			if n, err := Parse(in[:k], &h); n != 0 || err != nil {
				t.Fatalf("%s: first %d bytes: Parse = %d, %v; want 0, nil", tc.name, k, n, err)
			}
		}
		for k := len(tc.in); k <= len(in); k++ {
			var h Header
			if n, err := Parse(in[:k], &h); n != len(tc.in) || err != nil || h != tc.want {
				t.Fatalf("%s: first %d bytes: Parse = %d, %v, %+v", tc.name, k, n, err, h)
			}
		}
	}
	for _, tc := range invalid {
		decided := false
		for k := 0; k <= len(tc.in); k++ {
			var h Header
			n, err := Parse(tc.in[:k], &h)
			switch {
			case n != 0:
				t.Fatalf("%s: first %d bytes accepted", tc.name, k)
			case err == nil && decided:
				t.Fatalf("%s: first %d bytes undecided after a refusal", tc.name, k)
			case err != nil && err != tc.want:
				t.Fatalf("%s: first %d bytes: %v; the whole: %v", tc.name, k, err, tc.want)
			}
			decided = err != nil
		}
	}
}

// A header one byte at a time is accepted, with the bytes after it left
// alone; the v1 bound counts from the header's first byte.
func TestParseIncomplete(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int // 0: undecided
	}{
		{"", 0}, {"P", 0}, {"PROXY", 0}, {"PROXY TCP4 1.2.3.4", 0}, {"PROXY UNKNOWN\r", 0},
		{"\r", 0}, {"\r\n\r\n\x00\r\nQUIT", 0}, {sigV2, 0}, {sigV2 + "\x21\x11\x00", 0},
		{sigV2 + "\x21\x11\x00\x0c" + string(addr4[:11]), 0},
		{"PROXY UNKNOWN " + strings.Repeat("f", 91), 0}, // 105 bytes, CRLF may still fit
		{"PROXY UNKNOWN " + strings.Repeat("f", 91) + "\r", 0},
	} {
		var h Header
		if n, err := Parse([]byte(tc.in), &h); n != tc.want || err != nil {
			t.Errorf("Parse(%q) = %d, %v; want %d, nil", tc.in, n, err, tc.want)
		}
	}
	var h Header
	if n, err := Parse([]byte("PROXY UNKNOWN "+strings.Repeat("f", 91)+"\r\n"), &h); n != 107 || err != nil {
		t.Errorf("107-byte line: %d, %v", n, err)
	}
	if n, err := Parse([]byte("PROXY UNKNOWN "+strings.Repeat("f", 92)+"\r"), &h); err != errV1TooLong {
		t.Errorf("CR at byte 107: %d, %v; want %v", n, err, errV1TooLong)
	}
}

func TestSniff(t *testing.T) {
	for in, want := range map[string]Kind{
		"": NeedMore, "P": NeedMore, "PROX": NeedMore, "PROXY": V1, "PROXY TCP4": V1,
		"PO": None, "PUT": None, "G": None, "\x16\x03\x01": None,
		"\r": NeedMore, "\r\n\r\n\x00\r\nQUI": NeedMore, sigV2: V2, sigV2 + "\x21": V2, "\r\n\r\n\r\n": None,
	} {
		if got := Sniff([]byte(in)); got != want {
			t.Errorf("Sniff(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestReasons(t *testing.T) {
	for r, want := range map[Reason]string{Missing: "missing", Malformed: "malformed", TooLong: "too_long", Unsupported: "unsupported", 0: "", 99: "unknown"} {
		if r.String() != want {
			t.Errorf("Reason(%d) = %q, want %q", r, r.String(), want)
		}
	}
	if ErrMissing.Reason() != Missing || errV2TooLong.Reason() != TooLong || errV2Command.Reason() != Unsupported || errV2CRC.Reason() != Malformed {
		t.Error("reasons mixed up")
	}
	if !strings.HasPrefix(errV1Port.Error(), "proxyproto: v1: ") {
		t.Errorf("message %q", errV1Port.Error())
	}
}

// The parser runs on the event loop for every connection of a PROXY
// listener: it must not allocate, accepting or refusing.
func TestParseAllocs(t *testing.T) {
	ins := [][]byte{valid[0].in, valid[4].in, valid[12].in, awsNLB, invalid[10].in, invalid[len(invalid)-1].in, []byte("GET /")}
	var h Header
	if n := testing.AllocsPerRun(100, func() {
		for _, in := range ins {
			_, _ = Parse(in, &h)
		}
	}); n != 0 {
		t.Errorf("%v allocations per run", n)
	}
}

func TestParseIPv6MatchesNetip(t *testing.T) {
	for _, s := range []string{
		"::", "::1", "1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1::8", "fe80::", "FFFF::ffff",
		"0000:0000:0000:0000:0000:0000:0000:0001", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", ":1::", "1::2:", "1:::2",
		":", "", "1", "12345::", "g::", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "1::2::3", "::ffff:1.2.3.4",
	} {
		checkIPv6(t, s)
	}
}

func checkIPv6(t *testing.T, s string) {
	t.Helper()
	got, ok := parseIPv6([]byte(s))
	want, err := netip.ParseAddr(s)
	netipOK := err == nil && want.Is6() && want.Zone() == "" && !strings.Contains(s, ".")
	if ok != netipOK || ok && got != want {
		t.Errorf("parseIPv6(%q) = %v, %v; netip: %v, %v", s, got, ok, want, err)
	}
}

func FuzzIPv6VsNetip(f *testing.F) {
	for _, s := range []string{"::", "1:2:3:4:5:6:7:8", "1::", "fe80::1:2", "1:::2", "::ffff:1.2.3.4", "abcd:ef01::ABCD"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 64 {
			return
		}
		checkIPv6(t, s)
	})
}

// FuzzParse checks what must hold for any input: no panic, a length
// within the input, and decisions on a prefix that more bytes do not
// change.
func FuzzParse(f *testing.F) {
	for _, tc := range valid {
		f.Add(tc.in)
	}
	for _, tc := range invalid {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var h Header
		n, err := Parse(in, &h)
		if n < 0 || n > len(in) || n > 0 && err != nil {
			t.Fatalf("Parse = %d, %v for %d bytes", n, err, len(in))
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Reason() < Missing || e.Reason() > Unsupported {
				t.Fatalf("error without a reason: %v", err)
			}
		}
		if n > 0 {
			if h.Version != 1 && h.Version != 2 || h.Command != Local && h.Command != Proxy ||
				h.Source.IsValid() != h.Destination.IsValid() || h.Command == Local && h.Source.IsValid() {
				t.Fatalf("inconsistent header %+v", h)
			}
			if n > MaxV2Length+v2Fixed || h.Version == 1 && n > MaxV1Length {
				t.Fatalf("%d-byte v%d header", n, h.Version)
			}
		}
		// Every prefix is either undecided or decided as the whole is
		// (an accepted header is decided once its last byte is in).
		for k := 0; k < len(in); k++ {
			if k > 256 && k%61 != 0 {
				continue
			}
			var hk Header
			nk, errk := Parse(in[:k], &hk)
			switch {
			case nk == 0 && errk == nil:
				if n > 0 && k >= n {
					t.Fatalf("first %d bytes undecided, the whole has a %d-byte header", k, n)
				}
			case nk != n || errk != err || nk > 0 && hk != h:
				t.Fatalf("first %d bytes: %d, %v, %+v; the whole: %d, %v, %+v", k, nk, errk, hk, n, err, h)
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	for _, bc := range []struct {
		name string
		in   []byte
	}{
		{"v1_tcp4", valid[0].in},
		{"v1_tcp6", valid[3].in},
		{"v2_tcp6", valid[10].in},
		{"v2_aws_crc32c", awsNLB},
		{"direct_http", []byte("GET / HTTP/1.1\r\n")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var h Header
			b.SetBytes(int64(len(bc.in)))
			for b.Loop() {
				if _, err := Parse(bc.in, &h); err != nil && err != ErrMissing {
					b.Fatal(err)
				}
			}
		})
	}
}
