package directory

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"frontdoor/internal/hostport"
)

// HostPort returns the server's address as host:port for dialing, with
// defaultPort (the protocol's backend_port) filled in when the directory
// address has no port of its own. IPv6 hosts are bracketed.
func (s *Server) HostPort(defaultPort int) string {
	host, port, err := splitAddress(s.Address)
	if err != nil {
		// Parse rejects such addresses; a hand-built Server is dialed as
		// written and fails there with the dialer's message.
		return s.Address
	}
	if port == 0 {
		port = defaultPort
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// splitAddress parses a server address: "host", "host:port", an IPv6 literal
// alone ("::1" or "[::1]") or bracketed with a port ("[::1]:443"). port is 0
// when the address has none.
func splitAddress(a string) (host string, port int, err error) {
	rest := ""
	switch {
	case strings.HasPrefix(a, "["):
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return "", 0, errors.New(`missing "]" after IPv6 address`)
		}
		host, rest = a[1:end], a[end+1:]
		if ip, err := netip.ParseAddr(host); err != nil || !ip.Is6() {
			return "", 0, fmt.Errorf("%q in brackets is not an IPv6 address", host)
		}
		if rest != "" && rest[0] != ':' {
			return "", 0, errors.New(`want "[IPv6]" or "[IPv6]:port"`)
		}
	case strings.Count(a, ":") > 1:
		// A bare IPv6 literal; it cannot carry a port without brackets.
		if _, err := netip.ParseAddr(a); err != nil {
			return "", 0, errors.New(`not an IPv6 address; write an IPv6 address with a port as "[IPv6]:port"`)
		}
		host = a
	default:
		host = a
		if i := strings.IndexByte(a, ':'); i >= 0 {
			host, rest = a[:i], a[i:]
		}
	}
	if rest != "" {
		if port, err = hostport.ParsePort(rest[1:]); err != nil {
			return "", 0, err
		}
	}
	if host == "" {
		return "", 0, errors.New("missing host")
	}
	if _, ok := hostport.CanonicalHost(host); !ok {
		return "", 0, fmt.Errorf("host %q is neither an IP address nor a host name", host)
	}
	return host, port, nil
}

// Limits of an SMTP address (RFC 5321 section 4.5.3.1): a local part of at
// most 64 octets and a domain of at most 255, hence 320 with the "@".
const (
	maxLocalPart  = 64
	maxDomain     = 255
	maxAddressLen = maxLocalPart + 1 + maxDomain
)

// checkSMTPAddress accepts local@domain where local is a dot-atom (RFC 5322)
// and domain a host name. Quoted local parts, address literals and non-ASCII
// (SMTPUTF8) addresses are rejected: LookupMailbox folds ASCII case only.
func checkSMTPAddress(a string) error {
	if strings.IndexFunc(a, func(r rune) bool { return r >= 0x80 }) >= 0 {
		return errors.New("bad SMTP address: non-ASCII addresses (SMTPUTF8) are not supported")
	}
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return errors.New(`bad SMTP address: missing "@"`)
	}
	local, domain := a[:at], a[at+1:]
	switch {
	case local == "":
		return errors.New("bad SMTP address: empty local part")
	case len(local) > maxLocalPart:
		return fmt.Errorf("bad SMTP address: local part longer than %d characters", maxLocalPart)
	case local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, ".."):
		return errors.New(`bad SMTP address: local part starts or ends with "." or has ".."`)
	case domain == "":
		return errors.New("bad SMTP address: empty domain")
	case len(domain) > maxDomain:
		return fmt.Errorf("bad SMTP address: domain longer than %d characters", maxDomain)
	}
	for i := 0; i < len(local); i++ {
		if c := local[i]; !isAtext(c) && c != '.' {
			return fmt.Errorf("bad SMTP address: character %q not allowed in the local part", c)
		}
	}
	if _, err := netip.ParseAddr(domain); err == nil {
		return errors.New("bad SMTP address: the domain must be a name, not an IP address")
	}
	if _, ok := hostport.CanonicalHost(domain); !ok {
		return fmt.Errorf("bad SMTP address: %q is not a valid domain", domain)
	}
	return nil
}

// isAtext reports RFC 5322 atext: the characters of a dot-atom besides ".".
func isAtext(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}
