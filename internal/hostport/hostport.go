// Package hostport validates the host and port parts of the addresses written
// in frontdoor's configuration and directory files, so that both files accept
// and reject the same spellings.
package hostport

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// ErrPortRange is returned by ParsePort for a number outside 1-65535.
var ErrPortRange = errors.New("port out of range")

// CanonicalHost validates an IP literal (without brackets; an IPv6 zone is
// allowed) or a DNS host name, and returns it in canonical form: IP addresses
// as netip prints them, names lower-cased. It reports false for anything else.
func CanonicalHost(host string) (string, bool) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.String(), true
	}
	if host == "" || strings.Contains(host, ":") || len(host) > 253 {
		return "", false
	}
	labels := strings.Split(strings.TrimSuffix(host, "."), ".")
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", false
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return "", false
			}
		}
	}
	// An all-numeric last label is a mistyped IPv4 address ("10.0.0.300"),
	// not a name (RFC 3696 section 2).
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return "", false
	}
	return strings.ToLower(host), true
}

// ParsePort parses a decimal TCP port, 1-65535. Service names ("http") are
// not accepted: what a name means depends on the host's /etc/services.
func ParsePort(s string) (int, error) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, errors.New("port " + strconv.Quote(s) + " is not a number")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, ErrPortRange
	}
	return n, nil
}
