package proxyproto

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"testing"

	pp "github.com/pires/go-proxyproto"
)

// FuzzParseVsGoProxyproto compares Parse with github.com/pires/go-proxyproto,
// an independent, widely used implementation, on every input where Parse
// decides. They must agree on whether there is a header, on its length and
// on the client's address, except where this parser is deliberately
// different:
//
//   - stricter: it checks that version 2 TLVs tile the header and verifies
//     CRC32C TLVs (section 2.2.3), refuses a CR inside a v1 UNKNOWN line
//     (section 2.1: a single CR must not end the line), and refuses the
//     dotted IPv4 tail in v1 IPv6 addresses, which is not in section 2.1's
//     grammar;
//   - more lenient: it accepts a version 2 PROXY command with AF_UNSPEC and
//     uses the real endpoints, as section 2.2 allows ("The receiver is free
//     to accept the connection anyway and use the real endpoint addresses
//     or to reject it"); go-proxyproto rejects it.
func FuzzParseVsGoProxyproto(f *testing.F) {
	for _, tc := range valid {
		f.Add(tc.in)
	}
	for _, tc := range invalid {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var h Header
		n, err := Parse(in, &h)
		if n == 0 && err == nil {
			return // undecided: go-proxyproto would wait or fail on EOF
		}
		br := bufio.NewReaderSize(bytes.NewReader(in), len(in)+16)
		ph, perr := pp.Read(br)
		consumed := len(in) - br.Buffered()

		switch {
		case err == ErrMissing:
			if !errors.Is(perr, pp.ErrNoProxyProtocol) {
				t.Fatalf("no signature for us; go-proxyproto: %+v, %v", ph, perr)
			}
		case errors.Is(perr, pp.ErrNoProxyProtocol):
			t.Fatalf("go-proxyproto sees no signature; we: %d, %v", n, err)
		case err != nil:
			if perr == nil && !stricter(err, in) {
				t.Fatalf("we refuse (%v), go-proxyproto accepts %+v", err, ph)
			}
		case perr != nil:
			if !(in[12] == 0x21 && in[13] == famUnspec && errors.Is(perr, pp.ErrUnsupportedAddressFamilyAndProtocol)) {
				t.Fatalf("we accept %+v, go-proxyproto refuses: %v", h, perr)
			}
		default:
			if consumed != n {
				t.Fatalf("header length %d, go-proxyproto's %d", n, consumed)
			}
			if int(ph.Version) != int(h.Version) {
				t.Fatalf("version %d, go-proxyproto's %d", h.Version, ph.Version)
			}
			if h.Source.IsValid() {
				src, ok1 := ph.SourceAddr.(*net.TCPAddr)
				dst, ok2 := ph.DestinationAddr.(*net.TCPAddr)
				if !ok1 || !ok2 || src.AddrPort() != h.Source || dst.AddrPort() != h.Destination {
					t.Fatalf("addresses %v -> %v, go-proxyproto's %v -> %v", h.Source, h.Destination, ph.SourceAddr, ph.DestinationAddr)
				}
			} else if _, ok := ph.SourceAddr.(*net.TCPAddr); ok && h.Command == Proxy {
				t.Fatalf("no address; go-proxyproto's %v (%+v)", ph.SourceAddr, ph)
			}
		}
	})
}

// stricter reports whether err is one of the refusals go-proxyproto does
// not make (see FuzzParseVsGoProxyproto).
func stricter(err error, in []byte) bool {
	switch err {
	case errV2TLV, errV2CRCLength, errV2CRC, errV1BareCR:
		return true
	case errV1Address6:
		return bytes.IndexByte(in, '.') >= 0
	}
	return false
}

// Headers written by go-proxyproto, a different implementation, parse to
// the addresses it was given.
func TestParseGoProxyprotoHeaders(t *testing.T) {
	for _, tc := range []struct{ src, dst string }{
		{"192.0.2.1:56324", "198.51.100.7:443"},
		{"[2001:db8::1]:12345", "[2001:db8::2]:443"},
		{"0.0.0.0:0", "255.255.255.255:65535"},
	} {
		for _, version := range []byte{1, 2} {
			src, dst := net.TCPAddrFromAddrPort(ap(tc.src)), net.TCPAddrFromAddrPort(ap(tc.dst))
			raw, err := pp.HeaderProxyFromAddrs(version, src, dst).Format()
			if err != nil {
				t.Fatal(err)
			}
			var h Header
			n, err := Parse(append(raw, "GET"...), &h)
			want := Header{Version: version, Command: Proxy, Source: ap(tc.src), Destination: ap(tc.dst)}
			if n != len(raw) || err != nil || h != want {
				t.Errorf("v%d %q: %d, %v, %+v; want %d, %+v", version, raw, n, err, h, len(raw), want)
			}
		}
	}
	local := &pp.Header{Version: 2, Command: pp.LOCAL, TransportProtocol: pp.UNSPEC}
	raw, err := local.Format()
	if err != nil {
		t.Fatal(err)
	}
	var h Header
	if n, err := Parse(raw, &h); n != len(raw) || err != nil || h != (Header{Version: 2, Command: Local}) {
		t.Errorf("LOCAL: %d, %v, %+v", n, err, h)
	}
}
